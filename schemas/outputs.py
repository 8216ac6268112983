"""Output contracts: events clvstream emits. Every one carries a deterministic
`event_id` derived from its cause, so a replay or a retry yields the same id and
consumers can de-duplicate on it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import Field

from schemas.common import OutputContract


class DeadLetterReason(StrEnum):
    """Why an input was not applied. The set is closed: consumers may switch on it."""

    MALFORMED_JSON = "malformed_json"
    OVERSIZED_PAYLOAD = "oversized_payload"
    UNKNOWN_EVENT_TYPE = "unknown_event_type"
    UNSUPPORTED_SCHEMA_VERSION = "unsupported_schema_version"
    MISSING_FIELD = "missing_field"
    INVALID_ID = "invalid_id"
    NAIVE_TIMESTAMP = "naive_timestamp"
    INVALID_TIMESTAMP = "invalid_timestamp"
    INVALID_AMOUNT = "invalid_amount"
    INVALID_CURRENCY = "invalid_currency"
    UNKNOWN_KIND = "unknown_kind"
    INVALID_FIELD = "invalid_field"
    WRONG_TOPIC = "wrong_topic"
    KEY_MISMATCH = "key_mismatch"
    WRONG_PARTITION = "wrong_partition"
    UNSUPPORTED_CURRENCY = "unsupported_currency"
    LATE = "late"
    FUTURE_TIMESTAMP = "future_timestamp"
    PROCESSING_ERROR = "processing_error"


class Origin(OutputContract):
    """Where a rejected input came from: a file line or a topic/partition/offset."""

    source: Literal["file", "kafka", "api"]
    file: str | None = None
    line: int | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    key: str | None = Field(
        default=None,
        description="The Kafka record's key as text (invalid bytes replaced, at most 256 "
        "characters): it names the customer even when the value could not be read.",
    )


class DeadLetter(OutputContract):
    event_type: Literal["dead_letter"] = "dead_letter"
    schema_version: Literal[1] = 1
    event_id: str
    reason: DeadLetterReason
    detail: str = Field(description="Human-readable explanation: the field and the rule broken.")
    origin: Origin
    raw: str = Field(
        description="The input as received (decoded as UTF-8, invalid bytes replaced)."
    )
    customer_id: str | None = Field(default=None, description="When it could be read.")


class ScoreUpdate(OutputContract):
    """A customer's current scores; on the compacted `scores` topic, keyed by customer."""

    event_type: Literal["score"] = "score"
    schema_version: Literal[1] = 1
    event_id: str
    customer_id: str
    scored_at: datetime = Field(description="Event time the scores refer to.")
    cause: str = Field(description="Input event id, or `due:<date>` for a time-driven re-score.")
    frequency: int = Field(description="Repeat purchase days (purchase days minus one).")
    recency_days: int = Field(description="Days from first to last purchase day (BTYD t_x).")
    tenure_days: int = Field(description="Days from first purchase day to the scoring day (T).")
    monetary_value: float = Field(description="Mean spend per repeat purchase day, net of refunds.")
    total_spend: float = Field(description="All purchases minus refunds, base currency.")
    refund_total: float
    p_alive: float | None = Field(description="P(customer still active); null before a purchase.")
    expected_purchases: float | None = Field(description="Expected purchase days in the horizon.")
    predicted_value: float | None = Field(
        description="Expected spend in the horizon, undiscounted."
    )
    clv: float | None = Field(description="Discounted expected value over the horizon.")
    churn_probability: float | None = Field(
        description="P(no purchase within the churn window): the online churn model blended "
        "with the value model's answer while it has few labels."
    )
    value_churn_probability: float | None = Field(
        None, description="The value model's own P(no purchase within the churn window)."
    )
    churn_reasons: list[str] = Field(
        default_factory=list,
        description="Top factors raising the churn risk, in plain words (largest first).",
    )
    segment: str = Field(
        description="Lifecycle by value tier, e.g. `at_risk/top_5`; the lifecycle alone while "
        "tiers are not ranked yet (or for prospects and customers not profiled)."
    )
    lifecycle: str = Field(
        "prospect",
        description="prospect, new, active, at_risk, lapsing, lost, reactivated, not_profiled.",
    )
    value_tier: str | None = Field(
        None,
        description="CLV tier among the partition's purchasers: top_5, next_15, next_30, rest; "
        "`unranked` until enough customers are known; null for prospects.",
    )
    rfm_score: str | None = Field(
        None, pattern=r"^[1-5]{3}$", description="Recency, frequency, monetary quintiles 1-5."
    )
    rfm_segment: str | None = Field(
        None, description="Named RFM segment (champions, loyal, ..., hibernating, lost)."
    )
    top_needs: list[str] = Field(
        default_factory=list, description="Next-best categories for this customer, best first."
    )
    model_version: str
    currency: str
    horizon_days: int
    churn_window_days: int


