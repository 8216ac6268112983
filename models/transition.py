"""The per-customer transition, shared by the offline scorer and the stream agents:

    apply_event(state, event, watermark, scorer) -> Step(state, outputs, status)
    rescore(state, customer_id, at, cause, scorer) -> Step

Pure: the input state is never modified (a copy is returned), nothing reads the
wall clock, and every output id derives from its cause.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable
from enum import StrEnum
from typing import NamedTuple

from models.config import ScoringConfig
from models.emitted import Erasure, Output, ScoreOutput, SegmentChangeOutput, Stream
from models.ids import event_fingerprint
from models.programmes.decision import Moment, decide
from models.programmes.memory import Attribution
from models.scorer import Scorer
from models.segments import Why
from models.state import CustomerState
from models.timeline import SECONDS_PER_DAY, date_of_day, day_of, iso_utc
from schemas.common import RESERVED_EVENT_ID_PREFIX, is_short_text
from schemas.inputs import Item
from schemas.outputs import DeadLetterReason
from schemas.parsing import Event


class Status(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    LATE = "late"
    REJECTED = "rejected"
    ERASED = "erased"
    PREDATES_CUSTOMER = "predates_customer"  # an erasure dated before all that is kept
    RESCORED = "rescored"
    LABELLED = "labelled"


class Step(NamedTuple):
    state: CustomerState | None
    outputs: list[Output]  # a fresh list: the caller may extend it
    status: Status
    reason: DeadLetterReason | None = None
    detail: str = ""
    labels: tuple[Label, ...] = ()  # churn labels resolved by this step, for learning
    snapshot_at: float | None = None  # event time of a churn snapshot this step took
    basket: Basket | None = None  # categories bought, for the needs model to learn
    trigger: Attribution | None = None  # a programme triggered: the book spends and waits
    dedupe_overflow: bool = False  # an id still in reach was forgotten (limit reached)


class Basket(NamedTuple):
    """Categories of a purchase day, after the customer's previous purchase day's."""

    prior: tuple[str, ...]
    bought: tuple[str, ...]
    day: int  # the purchase day


class Label(NamedTuple):
    """A resolved churn label: the snapshot's features, the probability served when it
    was taken, and whether the customer churned (no purchase within the window)."""

    vector: array
    served: float
    churned: bool
    taken_at: float  # event time of the snapshot
    version_number: int  # the engine's install count when it was served (-1: unknown)


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
    late = at < watermark
    if late and not _protects_privacy(event):
        detail = f"event time {iso_utc(at)} is before the watermark {iso_utc(watermark)}"
        return Step(state, [], Status.LATE, DeadLetterReason.LATE, detail)
    customer_id = event.customer_id
    if event.event_type == "customer" and event.kind == "erasure":
        if state is not None and state.first_seen > at:
            # Everything kept is dated after the erasure: a customer who came back after
            # it, as in time order (an erasure re-sent once its id was forgotten, or late)
            return Step(state, [], Status.PREDATES_CUSTOMER)
        if state is not None:  # a late erasure still supersedes every score kept
            at = max(at, state.scored_at, state.last_event_at)
        return Step(None, [Erasure(customer_id, at)], Status.ERASED)
    if late:  # an opt-out however late: it applies, nothing else in the event does
        return _late_opt_out(state, event, fingerprint, at, watermark, scorer)

    new = state.copy() if state is not None else CustomerState.new(at)
    if at < new.first_seen:  # an earlier event, within the lateness, came after
        new.first_seen = at
    labels: tuple[Label, ...] = ()
    basket = None
    if event.event_type == "transaction":
        amount = scorer.config.to_base(event.amount, event.currency)
        if amount is None:
            detail = f"no exchange rate from {event.currency} to {scorer.config.base_currency}"
            return Step(state, [], Status.REJECTED, DeadLetterReason.UNSUPPORTED_CURRENCY, detail)
        if new.programmes is not None and new.programmes.open:
            grace = scorer.config.programmes.refund_grace_seconds
            if event.kind == "purchase":
                new.programmes = new.programmes.attribute(at, amount, grace, sale=fingerprint)
            else:
                named = event_fingerprint(event.refund_of) if event.refund_of else None
                new.programmes = new.programmes.attribute(at, -amount, grace, refund_of=named)
        if event.kind == "purchase":
            day = day_of(at)
            new.add_purchase(day, amount)
            new.forget_days_before(day_of(max(watermark, 0.0)))
            if new.snapshots:
                _mark_stayed(new, at, scorer.config.churn_window_days)
            if event.items and _profiled(new):
                basket = _add_basket(new, event, at, day, amount, scorer.config)
        else:
            new.add_refund(amount)
            if event.items:  # (an objector's affinity is empty: nothing to take back)
                new.affinity = new.affinity.refund(
                    at, _category_spend(event, amount), scorer.config.needs
                )
    elif event.event_type == "interaction":
        new.engagement = new.engagement.observe(event.kind, at, event.value)
        if event.kind == "unsubscribe":
            new.update_consent(_UNSUBSCRIBED, at)
        elif event.kind in _BROWSING and _profiled(new):
            category = event.attributes.get("category")
            if is_short_text(category):  # (an attribute: any text, so checked here)
                new.affinity = new.affinity.view(at, category, scorer.config.needs)
    else:
        if event.consent is not None:
            new.update_consent(event.consent, at)
        if event.profile is not None and event.profile.country is not None:
            new.country = event.profile.country

    overflow = new.remember(fingerprint, at, watermark, scorer.config.dedupe_window)
    new.last_event_at = max(new.last_event_at, at)
    new.rescore_step = 0
    _schedule_rescore(new, scorer)
    scored_at = max(new.scored_at, at)
    outputs, snapshot_at, trigger = _score(
        new, customer_id, scored_at, event.event_id, scorer, event.kind
    )
    return Step(
        new,
        outputs,
        Status.APPLIED,
        labels=labels,
        snapshot_at=snapshot_at,
        basket=basket,
        trigger=trigger,
        dedupe_overflow=overflow,
    )


_UNSUBSCRIBED = (("marketing_email", False),)


def _profiled(state: CustomerState) -> bool:
    """Whether the customer's category affinity may grow (and the needs model learn
    from their baskets): not while they object to profiling."""
    return state.consent.get("profiling") is not False


def _protects_privacy(event: Event) -> bool:
    """Erasures and consent withdrawals (unsubscribes too) apply even when late: a
    customer's objection must never be lost to the clock."""
    if event.event_type == "customer":
        if event.kind == "erasure":
            return True
        return event.consent is not None and False in dict(event.consent).values()
    return event.event_type == "interaction" and event.kind == "unsubscribe"


