"""The per-customer transition, shared by the offline scorer and the stream agents:

    apply_event(state, event, watermark, scorer) -> Step(state, outputs, status)
    rescore(state, customer_id, at, cause, scorer) -> Step

Pure: the input state is never modified (a copy is returned), nothing reads the
wall clock, and every output id derives from its cause.
"""

from __future__ import annotations

from enum import StrEnum
from typing import NamedTuple

from models.config import ScoringConfig
from models.ids import deterministic_id, event_fingerprint
from models.scorer import ScoreFields, Scorer
from models.state import CustomerState
from models.timeline import date_of_day, day_of, iso_utc
from schemas.outputs import DeadLetterReason
from schemas.parsing import Event


class Status(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    LATE = "late"
    REJECTED = "rejected"
    ERASED = "erased"
    RESCORED = "rescored"


class Stream(StrEnum):
    """Logical output streams; the service maps them onto topics."""

    SCORES = "scores"
    SEGMENT_CHANGES = "segment-changes"
    PROGRAMME_TRIGGERS = "programme-triggers"
    MODEL_HEALTH = "model-health"
    DEAD_LETTER = "dead-letter"


class Output:
    """An emitted event on a logical stream, keyed by customer. A `None` value is a
    tombstone (the customer was erased)."""

    __slots__ = ("_value", "key", "stream")

    def __init__(self, stream: Stream, key: str | None, value: dict | None = None) -> None:
        self.stream, self.key, self._value = stream, key, value

    @property
    def value(self) -> dict | None:
        return self._value

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Output):
            return NotImplemented
        return (self.stream, self.key, self.value) == (other.stream, other.key, other.value)

    def __repr__(self) -> str:
        return f"Output({self.stream.value!r}, {self.key!r}, {self.value!r})"


class ScoreOutput(Output):
    """A score update whose payload is built on first read, so a run that does not emit
    scores does not pay for them; the content is the same either way."""

    __slots__ = ("_cause", "_config", "_fields")

    def __init__(
        self, customer_id: str, fields: ScoreFields, cause: str, config: ScoringConfig
    ) -> None:
        self.stream, self.key, self._value = Stream.SCORES, customer_id, None
        self._fields, self._cause, self._config = fields, cause, config

    @property
    def value(self) -> dict:
        if self._value is None:
            customer_id, cause = self.key, self._cause
            score_id = deterministic_id("score", customer_id, cause)
            self._value = self._fields.as_event(customer_id, score_id, cause, self._config)
        return self._value


class Step(NamedTuple):
    state: CustomerState | None
    outputs: list[Output]  # a fresh list: the caller may extend it
    status: Status
    reason: DeadLetterReason | None = None
    detail: str = ""


def apply_event(
    state: CustomerState | None,
    event: Event,
    watermark: float,
    scorer: Scorer,
    at: float | None = None,
) -> Step:
    """Apply one validated input event (occurring at epoch time `at`) to a customer's state."""
    fingerprint = event_fingerprint(event.event_id)
    if state is not None and state.has_seen(fingerprint):
        return Step(state, [], Status.DUPLICATE)
    if at is None:
        at = event.occurred_at.timestamp()
    if at < watermark:
        detail = f"event time {iso_utc(at)} is before the watermark {iso_utc(watermark)}"
        return Step(state, [], Status.LATE, DeadLetterReason.LATE, detail)
    customer_id = event.customer_id
    if event.event_type == "customer" and event.kind == "erasure":
        return Step(None, [Output(Stream.SCORES, customer_id, None)], Status.ERASED)

    new = state.copy() if state is not None else CustomerState.new(at)
    if event.event_type == "transaction":
        amount = scorer.config.to_base(event.amount, event.currency)
        if amount is None:
            detail = f"no exchange rate from {event.currency} to {scorer.config.base_currency}"
            return Step(state, [], Status.REJECTED, DeadLetterReason.UNSUPPORTED_CURRENCY, detail)
        if event.kind == "purchase":
            new.add_purchase(day_of(at), amount)
            new.forget_days_before(day_of(max(watermark, 0.0)))
        else:
            new.add_refund(amount)
    elif event.event_type == "interaction":
        if event.kind == "unsubscribe":
            new.consent["marketing_email"] = False
    else:
        if event.consent is not None:
            new.update_consent(event.consent)
        if event.profile is not None and event.profile.country is not None:
            new.country = event.profile.country

    new.remember(fingerprint, scorer.config.dedupe_window)
    new.last_event_at = max(new.last_event_at, at)
    new.rescore_step = 0
    _schedule_rescore(new, scorer)
    scored_at = max(new.scored_at, at)
    outputs = _score(new, customer_id, scored_at, event.event_id, scorer)
    return Step(new, outputs, Status.APPLIED)


def rescore(state: CustomerState, customer_id: str, at: float, cause: str, scorer: Scorer) -> Step:
    """Re-score a (silent) customer as of `at`; used when the clock passes its due time."""
    new = state.copy()
    new.rescore_step += 1
    _schedule_rescore(new, scorer)
    outputs = _score(new, customer_id, max(new.scored_at, at), cause, scorer)
    return Step(new, outputs, Status.RESCORED)


def due_cause(day: int) -> str:
    return f"due:{date_of_day(day)}"


def _schedule_rescore(state: CustomerState, scorer: Scorer) -> None:
    delays = scorer.config.rescore_after_days
    step = state.rescore_step
    state.due_day = day_of(state.last_event_at) + delays[step] if step < len(delays) else None


def _score(
    state: CustomerState, customer_id: str, at: float, cause: str, scorer: Scorer
) -> list[Output]:
    fields = scorer.scores_of(state, at)
    state.scored_at = at
    config = scorer.config
    outputs = [ScoreOutput(customer_id, fields, cause, config)]
    if fields.segment != state.segment:
        outputs.append(
            Output(
                Stream.SEGMENT_CHANGES,
                customer_id,
                {
                    "event_type": "segment_change",
                    "schema_version": 1,
                    "event_id": deterministic_id("segment", customer_id, cause, fields.segment),
                    "customer_id": customer_id,
                    "occurred_at": iso_utc(at),
                    "dimension": "lifecycle",
                    "from_segment": state.segment,
                    "to_segment": fields.segment,
                    "reason": fields.segment_reason(config),
                    "cause": cause,
                },
            )
        )
        state.segment = fields.segment
        state.segment_since = at
    return outputs
