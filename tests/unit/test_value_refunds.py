"""Refunds reduce value and are not purchases: the expected spend per purchase is scaled
by the share of spend the customer kept, so value falls as refunds grow, is 0 after a
full refund, is never negative, and is unchanged for customers without refunds."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.btyd.gamma_gamma import GammaGamma
from models.config import ScoringConfig
from models.scorer import Scorer
from models.state import CustomerState
from models.value import PRIOR_PARAMS

DAY = 86_400.0
SCORER = Scorer(ScoringConfig(churn_model=False, margin_rate=0.3), PRIOR_PARAMS)
GG = GammaGamma(*PRIOR_PARAMS.spend)


def customer(purchases: list[tuple[int, float]], refunds: tuple[float, ...] = ()):
    state = CustomerState.new(first_seen=0.0)
    for day, amount in purchases:
        state.add_purchase(day, amount)
    for amount in refunds:
        state.add_refund(amount)
    return state


def values(state: CustomerState, day: int = 400):
    return SCORER.scores_of(state, day * DAY).values


def test_refunds_lower_a_one_time_buyers_value_down_to_zero():
    kept = values(customer([(10, 100.0)]))
    half = values(customer([(10, 100.0)], (50.0,)))
    full = values(customer([(10, 100.0)], (100.0,)))
    over = values(customer([(10, 100.0)], (5_000.0,)))
    assert kept.expected_spend == pytest.approx(GG.population_mean)
    assert half.expected_spend == pytest.approx(GG.population_mean / 2)
    assert half.predicted_value == pytest.approx(kept.predicted_value / 2)
    assert half.clv == pytest.approx(kept.clv / 2)
    for refunded in (full, over):
        assert refunded.expected_spend == refunded.predicted_value == refunded.clv == 0.0
    # refunds are not purchases: the purchase process is untouched
    assert {v.expected_purchases for v in (kept, half, full, over)} == {kept.expected_purchases}
    assert {v.p_alive for v in (kept, half, full, over)} == {kept.p_alive}


def test_a_full_refund_gives_a_repeat_buyer_less_than_a_small_net_spend():
    purchases = [(10, 100.0), (40, 100.0), (90, 100.0)]
    small_net = values(customer(purchases, (299.0,)))
    full = values(customer(purchases, (300.0,)))
    over = values(customer(purchases, (1_000.0,)))
    assert 0.0 < small_net.predicted_value < values(customer(purchases)).predicted_value
    assert full.predicted_value == over.predicted_value == full.clv == 0.0
    # not the population average any more
    assert small_net.expected_spend < GG.population_mean


def test_the_spend_of_a_repeat_buyer_is_the_kept_share_of_the_gamma_gamma_value():
    purchases = [(10, 60.0), (40, 100.0), (90, 100.0)]
    gross_mean = 100.0
    state = customer(purchases, (65.0,))  # kept 195 of 260: 75%
    scored = values(state)
    assert scored.expected_spend == pytest.approx(0.75 * GG.expected_spend(2, gross_mean))
    assert SCORER.scores_of(state, 400 * DAY).monetary_value == pytest.approx(0.75 * gross_mean)


def test_customers_without_refunds_are_scored_as_before():
    def old_spend(x: int, mean: float) -> float:  # Gamma-Gamma before the refund rule
        if x <= 0 or mean <= 0:
            return GG.p * GG.v / (GG.q - 1.0)
        return GG.p * (GG.v + x * mean) / (GG.p * x + GG.q - 1.0)

    for purchases in ([(10, 100.0)], [(10, 20.0), (30, 45.5), (31, 7.25)], [(5, 0.0), (9, 0.0)]):
        state = customer(purchases)
        scored = values(state)
        assert scored.expected_spend == old_spend(state.repeat_days, state.mean_repeat_spend)
        assert scored == SCORER.value_model.score(
            state.repeat_days,
            state.last_day - state.first_day,
            400 - state.first_day,
            state.mean_repeat_spend,
        )


def test_gamma_gamma_with_everything_kept_is_unchanged():
    for x, mean in [(0, 0.0), (0, 30.0), (1, 0.0), (4, 50.0), (50, 12.5)]:
        assert GG.expected_spend(x, mean, 1.0) == GG.expected_spend(x, mean)
    # continuous as the kept share approaches 1 (positive mean)
    assert GG.expected_spend(4, 50.0 * (1 - 1e-12), 1 - 1e-12) == pytest.approx(
        GG.expected_spend(4, 50.0)
    )
    assert GG.expected_spend(4, 50.0, 0.0) == GG.expected_spend(0, 0.0, -1.0) == 0.0


purchase_lists = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=300),
        st.floats(min_value=0.0, max_value=1_000.0, allow_nan=False),
    ),
    min_size=1,
    max_size=12,
)
refund_amounts = st.floats(min_value=0.01, max_value=5_000.0, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    purchases=purchase_lists,
    refunds=st.lists(refund_amounts, max_size=4),
    more=refund_amounts,
    day=st.integers(min_value=300, max_value=900),
)
def test_more_refund_never_increases_value(purchases, refunds, more, day):
    fewer = values(customer(purchases, tuple(refunds)), day)
    extra = values(customer(purchases, (*refunds, more)), day)
    for scored in (fewer, extra):
        assert scored.expected_spend >= 0.0 and scored.predicted_value >= 0.0
        assert scored.clv >= 0.0
    assert extra.expected_spend <= fewer.expected_spend
    assert extra.predicted_value <= fewer.predicted_value
    assert extra.clv <= fewer.clv
    assert extra.expected_purchases == fewer.expected_purchases


@settings(max_examples=200, deadline=None)
@given(purchases=purchase_lists, day=st.integers(min_value=300, max_value=900))
def test_a_zero_refund_total_leaves_value_unchanged(purchases, day):
    state = customer(purchases)
    assert state.refund_total == 0.0
    scored = values(state, day)
    x, mean = state.repeat_days, state.mean_repeat_spend
    assert scored.expected_spend == GG.expected_spend(x, mean)
    assert scored.expected_spend == (
        GG.population_mean
        if x == 0 or mean <= 0
        else GG.p * (GG.v + x * mean) / (GG.p * x + GG.q - 1.0)
    )


@settings(max_examples=300, deadline=None)
@given(
    x=st.integers(min_value=0, max_value=200),
    gross_mean=st.floats(min_value=0.0, max_value=10_000.0, allow_nan=False),
    kept=st.floats(min_value=0.0, max_value=1.0),
    less=st.floats(min_value=0.0, max_value=1.0),
)
def test_gamma_gamma_spend_falls_with_the_kept_share(x, gross_mean, kept, less):
    lower = kept * less
    spend = GG.expected_spend(x, gross_mean * kept, kept)
    assert 0.0 <= GG.expected_spend(x, gross_mean * lower, lower) <= spend
    assert spend <= GG.expected_spend(x, gross_mean)
