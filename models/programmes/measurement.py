"""Incremental revenue of a programme, treatment minus control, with CUPED.

Each arm keeps sufficient statistics of its closed attribution windows (revenue y,
pre-period value x, value at stake, cost), so per-partition figures pool exactly.
The estimate adjusts both arms' revenue by one pooled within-arm slope of y on x
(CUPED: y - theta (x - mean x)); with assignment random, the adjustment keeps the
difference unbiased and removes the variance x explains. The interval is Welch's
t interval on the adjusted revenue, except that its standard error is never below
the pooled-variance one: a small control arm of skewed revenue (mostly zeros)
often underestimates its own variance, and the larger treatment arm then vouches
for it (the bench's small win-back control arm covered the truth in 80% of seeds
with Welch's alone).

>>> treated, control = ArmStats(), ArmStats()
>>> for x, y in [(1, 12), (2, 15), (3, 19), (4, 21)]:
...     treated.add(x, y, stake=100.0, cost=2.0)
>>> for x, y in [(1, 2), (2, 5), (3, 9), (4, 11)]:
...     control.add(x, y, stake=100.0, cost=0.0)
>>> result = estimate(treated, control)
>>> round(result.per_customer, 6), result.low < 10 < result.high
(10.0, True)
>>> round(result.total, 2), result.cost, round(result.roi, 2)
(40.0, 8.0, 4.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy.stats import t as student_t


class ArmStats:
    """Sums over one arm's closed windows."""

    __slots__ = ("cost", "n", "stake", "sx", "sxx", "sxy", "sy", "syy")

    def __init__(self) -> None:
        self.n = 0
        self.sx = self.sy = self.sxx = self.syy = self.sxy = 0.0
        self.stake = self.cost = 0.0

    def add(self, x: float, y: float, stake: float, cost: float) -> None:
        self.n += 1
        self.sx += x
        self.sy += y
        self.sxx += x * x
        self.syy += y * y
        self.sxy += x * y
        self.stake += stake
        self.cost += cost

    def merged(self, other: ArmStats) -> ArmStats:
        total = ArmStats()
        for name in ArmStats.__slots__:
            setattr(total, name, getattr(self, name) + getattr(other, name))
        return total

    def as_dict(self) -> dict[str, float]:
        return {name: float(getattr(self, name)) for name in ArmStats.__slots__}

    @classmethod
    def from_dict(cls, values: dict[str, float]) -> ArmStats:
        stats = cls()
        for name in ArmStats.__slots__:
            setattr(stats, name, values[name])
        stats.n = int(stats.n)
        return stats

    def __getstate__(self) -> dict[str, float]:
        return self.as_dict()

    def __setstate__(self, values: dict[str, float]) -> None:
        for name, value in values.items():
            setattr(self, name, value)
        self.n = int(self.n)

    def _centred(self) -> tuple[float, float, float]:
        """(sum of squares of x, of y, cross products) about the arm's means."""
        n = self.n
        mx, my = self.sx / n, self.sy / n
        return (
            max(0.0, self.sxx - n * mx * mx),
            max(0.0, self.syy - n * my * my),
            self.sxy - n * mx * my,
        )


@dataclass(frozen=True)
class Estimate:
    treated: int
    control: int
    per_customer: float  # incremental revenue per treated customer
    low: float  # 95% interval
    high: float
    theta: float  # CUPED slope
    variance_reduction: float  # share of the variance the covariate removed
    total: float  # per_customer x treated
    cost: float
    roi: float  # (total - cost) / cost; inf without cost
    mean_stake: float  # per treated customer

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def estimate(
    treated: ArmStats, control: ArmStats, *, level: float = 0.95, margin: float = 1.0
) -> Estimate | None:
    """The CUPED difference in means; None until each arm has two windows. `margin`
    turns revenue into value for the ROI."""
    nt, nc = treated.n, control.n
    if nt < 2 or nc < 2:
        return None
    xt, yt, ct = treated._centred()
    xc, yc, cc = control._centred()
    sxx = xt + xc
    theta = (ct + cc) / sxx if sxx > 0 else 0.0
    mean_x_t, mean_x_c = treated.sx / nt, control.sx / nc
    diff = treated.sy / nt - control.sy / nc - theta * (mean_x_t - mean_x_c)
    var_t = max(0.0, yt - 2 * theta * ct + theta * theta * xt) / (nt - 1)
    var_c = max(0.0, yc - 2 * theta * cc + theta * theta * xc) / (nc - 1)
    welch = var_t / nt + var_c / nc
    raw = yt / (nt - 1) / nt + yc / (nc - 1) / nc
    reduction = 1.0 - welch / raw if raw > 0 else 0.0
    pooled = (var_t * (nt - 1) + var_c * (nc - 1)) / (nt + nc - 2) * (1 / nt + 1 / nc)
    se = math.sqrt(max(welch, pooled))
    df = _welch_df(var_t / nt, var_c / nc, nt, nc)
    quantile = float(student_t.ppf(0.5 + level / 2, df)) if df > 0 else math.inf
    total = diff * nt
    cost = treated.cost
    value = total * margin
    roi = (value - cost) / cost if cost > 0 else math.inf
    return Estimate(
        treated=nt,
        control=nc,
        per_customer=diff,
        low=diff - quantile * se,
        high=diff + quantile * se,
        theta=theta,
        variance_reduction=reduction,
        total=total,
        cost=cost,
        roi=roi,
        mean_stake=treated.stake / nt,
    )


def _welch_df(a: float, b: float, nt: int, nc: int) -> float:
    if a + b <= 0:
        return float(nt + nc - 2)
    return (a + b) ** 2 / (a * a / (nt - 1) + b * b / (nc - 1))


def posterior_uplift(prior: float, prior_sd: float, measured: Estimate | None) -> float:
    """The uplift (a share of the value at stake) after the measurement: a normal prior
    updated with the measured incremental revenue per unit of stake.

    >>> posterior_uplift(0.1, 0.05, None)
    0.1
    """
    if measured is None or measured.mean_stake <= 0:
        return prior
    observed = measured.per_customer / measured.mean_stake
    se = measured.half_width / 1.959963984540054 / measured.mean_stake
    se = max(se, prior_sd / 10)  # all-zero windows: very informative, never exact
    prior_precision, data_precision = 1.0 / prior_sd**2, 1.0 / se**2
    posterior = (prior * prior_precision + observed * data_precision) / (
        prior_precision + data_precision
    )
    return max(0.0, posterior)
