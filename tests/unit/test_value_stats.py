"""The value-statistics index equals the statistics read from the states, in order."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config import ScoringConfig
from models.engine import ScoringEngine
from models.refit import collect_statistics
from models.state import CustomerState
from models.value_stats import ValueStatsIndex
from tests.factories import customer_event, interaction, purchase, raw, refund

FIELDS = ("x", "t_x_days", "T_days", "mean_spend")


def feed(engine: ScoringEngine, events: list[dict]) -> None:
    events = sorted(events, key=lambda event: event["occurred_at"])
    for number, event in enumerate(events, 1):
        engine.process_raw(raw(event), {"source": "file", "file": "t.jsonl", "line": number})


def assert_same(index_stats, state_stats) -> None:
    assert index_stats.through_day == state_stats.through_day
    for name in FIELDS:
        np.testing.assert_array_equal(getattr(index_stats, name), getattr(state_stats, name))


# An operation: (customer number, what): a purchase (day, amount), a refund, an erasure.
operation = st.tuples(
    st.integers(0, 7),
    st.one_of(
        st.tuples(st.just("buy"), st.integers(0, 400), st.floats(1, 500)),
        st.tuples(st.just("refund"), st.floats(1, 300)),
        st.tuples(st.just("visit"), st.integers(0, 400)),
        st.just(("erase",)),
    ),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(operation, max_size=60), st.integers(0, 500))
def test_the_index_follows_every_put_and_removal_like_a_dict(operations, through_day):
    states: dict[str, CustomerState] = {}
    index = ValueStatsIndex()
    for number, (what, *args) in operations:
        customer_id = f"c{number}"
        if what == "erase":
            states.pop(customer_id, None)
            index.remove(customer_id)
            continue
        state = states[customer_id].copy() if customer_id in states else CustomerState.new(0.0)
        if what == "buy":
            state.add_purchase(args[0], args[1])
        elif what == "refund":
            state.refund_total += args[0]
        states[customer_id] = state
        index.put(customer_id, state)
    assert_same(index.collect(through_day), collect_statistics(states.values(), through_day))
    assert len(index) == len(states)


def test_compaction_keeps_the_order_of_the_customers_left():
    states, index = {}, ValueStatsIndex()
    for number in range(3000):
        state = CustomerState.new(0.0)
        state.add_purchase(number % 50, 10.0 + number)
        state.add_purchase(number % 50 + 7, 20.0)
        states[f"c{number}"] = state
        index.put(f"c{number}", state)
    for number in [*range(0, 3000, 3), *range(1, 3000, 3)]:  # 2,000 of 3,000 removed
        del states[f"c{number}"]
        index.remove(f"c{number}")
    assert len(index._first) < 2000  # freed rows were dropped on the way
    state = CustomerState.new(0.0)
    state.add_purchase(3, 99.0)
    states["c1"] = state  # back, at the end
    index.put("c1", state)
    assert_same(index.collect(80), collect_statistics(states.values(), 80))


def test_the_engine_refits_from_the_index_without_reading_a_state():
    config = ScoringConfig(rescore_after_days=(7,))
    engine = ScoringEngine(config, refit=False)
    events = [purchase(f"c{n}", n % 30, 10.0 + n) for n in range(60)]
    events += [purchase(f"c{n}", 40 + n % 5, 25.0) for n in range(0, 60, 2)]
    events += [refund("c4", 46, 5.0), interaction("c7", 47)]
    events += [customer_event("c8", 48, "erasure")]
    feed(engine, events)
    expected = collect_statistics(engine.states.values(), 50)
    assert "c8" not in engine.states and len(expected) == 59

    class Unreadable(dict):
        def values(self):
            raise AssertionError("a refit read the states")

        items = __iter__ = values

    engine.states = Unreadable(engine.states)
    assert_same(engine.statistics(50), expected)


def test_restored_states_give_the_same_statistics():
    engine = ScoringEngine(ScoringConfig(), refit=False)
    first, second = (
        (purchase(f"c{n}", n, 5.0 + n) for n in range(40)),
        (purchase(f"c{n}", n + 9, 7.0) for n in range(40)),
    )
    feed(engine, [*first, *second])
    assert engine.counters.applied == 80
    restored = ScoringEngine(ScoringConfig(), states=dict(engine.states), refit=False)
    assert_same(restored.statistics(90), engine.statistics(90))
