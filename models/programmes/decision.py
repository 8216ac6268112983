"""The decision: which programme, if any, a customer gets now, and in which arm.

Pure: it reads the customer's state and scores, the event just seen and the
partition's programme book (uplifts learned so far, budgets left, stopped
programmes, freeze), and returns a `Decision` the transition applies. Every
eligible programme is valued as

    expected incremental value = margin x uplift x value at stake - cost per contact

(stake: churn probability x CLV for retention, CLV for growth, the customer's past
net spend per horizon for reactivation). The best one is
triggered only when that value is positive and every guardrail holds; the runner-up
and why it lost are recorded. Guardrails hold for both arms alike (a control
customer counts as contacted), so control and treatment stay comparable.

>>> assign_arm("salt", "c1", "win_back", 0.2) == assign_arm("salt", "c1", "win_back", 0.2)
True
"""

from __future__ import annotations

from hashlib import blake2b
from typing import TYPE_CHECKING, NamedTuple, Protocol

from models.ids import deterministic_id
from models.programmes.catalogue import Programme, ProgrammesConfig
from models.programmes.memory import NO_PROGRAMMES, Attribution, ProgrammeMemory
from models.segments import rfm_named
from models.timeline import SECONDS_PER_DAY, iso_utc

if TYPE_CHECKING:
    from models.scorer import ScoreFields
    from models.state import CustomerState


class BookView(Protocol):
    """What the decision reads of the partition's programme book."""

    keep_days: int

    def screen(self, lifecycle: str, moment: Moment) -> tuple[Programme, ...]: ...
    def uplift(self, programme_id: str) -> float: ...
    def stopped(self, programme_id: str) -> str | None: ...
    def budget_left(self, programme: Programme, day: int) -> float: ...
    def frozen(self, at: float) -> str | None: ...


class Moment(NamedTuple):
    """What just happened to the customer: the event kind scored (None for a re-score)
    and the lifecycle / tier the customer has just entered (None if unchanged)."""

    event_kind: str | None
    entered_lifecycle: str | None
    entered_tier: str | None


class Decision(NamedTuple):
    programme: Programme
    arm: str
    attribution: Attribution
    memory: ProgrammeMemory
    event: dict


def assign_arm(salt: str, customer_id: str, programme_id: str, control_share: float) -> str:
    """`control` for a deterministic pseudo-random share of customers, per programme."""
    digest = blake2b(f"{salt}\x1f{customer_id}\x1f{programme_id}".encode(), digest_size=8)
    uniform = int.from_bytes(digest.digest(), "big") / 2.0**64
    return "control" if uniform < control_share else "treatment"


def screened(programme: Programme, lifecycle: str, moment: Moment) -> bool:
    """The conditions on the moment (lifecycle, event kind, segment just entered): the
    book caches which programmes pass them per distinct moment."""
    rule = programme.eligibility
    if rule.lifecycles is not None and lifecycle not in rule.lifecycles:
        return False
    if rule.event_kinds is not None and moment.event_kind not in rule.event_kinds:
        return False
    if rule.entered_tier is not None and moment.entered_tier not in rule.entered_tier:
        return False
    entered = rule.entered_lifecycle
    return entered is None or moment.entered_lifecycle in entered


def segment_match(programme: Programme, fields: ScoreFields) -> bool:
    """The conditions on the scores (tier, churn band, CLV, spend) of a programme that
    passed `screened`; see `rfm_match` for the RFM segment."""
    rule = programme.eligibility
    if rule.value_tiers is not None and fields.value_tier not in rule.value_tiers:
        return False
    churn = fields.churn_probability
    if churn is None or not rule.churn_min <= churn <= rule.churn_max:
        return False
    if fields.total_spend < rule.min_total_spend:
        return False
    return fields.values is not None and fields.values.clv >= rule.min_clv


def rfm_match(programme: Programme, fields: ScoreFields) -> bool:
    """The RFM condition (dearer: checked only for programmes not blocked anyway)."""
    segments = programme.eligibility.rfm_segments
    if segments is None:
        return True
    rfm = fields.rfm_score
    return rfm is not None and rfm_named(rfm) in segments