def _late_opt_out(
    state: CustomerState | None,
    event: Event,
    fingerprint: bytes,
    at: float,
    watermark: float,
    scorer: Scorer,
) -> Step:
    """Apply only the withdrawals of a late event (a late grant could undo a newer
    withdrawal, so it is not applied) and re-score as of the customer's latest time."""
    new = state.copy() if state is not None else CustomerState.new(at)
    if event.event_type == "interaction":
        new.update_consent(_UNSUBSCRIBED, at)
    else:
        withdrawn = [(name, False) for name, granted in event.consent if granted is False]
        new.update_consent(withdrawn, at)
    overflow = new.remember(fingerprint, at, watermark, scorer.config.dedupe_window)
    scored_at = max(new.scored_at, at)
    outputs, snapshot_at, _ = _score(
        new, event.customer_id, scored_at, event.event_id, scorer, None, False
    )
    return Step(new, outputs, Status.APPLIED, snapshot_at=snapshot_at, dedupe_overflow=overflow)


def rescore(
    state: CustomerState,
    customer_id: str,
    at: float,
    cause: str,
    scorer: Scorer,
    decide_programmes: bool = True,
) -> Step:
    """Re-score a (silent) customer as of `at`; used when the clock passes its due time.
    A catch-up re-score far behind the clock decides no programme (`decide_programmes`
    off): its offer would be stale and its attribution window partly past."""
    new = state.copy()
    new.rescore_step += 1
    _schedule_rescore(new, scorer)
    outputs, snapshot_at, trigger = _score(
        new, customer_id, max(new.scored_at, at), cause, scorer, None, decide_programmes
    )
    return Step(new, outputs, Status.RESCORED, snapshot_at=snapshot_at, trigger=trigger)


def resolve_expired(state: CustomerState, watermark: float, window_days: int) -> Step:
    """Label every snapshot whose window ended before the watermark (no purchase inside
    it can arrive any more): 0 if a purchase inside it was seen, else 1 (churned).
    Nothing else changes; no outputs."""
    window = window_days * SECONDS_PER_DAY
    expired = [s for s in state.snapshots if s[0] + window < watermark]
    if not expired:
        return Step(state, [], Status.LABELLED)
    new = state.copy()
    new.snapshots = tuple(s for s in state.snapshots if s[0] + window >= watermark)
    labels = tuple(
        Label(vector, p, not stayed, at, number) for at, p, vector, stayed, number in expired
    )
    return Step(new, [], Status.LABELLED, labels=labels)


def label_day(snapshot_at: float, window_days: int) -> int:
    """The first day whose start is after the snapshot's window: its label is due then."""
    return day_of(snapshot_at + window_days * SECONDS_PER_DAY) + 1


def _mark_stayed(state: CustomerState, at: float, window_days: int) -> None:
    """A purchase at `at` inside a snapshot's window makes its label 0 (stayed), but the
    label is learned only when the window ends, like a churned one: learning stayers at
    their purchase would show the model only stayers among its most recent snapshots
    (churners come a window later), biasing every served probability towards 0.
    Snapshots whose window ended before `at` wait for the clock as before."""
    window = window_days * SECONDS_PER_DAY
    if any(t < at <= t + window and not stayed for t, _, _, stayed, _ in state.snapshots):
        state.snapshots = tuple(
            (t, served, vector, stayed or t < at <= t + window, number)
            for t, served, vector, stayed, number in state.snapshots
        )


