"""BTYD formulas: known properties, closed forms and a Monte Carlo check of the latent process."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.integrate import quad
from scipy.special import betaln

from models.btyd.bg_nbd import BGNBD
from models.btyd.gamma_gamma import GammaGamma
from models.btyd.pareto_nbd import ParetoNBD, ParetoNBDLikelihood
from models.config import ScoringConfig
from models.value import PRIOR_PARAMS, ValueModel, ValueParams

PNBD = ParetoNBD(r=0.5974, alpha=11.59, s=0.5222, beta=8.828)
BG = BGNBD(r=0.2516, alpha=4.789, a=0.7234, b=2.161)
# alpha < beta takes the other branch of the hypergeometric closed form.
PNBD_OTHER_BRANCH = ParetoNBD(r=0.8, alpha=3.0, s=1.4, beta=25.0)

customers = st.tuples(st.integers(0, 40), st.floats(0, 78), st.floats(0, 78)).map(
    lambda t: (t[0], min(t[1], t[2]) if t[0] > 0 else 0.0, max(t[1], t[2]))
)


@pytest.mark.parametrize("model", [PNBD, PNBD_OTHER_BRANCH, BG])
@given(customer=customers, t=st.floats(0.5, 104))
@settings(max_examples=150, deadline=None)
def test_probabilities_are_probabilities_and_consistent(model, customer, t):
    x, t_x, T = customer
    p_alive = model.p_alive(x, t_x, T)
    p_none = model.p_no_purchase(x, t_x, T, t)
    expected = model.expected_purchases(x, t_x, T, t)
    assert 0.0 <= p_alive <= 1.0
    assert 0.0 <= p_none <= 1.0 + 1e-12
    assert p_none >= 1.0 - p_alive - 1e-9  # the dead never buy
    assert expected >= 0.0
    # More time, more purchases expected and less chance of none.
    assert model.expected_purchases(x, t_x, T, 2 * t) >= expected - 1e-12
    assert model.p_no_purchase(x, t_x, T, 2 * t) <= p_none + 1e-12


@pytest.mark.parametrize("model", [PNBD, PNBD_OTHER_BRANCH])
@given(x=st.integers(1, 30), t_x=st.floats(0, 50), gap=st.floats(0.5, 50))
@settings(max_examples=100, deadline=None)
def test_silence_lowers_p_alive(model, x, t_x, gap):
    """For a fixed history, a longer silence since the last purchase means less alive."""
    assert model.p_alive(x, t_x, t_x + 2 * gap) <= model.p_alive(x, t_x, t_x + gap) + 1e-12


def test_a_purchase_at_the_observation_end_means_alive():
    assert PNBD.p_alive(5, 39.0, 39.0) == pytest.approx(1.0)
    assert BG.p_alive(5, 39.0, 39.0) < 1.0  # BG/NBD can drop out right after buying


def test_bg_nbd_flaw_and_its_remedy():
    """BG/NBD says P(alive)=1 without repeats, yet P(no purchase) still ranks them."""
    assert BG.p_alive(0, 0.0, 39.0) == 1.0 == BG.p_alive(0, 0.0, 5.0)
    assert BG.p_no_purchase(0, 0.0, 39.0, 39.0) > BG.p_no_purchase(0, 0.0, 5.0, 39.0)


@pytest.mark.parametrize("model", [PNBD, PNBD_OTHER_BRANCH])
def test_pareto_nbd_new_customer_matches_the_unconditional_closed_forms(model):
    """At T=0 the posterior is the prior: E[X(t)] and P(X(t)=0) have textbook forms."""
    r, alpha, s, beta = model.r, model.alpha, model.s, model.beta
    t = 30.0
    expected = r * beta / (alpha * (s - 1)) * (1 - (beta / (beta + t)) ** (s - 1))
    assert model.expected_purchases(0, 0.0, 0.0, t) == pytest.approx(expected, rel=1e-12)
    # P(X(t)=0) = E[e^{-(l+m)t}] + E[m/(l+m)(1-e^{-(l+m)t})] over the gamma priors.
    rng = np.random.default_rng(3)
    lam = rng.gamma(r, 1 / alpha, 2_000_000)
    mu = rng.gamma(s, 1 / beta, 2_000_000)
    decay = np.exp(-(lam + mu) * t)
    value = np.mean(decay + mu / (lam + mu) * (1 - decay))
    assert model.p_no_purchase(0, 0.0, 0.0, t) == pytest.approx(value, abs=2e-3)


def test_conditional_forecasts_match_a_simulation_of_the_latent_process():
    """Simulate Pareto/NBD customers; among those with the same (x, t_x, T), compare
    observed future purchases and P(none) with the conditional formulas."""
    rng = np.random.default_rng(7)
    n, T, horizon = 400_000, 26.0, 13.0
    lam = rng.gamma(PNBD.r, 1 / PNBD.alpha, n)
    mu = rng.gamma(PNBD.s, 1 / PNBD.beta, n)
    death = rng.exponential(1 / mu)
    active_cal = np.minimum(death, T)
    x = rng.poisson(lam * active_cal)
    future = rng.poisson(lam * np.clip(np.minimum(death, T + horizon) - T, 0, None))
    # Customers with no repeat purchase (t_x = 0) form one big comparable group.
    group = x == 0
    observed_none = np.mean(future[group] == 0)
    observed_mean = np.mean(future[group])
    assert PNBD.p_no_purchase(0, 0.0, T, horizon) == pytest.approx(observed_none, abs=0.004)
    assert PNBD.expected_purchases(0, 0.0, T, horizon) == pytest.approx(observed_mean, rel=0.05)
    assert PNBD.p_alive(0, 0.0, T) == pytest.approx(np.mean(death[group] > T), abs=0.004)


def test_gamma_gamma_shrinks_towards_the_population_mean():
    gg = GammaGamma(p=6.275, q=3.624, v=14.98)
    assert gg.expected_spend(0, 0.0) == pytest.approx(gg.population_mean)
    few, many = gg.expected_spend(1, 100.0), gg.expected_spend(50, 100.0)
    assert gg.population_mean < few < many < 100.0
    assert gg.expected_spend(1000, 100.0) == pytest.approx(100.0, rel=0.01)


# Days as the time unit, alpha < beta: a frequent buyer's 2F1 in the closed form of the
# tail integral grows like ((beta + u) / (alpha + u))^(r + x) and overflows double range.
PNBD_DAYS = ParetoNBD(r=0.6, alpha=20.0, s=0.5, beta=2000.0)


def _reference_log_odds(model: ParetoNBD, x: int, t_x: float, T: float) -> float:
    """log of P(dead) / P(alive) = s (alpha+T)^(r+x) (beta+T)^s integral_{t_x}^T of
    (alpha+y)^-(r+x) (beta+y)^-(s+1) dy, integrated directly in log space (no 2F1, no
    tails to infinity); t_x < T."""
    r_x, s = model.r + x, model.s

    def log_g(y: float) -> float:
        return (
            r_x * math.log((model.alpha + T) / (model.alpha + y))
            + s * math.log((model.beta + T) / (model.beta + y))
            - math.log(model.beta + y)
        )

    peak = log_g(t_x)  # the integrand decreases in y
    width = (model.alpha + t_x) / r_x  # its scale of decay near t_x
    points = [t_x + k * width for k in (1, 4, 16, 64) if t_x + k * width < T]
    area = quad(
        lambda y: math.exp(log_g(y) - peak),
        t_x,
        T,
        points=points or None,
        limit=400,
        full_output=1,
    )[0]
    if area <= 0.0:  # an interval too short to integrate over (a denormal silence)
        return -math.inf
    return math.log(s) + peak + math.log(area)


def _reference_p_alive(model: ParetoNBD, x: int, t_x: float, T: float) -> float:
    if t_x >= T:
        return 1.0
    log_odds = _reference_log_odds(model, x, t_x, T)
    return 0.0 if log_odds > 700 else 1.0 / (1.0 + math.exp(log_odds))


def test_a_frequent_buyer_gone_silent_is_not_alive_when_2f1_overflows():
    """A daily buyer (1000 purchase days by day 1100) silent for 100 days: P(alive) is
    3.7e-34 (mpmath at 60 digits); the overflowing closed form served 1.0, and a churn
    probability of 1e-31."""
    assert PNBD_DAYS.p_alive(1000, 1100.0, 1200.0) < 1e-30
    assert PNBD_DAYS.p_no_purchase(1000, 1100.0, 1200.0, 90.0) == pytest.approx(1.0)
    # bought yesterday: alive (0.99966), and very likely to buy within 90 days (5.4e-4)
    assert PNBD_DAYS.p_alive(500, 500.0, 501.0) == pytest.approx(0.999664067666736, abs=1e-9)
    assert PNBD_DAYS.p_no_purchase(500, 500.0, 501.0, 90.0) == pytest.approx(5.44215e-4, rel=1e-4)


@pytest.mark.parametrize("model", [PNBD_DAYS, PNBD, PNBD_OTHER_BRANCH])
@given(x=st.integers(0, 3000), spread=st.floats(0, 400), silence=st.floats(0, 800))
@settings(max_examples=150, deadline=None)
def test_p_alive_matches_a_direct_integration_for_frequent_buyers(model, x, spread, silence):
    """At most one purchase day per day: t_x >= x days (in any unit the fit used)."""
    t_x = float(x) + spread if x else 0.0
    T = t_x + silence
    p_alive = model.p_alive(x, t_x, T)
    assert p_alive == pytest.approx(_reference_p_alive(model, x, t_x, T), abs=1e-6)
    p_none = model.p_no_purchase(x, t_x, T, 90.0)
    assert 1.0 - p_alive - 1e-9 <= p_none <= 1.0 + 1e-12


def _reference_bg_alive_purchases(model: BGNBD, x: int, T: float, t: float) -> float:
    """E[purchases in (T, T+t] | alive] = E[(1 - ((alpha+T) / (alpha+T + p t))^(r+x)) / p]
    over the posterior dropout probability p ~ Beta(a, b+x), integrated directly
    (p = v^(1/a) removes the density's singularity at 0; needs b + x >= 1)."""
    a, b_x, r_x, a_T = model.a, model.b + x, model.r + x, model.alpha + T

    def integrand(v: float) -> float:
        p = v ** (1.0 / a)
        if p == 0.0:
            return r_x * t / a_T
        return -math.expm1(-r_x * math.log1p(p * t / a_T)) / p * (1.0 - p) ** (b_x - 1.0)

    mean = a / (a + b_x)
    points = sorted({min(mean * k, 0.5) ** a for k in (0.1, 1.0, 10.0)})
    area = quad(integrand, 0.0, 1.0, points=points, limit=400, epsabs=0.0, epsrel=1e-11)[0]
    return area / (a * math.exp(betaln(a, b_x)))


def test_bg_nbd_scores_a_frequent_buyer_over_a_long_horizon():
    """CDNOW's BG/NBD parameters, a 10-year horizon (the longest allowed) and a customer
    with 350 purchase days in 70 weeks: the closed form's 2F1 overflowed, 0 * inf = NaN,
    and ValueModel raised ArithmeticError ('non-finite horizon'): the scorer stopped."""
    params = ValueParams("bg_nbd", (BG.r, BG.alpha, BG.a, BG.b), PRIOR_PARAMS.spend, 7.0)
    model = ValueModel(params, ScoringConfig(value_model="bg_nbd", horizon_days=3650))
    scores = model.score(350, 490, 490, 40.0)
    horizon = 3650 / 7
    expected = scores.p_alive * _reference_bg_alive_purchases(BG, 350, 70.0, horizon)
    assert scores.expected_purchases == pytest.approx(expected, rel=1e-9)
    assert 0.0 < scores.clv < scores.predicted_value < math.inf


@given(
    x=st.integers(0, 3000),
    extra_weeks=st.floats(0, 300),
    t=st.floats(0.1, 3650 / 7),
)
@settings(max_examples=200, deadline=None)
def test_bg_nbd_expected_purchases_match_a_direct_integration(x, extra_weeks, t):
    """At most one purchase day per day: T >= x / 7 weeks. Finite, matching the posterior
    expectation, and non-decreasing in the horizon."""
    T = x / 7.0 + extra_weeks
    values = BG.cumulative(x, T, 1.0, (t / 2.0, t))
    assert values[1] == pytest.approx(_reference_bg_alive_purchases(BG, x, T, t), rel=1e-7)
    assert 0.0 <= values[0] <= values[1] < math.inf


@pytest.mark.parametrize("a", [1.0, 1.0 + 1e-12, 1.0 - 1e-9, 1.0 + 5e-4, 1.0 - 9e-4])
@given(x=st.integers(0, 200), extra_weeks=st.floats(0, 150), t=st.floats(0.1, 3650 / 7))
@settings(max_examples=60, deadline=None)
def test_bg_nbd_expected_purchases_near_a_of_one(a, x, extra_weeks, t):
    """a = 1 lies inside the fit's bounds: (a+b+x-1)/(a-1) * (1 - ...) is 0/0 there
    (ZeroDivisionError) and lost 0.3-0.7% to cancellation at a = 1 + 1e-12."""
    model = BGNBD(r=BG.r, alpha=BG.alpha, a=a, b=BG.b)
    T = x / 7.0 + extra_weeks
    values = model.cumulative(x, T, 1.0, (t / 2.0, t))
    assert values[1] == pytest.approx(_reference_bg_alive_purchases(model, x, T, t), rel=1e-4)
    assert 0.0 <= values[0] <= values[1]
    p_alive = model.p_alive(x, T, T)
    assert model.expected_purchases(x, T, T, t) == pytest.approx(p_alive * values[1])


def test_pareto_nbd_likelihood_of_frequent_buyers_is_finite_and_right():
    """The fit's log-likelihood used the same overflowing closed form: one frequent buyer
    made it NaN at and around plausible parameters with alpha < beta (the fit treats
    that as a wall, and stops short of the maximum: on a simulated population in days it
    ended at s=0.36 beta=1949 instead of s=0.40 beta=2239, with a lower likelihood).
    Per customer: head + log((alpha+T)^-(r+x) (beta+T)^-s) + log(1 + odds(dead))."""
    m = PNBD_DAYS
    customers = [(1000, 1100.0, 1200.0), (500, 500.0, 530.0), (3, 30.0, 60.0), (0, 0.0, 90.0)]
    x, t_x, T = (np.array(column, dtype=float) for column in zip(*customers, strict=True))
    got = ParetoNBDLikelihood(x, t_x, T).per_customer((m.r, m.alpha, m.s, m.beta))
    for value, (xi, txi, Ti) in zip(got, customers, strict=True):
        head = math.lgamma(m.r + xi) - math.lgamma(m.r) + m.r * math.log(m.alpha)
        head += m.s * math.log(m.beta)
        alive = -(m.r + xi) * math.log(m.alpha + Ti) - m.s * math.log(m.beta + Ti)
        odds = _reference_log_odds(m, xi, txi, Ti)
        assert value == pytest.approx(head + alive + np.logaddexp(0.0, odds), rel=1e-9)
