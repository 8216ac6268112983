"""The online churn model: delayed labels without leakage, cold start, checkpoints,
explanations, engagement features."""

from __future__ import annotations

import math
import pickle
import random
from collections import defaultdict
from datetime import datetime

import orjson
import pytest

from models.churn import ChurnModel
from models.churn_features import FEATURES
from models.config import ScoringConfig
from models.emitted import Stream
from models.engagement import Engagement
from models.engine import ScoringEngine
from models.state import CustomerState
from tests.factories import BASE, interaction, purchase

DAY = 86_400.0
T0 = BASE.timestamp()
WINDOW = 90


def feed(engine, events):
    outputs = []
    for number, event in enumerate(events):
        outputs += engine.process_raw(orjson.dumps(event), {"source": "file", "line": number})
    return outputs


def spy_on_labels(engine):
    """Record (watermark, latest event time seen, customer, label) whenever the engine
    learns (labels are learned as a customer's new state is stored)."""
    seen, current = [], [float("-inf")]
    store, process_event = engine._store, engine.process_event

    def storing(customer_id, step):
        latest = max(engine.clock.max_event_time, current[0])
        seen.extend((engine.clock.watermark, latest, customer_id, label) for label in step.labels)
        store(customer_id, step)

    def processing(event, raw, origin):
        current[0] = event.occurred_at.timestamp()
        return process_event(event, raw, origin)

    engine._store, engine.process_event = storing, processing
    return seen


