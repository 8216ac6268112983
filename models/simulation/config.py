"""What a simulation draws: size, period, seed, population parameters, noise.

Rates are per DAY. Purchases follow the Pareto/NBD story (Poisson(lambda) while
alive, Exponential(mu) lifetimes, lambda ~ Gamma(r, alpha), mu ~ Gamma(s, beta),
shape / rate), spend per purchase the Gamma-Gamma one (spend ~ Gamma(p, nu),
nu ~ Gamma(q, gamma)).

>>> config = SimulationConfig(customers=10, days=365, seed=1)
>>> config.acquisition_window, config.end.isoformat()
(182, '2024-12-31')
>>> round(config.mean_purchases_per_year, 2), round(config.median_lifetime_days)
(5.69, 551)
>>> round(config.mean_spend, 2)
50.0
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from schemas.common import EARLIEST, LATEST

Rate = Annotated[float, Field(ge=0.0, le=1.0)]
Positive = Annotated[float, Field(gt=0.0, le=1e6)]


class SimulationConfig(BaseModel):
    """Everything that determines a simulation: the same config gives the same bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    customers: int = Field(ge=1, le=100_000_000)
    days: int = Field(ge=1, le=36_500)
    seed: int = Field(ge=0, lt=2**64, description="Generators' seed (64 bits: no two alike).")
    start: date = date(2024, 1, 1)
    acquisition_days: int | None = Field(
        None, ge=1, description="First purchases spread over these first days (days // 2)."
    )
    r: Positive = Field(1.2, description="Shape of the purchase rate lambda (per day).")
    alpha: Positive = Field(77.0, description="Rate of lambda, in days: mean lambda = r/alpha.")
    s: Positive = Field(0.8, description="Shape of the dropout rate mu (per day).")
    beta: Positive = Field(400.0, description="Rate of mu, in days; median life beta(2^(1/s)-1).")
    p: Positive = Field(6.0, description="Shape of the spend per purchase.")
    q: Positive = Field(4.0, description="Shape of the customer's spend rate nu.")
    gamma: Positive = Field(25.0, description="Rate of nu: mean spend = p gamma / (q - 1).")
    refund_rate: Rate = 0.04
    interactions: bool = True
    duplicate_rate: Rate = 0.0
    malformed_rate: Rate = 0.0
    late_rate: Rate = 0.0
    currency: Literal["USD"] = "USD"

    @field_validator("start")
    @classmethod
    def _period_within_the_contracts(cls, start: date, info: ValidationInfo) -> date:
        # Event timestamps must lie in [EARLIEST, LATEST) (schemas.common).
        days = info.data.get("days", 1)
        first, last = EARLIEST.date(), LATEST.date()
        if start < first or start > last - timedelta(days=days):
            raise ValueError(
                f"the period must lie within {first} .. {last} (the events' time range), "
                f"so start no earlier than {first} and no later than {days} days before {last}"
            )
        return start

    @model_validator(mode="after")
    def _acquisition_within_period(self) -> Self:
        if self.acquisition_days is not None and self.acquisition_days > self.days:
            raise ValueError("acquisition_days must not exceed days")
        return self

    @property
    def acquisition_window(self) -> int:
        """Days over which first purchases are spread."""
        return self.acquisition_days or max(1, self.days // 2)

    @property
    def end(self) -> date:
        """First day after the period (exclusive)."""
        return self.start + timedelta(days=self.days)

    @property
    def mean_purchases_per_year(self) -> float:
        """Population mean of the purchase rate while alive, per 365 days."""
        return 365.0 * self.r / self.alpha

    @property
    def median_lifetime_days(self) -> float:
        """Median of the population's lifetime (a Lomax distribution)."""
        return self.beta * (2.0 ** (1.0 / self.s) - 1.0)

    @property
    def mean_spend(self) -> float:
        """Population mean of the expected spend per purchase (infinite if q <= 1)."""
        return self.p * self.gamma / (self.q - 1.0) if self.q > 1 else float("inf")
