"""The transition: duplicates, lateness, refunds, erasure, consent, purity, determinism."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config import ScoringConfig
from models.emitted import Stream
from models.scorer import Scorer
from models.state import CustomerState
from models.transition import Status, apply_event, rescore
from models.value import PRIOR_PARAMS
from schemas.outputs import DeadLetterReason
from schemas.parsing import parse_event
from tests.factories import customer_event, interaction, purchase, raw, refund

SCORER = Scorer(ScoringConfig(fx_rates={"USD": 1.0, "EUR": 1.1}), PRIOR_PARAMS)
NO_WATERMARK = float("-inf")


def run(events, state=None, watermark=NO_WATERMARK):
    steps = []
    for event in events:
        step = apply_event(state, parse_event(raw(event)), watermark, SCORER)
        state = step.state
        steps.append(step)
    return state, steps


def test_a_purchase_scores_the_customer():
    _state, [step] = run([purchase("c1", 0, 30.0, event_id="t1")])
    assert step.status is Status.APPLIED
    score = step.outputs[0]
    assert score.stream is Stream.SCORES and score.key == "c1"
    assert score.value["cause"] == "t1"
    assert score.value["frequency"] == 0 and score.value["total_spend"] == 30.0
    assert 0 < score.value["p_alive"] <= 1 and score.value["clv"] > 0
    assert score.value["segment"] == "new"


def test_duplicates_change_nothing():
    first = purchase("c1", 0, 30.0, event_id="t1")
    state, _ = run([first, purchase("c1", 5, 10.0)])
    again = apply_event(state, parse_event(raw(first)), NO_WATERMARK, SCORER)
    assert again.status is Status.DUPLICATE
    assert again.outputs == [] and again.state is state


def test_late_events_are_refused_with_reason_late():
    state, _ = run([purchase("c1", 0)])
    late = apply_event(state, parse_event(raw(purchase("c1", 1))), 1.8e9, SCORER)
    assert late.status is Status.LATE and late.reason is DeadLetterReason.LATE
    assert late.state is state and late.outputs == []


def test_refunds_lower_value_and_do_not_count_as_purchases():
    _state, steps = run([purchase("c1", 0, 50.0), purchase("c1", 10, 50.0), refund("c1", 12, 40.0)])
    before, after = steps[1].outputs[0].value, steps[2].outputs[0].value
    assert after["frequency"] == before["frequency"] == 1
    assert after["total_spend"] == 60.0 and after["refund_total"] == 40.0
    assert after["monetary_value"] < before["monetary_value"]
    assert after["clv"] < before["clv"]


def test_foreign_currency_is_converted_or_refused():
    state, [step] = run([purchase("c1", 0, 100.0, currency="EUR")])
    assert step.outputs[0].value["total_spend"] == pytest.approx(110.0)
    refused = apply_event(
        state, parse_event(raw(purchase("c1", 1, 5.0, currency="JPY"))), NO_WATERMARK, SCORER
    )
    assert refused.status is Status.REJECTED
    assert refused.reason is DeadLetterReason.UNSUPPORTED_CURRENCY and refused.state is state


def test_erasure_removes_the_customer_and_tombstones_the_score():
    state, steps = run([purchase("c1", 0), customer_event("c1", 1, "erasure")])
    assert state is None and steps[-1].status is Status.ERASED
    [tombstone] = steps[-1].outputs
    assert tombstone.stream is Stream.SCORES and tombstone.value is None


def test_objection_to_profiling_stops_scoring():
    _, steps = run(
        [
            purchase("c1", 0),
            customer_event("c1", 1, "consent", consent={"profiling": False}),
        ]
    )
    score = steps[-1].outputs[0].value
    assert score["segment"] == "not_profiled"
    assert score["p_alive"] is None and score["clv"] is None
    assert steps[0].state.snapshots  # a churn snapshot was taken at the purchase ...
    assert steps[-1].state.snapshots == ()  # ... and is never learned after the objection


def test_unsubscribe_withdraws_email_consent():
    state, _ = run([interaction("c1", 0, "unsubscribe")])
    assert state.consent == {"marketing_email": False}


def test_first_segment_and_every_change_is_announced_with_a_reason():
    state, steps = run([purchase("c1", 0, 30.0)])
    [change] = [o for o in steps[0].outputs if o.stream is Stream.SEGMENT_CHANGES]
    assert change.value["from_segment"] is None and change.value["to_segment"] == "new"
    assert change.value["reason"]
    later = rescore(state, "c1", 400 * 86_400 + 1.704e9, "due:x", SCORER)
    [moved] = [o for o in later.outputs if o.stream is Stream.SEGMENT_CHANGES]
    assert moved.value["from_segment"] == "new" and moved.value["to_segment"] != "new"
    assert any(word in moved.value["reason"] for word in ("p_alive", "churn_probability"))


def test_output_ids_are_deterministic_and_distinct():
    events = [purchase("c1", 0, event_id="t1"), purchase("c1", 3, event_id="t2")]
    _, first = run(events)
    _, second = run(events)
    ids = [o.value["event_id"] for step in first for o in step.outputs]
    assert ids == [o.value["event_id"] for step in second for o in step.outputs]
    assert len(set(ids)) == len(ids)


event_strategy = st.one_of(
    st.builds(
        lambda c, d, a: purchase(c, d, a),
        st.sampled_from("ab"),
        st.integers(0, 60),
        st.floats(0, 500),
    ),
    st.builds(
        lambda c, d, a: refund(c, d, a),
        st.sampled_from("ab"),
        st.integers(0, 60),
        st.floats(0.01, 100),
    ),
    st.builds(
        lambda c, d, k: interaction(c, d, k),
        st.sampled_from("ab"),
        st.integers(0, 60),
        st.sampled_from(["login", "email_open", "complaint", "unsubscribe"]),
    ),
)


@given(events=st.lists(event_strategy, min_size=1, max_size=25))
@settings(max_examples=60, deadline=None)
def test_the_transition_never_modifies_its_input_state(events):
    states = {}
    for event in events:
        before = states.get(event["customer_id"])
        snapshot = CustomerState.from_bytes(before.to_bytes()) if before else None
        step = apply_event(before, parse_event(raw(event)), NO_WATERMARK, SCORER)
        if before is not None:
            assert before == snapshot
        states[event["customer_id"]] = step.state
        assert step.status in (Status.APPLIED, Status.DUPLICATE)
        if step.state is not None and step.state.has_purchased:
            assert step.state.last_day - step.state.first_day >= 0
