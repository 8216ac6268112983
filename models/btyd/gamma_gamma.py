"""Gamma-Gamma spend model (Fader, Hardie & Lee 2005b): mean spend per transaction.

Fitted on customers with at least one repeat purchase and positive mean spend.

>>> gg = GammaGamma(p=6.275, q=3.624, v=14.98)
>>> round(gg.expected_spend(0, 0.0), 2), round(gg.expected_spend(4, 50.0), 2)
(35.82, 48.66)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln


@dataclass(frozen=True, slots=True)
class GammaGamma:
    p: float
    q: float
    v: float

    @staticmethod
    def log_likelihood(params, x, m):
        """Per-customer log-likelihood of mean spend `m` over `x` transactions."""
        p, q, v = params
        px = p * x
        return (
            gammaln(px + q)
            - gammaln(px)
            - gammaln(q)
            + q * np.log(v)
            + (px - 1.0) * np.log(m)
            + px * np.log(x)
            - (px + q) * np.log(x * m + v)
        )

    @property
    def population_mean(self) -> float:
        return self.p * self.v / (self.q - 1.0)

    def expected_spend(self, x: int, mean_spend: float) -> float:
        """E[spend per transaction | x repeat transactions with mean `mean_spend`]."""
        if x <= 0 or mean_spend <= 0:
            return self.population_mean
        return self.p * (self.v + x * mean_spend) / (self.p * x + self.q - 1.0)
