"""Incremental revenue of a programme, treatment minus control, with CUPED.

Each arm keeps sufficient statistics of its closed attribution windows (revenue y,
pre-period value x, value at stake, cost), so per-partition figures pool exactly.
The estimate adjusts both arms' revenue by one pooled within-arm slope of y on x
(CUPED: y - theta (x - mean x)); with assignment random, the adjustment keeps the
difference unbiased and removes the variance x explains. The interval is Welch's
t interval on the adjusted revenue, with two corrections for small arms of skewed
revenue (mostly zeros, now and then a large basket):
- its standard error is never below the pooled-variance one: a small control arm
  often underestimates its own variance, and the larger treatment arm vouches for it;
- its ends are moved by the estimate's skewness (the first Edgeworth term of the
  studentized difference, Hall 1992), with the third moment pooled over both arms:
  a small control arm's mean is more often below its expectation than above, so
  the difference is more often too high, and the interval reaches further down.
  The arms keep third-power sums for this.

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

_SECOND_POWERS = ("n", "sx", "sy", "sxx", "syy", "sxy", "stake", "cost")
_THIRD_POWERS = ("sxxx", "sxxy", "sxyy", "syyy")


class ArmStats:
    """Sums over one arm's closed windows."""

    __slots__ = (
        "cost",
        "n",
        "stake",
        "sx",
        "sxx",
        "sxxx",
        "sxxy",
        "sxy",
        "sxyy",
        "sy",
        "syy",
        "syyy",
    )

    def __init__(self) -> None:
        self.n = 0
        self.sx = self.sy = self.sxx = self.syy = self.sxy = 0.0
        self.sxxx = self.sxxy = self.sxyy = self.syyy = 0.0
        self.stake = self.cost = 0.0

    def add(self, x: float, y: float, stake: float, cost: float) -> None:
        self.n += 1
        self.sx += x
        self.sy += y
        xx, yy, xy = x * x, y * y, x * y
        self.sxx += xx
        self.syy += yy
        self.sxy += xy
        self.sxxx += xx * x
        self.sxxy += xx * y
        self.sxyy += xy * y
        self.syyy += yy * y
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
        """Read `as_dict`'s output; sums written before the third powers were kept
        read as NaN (unknown), which turns the skewness correction off."""
        stats = cls()
        stats.__setstate__(values)
        return stats

    def __getstate__(self) -> dict[str, float]:
        return self.as_dict()

    def __setstate__(self, values: dict[str, float]) -> None:
        for name in ArmStats.__slots__:
            setattr(self, name, values.get(name, math.nan if name in _THIRD_POWERS else None))
        for name in _SECOND_POWERS:
            if getattr(self, name) is None:
                raise KeyError(name)
        self.n = int(self.n)

    def residual_skew(self, theta: float) -> float:
        """Unbiased third central moment (k3) of the CUPED residual y - theta x; NaN
        when the third-power sums are unknown or the arm has fewer than 3 windows."""
        n = self.n
        if n < 3:
            return math.nan
        s1 = self.sy - theta * self.sx
        s2 = self.syy - 2 * theta * self.sxy + theta * theta * self.sxx
        s3 = (
            self.syyy - 3 * theta * self.sxyy + 3 * theta * theta * self.sxxy - theta**3 * self.sxxx
        )
        mean = s1 / n
        m3 = s3 - 3 * mean * s2 + 2 * n * mean**3
        return n * m3 / ((n - 1) * (n - 2))

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
    # A covariate (nearly) constant within the arms explains nothing: its centred sum
    # is then rounding residue, and dividing by it would give an absurd slope.
    explains = sxx > _RELATIVE_SPREAD * (treated.sxx + control.sxx)
    theta = (ct + cc) / sxx if explains else 0.0
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
    shift = _skew_shift(treated, control, theta, se, quantile)
    total = diff * nt
    cost = treated.cost
    value = total * margin
    roi = (value - cost) / cost if cost > 0 else math.inf
    return Estimate(
        treated=nt,
        control=nc,
        per_customer=diff,
        low=diff - (quantile - shift) * se,
        high=diff + (quantile + shift) * se,
        theta=theta,
        variance_reduction=reduction,
        total=total,
        cost=cost,
        roi=roi,
        mean_stake=treated.stake / nt,
    )


def _skew_shift(
    treated: ArmStats, control: ArmStats, theta: float, se: float, quantile: float
) -> float:
    """How far (in standard errors) both ends move up for the difference's skewness
    gamma: the studentized difference's quantile q is about q - gamma (2 q^2 + 1) / 6
    (first Edgeworth term; the difference's third cumulant is k3 (1/nt^2 - 1/nc^2)).
    The arms share one third moment k3, pooled like the variance: a small arm's own
    sample usually lacks the rare large baskets that make revenue skewed (its own k3
    moved win-back's intervals the wrong way). Capped at half the quantile, where
    the expansion stops being trustworthy; 0 when a third moment is unknown."""
    nt, nc = treated.n, control.n
    if not (se > 0 and math.isfinite(quantile)) or nt + nc < 5:
        return 0.0
    try:
        k3_t, k3_c = treated.residual_skew(theta), control.residual_skew(theta)
    except OverflowError:  # extreme sums: no correction rather than no estimate
        return 0.0
    k3_t, k3_c = (0.0 if nt < 3 else k3_t), (0.0 if nc < 3 else k3_c)
    k3 = (max(nt - 2, 0) * k3_t + max(nc - 2, 0) * k3_c) / (max(nt - 2, 0) + max(nc - 2, 0))
    cubed = se**3
    if not math.isfinite(k3) or cubed <= 0.0:  # a vanishing spread underflows to 0
        return 0.0
    gamma = k3 * (1 / nt**2 - 1 / nc**2) / cubed
    shift = gamma * (2 * quantile * quantile + 1) / 6
    return max(-quantile / 2, min(quantile / 2, shift))


_RELATIVE_SPREAD = 1e-12  # below this share of its raw sum of squares, x is constant


def _welch_df(a: float, b: float, nt: int, nc: int) -> float:
    denominator = a * a / (nt - 1) + b * b / (nc - 1)
    if a + b <= 0 or denominator <= 0.0:  # no spread, or one that underflows when squared
        return float(nt + nc - 2)
    return (a + b) ** 2 / denominator


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
