"""Gamma-Gamma spend model (Fader, Hardie & Lee 2005b): mean spend per transaction.

Fitted on customers with at least one repeat purchase and positive mean spend.

Refunds reduce value and are not purchases. A customer who kept a share `s` of what
they bought (net / gross, in [0, 1]) is expected to keep the same share of what they
buy next: E[net spend per purchase] = s * E[gross spend per purchase]. With the net
repeat mean m = s * gross mean (what the state gives), that is

    p (s v + x m) / (p x + q - 1)        (x = 0: s times the population mean)

It equals the plain Gamma-Gamma value when nothing was refunded (s = 1), falls
continuously and monotonically as refunds grow, is 0 for a customer refunded in
full, and is never negative.

>>> gg = GammaGamma(p=6.275, q=3.624, v=14.98)
>>> round(gg.expected_spend(0, 0.0), 2), round(gg.expected_spend(4, 50.0), 2)
(35.82, 48.66)
>>> round(gg.expected_spend(0, 0.0, 0.5), 2), round(gg.expected_spend(4, 25.0, 0.5), 2)
(17.91, 24.33)
>>> gg.expected_spend(0, 0.0, 0.0), gg.expected_spend(4, 0.0, 0.0)
(0.0, 0.0)
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

    def expected_spend(self, x: int, mean_spend: float, retained: float = 1.0) -> float:
        """E[spend per transaction | x repeat transactions with mean `mean_spend`], for a
        customer who kept the share `retained` of their spend (net / gross; 1 without
        refunds, in which case `mean_spend` <= 0 gives the population mean as before).
        With refunds, `mean_spend` is the net repeat mean (gross mean times `retained`)
        and the result is `retained` times the Gamma-Gamma value of the gross mean."""
        if retained < 1.0:  # refunds: the customer keeps this share of what they buy
            if retained <= 0.0:
                return 0.0
            if x <= 0:
                return retained * self.population_mean
            net = x * mean_spend if mean_spend > 0.0 else 0.0
            return self.p * (retained * self.v + net) / (self.p * x + self.q - 1.0)
        if x <= 0 or mean_spend <= 0:
            return self.population_mean
        return self.p * (self.v + x * mean_spend) / (self.p * x + self.q - 1.0)