def history(customers: int = 300, days: int = 400, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    events = []
    for number in range(customers):
        t, end = rng.uniform(0, 60), rng.uniform(30, days)
        while t < end:
            events.append(purchase(f"c{number}", t))
            for _ in range(rng.randint(0, 3)):
                events.append(interaction(f"c{number}", t + rng.uniform(0, 20)))
            t += rng.expovariate(1 / 25)
    return sorted(events, key=lambda e: e["occurred_at"])


def test_no_label_is_learned_before_its_window_closed_or_a_purchase_resolved_it():
    engine = ScoringEngine(ScoringConfig(churn_window_days=WINDOW), refit=False)
    seen = spy_on_labels(engine)
    events = history()
    feed(engine, events)
    engine.advance_watermark(T0 + 600 * DAY)
    purchases = defaultdict(list)  # by customer
    for event in events:
        if event["event_type"] == "transaction":
            purchases[event["customer_id"]].append(_ts(event["occurred_at"]))
    assert len(seen) > 500 and engine.scorer.churn.labels == len(seen)
    assert {label.churned for _, _, _, label in seen} == {True, False}
    for watermark, latest, customer, label in seen:
        window_end = label.taken_at + WINDOW * DAY
        # Every label, churned or not, is learned only once its window is over (learning
        # stayers at their purchase would bias the model towards "stays").
        assert watermark > window_end
        inside = [p for p in purchases[customer] if label.taken_at < p <= window_end]
        if label.churned:  # none of the customer's own purchases fell inside the window
            assert inside == []
        else:  # one of the customer's own purchases inside the window was seen
            assert any(p <= latest for p in inside)
    assert len(purchases) > 250  # the scenario had purchases to resolve labels with


def _ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_a_silent_customer_is_labelled_churned_only_after_the_window():
    engine = ScoringEngine(ScoringConfig(churn_window_days=WINDOW), refit=False)
    seen = spy_on_labels(engine)
    feed(engine, [purchase("a", 0)])
    engine.advance_watermark(T0 + (WINDOW - 1) * DAY)
    assert seen == []
    engine.advance_watermark(T0 + (WINDOW + 1) * DAY)
    assert [(customer, label.churned) for _, _, customer, label in seen] == [("a", True)]


def test_a_purchase_inside_the_window_labels_the_snapshot_stayed():
    engine = ScoringEngine(ScoringConfig(churn_window_days=WINDOW), refit=False)
    seen = spy_on_labels(engine)
    feed(engine, [purchase("a", 0), purchase("a", 40)])
    assert seen == []  # known now, learned when the window ends, like a churned label
    engine.advance_watermark(T0 + (WINDOW + 1) * DAY)
    assert [(c, label.churned, label.taken_at) for _, _, c, label in seen] == [("a", False, T0)]


def test_cold_start_serves_the_value_models_answer():
    engine = ScoringEngine(ScoringConfig(), refit=False)
    [score] = [o for o in feed(engine, [purchase("a", 0)]) if o.stream is Stream.SCORES]
    assert engine.scorer.churn.labels == 0
    value = score.value
    assert value["churn_probability"] == value["value_churn_probability"]
    # the reasons are the value model's: its probability and the history it reads
    assert value["churn_reasons"] == [
        f"value model: P(no purchase in the window) {value['value_churn_probability']:.2f}",
        "no purchase for 0 days",
        "no repeat purchase yet",
    ]


def test_the_model_learns_and_blends_in_as_labels_arrive():
    engine = ScoringEngine(ScoringConfig(churn_warmup_labels=100), refit=False)
    feed(engine, history())
    model = engine.scorer.churn
    assert model.labels > 100 and 0.5 < model.weight() < 1
    health = model.health()
    assert 0.5 < health["rolling_auc"] <= 1 and health["rolling_log_loss"] > 0


def test_a_checkpointed_model_predicts_exactly_like_one_that_never_stopped():
    rng = random.Random(1)
    rows = [({name: rng.gauss(0, 1) for name in FEATURES}, rng.random() < 0.4) for _ in range(400)]
    never_stopped = ChurnModel(warmup_labels=50)
    for x, y in rows[:200]:
        never_stopped.learn_one(x, y)
    restored = pickle.loads(pickle.dumps(never_stopped))
    for x, y in rows[200:]:
        never_stopped.learn_one(x, y)
        restored.learn_one(x, y)
    for x, _ in rows[:50]:
        vector = tuple(x[name] for name in FEATURES)
        assert restored.probability(vector, 0.5) == never_stopped.probability(vector, 0.5)
        assert restored.predict_proba_one(x) == never_stopped.predict_proba_one(x)


def test_the_fast_path_matches_rivers_prediction():
    rng = random.Random(2)
    model = ChurnModel(warmup_labels=1)
    for _ in range(640):  # a multiple of the refresh interval: the copy is current
        x = {name: rng.gauss(0, 1) for name in FEATURES}
        model.learn_one(x, x["recency_days"] + rng.gauss(0, 0.5) > 0)
    x = {name: rng.gauss(0, 1) for name in FEATURES}
    vector = tuple(x[name] for name in FEATURES)
    assert abs(model.model_probability(vector) - model.predict_proba_one(x)[True]) < 1e-9


def test_explanations_name_the_factors_that_push_risk_up():
    rng = random.Random(4)
    model = ChurnModel(warmup_labels=1)
    base = {name: 1.0 for name in FEATURES}
    for _ in range(3000):
        complaints = float(rng.randint(0, 3))
        x = {**base, "complaints_30d": complaints, "logins_30d": rng.uniform(0, 5)}
        model.learn_one(x, rng.random() < 0.1 + 0.25 * complaints)
    vector = tuple({**base, "complaints_30d": 2.0, "logins_30d": 2.5}[n] for n in FEATURES)
    reasons = model.reasons(vector)
    assert reasons[0] == "2 complaints in 30 days"
    contributions = model.contributions(vector)
    assert [c for _, _, c in contributions] == sorted(
        (c for _, _, c in contributions), reverse=True
    )
    calm = tuple({**base, "complaints_30d": 0.0, "logins_30d": 2.5}[n] for n in FEATURES)
    assert "0 complaints in 30 days" not in model.reasons(calm)


def test_engagement_decays_and_counts_recent_issues_exactly():
    e = Engagement()
    for day in (0, 10, 35):
        e = e.observe("complaint", T0 + day * DAY)
    e = e.observe("survey", T0 + 36 * DAY, 3.0)
    at = T0 + 39.5 * DAY
    assert e.issues_within("complaint", at, 30.0) == 2  # days 10 and 35
    assert e.issues_within("support_ticket", at, 30.0) == 0
    assert e.last_survey == 3.0
    expected = 2 ** (-39.5 / 30) + 2 ** (-29.5 / 30) + 2 ** (-4.5 / 30)
    assert abs(e.decayed_count("complaint", at) - expected) < 1e-9
    assert e.days_since("complaint", at) == 4.5 and e.days_since("login", at) is None


def test_engagement_and_snapshots_survive_serialization():
    engine = ScoringEngine(ScoringConfig(), refit=False)
    feed(engine, [purchase("a", 0), interaction("a", 3, "complaint"), purchase("a", 50)])
    state = engine.states["a"]
    assert state.snapshots and state.engagement.issues_within("complaint", T0 + 4 * DAY, 30)
    assert CustomerState.from_bytes(state.to_bytes()) == state


def test_a_model_pickled_with_fewer_features_recomputes_its_coefficients():
    rng = random.Random(5)
    model = ChurnModel(warmup_labels=10)
    for _ in range(100):
        model.learn_one({name: rng.gauss(0, 1) for name in FEATURES}, rng.random() < 0.4)
    vector = tuple(rng.gauss(0, 1) for _ in FEATURES)
    expected = model.model_probability(vector)
    means, scales, weights, intercept = model.coefficients()
    model._coefficients = (means[:20], scales[:20], weights[:20], intercept)  # an old copy
    restored = pickle.loads(pickle.dumps(model))
    assert restored.model_probability(vector) == expected


def test_quality_is_reported_per_model_version_that_served_the_snapshot():
    from dataclasses import replace

    from models.value import PRIOR_PARAMS

    engine = ScoringEngine(ScoringConfig(churn_window_days=WINDOW), refit=False)
    seen = spy_on_labels(engine)
    events = history(days=300)
    cut = T0 + 120 * DAY
    before = [e for e in events if _ts(e["occurred_at"]) < cut]
    outputs = feed(engine, before)
    second = replace(PRIOR_PARAMS, spend=(7.0, 4.0, 15.0), fitted_through="2023-05-01")
    taken_before = {(c, s[0]) for c, state in engine.states.items() for s in state.snapshots}
    taken_before |= {(c, label.taken_at) for _, _, c, label in seen}
    engine.install(second)
    outputs += feed(engine, events[len(before) :])
    outputs += engine.advance_watermark(T0 + 600 * DAY)
    versions = (PRIOR_PARAMS.version, second.version)
    # each label counts for the version that served its snapshot
    served_by = {0: [], 1: []}
    for _, _, customer, label in seen:
        assert label.version_number == (0 if (customer, label.taken_at) in taken_before else 1)
        served_by[label.version_number].append((label.served, label.churned))
    assert min(len(pairs) for pairs in served_by.values()) > 200
    reported = dict(engine.scorer.churn.by_version.all())
    assert set(reported) == set(versions)
    for number, version in enumerate(versions):
        pairs, metrics = served_by[number], reported[version]
        assert metrics["labels"] == len(pairs)
        log_loss = -sum(math.log(p if y else 1 - p) for p, y in pairs) / len(pairs)
        assert metrics["log_loss"] == pytest.approx(log_loss)
        assert metrics["brier"] == pytest.approx(sum((y - p) ** 2 for p, y in pairs) / len(pairs))
        churners = [p for p, y in pairs if y]
        stayers = [p for p, y in pairs if not y]
        wins = sum((c > s) + 0.5 * (c == s) for c in churners for s in stayers)
        assert metrics["auc"] == pytest.approx(wins / (len(churners) * len(stayers)), abs=0.01)
    # and the model-health events carry the same figures, named by version
    events_by_version = defaultdict(list)
    for output in outputs:
        value = output.value
        if output.stream is Stream.MODEL_HEALTH and value["status"] == "version_quality":
            events_by_version[value["model_version"]].append(value)
    assert set(events_by_version) == set(versions)
    for version in versions:
        assert events_by_version[version][-1]["metrics"] == reported[version]
    ids = [v["event_id"] for values in events_by_version.values() for v in values]
    assert len(ids) == len(set(ids))


def test_an_evicted_versions_labels_are_folded_into_older():
    from models.churn_quality import OLDER, QualityByVersion

    quality = QualityByVersion(keep=2)
    quality.name(0, "a")
    for served, churned in [(0.9, True), (0.2, False), (0.4, True)]:
        quality.record(0, served, churned)
    quality.changed()
    quality.name(1, "b")
    quality.name(2, "c")  # "a" is no longer kept
    quality.record(0, 0.1, False)  # a late label of "a"
    reported = dict(quality.changed())
    assert set(reported) == {OLDER}
    assert reported[OLDER]["labels"] == 4.0
    assert reported[OLDER]["log_loss"] == pytest.approx(
        -(math.log(0.9) + math.log(0.8) + math.log(0.4) + math.log(0.9)) / 4
    )
    assert reported[OLDER]["auc"] == pytest.approx(1.0)


def test_a_checkpoint_from_before_quality_per_version_names_the_serving_version():
    from models.checkpoint import checkpoint_bytes, restore_checkpoint

    engine = ScoringEngine(ScoringConfig(churn_window_days=WINDOW), refit=False)
    feed(engine, history(customers=100, days=200))
    churn = engine.scorer.churn
    del churn.__dict__["_by_version"]  # as pickled before this existed
    blob = checkpoint_bytes(engine)
    restored = ScoringEngine(
        ScoringConfig(churn_window_days=WINDOW), refit=False, states=dict(engine.states)
    )
    restore_checkpoint(restored, blob)
    names = restored.scorer.churn.by_version.names
    assert names == {restored.scorer.version_number: restored.scorer.model_version}
