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
    UNSUPPORTED_CURRENCY = "unsupported_currency"
    LATE = "late"
    PROCESSING_ERROR = "processing_error"


class Origin(OutputContract):
    """Where a rejected input came from: a file line or a topic/partition/offset."""

    source: Literal["file", "kafka", "api"]
    file: str | None = None
    line: int | None = None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None


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


class ProgrammeTrigger(OutputContract):
    """Shape of a programme trigger; the decision logic fills it."""

    event_type: Literal["programme_trigger"] = "programme_trigger"
    schema_version: Literal[1] = 1
    event_id: str
    customer_id: str
    occurred_at: datetime
    programme_id: str
    arm: Literal["treatment", "control"]
    expected_incremental_value: float
    cost: float
    reasons: list[str]
    offer: list[str] = Field(default_factory=list, description="Top needs to use as offer content.")
    expires_at: datetime
    model_version: str


class ModelHealth(OutputContract):
    """A model event: a population refit (or a failed one), or online quality figures."""

    event_type: Literal["model_health"] = "model_health"
    schema_version: Literal[1] = 1
    event_id: str
    occurred_at: datetime = Field(description="Event time at which this was measured or fitted.")
    model: Literal["value", "churn"]
    model_version: str = Field(description="The version in use after this event.")
    status: Literal["fitted", "fit_failed", "fit_skipped", "quality"]
    detail: str
    parameters: dict[str, float] = Field(default_factory=dict)
    metrics: dict[str, float] = Field(default_factory=dict)


OUTPUT_MODELS: tuple[type[OutputContract], ...] = (
    ScoreUpdate,
    SegmentChange,
    ProgrammeTrigger,
    ModelHealth,
    DeadLetter,
)
