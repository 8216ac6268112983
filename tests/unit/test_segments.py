"""Segments: lifecycle on one risk scale with hysteresis, value tiers, RFM, quantiles."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from models.config import ScoringConfig, SegmentConfig
from models.emitted import Stream
from models.engine import ScoringEngine
from models.population import CLV, PURCHASE_DAYS, Population, population_bins, value_bin
from models.segments import (
    RFM_SEGMENTS,
    RISK_BANDS,
    Facts,
    lifecycle,
    rfm_named,
    rfm_scores,
    value_tier,
)
from models.value import PRIOR_PARAMS
from tests.factories import customer_event, purchase, raw

CFG = SegmentConfig()
QUIET = Facts(
    churn=0.3,
    p_alive=0.8,
    repeat_days=4,
    tenure_days=400,
    quiet_days=40,
    bought_today=False,
    previous="active",
    days_in_segment=100.0,
)


def walk(churns, facts=QUIET, days_apart=10.0):
    """Lifecycle along a sequence of churn probabilities, one score every `days_apart`."""
    previous, since, segments = facts.previous, -facts.days_in_segment, []
    for index, churn in enumerate(churns):
        now = index * days_apart
        segment, _ = lifecycle(
            facts._replace(churn=churn, previous=previous, days_in_segment=now - since), CFG
        )
        if segment != previous:
            previous, since = segment, now
        segments.append(segment)
    return segments


@given(st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_a_higher_churn_probability_never_gives_a_lower_risk_band(low, high):
    low, high = sorted((low, high))
    first = lifecycle(QUIET._replace(churn=low, previous=None), CFG)[0]
    second = lifecycle(QUIET._replace(churn=high, previous=None), CFG)[0]
    assert RISK_BANDS.index(first) <= RISK_BANDS.index(second)


@pytest.mark.parametrize("threshold", [CFG.at_risk, CFG.lapsing, CFG.lost])
def test_a_customer_oscillating_around_a_threshold_does_not_flap(threshold):
    rng = random.Random(7)
    wobble = [threshold + rng.uniform(-0.9, 0.9) * CFG.risk_margin for _ in range(200)]
    segments = walk([threshold + 2 * CFG.risk_margin, *wobble])
    assert segments[0] != "active"  # a clear crossing moves at once
    assert len(set(segments)) == 1  # then the customer is held inside the margin


def test_a_clear_move_changes_band_and_says_which_threshold_was_crossed():
    segment, why = lifecycle(QUIET._replace(churn=0.9), CFG)
    assert segment == "lapsing"
    assert why.text() == "churn_probability 0.90 >= lapsing 0.80 + margin 0.03"
    back, why = lifecycle(QUIET._replace(churn=0.5, previous="lapsing"), CFG)
    assert back == "active"
    assert why.text() == "churn_probability 0.50 < at_risk 0.60 - margin 0.03"


def test_without_a_purchase_a_segment_is_held_for_the_minimum_time():
    fresh = QUIET._replace(churn=0.9, previous="active", days_in_segment=2.0)
    assert lifecycle(fresh, CFG)[0] == "active"
    assert lifecycle(fresh._replace(days_in_segment=14.0), CFG)[0] == "lapsing"
    recovered = QUIET._replace(churn=0.2, previous="at_risk", days_in_segment=1.0)
    assert lifecycle(recovered, CFG)[0] == "at_risk"
    assert lifecycle(recovered._replace(bought_today=True), CFG)[0] == "active"


def test_new_reactivated_and_lost_follow_the_purchase_history():
    first_timer = QUIET._replace(repeat_days=0, tenure_days=12, churn=0.95, previous="new")
    assert lifecycle(first_timer, CFG)[0] == "new"
    assert lifecycle(first_timer._replace(tenure_days=31), CFG)[0] == "lost"
    returned = QUIET._replace(churn=0.4, previous="lapsing", bought_today=True)
    segment, why = lifecycle(returned, CFG)
    assert segment == "reactivated" and why.text() == "bought again while lapsing"
    later = returned._replace(previous="reactivated", bought_today=False, days_in_segment=30)
    assert lifecycle(later, CFG)[0] == "reactivated"
    assert lifecycle(later._replace(days_in_segment=61), CFG)[0] == "active"
    # leaving `reactivated` inside the at_risk margin: the why says what really holds
    segment, why = lifecycle(later._replace(days_in_segment=61.5, churn=0.62), CFG)
    assert segment == "active"
    assert why.text() == (
        "reactivated 61 days ago (period 60 days); churn_probability 0.62 < at_risk 0.60"
        " + margin 0.03"
    )
    assert lifecycle(later._replace(churn=0.9), CFG)[0] == "lapsing"  # slipping again
    asleep = QUIET._replace(quiet_days=CFG.lost_after_days, churn=0.1)
    assert lifecycle(asleep, CFG)[0] == "lost"
    dead = QUIET._replace(churn=0.85, p_alive=0.05)
    segment, why = lifecycle(dead, CFG)
    assert segment == "lost" and why.text().startswith("p_alive 0.05 < 0.15")


def test_value_tiers_follow_the_top_shares_with_a_margin_and_a_minimum_time():
    assert [value_tier(s, None, CFG)[0] for s in (0.01, 0.049, 0.1, 0.3, 0.9)] == [
        "top_5",
        "top_5",
        "next_15",
        "next_30",
        "rest",
    ]
    assert value_tier(0.059, "top_5", CFG)[0] == "top_5"  # inside the margin: kept
    assert value_tier(0.045, "next_15", CFG)[0] == "next_15"  # not clearly in yet
    segment, why = value_tier(0.039, "next_15", CFG)
    assert segment == "top_5" and why.text() == "CLV rank: top 3.9% <= top_5 5% (- margin 20%)"
    segment, why = value_tier(0.65, "next_15", CFG)
    assert segment == "rest" and why.text() == "CLV rank: top 65.0% > next_15 20% (+ margin 20%)"
    assert value_tier(0.65, "next_15", CFG, days_in_tier=3)[0] == "next_15"  # too soon
    assert value_tier(0.65, "next_15", CFG, days_in_tier=3, bought_today=True)[0] == "rest"
    assert value_tier(0.35, "rest", CFG, days_in_tier=3)[0] == "rest"  # held up as down
    assert value_tier(0.35, "rest", CFG, days_in_tier=15)[0] == "next_30"


def test_one_time_buyers_score_f1_even_when_they_are_most_customers():
    population = Population()
    for repeat_days in [0] * 60 + [1] * 20 + [3] * 20:  # CDNOW-like: 60% buy once
        population.move(None, population_bins(10.0, 100, repeat_days + 1, 20.0))
    snapshot = population.snapshot()

    def f_score(repeat_days: int) -> str:
        bins = population_bins(10.0, 100, repeat_days + 1, 20.0)
        return rfm_scores(0.5, snapshot.share_below(PURCHASE_DAYS, bins[PURCHASE_DAYS]), 0.5)[1]

    assert [f_score(days) for days in (0, 1, 3)] == ["1", "4", "5"]


def test_segment_thresholds_are_validated():
    with pytest.raises(ValidationError, match="increase"):
        SegmentConfig(at_risk=0.8, lapsing=0.7)
    with pytest.raises(ValidationError, match="shares"):
        SegmentConfig(value_tiers=(("a", 0.3), ("b", 0.2)))


def test_rfm_scores_are_quintiles_and_every_named_segment_is_reachable():
    assert rfm_scores(0.0, 0.19, 0.2) == "112"
    assert rfm_scores(0.999, 0.8, 0.79) == "554"
    names = {rfm_named(f"{r}{f}{m}") for r in range(1, 6) for f in range(1, 6) for m in range(1, 6)}
    assert names == set(RFM_SEGMENTS)
    assert rfm_named("555") == "champions" and rfm_named("511") == "new"
    assert rfm_named("155") == "cant_lose_them" and rfm_named("111") == "lost"
    assert rfm_named("411") == "promising" and rfm_named("333") == "need_attention"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(0.0, 1e6, allow_nan=False), min_size=1, max_size=60), st.floats(0, 1e6))
def test_population_percentiles_are_exact_mid_ranks_of_the_bins(values, probe):
    population = Population()
    for value in values:
        population.move(None, population_bins(value, 0, 1, 0.0))
    keys = [value_bin(v) for v in values]
    key = value_bin(probe)
    expected = (sum(k < key for k in keys) + sum(k == key for k in keys) / 2) / len(keys)
    assert population.snapshot().percentile(CLV, key) == pytest.approx(expected)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.floats(1.0, 500.0)), min_size=1, max_size=40))
def test_moving_customers_keeps_the_counts_of_a_recount(moves):
    population, bins = Population(), {}
    for customer, clv in moves:
        new = population_bins(clv, customer, 1, clv) if clv < 400 else None  # some leave
        population.move(bins.get(customer), new)
        bins[customer] = new
    recount = Population()
    for value in bins.values():
        recount.move(None, value)
    assert population == recount


def replay(engine, events):
    outputs = []
    for number, event in enumerate(events):
        outputs += engine.process_raw(raw(event), {"source": "file", "file": "t", "line": number})
    return outputs


def simulated_events(customers=150, days=300, seed=3):
    rng = random.Random(seed)
    events = []
    for c in range(customers):
        day = rng.uniform(0, 60)
        while day < days:
            events.append(purchase(f"c{c}", day, round(rng.uniform(5, 200), 2)))
            day += rng.expovariate(1 / rng.choice((15, 40, 120)))
    return sorted(events, key=lambda e: e["occurred_at"])


def test_the_engine_counts_every_scored_customer_once_and_forgets_the_erased():
    config = ScoringConfig(churn_model=False, segments=SegmentConfig(min_customers_for_tiers=50))
    engine = ScoringEngine(config, PRIOR_PARAMS, refit=False)
    events = simulated_events()
    outputs = replay(engine, [*events, customer_event("c7", 301, "erasure")])
    population = engine.scorer.population
    assert population.customers == len(engine.states) == 149
    recount = Population()
    for state in engine.states.values():
        recount.move(None, state.population_bins)
    assert population == recount
    tiers = [o.value for o in outputs if o.stream is Stream.SEGMENT_CHANGES]
    tier_changes = [t for t in tiers if t["dimension"] == "value_tier"]
    assert tier_changes and all(t["reason"].startswith("CLV rank: top") for t in tier_changes)
    restored = ScoringEngine(config, PRIOR_PARAMS, dict(engine.states), refit=False)
    assert restored.scorer.population == population
