"""BG/NBD (Fader, Hardie & Lee 2005): dropout can only happen right after a purchase.

Note: P(alive) is 1 for every customer without a repeat purchase, so
1 - P(alive) ranks churn badly; use `p_no_purchase` for churn instead.

>>> m = BGNBD(r=0.2516, alpha=4.789, a=0.7234, b=2.161)
>>> m.p_alive(0, 0.0, 39.0)
1.0
>>> round(m.p_no_purchase(0, 0.0, 39.0, 39.0), 4)
0.8519
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.integrate import quad
from scipy.special import betaln, gammaln

from models.btyd.queries import SurvivalQueries
from models.btyd.special import hyp2f1_of_floats


@dataclass(frozen=True, slots=True)
class BGNBD(SurvivalQueries):
    r: float
    alpha: float
    a: float
    b: float

    @staticmethod
    def log_likelihood(params, x, t_x, T):
        """Per-customer log-likelihood; `params` = (r, alpha, a, b); arrays in."""
        r, alpha, a, b = params
        r_x = r + x
        head = gammaln(r_x) - gammaln(r) + r * np.log(alpha)
        head += betaln(a, b + x) - betaln(a, b)
        stays = -r_x * np.log(alpha + T)
        with np.errstate(divide="ignore", invalid="ignore"):
            drops = np.where(
                x > 0,
                np.log(a) - np.log(np.maximum(b + x - 1.0, 1e-300)) - r_x * np.log(alpha + t_x),
                -np.inf,
            )
            return head + np.logaddexp(stays, drops)

    def survival(self, x: int, t_x: float, T: float, window: float | None) -> tuple[float, float]:
        """(P(alive at T), P(no purchase in (T, T + window])); NaN without a window."""
        r_x = self.r + x
        a_T = self.alpha + T
        if x == 0:
            p_alive = 1.0
        else:
            log_odds = (
                math.log(self.a) - math.log(self.b + x - 1.0)
                + r_x * (math.log(a_T) - math.log(self.alpha + t_x))
            )  # fmt: skip
            p_alive = 1.0 / (1.0 + math.exp(min(log_odds, 700.0)))
        if window is None:
            return p_alive, math.nan
        return p_alive, (1.0 - p_alive) + p_alive * (a_T / (a_T + window)) ** r_x

    def cumulative(self, x: int, T: float, p_alive: float, times) -> list[float]:
        """E[purchases in (T, T+t] | ...] for each t in `times`, given P(alive)."""
        r_x, a, b = self.r + x, self.a, self.b
        if 0.999 < a < 1.001:  # (_A_BELOW_ONE, _A_ABOVE_ONE)
            return self._cumulative_near_a_of_one(x, T, p_alive, times)
        a_T = self.alpha + T
        values = []
        for t in times:
            hyp = hyp2f1_of_floats(r_x, b + x, a + b + x - 1.0, t / (a_T + t))  # a float
            alive = (a + b + x - 1.0) / (a - 1.0) * (1.0 - (a_T / (a_T + t)) ** r_x * hyp)
            values.append(p_alive * alive if t > 0 else 0.0)
        if sum(values) * 0.0 != 0.0:  # inf or NaN: 2F1 overflowed or failed (rare)
            values = [
                p_alive * _alive_purchases(r_x, a, b + x, a_T, t) if t > 0 else 0.0 for t in times
            ]
        return values

    def _cumulative_near_a_of_one(self, x: int, T: float, p_alive: float, times) -> list[float]:
        """`cumulative` for 0.999 < a < 1.001, where its closed form is (a+b+x-1)/(a-1)
        times a difference that vanishes with a - 1: 0/0 at a = 1 (ZeroDivisionError) and
        digits lost by cancellation near it (0.7% at 1 + 1e-12). The expectation is smooth
        in a: interpolated linearly between a = 0.999 and 1.001 (error ~2e-5 relative at
        worst)."""
        r, alpha, b = self.r, self.alpha, self.b
        below = BGNBD(r, alpha, _A_BELOW_ONE, b).cumulative(x, T, p_alive, times)
        above = BGNBD(r, alpha, _A_ABOVE_ONE, b).cumulative(x, T, p_alive, times)
        share = (self.a - _A_BELOW_ONE) / (_A_ABOVE_ONE - _A_BELOW_ONE)
        return [low + share * (high - low) for low, high in zip(below, above, strict=True)]


_A_BELOW_ONE, _A_ABOVE_ONE = 0.999, 1.001  # (excluded: their closed form is used)


def _alive_purchases(r_x: float, a: float, b_x: float, a_T: float, t: float) -> float:
    """E[purchases in t | alive] where `cumulative`'s closed form fails. Its
    (a_T / (a_T + t))^(r+x) 2F1(r+x, b+x; c; z) is 0 * inf for a frequent buyer or a
    long horizon (2F1 grows like ((a_T + t) / a_T)^(r+x), beyond double range); Euler's
    transformation (1 - z)^(a-1) 2F1(c - r - x, a - 1; c; z) of it stays near 1. Where
    cephes fails on that too (c - a - b a whole number, z > 0.9): the expectation over
    the posterior dropout probability p ~ Beta(a, b+x) of (1 - (a_T / (a_T + p t))^(r+x))
    / p, numerically."""
    c = a + b_x - 1.0
    z = t / (a_T + t)
    alive = c / (a - 1.0) * (1.0 - (a_T / (a_T + t)) ** (a - 1.0) * hyp2f1_of_floats(
        c - r_x, a - 1.0, c, z
    ))  # fmt: skip
    if -math.inf < alive < math.inf:
        return alive

    def purchases(p: float) -> float:  # E[purchases | p] given alive, lambda integrated out
        return -math.expm1(-r_x * math.log1p(p * t / a_T)) / p if p > 0.0 else r_x * t / a_T

    log_norm = float(betaln(a, b_x))
    if a < 1.0 or b_x < 1.0:  # a singular density at 0 or 1: integrated as a weight
        weighted = quad(
            purchases, 0.0, 1.0, weight="alg", wvar=(a - 1.0, b_x - 1.0), limit=200, full_output=1
        )[0]
        return weighted / math.exp(log_norm)

    def weighted_purchases(p: float) -> float:
        if not 0.0 < p < 1.0:
            return 0.0
        log_density = (a - 1.0) * math.log(p) + (b_x - 1.0) * math.log1p(-p) - log_norm
        return math.exp(log_density) * purchases(p)

    mean = a / (a + b_x)
    points = sorted({min(mean * k, 0.999) for k in (0.01, 0.1, 0.5, 1.0, 2.0, 10.0)})
    return quad(
        weighted_purchases,
        0.0,
        1.0,
        points=points,
        limit=400,
        epsabs=0.0,
        epsrel=1e-12,
        full_output=1,
    )[0]