class SegmentChange(OutputContract):
    event_type: Literal["segment_change"] = "segment_change"
    schema_version: Literal[1] = 1
    event_id: str
    customer_id: str
    occurred_at: datetime
    dimension: str = Field(description="Which segmentation changed, e.g. `lifecycle`.")
    from_segment: str | None
    to_segment: str
    reason: str = Field(description="Which score crossed which threshold.")
    cause: str


class RunnerUp(OutputContract):
    programme_id: str
    expected_incremental_value: float
    why_lost: str = Field(description="Lower expected value, or the guardrail that blocked it.")


class ProgrammeTrigger(OutputContract):
    """A programme chosen for a customer. Downstream acts on `arm=treatment` only;
    `arm=control` marks a held-out customer, emitted so the effect can be measured."""

    event_type: Literal["programme_trigger"] = "programme_trigger"
    schema_version: Literal[1] = 1
    event_id: str
    customer_id: str
    occurred_at: datetime
    programme_id: str
    arm: Literal["treatment", "control"]
    expected_incremental_value: float = Field(
        description="margin x uplift x value at stake - cost per contact, base currency."
    )
    cost: float = Field(description="Cost of this contact (0 for control).")
    value_at_stake: float = Field(
        description="churn probability x CLV (retention) or CLV (growth)."
    )
    uplift: float = Field(description="Uplift used: the prior, updated by measurement.")
    reasons: list[str]
    offer: list[str] = Field(default_factory=list, description="Top needs to use as offer content.")
    expires_at: datetime
    attribution_ends_at: datetime
    runner_up: RunnerUp | None = None
    cause: str
    model_version: str


class ProgrammeOutcome(OutputContract):
    """Revenue of one trigger's customer in its attribution window, when it closes."""

    event_type: Literal["programme_outcome"] = "programme_outcome"
    schema_version: Literal[1] = 1
    event_id: str
    customer_id: str
    occurred_at: datetime = Field(description="End of the attribution window.")
    programme_id: str
    arm: Literal["treatment", "control"]
    trigger_id: str
    triggered_at: datetime
    revenue: float = Field(description="Purchases minus refunds in the window, base currency.")
    pre_period_value: float = Field(description="Revenue per window-length before the trigger.")
    value_at_stake: float
    cost: float
    first_exposure: bool = Field(
        description="The customer's first window of this programme: only these are pooled "
        "in the programme's result (a customer stays in one arm, so repeats are not "
        "independent)."
    )


class ProgrammeResult(OutputContract):
    """A programme's measured effect so far on customers' first exposures (one
    scorer's partition: `scope`); the arms' sums pool exactly across partitions."""

    event_type: Literal["programme_result"] = "programme_result"
    schema_version: Literal[1] = 1
    event_id: str
    occurred_at: datetime
    programme_id: str
    scope: str
    status: Literal["active", "stopped"]
    detail: str
    treated: int
    control: int
    cost: float
    uplift_prior: float
    uplift: float = Field(description="Uplift after the measurement (normal prior update).")
    treatment_stats: dict[str, float] = Field(
        description="The arm's sums: n, sx, sy, sxx, syy, sxy, sxxx, sxxy, sxyy, syyy (x: "
        "pre-period value, y: revenue in the window), stake, cost. Older results lack "
        "the third powers."
    )
    control_stats: dict[str, float]
    incremental_revenue_per_customer: float | None = None
    ci_low: float | None = Field(
        None, description="95% interval (CUPED, Welch, corrected for skewness)."
    )
    ci_high: float | None = None
    total_incremental_revenue: float | None = None
    roi: float | None = Field(None, description="(margin x incremental revenue - cost) / cost.")
    variance_reduction: float | None = Field(None, description="Share removed by CUPED.")
    erased_windows: dict[Literal["treatment", "control"], int] | None = Field(
        None,
        description="First-exposure windows still open when their customer was erased, "
        "by arm (not measured: a difference between the arms' shares is attrition the "
        "estimate cannot see).",
    )


class ModelHealth(OutputContract):
    """A model event: a population refit (or a failed one), or online quality figures."""

    event_type: Literal["model_health"] = "model_health"
    schema_version: Literal[1] = 1
    event_id: str
    occurred_at: datetime = Field(description="Event time at which this was measured or fitted.")
    model: Literal["value", "churn", "programmes"]
    scope: str = Field(
        "all", description="The scorer's partition (`p3`), or `all` for a one-engine run."
    )
    model_version: str = Field(description="The version in use after this event.")
    status: Literal[
        "fitted", "fit_failed", "fit_skipped", "quality", "version_quality", "frozen", "unfrozen"
    ] = Field(
        description="`quality`: the churn model's rolling figures; `version_quality`: "
        "the figures of the churn probabilities served under `model_version` so far "
        "(`older`: the versions no longer kept, the last 12 are)."
    )
    detail: str
    parameters: dict[str, float] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)


OUTPUT_MODELS: tuple[type[OutputContract], ...] = (
    ScoreUpdate,
    SegmentChange,
    ProgrammeTrigger,
    ProgrammeOutcome,
    ProgrammeResult,
    ModelHealth,
    DeadLetter,
)
