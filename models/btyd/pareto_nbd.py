"""Pareto/NBD (Schmittlein, Morrison & Colombo 1987; Fader & Hardie's notes).

Purchases follow Poisson(lambda) while alive, lifetimes are Exponential(mu),
lambda ~ Gamma(r, alpha), mu ~ Gamma(s, beta). Inputs per customer: `x` repeat
purchases, `t_x` time of the last purchase and `T` age, all since the first
purchase, in the model's time unit.

Everything reduces to one integral,
    I(u) = integral_u^inf (alpha + y)^-(r+x) (beta + y)^-(s+1) dy,
which has a closed form in Gauss's hypergeometric function 2F1.

>>> p = ParetoNBD(r=0.5974, alpha=11.59, s=0.5222, beta=8.828)
>>> round(p.p_alive(0, 0.0, 39.0), 4), round(p.p_alive(3, 30.0, 39.0), 4)
(0.2896, 0.856)
>>> round(p.p_no_purchase(0, 0.0, 39.0, 39.0), 4)
0.9274
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.integrate import quad
from scipy.special import gammaln, hyp2f1

from models.btyd.queries import SurvivalQueries
from models.btyd.special import hyp2f1_of_floats


def _log_tail(u, r_x, alpha, s, beta, log=np.log, hyp=hyp2f1):
    """log I(u); arrays with the defaults, plain floats with `log=math.log` and
    `hyp=hyp2f1_of_floats` (faster)."""
    a = r_x + s
    if alpha >= beta:
        z = (alpha - beta) / (alpha + u)
        return log(hyp(a, s + 1.0, a + 1.0, z)) - a * log(alpha + u) - log(a)
    z = (beta - alpha) / (beta + u)
    return log(hyp(a, r_x, a + 1.0, z)) - a * log(beta + u) - log(a)


def _log_tail_robust(u: float, r_x: float, alpha: float, s: float, beta: float) -> float:
    """log I(u) where `_log_tail`'s closed form fails: its 2F1 overflows (alpha < beta and
    many purchases: it grows like ((beta+u)/(alpha+u))^(r+x)) or cephes returns NaN
    (c - a - b a whole number and z > 0.9). For alpha < beta, Euler's transformation
    2F1(a, r+x; a+1; z) = (1-z)^(1-r-x) 2F1(1, s+1; a+1; z) keeps the growth in a log;
    where that fails too, or for alpha >= beta, numerical integration: with
    w = (y - u) / (alpha + u), I(u) = (alpha+u)^(1-r-x) (beta+u)^-(s+1) times the
    integral over w > 0 of (1 + w)^-(r+x) (1 + k w)^-(s+1), k = (alpha+u) / (beta+u):
    a smooth decreasing integrand equal to 1 at 0."""
    a_u, b_u = alpha + u, beta + u
    if alpha < beta:
        a = r_x + s
        z = (beta - alpha) / b_u
        hyp = hyp2f1_of_floats(1.0, s + 1.0, a + 1.0, z)
        if 0.0 < hyp < math.inf:
            log_1_z = math.log(a_u) - math.log(b_u)
            return math.log(hyp) + (1.0 - r_x) * log_1_z - a * math.log(b_u) - math.log(a)
    k = a_u / b_u

    def integrand(w: float) -> float:
        return (1.0 + w) ** -r_x * (1.0 + k * w) ** -(s + 1.0)

    # full_output: the result without a warning when the last digits cannot be certified
    head = quad(integrand, 0.0, 1.0, epsabs=0.0, epsrel=1e-13, limit=200, full_output=1)[0]
    rest = quad(integrand, 1.0, math.inf, epsabs=0.0, epsrel=1e-13, limit=200, full_output=1)[0]
    return math.log(head + rest) + (1.0 - r_x) * math.log(a_u) - (s + 1.0) * math.log(b_u)


def _log_tails(u: np.ndarray, r_x: np.ndarray, alpha, s, beta) -> np.ndarray:
    """`_log_tail` of arrays, its failures (inf, NaN: see `_log_tail_robust`) redone."""
    tails = _log_tail(u, r_x, alpha, s, beta)
    failed = np.flatnonzero(~np.isfinite(tails))
    for i in failed:
        tails[i] = _log_tail_robust(float(u[i]), float(r_x[i]), alpha, s, beta)
    return tails


def _log_diff(log_big: float, log_small: float) -> float:
    """log(exp(log_big) - exp(log_small)) for log_big >= log_small; -inf when equal."""
    if log_small >= log_big:
        return -math.inf
    return log_big + math.log1p(-math.exp(log_small - log_big))


class ParetoNBDLikelihood:
    """The log-likelihood of a fixed data set, evaluated for many parameter values.

    I(u) only depends on (x, u), so 2F1 is evaluated on the distinct (x, t_x) and
    (x, T) pairs: the cost is bounded by purchases x days, not by the population.
    """

    def __init__(self, x, t_x, T, weights=None) -> None:
        x, t_x, T = (np.asarray(a, dtype=float) for a in (x, t_x, T))
        self.x, self.T = x, T
        self.weights = np.ones_like(x) if weights is None else np.asarray(weights, float)
        pairs_tx, self._inverse_tx = np.unique(
            np.column_stack([x, t_x]), axis=0, return_inverse=True
        )
        pairs_T, self._inverse_T = np.unique(np.column_stack([x, T]), axis=0, return_inverse=True)
        self._x_tx, self._u_tx = pairs_tx[:, 0], pairs_tx[:, 1]
        self._x_T, self._u_T = pairs_T[:, 0], pairs_T[:, 1]

    def per_customer(self, params) -> np.ndarray:
        r, alpha, s, beta = params
        x, T = self.x, self.T
        r_x = r + x
        head = gammaln(r_x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        alive_part = -r_x * np.log(alpha + T) - s * np.log(beta + T)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_i_tx = _log_tails(self._u_tx, r + self._x_tx, alpha, s, beta)[self._inverse_tx]
            log_i_T = _log_tails(self._u_T, r + self._x_T, alpha, s, beta)[self._inverse_T]
            # t_x == T leaves no time to have died unseen: A0 = 0, log A0 = -inf.
            gap = np.where(log_i_T < log_i_tx, log_i_T - log_i_tx, 0.0)
            log_a0 = log_i_tx + np.log1p(-np.exp(gap))
            dead_part = np.log(s) + log_a0
            return head + np.logaddexp(alive_part, dead_part)

    def __call__(self, params) -> float:
        return float(np.dot(self.weights, self.per_customer(params)))


_TAIL_MEMO_LIMIT = 1 << 19


def discount_steps(cumulative: list[float], discounts) -> tuple[float, float]:
    """(the last cumulative value, the sum of each step's increment times its discount)."""
    discounted, previous = 0.0, 0.0
    for total, discount in zip(cumulative, discounts, strict=True):
        discounted += (total - previous) * discount
        previous = total
    return previous, discounted


@dataclass(frozen=True)
class ParetoNBD(SurvivalQueries):
    r: float
    alpha: float
    s: float
    beta: float

    def __post_init__(self) -> None:
        # log I(u) depends only on (x, u) for fixed parameters, and u is a whole number
        # of days (t_x, T, T + window): customers of the same age and frequency share
        # it. Memoized values come from the same code, so results never depend on it.
        object.__setattr__(self, "_tails", {})
        # The same holds for the terms that depend on the age T alone (and the window
        # or horizon steps): computed once per age by the same expressions.
        object.__setattr__(self, "_ages", {})
        object.__setattr__(self, "_steps", {})
        object.__setattr__(self, "_steps_for", None)

    def __getstate__(self) -> dict:
        """The parameters only: the memos are caches a copy rebuilds with equal values."""
        return {"r": self.r, "alpha": self.alpha, "s": self.s, "beta": self.beta}

    def __setstate__(self, state: dict) -> None:
        for name in ("r", "alpha", "s", "beta"):
            object.__setattr__(self, name, state[name])
        self.__post_init__()

    def _log_tail(self, x: int, u: float) -> float:
        # (x, u) as a complex: hashable and exact like a tuple, but not an object the
        # garbage collector tracks (a memo of tuples makes every collection slower).
        key = complex(x, u)
        tails = self._tails
        value = tails.get(key)
        if value is None:
            if len(tails) >= _TAIL_MEMO_LIMIT:
                tails.clear()
            r_x = self.r + x
            value = _log_tail(u, r_x, self.alpha, self.s, self.beta, math.log, hyp2f1_of_floats)
            if not -math.inf < value < math.inf:  # 2F1 overflowed or failed: NaN, inf
                value = _log_tail_robust(u, r_x, self.alpha, self.s, self.beta)
            tails[key] = value
        return value

    # -- population fit -------------------------------------------------------------
    @staticmethod
    def log_likelihood(params, x, t_x, T):
        """Per-customer log-likelihood; `params` = (r, alpha, s, beta); arrays in."""
        return ParetoNBDLikelihood(x, t_x, T).per_customer(params)

    # -- one customer (hot path: plain floats) ---------------------------------------
    def survival(self, x: int, t_x: float, T: float, window: float | None) -> tuple[float, float]:
        """(P(alive at T), P(no purchase in (T, T + window])); the second is NaN without a
        window. Shares the 2F1 terms between the two."""
        r_x = self.r + x
        age = self._ages.get((T, window)) or self._age(T, window)
        log_scale = age[0] + r_x * age[1] + age[2]
        log_i_T = self._log_tail(x, T)
        if t_x >= T:
            p_alive = 1.0  # a purchase at the end of the observation: no unseen death
        else:
            log_odds = log_scale + _log_diff(self._log_tail(x, t_x), log_i_T)
            p_alive = 1.0 / (1.0 + math.exp(log_odds)) if log_odds < 700 else 0.0
        if window is None:
            return p_alive, math.nan
        # Alive at T: posterior lambda ~ Gamma(r+x, alpha+T), mu ~ Gamma(s, beta+T);
        # P(no purchase) = E[mu/(lambda+mu) (1 - e^{-(lambda+mu)t})] + E[e^{-(lambda+mu)t}].
        log_gap = _log_diff(log_i_T, self._log_tail(x, T + window))
        dies_first = math.exp(log_scale + log_gap) if log_gap > -math.inf else 0.0
        silent_alive = age[3] ** r_x * age[4]
        return p_alive, (1.0 - p_alive) + p_alive * min(1.0, dies_first + silent_alive)

    def _age(self, T: float, window: float | None) -> tuple[float, ...]:
        """The terms of `survival` that depend on the age (and window) alone:
        log s, log(alpha + T), s log(beta + T), and with a window the ratio
        (alpha + T) / (alpha + T + window) and ((beta + T) / (beta + T + window))^s."""
        ages = self._ages
        if len(ages) >= _TAIL_MEMO_LIMIT:
            ages.clear()
        s = self.s
        a_T, b_T = self.alpha + T, self.beta + T
        terms: tuple[float, ...] = (math.log(s), math.log(a_T), s * math.log(b_T))
        if window is not None:
            terms += (a_T / (a_T + window), (b_T / (b_T + window)) ** s)
        ages[(T, window)] = terms
        return terms

    def cumulative(self, x: int, T: float, p_alive: float, times) -> list[float]:
        """E[purchases in (T, T+t] | ...] for each t in `times`, given P(alive)."""
        r_x, s = self.r + x, self.s
        a_T, b_T = self.alpha + T, self.beta + T
        if abs(s - 1.0) < 1e-9:
            scale = p_alive * r_x / a_T * b_T
            return [scale * math.log1p(t / b_T) for t in times]
        scale = p_alive * r_x * b_T / (a_T * (s - 1.0))
        return [scale * term for term in self._step_terms(T, times)]

    def discounted_cumulative(
        self, x: int, T: float, p_alive: float, times: tuple[float, ...], discounts
    ) -> tuple[float, float]:
        """(E[purchases in (T, T + times[-1]]], the sum of each step's expected purchases
        times its discount): `cumulative` and the discounting in one pass, same values."""
        r_x, s = self.r + x, self.s
        a_T, b_T = self.alpha + T, self.beta + T
        if abs(s - 1.0) < 1e-9:
            return discount_steps(self.cumulative(x, T, p_alive, times), discounts)
        scale = p_alive * r_x * b_T / (a_T * (s - 1.0))
        discounted, previous = 0.0, 0.0
        for term, discount in zip(self._step_terms(T, times), discounts, strict=True):
            total = scale * term
            discounted += (total - previous) * discount
            previous = total
        return previous, discounted

    def _step_terms(self, T: float, times) -> tuple[float, ...]:
        """1 - ((beta + T) / (beta + T + t))^(s - 1) for each t: the same for every x.
        Memoized per T for the last `times` object seen (a value model's fixed steps)."""
        steps = self._steps
        if times is not self._steps_for:
            object.__setattr__(self, "_steps_for", times)
            steps.clear()
        terms = steps.get(T)
        if terms is None:
            if len(steps) >= _TAIL_MEMO_LIMIT:
                steps.clear()
            b_T, power = self.beta + T, self.s - 1.0
            terms = steps[T] = tuple(1.0 - (b_T / (b_T + t)) ** power for t in times)
        return terms
