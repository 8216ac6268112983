"""Maximum-likelihood fits of the population parameters from sufficient statistics.

Customers with identical statistics are fitted once with a weight, so the cost
depends on the number of distinct (x, t_x, T) rows, not on the population size.
The result does not depend on the order of the customers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from models.btyd.bg_nbd import BGNBD
from models.btyd.gamma_gamma import GammaGamma
from models.btyd.pareto_nbd import ParetoNBD, ParetoNBDLikelihood
from models.errors import FitError

PURCHASE_MODELS = {"pareto_nbd": ParetoNBD, "bg_nbd": BGNBD}
_DEFAULT_START = {"pareto_nbd": (0.5, 10.0, 0.5, 10.0), "bg_nbd": (0.5, 5.0, 0.8, 2.5)}
_SHAPE, _SCALE = (1e-3, 20.0), (1e-3, 1e4)
# Plausible ranges. A gamma shape above 20 means an almost homogeneous population
# (beyond it hyp2f1 also becomes very slow). Reaching that cap means the data cannot
# tell the heterogeneity yet; the fit is kept (the means are still estimated) with a
# note. Reaching any other bound means nonsense, and the fit is refused.
SHAPE_CAPS = {"pareto_nbd": (0, 2), "bg_nbd": (0,), "gamma_gamma": ()}
SHAPE_NAMES = {"pareto_nbd": ("r", "alpha", "s", "beta"), "bg_nbd": ("r", "alpha", "a", "b")}
BOUNDS = {
    "pareto_nbd": (_SHAPE, _SCALE, _SHAPE, _SCALE),  # r, alpha, s, beta
    "bg_nbd": (_SHAPE, _SCALE, (1e-3, 1e3), (1e-3, 1e3)),  # r, alpha, a, b
    "gamma_gamma": ((1e-3, 1e3), (1e-3, 1e3), (1e-3, 1e6)),  # p, q, v
}
_MAX_EVALUATIONS = 1500
_PENALTY = 1e300


@dataclass(frozen=True, slots=True)
class FitResult:
    params: tuple[float, ...]
    log_likelihood: float
    n: int
    distinct_rows: int
    evaluations: int
    notes: tuple[str, ...] = ()


def _compress(*columns: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    rows = np.column_stack(columns)
    unique, counts = np.unique(rows, axis=0, return_counts=True)
    return [unique[:, i] for i in range(unique.shape[1])], counts.astype(float)


def _maximise(
    log_lik: Callable[[tuple[float, ...]], float],
    start: tuple[float, ...],
    bounds: tuple[tuple[float, float], ...],
    precise: bool = True,
) -> tuple[np.ndarray, float, int]:
    """Maximise in log-parameters: L-BFGS-B to get close fast, then a small Nelder-Mead
    simplex to polish (the likelihoods are flat; gradients are finite differences)."""
    low = np.log([b[0] for b in bounds])
    high = np.log([b[1] for b in bounds])
    evaluations = 0

    def objective(log_params: np.ndarray) -> float:
        nonlocal evaluations
        evaluations += 1
        if np.any(log_params < low) or np.any(log_params > high):
            return _PENALTY
        value = -log_lik(tuple(np.exp(log_params)))
        return value if np.isfinite(value) else _PENALTY

    point = np.clip(np.log(np.asarray(start, dtype=float)), low, high)
    coarse = minimize(
        objective,
        point,
        method="L-BFGS-B",
        bounds=list(zip(low, high, strict=True)),
        options={"ftol": 1e-10, "gtol": 1e-6, "maxfun": _MAX_EVALUATIONS // 2},
    )
    if coarse.success and coarse.fun < _PENALTY and not precise:
        return np.exp(coarse.x), -float(coarse.fun), evaluations
    near = coarse.x if coarse.fun < _PENALTY else point
    step = 0.01 if coarse.success else 0.25
    polish = minimize(
        objective,
        near,
        method="Nelder-Mead",
        options={
            "maxfev": max(_MAX_EVALUATIONS - evaluations, 1),
            "xatol": 1e-6,
            "fatol": 1e-6,
            "initial_simplex": np.vstack([near, near + step * np.eye(len(near))]),
        },
    )
    if not polish.success or polish.fun >= _PENALTY:
        raise FitError(f"no convergence within {_MAX_EVALUATIONS} likelihood evaluations")
    return np.exp(polish.x), -float(polish.fun), evaluations


def fit_purchase_model(
    kind: str,
    x: np.ndarray,
    t_x: np.ndarray,
    T: np.ndarray,
    start: tuple[float, ...] | None = None,
    precise: bool = True,
) -> FitResult:
    """Fit Pareto/NBD or BG/NBD parameters; raises FitError on an unusable result."""
    model = PURCHASE_MODELS[kind]
    if len(x) == 0:
        raise FitError("no customers to fit")
    (ux, utx, uT), weights = _compress(
        np.asarray(x, float), np.asarray(t_x, float), np.asarray(T, float)
    )
    if np.any(utx > uT) or np.any(ux < 0) or np.any(utx < 0):
        raise FitError("inconsistent statistics: need 0 <= t_x <= T and x >= 0")

    if kind == "pareto_nbd":
        log_lik: Callable[[tuple[float, ...]], float] = ParetoNBDLikelihood(ux, utx, uT, weights)
    else:

        def log_lik(params: tuple[float, ...]) -> float:
            return float(np.dot(weights, model.log_likelihood(params, ux, utx, uT)))

    params, ll, evaluations = _maximise(
        log_lik, start or _DEFAULT_START[kind], BOUNDS[kind], precise
    )
    notes = _check(params, ll, kind)
    return FitResult(
        tuple(float(p) for p in params), ll, int(weights.sum()), len(ux), evaluations, notes
    )


def fit_spend_model(
    x: np.ndarray,
    mean_spend: np.ndarray,
    start: tuple[float, float, float] | None = None,
    precise: bool = True,
) -> FitResult:
    """Fit Gamma-Gamma on repeat customers with positive mean spend."""
    x = np.asarray(x, float)
    mean_spend = np.asarray(mean_spend, float)
    keep = (x > 0) & (mean_spend > 0) & np.isfinite(mean_spend)
    if keep.sum() < 2:
        raise FitError("fewer than two repeat customers with positive spend")
    (ux, um), weights = _compress(x[keep], mean_spend[keep])
    # Gamma-Gamma is scale-equivariant (spend c times larger: v c times larger), and the
    # bounds on v are for spend of a few to thousands of units: spend in a unit far
    # smaller (a base currency such as VND) is fitted in thousands, v scaled back.
    unit = _spend_unit(um)
    um = um / unit if unit != 1.0 else um
    p0, q0, v0 = start or (1.0, 2.0, unit)

    def log_lik(params: tuple[float, ...]) -> float:
        return float(np.dot(weights, GammaGamma.log_likelihood(params, ux, um)))

    params, ll, evaluations = _maximise(
        log_lik, (p0, q0, v0 / unit), BOUNDS["gamma_gamma"], precise
    )
    notes = _check(params, ll, "gamma_gamma")
    if params[1] <= 1.0:
        raise FitError(f"gamma_gamma q={params[1]:.4g} <= 1: mean spend would be infinite")
    if unit != 1.0:
        params = np.array([params[0], params[1], params[2] * unit])
        ll -= float(weights.sum()) * np.log(unit)
    return FitResult(
        tuple(float(p) for p in params), ll, int(weights.sum()), len(ux), evaluations, notes
    )


def _spend_unit(mean_spend: np.ndarray) -> float:
    """1, or the power of ten that brings a median mean spend of 10,000 or more to
    1,000 .. 9,999 (the fit is then the same as in ordinary currency units).

    >>> _spend_unit(np.array([35.0, 120.0])), _spend_unit(np.array([2.5e6]))
    (1.0, 1000.0)
    """
    median = float(np.median(mean_spend))
    if not median >= 1e4 or not np.isfinite(median):
        return 1.0
    return 10.0 ** (int(np.floor(np.log10(median))) - 3)


def _check(params: np.ndarray, log_likelihood: float, kind: str) -> tuple[str, ...]:
    """Refuse unusable parameters; return notes on tolerated ones (shapes at their cap)."""
    if not np.all(np.isfinite(params)) or not np.isfinite(log_likelihood):
        raise FitError(f"{kind} fit gave non-finite values: {params}, ll={log_likelihood}")
    notes = []
    for index, (value, (low, high)) in enumerate(zip(params, BOUNDS[kind], strict=True)):
        if low * 1.01 < value < high * 0.99:
            continue
        if value >= high * 0.99 and index in SHAPE_CAPS[kind]:
            name = SHAPE_NAMES[kind][index]
            notes.append(f"heterogeneity not identified yet: {name} at its cap {high:g}")
            continue
        raise FitError(f"{kind} fit ran to a plausibility bound: {np.round(params, 4)}")
    return tuple(notes)