def decide(
    customer_id: str,
    state: CustomerState,
    fields: ScoreFields,
    moment: Moment,
    cause: str,
    book: BookView,
    config: ProgrammesConfig,
    margin: float,
    horizon_days: int,
) -> Decision | None:
    """The programme to trigger now, or None (nothing eligible, blocked, or not paying)."""
    at = fields.at
    valued: list[tuple[Programme, float, float]] = []
    pays = False
    for programme in book.screen(fields.lifecycle, moment):
        if not segment_match(programme, fields):
            continue
        # The value at stake is revenue, as the measured outcomes are, so the uplift
        # learned from them stays a share of it; the margin applies once, below (CLV
        # has it already).
        if programme.goal == "retention":
            stake = fields.churn_probability * fields.values.discounted_revenue
        elif programme.goal == "growth":
            stake = fields.values.discounted_revenue
        else:
            stake = pre_period_value(state, at, horizon_days)
        uplift = book.uplift(programme.id)
        value = margin * uplift * stake - programme.cost_per_contact
        valued.append((programme, stake, value))
        pays = pays or not value <= 0  # (the test below: a NaN value goes on as before)
    # None pays (most decisions): no trigger whatever the guardrails say, so they are
    # not read.
    if not pays:
        return None
    if book.frozen(at) is not None:
        return None
    memory = state.programmes or NO_PROGRAMMES
    window_start = at - config.contact_window_days * SECONDS_PER_DAY
    if memory.contacts_since(window_start) >= config.max_contacts:
        return None
    day = int(at // SECONDS_PER_DAY)
    ranked: list[tuple[float, str, Programme, float, str | None]] = []
    for programme, stake, value in valued:
        blocked = _blocked(programme, state, memory, fields, book, config, day, at)
        if blocked is None and not rfm_match(programme, fields):
            continue
        ranked.append((value, programme.id, programme, stake, blocked))
    if not ranked:
        return None
    ranked.sort(key=lambda c: (-c[0], c[1]))
    best = next((c for c in ranked if c[4] is None), None)
    if best is None or best[0] <= 0:
        return None
    value, _, programme, stake, _ = best
    # the next best by value, blocked or not (a blocked one only if it is eligible)
    runner_up = _runner_up(
        next(
            (c for c in ranked if c is not best and (c[4] is None or rfm_match(c[2], fields))), None
        ),
        value,
    )
    arm = assign_arm(config.salt, customer_id, programme.id, programme.control_share)
    trigger_id = deterministic_id("trigger", customer_id, programme.id, cause)
    end = at + programme.attribution_days * SECONDS_PER_DAY
    cost = programme.cost_per_contact if arm == "treatment" else 0.0
    covariate = pre_period_value(state, at, programme.attribution_days)
    first = not memory.exposed_to(programme.id)
    attribution = Attribution(
        trigger_id, programme.id, arm, at, end, covariate, stake, cost, first, 0.0
    )
    new_memory = memory.contacted(at, programme.id, book.keep_days).opened(attribution)
    event = {
        "event_type": "programme_trigger",
        "schema_version": 1,
        "event_id": trigger_id,
        "customer_id": customer_id,
        "occurred_at": iso_utc(at),
        "programme_id": programme.id,
        "arm": arm,
        "expected_incremental_value": round(value, 6),
        "cost": cost,
        "value_at_stake": round(stake, 6),
        "uplift": round(book.uplift(programme.id), 6),
        "reasons": _reasons(programme, fields, moment, value),
        "offer": fields.top_needs,
        "expires_at": iso_utc(at + programme.offer_valid_days * SECONDS_PER_DAY),
        "attribution_ends_at": iso_utc(end),
        "runner_up": runner_up,
        "cause": cause,
        "model_version": fields.model_version,
    }
    return Decision(programme, arm, attribution, new_memory, event)


def pre_period_value(state: CustomerState, at: float, window_days: int) -> float:
    """The customer's net revenue per window-length of history before `at` (the CUPED
    covariate): all spend so far, spread over max(tenure, one window)."""
    tenure_days = max(0.0, (at - state.first_seen) / SECONDS_PER_DAY)
    return state.net_spend * window_days / max(float(window_days), tenure_days)


def _blocked(
    programme: Programme,
    state: CustomerState,
    memory: ProgrammeMemory,
    fields: ScoreFields,
    book: BookView,
    config: ProgrammesConfig,
    day: int,
    at: float,
) -> str | None:
    """Why an eligible programme cannot be triggered now, or None."""
    flag = programme.consent
    if flag is not None:
        granted = state.consent.get(flag)
        if granted is False or (granted is None and not config.assume_consent):
            return f"no {flag} consent"
    stopped = book.stopped(programme.id)
    if stopped is not None:
        return stopped
    last = memory.last_contact(programme.id)
    if last is not None and at - last < programme.cooldown_days * SECONDS_PER_DAY:
        return f"cooldown: last contact {(at - last) / SECONDS_PER_DAY:.0f} days ago"
    if programme.eligibility.needs_required and not fields.top_needs:
        return "no needs to offer"
    if book.budget_left(programme, day) < programme.cost_per_contact:
        return "daily budget spent"
    return None


def _runner_up(second: tuple | None, best_value: float) -> dict | None:
    if second is None:
        return None
    value, programme_id, _, _, blocked = second
    why = blocked or f"lower expected value ({value:.2f} < {best_value:.2f})"
    return {
        "programme_id": programme_id,
        "expected_incremental_value": round(value, 6),
        "why_lost": why,
    }


def _reasons(programme: Programme, fields: ScoreFields, moment: Moment, value: float) -> list[str]:
    rule = programme.eligibility
    reasons = []
    if rule.lifecycles is not None:
        reasons.append(f"lifecycle {fields.lifecycle}")
    if rule.entered_lifecycle is not None:
        reasons.append(f"just became {moment.entered_lifecycle}")
    if rule.value_tiers is not None or rule.entered_tier is not None:
        reasons.append(f"value tier {fields.value_tier}")
    if rule.min_total_spend > 0:
        reasons.append(f"spent {fields.total_spend:.2f} so far")
    if rule.rfm_segments is not None:
        reasons.append(f"RFM {fields.rfm_score}")
    if rule.event_kinds is not None:
        reasons.append(f"event {moment.event_kind}")
    reasons.append(f"churn probability {fields.churn_probability:.2f}")
    reasons.append(f"CLV {fields.values.clv:.2f}")
    reasons.append(
        f"expected incremental value {value:.2f} after cost {programme.cost_per_contact:.2f}"
    )
    return reasons
