"""Fits that fail or give unusable parameters never replace working ones."""

from __future__ import annotations

import numpy as np
import pytest

from models.btyd.fit import fit_purchase_model, fit_spend_model
from models.config import ScoringConfig
from models.errors import FitError
from models.refit import PopulationStats, _check_explains_totals, fit_value_params
from models.value import PRIOR_PARAMS


def _stats(n: int, history: int, repeat_rate: float = 2.0) -> PopulationStats:
    rng = np.random.default_rng(1)
    T = rng.integers(1, history + 1, n).astype(float)
    x = rng.poisson(repeat_rate, n).astype(float)
    t_x = np.where(x > 0, np.floor(T * rng.random(n)), 0.0)
    spend = np.where(x > 0, rng.gamma(5, 8, n), 0.0)
    return PopulationStats(x, t_x, T, spend, through_day=20_000)


def test_empty_or_inconsistent_statistics_raise():
    with pytest.raises(FitError):
        fit_purchase_model("pareto_nbd", np.array([]), np.array([]), np.array([]))
    with pytest.raises(FitError, match="t_x <= T"):
        fit_purchase_model("bg_nbd", np.array([1.0]), np.array([5.0]), np.array([3.0]))
    with pytest.raises(FitError, match="two repeat customers"):
        fit_spend_model(np.array([0.0, 1.0]), np.array([0.0, 10.0]))


@pytest.mark.parametrize(
    ("stats", "config", "message"),
    [
        (_stats(50, 400), ScoringConfig(), "purchasing customers"),
        (_stats(2000, 60), ScoringConfig(), "days of history"),
        (_stats(2000, 400, repeat_rate=0.01), ScoringConfig(), "repeat customers"),
    ],
)
def test_refit_preconditions(stats, config, message):
    with pytest.raises(FitError, match=message):
        fit_value_params(stats, config, PRIOR_PARAMS)


def _pareto_nbd_population(n: int, seed: int = 2) -> PopulationStats:
    """Customers drawn from a Pareto/NBD + Gamma-Gamma process (rates per week)."""
    rng = np.random.default_rng(seed)
    T = rng.integers(120, 500, n).astype(float)  # days since first purchase
    lam = rng.gamma(0.8, 1 / 8.0, n) / 7  # per day
    mu = rng.gamma(0.6, 1 / 12.0, n) / 7
    active = np.minimum(rng.exponential(1 / mu), T)
    x = rng.poisson(lam * active)
    t_x = np.array(
        [np.floor(rng.uniform(0, a, k).max()) if k else 0.0 for a, k in zip(active, x, strict=True)]
    )
    nu = rng.gamma(4.0, 1 / 60.0, n)
    spend = np.array(
        [rng.gamma(5.0, 1 / v, k).mean() if k else 0.0 for v, k in zip(nu, x, strict=True)]
    )
    return PopulationStats(x.astype(float), t_x, T, spend, through_day=20_000)


def test_a_fit_must_explain_the_observed_repeat_purchases():
    """Parameters that expect far fewer repeat purchases than observed are refused,
    whatever produced them; counts that ignore the customers' ages cannot be fitted."""
    sound = _pareto_nbd_population(4000)
    fitted = fit_value_params(sound, ScoringConfig(), PRIOR_PARAMS).purchase
    _check_explains_totals("pareto_nbd", fitted, sound, 7.0)
    slow = (fitted[0], fitted[1] * 10, fitted[2], fitted[3])
    with pytest.raises(FitError, match="explains"):
        _check_explains_totals("pareto_nbd", slow, sound, 7.0)
    with pytest.raises(FitError, match="explains"):
        fit_value_params(_stats(3000, 400, repeat_rate=4.0), ScoringConfig(), PRIOR_PARAMS)


def test_a_shape_at_its_cap_is_kept_with_a_note():
    """Young populations cannot tell dropout heterogeneity: the fit is kept, flagged."""
    rng = np.random.default_rng(4)
    n = 4000
    T = rng.integers(150, 300, n).astype(float)
    lam = rng.gamma(1.0, 1 / 10.0, n) / 7
    active = np.minimum(rng.exponential(700, n), T)  # one dropout rate for everybody
    x = rng.poisson(lam * active).astype(float)
    t_x = np.array(
        [
            np.floor(rng.uniform(0, a, int(k)).max()) if k else 0.0
            for a, k in zip(active, x, strict=True)
        ]
    )
    spend = np.where(x > 0, rng.gamma(4, 10, n), 0.0)
    params = fit_value_params(
        PopulationStats(x, t_x, T, spend, 20_000), ScoringConfig(), PRIOR_PARAMS
    )
    assert params.purchase[2] == pytest.approx(20.0, rel=0.02)
    assert params.notes == ("heterogeneity not identified yet: s at its cap 20",)


def test_a_sound_population_fits_close_to_its_truth():
    params = fit_value_params(_pareto_nbd_population(6000), ScoringConfig(), PRIOR_PARAMS)
    assert params.version != PRIOR_PARAMS.version
    r, alpha, s, beta = params.purchase
    assert r / alpha == pytest.approx(0.8 / 8.0, rel=0.15)  # mean purchase rate per week
    assert s / beta == pytest.approx(0.6 / 12.0, rel=0.5)  # mean dropout rate per week
    p, q, v = params.spend
    assert p * v / (q - 1) == pytest.approx(5.0 * 60.0 / 3.0, rel=0.15)  # mean spend


@pytest.mark.parametrize("unit", [1e3, 1e5, 1e7])
def test_the_spend_fit_does_not_depend_on_the_currency_unit(unit):
    """Gamma-Gamma is scale-equivariant: spend in a currency unit `unit` times smaller
    (a base currency such as VND or IDR) gives the same shapes and `v` times `unit`.
    A bound on `v` in currency units must not refuse every fit of such a population."""
    stats = _pareto_nbd_population(4000)
    base = fit_spend_model(stats.x, stats.mean_spend)
    scaled = fit_spend_model(stats.x, stats.mean_spend * unit)
    assert scaled.params[:2] == pytest.approx(base.params[:2], rel=1e-3)
    assert scaled.params[2] == pytest.approx(base.params[2] * unit, rel=1e-3)
    assert scaled.log_likelihood == pytest.approx(
        base.log_likelihood - base.n * np.log(unit), rel=1e-6
    )
