"""Population refit of the value model from the customers' sufficient statistics.

Collecting statistics is cheap and happens where the states live; fitting is pure
CPU work on numpy arrays and may run in another thread or process. A failed fit
never replaces working parameters: the caller keeps the previous version.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from models.btyd.fit import PURCHASE_MODELS, fit_purchase_model, fit_spend_model
from models.config import ScoringConfig
from models.errors import FitError, NotEnoughData
from models.state import CustomerState
from models.timeline import date_of_day
from models.value import ValueParams


@dataclass(frozen=True, slots=True)
class PopulationStats:
    """BTYD statistics of every purchasing customer, in days, as of `through_day`."""

    x: np.ndarray
    t_x_days: np.ndarray
    T_days: np.ndarray
    mean_spend: np.ndarray
    through_day: int

    def __len__(self) -> int:
        return len(self.x)

    @property
    def repeat_customers(self) -> int:
        return int(np.count_nonzero((self.x > 0) & (self.mean_spend > 0)))

    @classmethod
    def merge(cls, parts: list[PopulationStats]) -> PopulationStats:
        """Join the statistics of several partitions (taken as of the same day)."""
        return cls(
            *(
                np.concatenate([getattr(p, f) for p in parts])
                for f in ("x", "t_x_days", "T_days", "mean_spend")
            ),
            through_day=max(p.through_day for p in parts),
        )


def collect_statistics(states: Iterable[CustomerState], through_day: int) -> PopulationStats:
    rows = [
        (
            s.repeat_days,
            s.last_day - s.first_day,
            max(through_day, s.last_day) - s.first_day,
            s.mean_repeat_spend,
        )
        for s in states
        if s.first_day is not None
    ]
    table = np.array(rows, dtype=float).reshape(-1, 4)
    return PopulationStats(table[:, 0], table[:, 1], table[:, 2], table[:, 3], through_day)


def fit_value_params(
    stats: PopulationStats, config: ScoringConfig, previous: ValueParams, precise: bool = False
) -> ValueParams:
    """Fit new population parameters; raises FitError when they cannot be trusted.

    Scheduled refits start from the previous parameters and stop when the optimizer
    converges (about 1e-4 relative, far inside the statistical error); `precise` polishes
    to about 1e-6 (final fits, comparisons with other libraries)."""
    history = int(stats.T_days.max()) if len(stats) else 0
    if history < config.min_fit_history_days:
        raise NotEnoughData(f"{history} days of history < {config.min_fit_history_days} needed")
    if len(stats) < config.min_customers_for_fit:
        raise NotEnoughData(
            f"{len(stats)} purchasing customers < {config.min_customers_for_fit} needed"
        )
    if stats.repeat_customers < config.min_repeat_customers_for_spend_fit:
        raise NotEnoughData(
            f"{stats.repeat_customers} repeat customers < "
            f"{config.min_repeat_customers_for_spend_fit} needed for the spend model"
        )
    unit = config.time_unit_days
    kind = config.value_model
    warm = previous.purchase if previous.model == kind and previous.time_unit_days == unit else None
    purchase = fit_purchase_model(
        kind, stats.x, stats.t_x_days / unit, stats.T_days / unit, warm, precise=precise
    )
    _check_explains_totals(kind, purchase.params, stats, unit)
    spend = fit_spend_model(stats.x, stats.mean_spend, previous.spend, precise=precise)
    return ValueParams(
        model=kind,
        purchase=purchase.params,
        spend=spend.params,
        time_unit_days=unit,
        fitted_through=date_of_day(stats.through_day),
        n_customers=purchase.n,
        log_likelihood=purchase.log_likelihood,
        notes=purchase.notes + spend.notes,
    )


def _check_explains_totals(kind: str, params, stats: PopulationStats, unit: float) -> None:
    """A sound fit reproduces the observed number of repeat purchases (CDNOW: within 1%);
    a fit that misses it by more than 25% sits in a wrong optimum and is refused."""
    model = PURCHASE_MODELS[kind](*params)
    ages, counts = np.unique(stats.T_days, return_counts=True)
    expected = sum(
        n * model.expected_purchases(0, 0.0, 0.0, age / unit)
        for age, n in zip(ages, counts, strict=True)
    )
    observed = float(stats.x.sum())
    if observed <= 0 or not 0.75 <= expected / observed <= 1.25:
        raise FitError(
            f"{kind} fit explains {expected:,.0f} repeat purchases of {observed:,.0f} observed"
        )
