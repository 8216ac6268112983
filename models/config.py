"""Domain configuration: one frozen, validated object passed to every scorer.

>>> cfg = ScoringConfig()
>>> cfg.horizon_days, cfg.churn_window_days, cfg.value_model
(365, 90, 'pareto_nbd')
>>> from pydantic import ValidationError
>>> try:
...     ScoringConfig(churn_window_days=0)
... except ValidationError as error:
...     print(error.errors()[0]["loc"], error.errors()[0]["type"])
('churn_window_days',) greater_than
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from models.programmes.catalogue import ProgrammesConfig

PositiveDays = Annotated[int, Field(gt=0, le=3650)]
Probability = Annotated[float, Field(gt=0, lt=1)]


class SegmentConfig(BaseModel):
    """Segment definitions and thresholds (defaults for a retailer, churn window 90 days).

    Lifecycle on one risk scale, the churn probability: active < `at_risk` <= at_risk <
    `lapsing` <= lapsing < `lost` <= lost. A customer the value model gives P(alive)
    below `lost_p_alive` counts as lost from `lapsing` up; one without a purchase for
    `lost_after_days` is lost whatever the model says. Value tiers are CLV percentiles.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    new_customer_days: PositiveDays = Field(
        30, description="A first-time buyer is `new` for this many days."
    )
    at_risk: Probability = 0.6
    lapsing: Probability = 0.8
    lost: Probability = 0.93
    lost_p_alive: Probability = 0.15
    lost_after_days: PositiveDays = 730
    reactivated_days: PositiveDays = Field(
        60, description="A lapsing or lost customer who buys again is `reactivated` this long."
    )
    risk_margin: float = Field(
        0.03, ge=0, lt=0.5, description="Hysteresis: a risk threshold must be crossed by this."
    )
    min_days_in_segment: int = Field(
        14,
        ge=0,
        le=365,
        description="Without a purchase, no lifecycle or tier change sooner than this.",
    )
    value_tiers: tuple[tuple[str, float], ...] = Field(
        (("top_5", 0.05), ("next_15", 0.20), ("next_30", 0.50)),
        description="Tier name and the top share of customers by CLV it ends at; the rest "
        "are `rest`.",
    )
    tier_margin: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="Hysteresis: a tier boundary at top share s must be passed by s times "
        "this (top 5%: in at 4%, out at 6%).",
    )
    min_customers_for_tiers: int = Field(
        100, ge=1, description="Fewer purchasers than this: tiers and RFM are not ranked yet."
    )

    @model_validator(mode="after")
    def _ordered(self) -> SegmentConfig:
        if not self.at_risk < self.lapsing < self.lost:
            raise ValueError("risk thresholds must increase: at_risk < lapsing < lost")
        shares = [share for _, share in self.value_tiers]
        if shares != sorted(set(shares)) or not all(0 < s < 1 for s in shares):
            raise ValueError("value tier shares must increase strictly within (0, 1)")
        names = [name for name, _ in self.value_tiers]
        if len(set(names)) != len(names) or "rest" in names:
            raise ValueError("value tier names must be unique and not `rest`")
        return self


