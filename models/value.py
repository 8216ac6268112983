"""The value model: BTYD purchase model + Gamma-Gamma spend, horizon and discounting.

`ValueParams` are the versioned population parameters; `ValueModel` turns one
customer's sufficient statistics into `ValueScores`.

>>> model = ValueModel(PRIOR_PARAMS, ScoringConfig())
>>> s = model.score(x=2, t_x_days=100, T_days=150, mean_spend=40.0)
>>> 0 < s.p_alive < 1 and s.expected_purchases > 0 and s.clv < s.predicted_value
True
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable
from dataclasses import asdict, dataclass

from models.btyd.bg_nbd import BGNBD
from models.btyd.gamma_gamma import GammaGamma
from models.btyd.pareto_nbd import ParetoNBD, discount_steps
from models.config import ScoringConfig
from models.ids import deterministic_id

_DAYS_PER_YEAR = 365.25
_MEMO_LIMIT = 1 << 16


@dataclass(frozen=True, slots=True)
class ValueParams:
    """Population parameters of the value model, with their provenance."""

    model: str  # "pareto_nbd" | "bg_nbd"
    purchase: tuple[float, float, float, float]  # (r, alpha, s, beta) | (r, alpha, a, b)
    spend: tuple[float, float, float]  # Gamma-Gamma (p, q, v)
    time_unit_days: float
    fitted_through: str | None = None  # last day (ISO date) of data in the fit
    n_customers: int = 0
    log_likelihood: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def version(self) -> str:
        """Readable and content-addressed: equal parameters, equal version."""
        digest = deterministic_id(self.model, repr(self.purchase), repr(self.spend))[:8]
        return f"{self.model}@{self.fitted_through or 'prior'}#{digest}"

    def as_dict(self) -> dict:
        return {**asdict(self), "version": self.version}

    @classmethod
    def from_dict(cls, data: dict) -> ValueParams:
        fields = {k: v for k, v in data.items() if k != "version"}
        fields["purchase"] = tuple(fields["purchase"])
        fields["spend"] = tuple(fields["spend"])
        fields["notes"] = tuple(fields.get("notes", ()))
        return cls(**fields)


PRIOR_PARAMS = ValueParams(
    model="pareto_nbd",
    purchase=(0.5974, 11.59, 0.5222, 8.828),
    spend=(6.275, 3.624, 14.98),
    time_unit_days=7.0,
)
"""Cold-start parameters (CDNOW, weeks) used until the first population fit."""


class ValueScores:
    """One customer's value-model scores: P(alive), P(no purchase in the churn window)
    and the horizon forecast (expected purchases, predicted value, CLV), the latter
    given as (expected, discounted) purchases or a callable computing them on first read.

    >>> v = ValueScores(0.8, 0.3, 40.0, (2.0, 1.9))
    >>> v.expected_purchases, v.predicted_value, round(v.clv, 2)
    (2.0, 80.0, 76.0)
    """

    __slots__ = ("_horizon", "_margin", "expected_spend", "p_alive", "p_no_purchase")

    def __init__(
        self,
        p_alive: float,
        p_no_purchase: float,
        expected_spend: float,
        horizon: tuple[float, float] | Callable[[], tuple[float, float]],
        margin: float = 1.0,
    ) -> None:
        self.p_alive = p_alive
        self.p_no_purchase = p_no_purchase  # within the churn window
        self.expected_spend = expected_spend  # per purchase day
        self._horizon = horizon  # (expected purchases, discounted purchases) in the horizon
        self._margin = margin

    def _purchases(self) -> tuple[float, float]:
        horizon = self._horizon
        if not isinstance(horizon, tuple):
            horizon = self._horizon = horizon()
        return horizon

    @property
    def expected_purchases(self) -> float:
        """Expected purchase days in the horizon."""
        return self._purchases()[0]

    @property
    def predicted_value(self) -> float:
        """Expected spend in the horizon, undiscounted."""
        return self._purchases()[0] * self.expected_spend

    @property
    def clv(self) -> float:
        """Discounted expected value in the horizon, times the margin rate."""
        return self._purchases()[1] * self.expected_spend * self._margin

    @property
    def discounted_revenue(self) -> float:
        """Discounted expected revenue in the horizon: the CLV before the margin rate
        (what the programmes' value at stake is measured in, like their outcomes).

        >>> ValueScores(0.8, 0.3, 40.0, (2.0, 1.9), margin=0.25).discounted_revenue
        76.0
        """
        return self._purchases()[1] * self.expected_spend

    def as_tuple(self) -> tuple[float, ...]:
        return (
            self.p_alive,
            self.expected_purchases,
            self.p_no_purchase,
            self.expected_spend,
            self.predicted_value,
            self.clv,
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ValueScores) and self.as_tuple() == other.as_tuple()

    def __repr__(self) -> str:
        return f"ValueScores{self.as_tuple()}"


class ValueModel:
    """Scores one customer; build one per parameter version (it precomputes steps), or
    take the process's one for the parameters (`shared`)."""

    def __init__(self, params: ValueParams, config: ScoringConfig) -> None:
        unit = params.time_unit_days
        self.params = params
        self.version = params.version
        if params.model == "pareto_nbd":
            self.purchases: ParetoNBD | BGNBD = ParetoNBD(*params.purchase)
        else:
            self.purchases = BGNBD(*params.purchase)
        self.spend = GammaGamma(*params.spend)
        self._unit = unit
        window_days, horizon_days, steps_per_year, rate, margin = _horizon_settings(config)
        self._window = window_days / unit
        steps = max(1, round(horizon_days * steps_per_year / _DAYS_PER_YEAR))
        step_days = horizon_days / steps
        self._step_ends = tuple(k * step_days / unit for k in range(1, steps + 1))
        self._discounts = [
            (1.0 + rate) ** (-((k - 0.5) * step_days) / _DAYS_PER_YEAR) for k in range(1, steps + 1)
        ]
        self._margin = margin
        # Memoized: nothing here depends on spend, and customers with the same (x, t_x, T),
        # e.g. every one-time buyer of the same age, share it. Every score reads the
        # horizon too (CLV ranks), so both are computed together. Bounded: cleared when full.
        self._memo: dict[int | tuple[int, float, float], _Entry] = {}

    @classmethod
    def shared(cls, params: ValueParams, config: ScoringConfig) -> ValueModel:
        """The model for `params` and the config's horizon settings that this process
        already has, if any: the partitions of one worker install the same refits, and
        one memo serves them all (it is a pure cache: the scores are the same)."""
        key = (params, *_horizon_settings(config))
        model = _SHARED.get(key)
        if model is None:
            model = _SHARED[key] = cls(params, config)
        return model

    def __getstate__(self) -> dict:
        """Pickled without the memo (a cache: a restored model computes equal values)."""
        return {**self.__dict__, "_memo": {}}

    def __setstate__(self, state: dict) -> None:
        for stale in ("_survivals", "_horizons"):  # memos of an older version
            state.pop(stale, None)
        self.__dict__.update({"_memo": {}, **state})

    def score(
        self, x: int, t_x_days: float, T_days: float, mean_spend: float, retained: float = 1.0
    ) -> ValueScores:
        """Scores of a customer with `x` repeat purchase days, last at `t_x_days`, age `T_days`,
        mean repeat spend `mean_spend` net of refunds, who kept the share `retained` of
        their spend (net / gross, in [0, 1]; 1 without refunds).

        Refunds reduce value and are not purchases: they leave the purchase process alone
        and scale the expected spend per purchase by `retained` (see `GammaGamma`), so
        the value falls as refunds grow, is 0 after a full refund and is unchanged
        without refunds."""
        # Whole days (the scorer's case) are packed into one int: a memo keyed by tuples
        # makes every garbage collection slower; anything else keys by its tuple.
        if (
            type(x) is int
            and type(t_x_days) is int
            and type(T_days) is int
            and 0 <= t_x_days <= T_days < _DAYS
        ):
            key: int | tuple[int, float, float] = (x * _DAYS + t_x_days) * _DAYS + T_days
        else:
            key = (x, t_x_days, T_days)
        entry = self._memo.get(key) or self._compute(key, x, t_x_days, T_days)
        spend = self.spend.expected_spend(x, mean_spend, retained)
        return ValueScores(entry[0], entry[1], spend, (entry[2], entry[3]), self._margin)

    def _compute(
        self, key: int | tuple[int, float, float], x: int, t_x_days: float, T_days: float
    ) -> _Entry:
        memo = self._memo
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        p_alive, p_none = self._survival(x, t_x_days, T_days)
        expected, discounted = self._horizon(x, t_x_days, T_days, p_alive)
        entry = memo[key] = (p_alive, p_none, expected, discounted)
        return entry

    def _survival(self, x: int, t_x_days: float, T_days: float) -> tuple[float, float]:
        p_alive, p_none = self.purchases.survival(
            x, t_x_days / self._unit, T_days / self._unit, self._window
        )
        if not (math.isfinite(p_alive) and math.isfinite(p_none)):
            raise ArithmeticError(f"non-finite survival for x={x} t_x={t_x_days} T={T_days}")
        return p_alive, min(1.0, max(0.0, p_none))

    def _horizon(
        self, x: int, t_x_days: float, T_days: float, p_alive: float
    ) -> tuple[float, float]:
        """(expected purchases, discounted purchases) in the horizon."""
        T = T_days / self._unit
        purchases = self.purchases
        if isinstance(purchases, ParetoNBD):
            expected, discounted = purchases.discounted_cumulative(
                x, T, p_alive, self._step_ends, self._discounts
            )
        else:
            cumulative = purchases.cumulative(x, T, p_alive, self._step_ends)
            expected, discounted = discount_steps(cumulative, self._discounts)
        if not math.isfinite(discounted):
            raise ArithmeticError(f"non-finite horizon for x={x} t_x={t_x_days} T={T_days}")
        return expected, discounted


def _horizon_settings(config: ScoringConfig) -> tuple[int, int, int, float, float]:
    """Everything of the config a `ValueModel` reads (so also what `shared` keys by):
    churn window and horizon (days), CLV steps per year, discount rate, margin rate."""
    return (
        config.churn_window_days, config.horizon_days, config.clv_steps_per_year,
        config.annual_discount_rate, config.margin_rate,
    )  # fmt: skip


_Entry = tuple[float, float, float, float]  # P(alive), P(no purchase), expected, discounted
_SHARED: weakref.WeakValueDictionary[tuple, ValueModel] = weakref.WeakValueDictionary()
_DAYS = 1 << 21  # whole days below this pack into a memo key