_BROWSING = frozenset({"page_view", "cart_abandon"})


def _category_weights(items: Iterable[Item], priced: bool) -> dict[str, float]:
    """Each category's share of a basket: by value (quantity x unit price) when every
    item has a price, else by quantity (an item's price is optional).

    >>> from schemas.inputs import Item
    >>> _category_weights([Item(sku="s", category="a", quantity=2)], priced=False)
    {'a': 2.0}
    """
    weights: dict[str, float] = {}
    for item in items:
        weight = item.quantity * item.unit_price if priced else float(item.quantity)
        weights[item.category] = weights.get(item.category, 0.0) + weight
    return weights


def _category_spend(event: Event, amount: float) -> dict[str, float]:
    """A transaction's amount (in the base currency) split over its items' categories."""
    priced = all(item.unit_price is not None for item in event.items)
    spend = _category_weights(event.items, priced)
    total = sum(spend.values())
    scale = amount / total if total > 0 else 0.0
    if priced and not (total > 0 and math.isfinite(scale)):  # (prices all 0, or tiny)
        spend = _category_weights(event.items, priced=False)
        total = sum(spend.values())
        scale = amount / total
    return {category: value * scale for category, value in spend.items()}


def _add_basket(
    state: CustomerState, event: Event, at: float, day: int, amount: float, config: ScoringConfig
) -> Basket | None:
    """Count the purchase's categories (spend split by item value, in the base currency)
    in the customer's affinity; the basket the needs model learns from, if new."""
    spend = _category_spend(event, amount)
    before = state.affinity
    after = state.affinity = before.purchase(at, day, spend, config.needs)
    if after.basket_day != day:  # a late purchase: history kept, nothing learned
        return None
    if before.basket_day == day:  # another purchase the same day
        bought = tuple(c for c in after.basket if c not in before.basket)
        return Basket(after.prior_basket, bought, day) if bought else None
    return Basket(after.prior_basket, after.basket, day)


def due_cause(day: int) -> str:
    """The cause of a time-driven re-score; input event ids may not look like it."""
    return f"{RESERVED_EVENT_ID_PREFIX}{date_of_day(day)}"


def _schedule_rescore(state: CustomerState, scorer: Scorer) -> None:
    delays = scorer.config.rescore_after_days
    step = state.rescore_step
    state.due_day = day_of(state.last_event_at) + delays[step] if step < len(delays) else None


def _score(
    state: CustomerState,
    customer_id: str,
    at: float,
    cause: str,
    scorer: Scorer,
    event_kind: str | None,
    decide_programmes: bool = True,
) -> tuple[list[Output], float | None, Attribution | None]:
    """Score the state (updating it), take a churn snapshot when one is due, and decide
    on programmes."""
    fields = scorer.scores_of(state, at)
    state.scored_at = at
    config = scorer.config
    outputs: list[Output] = [ScoreOutput(customer_id, fields, cause, config)]
    snapshot_at = None
    vector = fields.churn_vector
    if vector is not None:
        snapshots = state.snapshots
        interval = config.churn_snapshot_interval_days * SECONDS_PER_DAY
        if not snapshots or at - snapshots[-1][0] >= interval:
            snapshot = (
                at,
                fields.churn_probability,
                array("d", vector),
                False,
                scorer.version_number,
            )
            state.snapshots = (*snapshots, snapshot)[-config.max_snapshots :]
            snapshot_at = at
    bins = fields.bins
    if bins != state.population_bins:  # else keep the old tuple: fewer live objects
        state.population_bins = bins
    lifecycle, tier = fields.lifecycle, fields.value_tier
    entered_lifecycle = entered_tier = None
    if lifecycle != state.segment:
        change = ("lifecycle", state.segment, lifecycle, fields.lifecycle_why)
        outputs.append(_segment_change(customer_id, at, cause, *change))
        state.segment, state.segment_since = lifecycle, at
        entered_lifecycle = lifecycle
    if tier != state.value_tier and tier is not None:
        change = ("value_tier", state.value_tier, tier, fields.tier_why)
        outputs.append(_segment_change(customer_id, at, cause, *change))
        state.value_tier, state.tier_since = tier, at
        entered_tier = tier
    trigger = None
    book = scorer.programmes
    if book is not None and decide_programmes and fields.values is not None:
        moment = Moment(event_kind, entered_lifecycle, entered_tier)
        decision = decide(
            customer_id,
            state,
            fields,
            moment,
            cause,
            book,
            config.programmes,
            config.margin_rate,
            config.horizon_days,
        )
        if decision is not None:
            state.programmes = decision.memory
            outputs.append(Output(Stream.PROGRAMME_TRIGGERS, customer_id, decision.event))
            trigger = decision.attribution
    return outputs, snapshot_at, trigger


def _segment_change(
    customer_id: str, at: float, cause: str, dimension: str, old: str | None, new: str, why: Why
) -> Output:
    return SegmentChangeOutput(customer_id, (at, cause, dimension, old, new, why))