class NeedsConfig(BaseModel):
    """Category affinity and next-best categories."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    affinity_half_life_days: PositiveDays = 180
    max_categories_per_customer: int = Field(6, ge=1, le=64)
    max_categories: int = Field(
        500, ge=1, le=10_000, description="Categories the co-occurrence model learns."
    )
    view_weight: float = Field(
        0.2, ge=0, le=10, description="A page view or cart abandon, relative to a purchase."
    )
    next_weight: float = Field(
        0.5,
        ge=0,
        le=1,
        description="Share of what similar customers buy next in the "
        "ranking (the rest is the customer's own affinity).",
    )
    top_needs: int = Field(3, ge=1, le=20)
    next_half_life_days: PositiveDays = Field(
        365,
        description="Half-life of what the next-category model learned: it follows what "
        "customers buy now, and a category nobody buys any more leaves the vocabulary.",
    )


class ScoringConfig(BaseModel):
    """What the transition needs to know; built once, never changed at run time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value_model: Literal["pareto_nbd", "bg_nbd"] = Field(
        "pareto_nbd", description="Chosen by CDNOW holdout accuracy (see README)."
    )
    time_unit_days: float = Field(7.0, gt=0, description="Model time unit; 7 = weeks.")
    horizon_days: PositiveDays = 365
    churn_window_days: PositiveDays = 90
    annual_discount_rate: float = Field(0.10, ge=0, le=1)
    clv_steps_per_year: int = Field(12, ge=1, le=365)
    margin_rate: float = Field(1.0, gt=0, le=1, description="Share of revenue counted as value.")
    base_currency: str = Field("USD", pattern=r"^[A-Z]{3}$")
    fx_rates: dict[str, float] = Field(
        default_factory=lambda: {"USD": 1.0},
        description="Units of base currency per unit of each accepted currency.",
    )
    allowed_lateness_seconds: float = Field(86_400.0, ge=0)
    dedupe_window: int = Field(
        256,
        ge=1,
        le=4096,
        description=(
            "At most this many event ids kept per customer for de-duplication. Ids are "
            "kept until the watermark passes their event time (a repeat after that is "
            "late anyway); a customer sending more within the allowed lateness loses the "
            "oldest, and the engine counts it (dedupe_overflows)."
        ),
    )
    max_future_seconds: float = Field(
        86_400.0,
        ge=0,
        description=(
            "Events dated more than this after the wall clock at the edge (worker: now; "
            "offline: the run's start) are dead-lettered as future_timestamp, so one bad "
            "date cannot push the clock ahead and make every later event late."
        ),
    )
    rescore_after_days: tuple[int, ...] = Field(
        (14, 30, 60, 90, 180, 365),
        description="Silent customers are re-scored this many days after their last event.",
    )
    refit_interval_days: PositiveDays = 30
    refit_install_delay_days: int = Field(
        30,
        ge=0,
        le=365,
        description=(
            "A scheduled refit takes effect this many days of event time later: the fit "
            "runs meanwhile, off the hot path (population parameters move slowly)."
        ),
    )
    min_customers_for_fit: int = Field(500, ge=10)
    min_fit_history_days: int = Field(
        120, ge=1, description="Observed span needed before dropout is identifiable."
    )
    min_repeat_customers_for_spend_fit: int = Field(100, ge=10)
    segments: SegmentConfig = SegmentConfig()
    needs: NeedsConfig = NeedsConfig()
    programmes: ProgrammesConfig = ProgrammesConfig()
    churn_model: bool = Field(True, description="Learn the online churn model (else value only).")
    churn_snapshot_interval_days: PositiveDays = Field(
        30, description="At most one churn-feature snapshot per customer per this many days."
    )
    churn_warmup_labels: int = Field(
        2000, ge=1, description="Labels after which the churn model has half the say."
    )
    churn_learning_rate: float = Field(0.005, gt=0, le=1)

    @property
    def max_snapshots(self) -> int:
        """Open snapshots per customer: enough for every one a window can hold."""
        return -(-self.churn_window_days // self.churn_snapshot_interval_days) + 1

    @field_validator("fx_rates")
    @classmethod
    def _positive_rates(cls, rates: dict[str, float]) -> dict[str, float]:
        for code, rate in rates.items():
            if not (rate > 0 and rate < 1e9):
                raise ValueError(f"fx rate of {code} must be positive and finite")
        return rates

    @field_validator("rescore_after_days")
    @classmethod
    def _increasing(cls, days: tuple[int, ...]) -> tuple[int, ...]:
        if list(days) != sorted(set(days)) or (days and days[0] <= 0):
            raise ValueError("rescore_after_days must be strictly increasing positive days")
        return days

    def to_base(self, amount: float, currency: str) -> float | None:
        """Amount in the base currency, or None when the currency has no rate."""
        if currency == self.base_currency:
            return amount
        rate = self.fx_rates.get(currency)
        return None if rate is None else amount * rate

    def for_partition(self, partitions: int) -> ScoringConfig:
        """The config of one of `partitions` partitions: each spends 1/partitions of
        every daily programme budget, so all of them together keep to the budget, and
        tests its stops at a confidence raised so that the partitions together stop a
        break-even programme no more often than one test would (Bonferroni).

        >>> programmes = ScoringConfig().for_partition(4).programmes
        >>> programmes.budget_share, round(programmes.stop_confidence, 4)
        (0.25, 0.9975)
        """
        if partitions == 1:
            return self
        share = self.programmes.budget_share / partitions
        confidence = 1.0 - (1.0 - self.programmes.stop_confidence) / partitions
        programmes = self.programmes.model_copy(
            update={"budget_share": share, "stop_confidence": confidence}
        )
        return self.model_copy(update={"programmes": programmes})
