"""What the transition emits: an output event on a logical stream, keyed by customer.

Score updates and segment changes build their payload on first read, so a run that
does not emit them (the offline scorer without `--emitted`) does not pay for them;
the content is the same either way.

>>> Output(Stream.SCORES, "c1", {"a": 1}) == Output(Stream.SCORES, "c1", {"a": 1})
True
>>> Erasure("c1", 5.0).value is None  # a tombstone
True
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from models.ids import deterministic_id
from models.timeline import iso_utc

if TYPE_CHECKING:
    from models.config import ScoringConfig
    from models.scorer import ScoreFields
    from models.segments import Why


class Stream(StrEnum):
    """Logical output streams; the service maps them onto topics."""

    SCORES = "scores"
    SEGMENT_CHANGES = "segment-changes"
    PROGRAMME_TRIGGERS = "programme-triggers"
    PROGRAMME_OUTCOMES = "programme-outcomes"
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


class Erasure(Output):
    """The tombstone of an erased customer; `at` is the erasure's event time, so a
    score store can refuse older scores that arrive after it."""

    __slots__ = ("at",)

    def __init__(self, customer_id: str, at: float) -> None:
        super().__init__(Stream.SCORES, customer_id, None)
        self.at = at


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


class SegmentChangeOutput(Output):
    """A segment change whose payload (its id, time and reason text) is built on first
    read, like a score update's; the content is the same either way."""

    __slots__ = ("_change",)

    def __init__(
        self, customer_id: str, change: tuple[float, str, str, str | None, str, Why]
    ) -> None:
        self.stream, self.key, self._value = Stream.SEGMENT_CHANGES, customer_id, None
        self._change = change  # at, cause, dimension, from, to, why

    @property
    def value(self) -> dict:
        if self._value is None:
            customer_id, (at, cause, dimension, old, new, why) = self.key, self._change
            self._value = {
                "event_type": "segment_change",
                "schema_version": 1,
                "event_id": deterministic_id("segment", customer_id, cause, dimension, new),
                "customer_id": customer_id,
                "occurred_at": iso_utc(at),
                "dimension": dimension,
                "from_segment": old,
                "to_segment": new,
                "reason": why.text(),
                "cause": cause,
            }
        return self._value
