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
        a_T = self.alpha + T
        values = []
        for t in times:
            hyp = hyp2f1_of_floats(r_x, b + x, a + b + x - 1.0, t / (a_T + t))  # a float
            alive = (a + b + x - 1.0) / (a - 1.0) * (1.0 - (a_T / (a_T + t)) ** r_x * hyp)
            values.append(p_alive * alive if t > 0 else 0.0)
        return values
