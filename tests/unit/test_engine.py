"""The partition engine: watermark lateness, due-time re-scoring, refits, dead letters."""

from __future__ import annotations

import random
from datetime import datetime

import pytest

from models import refit_schedule
from models.config import ScoringConfig
from models.emitted import Stream
from models.engine import ScoringEngine
from models.errors import FitError
from models.timeline import SECONDS_PER_DAY, day_of
from schemas.outputs import DeadLetter
from tests.factories import BASE, customer_event, interaction, purchase, raw

DAY = SECONDS_PER_DAY
T0 = BASE.timestamp()


def origin(line: int) -> dict:
    return {"source": "file", "file": "events.jsonl", "line": line}


def feed(engine, events):
    outputs = []
    for number, event in enumerate(events, 1):
        outputs += engine.process_raw(raw(event), origin(number))
    return outputs


def by_stream(outputs, stream):
    return [o for o in outputs if o.stream is stream]


def test_events_behind_the_watermark_are_dead_lettered_as_late():
    engine = ScoringEngine(ScoringConfig(allowed_lateness_seconds=2 * DAY))
    feed(engine, [purchase("a", 10), purchase("b", 9)])  # within lateness
    outputs = feed(engine, [purchase("c", 7.5)])  # 2.5 days behind the max
    [letter] = by_stream(outputs, Stream.DEAD_LETTER)
    parsed = DeadLetter.model_validate(letter.value)
    assert parsed.reason == "late" and parsed.customer_id == "c"
    assert parsed.origin.line == 1 and '"c"' in parsed.raw
    assert engine.counters.as_dict()["late"] == 1 and "c" not in engine.states


def test_malformed_input_is_dead_lettered_with_its_origin_and_counted():
    engine = ScoringEngine(ScoringConfig())
    outputs = engine.process_raw(b'{"event_type": "transaction"', origin(7))
    [letter] = outputs
    assert letter.value["reason"] == "malformed_json"
    assert letter.value["origin"] == {"source": "file", "file": "events.jsonl", "line": 7}
    assert engine.counters.as_dict()["dead_lettered_by_reason"] == {"malformed_json": 1}
    again = engine.process_raw(b'{"event_type": "transaction"', origin(7))
    assert again[0].value["event_id"] == letter.value["event_id"]


def test_a_silent_customer_is_rescored_when_the_clock_passes_its_due_day():
    config = ScoringConfig(rescore_after_days=(14, 30), allowed_lateness_seconds=0)
    engine = ScoringEngine(config, refit=False)
    feed(engine, [purchase("quiet", 0), purchase("busy", 0)])
    due = engine.states["quiet"].due_day
    assert due == day_of(T0) + 14
    # "busy" keeps the clock moving; "quiet" says nothing.
    before = feed(engine, [interaction("busy", 13.5)])
    assert not [o for o in by_stream(before, Stream.SCORES) if o.key == "quiet"]
    after = feed(engine, [interaction("busy", 14.2)])
    [rescored] = [o for o in by_stream(after, Stream.SCORES) if o.key == "quiet"]
    assert rescored.value["cause"] == "due:2024-01-15"
    assert rescored.value["tenure_days"] == 14
    assert engine.states["quiet"].due_day == day_of(T0) + 30
    later = feed(engine, [interaction("busy", 40)])
    assert [o.value["cause"] for o in by_stream(later, Stream.SCORES) if o.key == "quiet"] == [
        "due:2024-01-31"
    ]
    assert engine.states["quiet"].due_day is None  # schedule exhausted
    assert engine.counters.rescored == 2


def test_advancing_the_watermark_fires_due_rescores_once():
    engine = ScoringEngine(ScoringConfig(rescore_after_days=(7,)), refit=False)
    feed(engine, [purchase(f"c{i}", i) for i in range(5)])
    first = engine.advance_watermark(T0 + 100 * DAY)
    assert len(by_stream(first, Stream.SCORES)) == 5
    assert by_stream(engine.advance_watermark(T0 + 200 * DAY), Stream.SCORES) == []


def test_a_refit_with_too_little_data_is_skipped_and_keeps_the_previous_model():
    engine = ScoringEngine(ScoringConfig(refit_interval_days=30))
    version = engine.scorer.model_version
    outputs = feed(engine, [purchase(f"c{i}", i) for i in range(75)])  # refit day 30, live 60
    [health] = [o for o in by_stream(outputs, Stream.MODEL_HEALTH) if o.value["model"] == "value"]
    assert health.value["status"] == "fit_skipped"
    assert "kept previous" in health.value["detail"] and "needed" in health.value["detail"]
    assert health.value["model_version"] == version == engine.scorer.model_version
    assert (engine.counters.skipped_refits, engine.counters.failed_refits) == (1, 0)


def test_a_failed_refit_keeps_the_previous_model_and_says_so(monkeypatch):
    def no_convergence(*args, **kwargs):
        raise FitError("no convergence within 2000 likelihood evaluations")

    monkeypatch.setattr(refit_schedule, "fit_value_params", no_convergence)
    engine = ScoringEngine(ScoringConfig(refit_interval_days=30))
    version = engine.scorer.model_version
    outputs = feed(engine, [purchase(f"c{i}", i) for i in range(75)])
    [health] = [o for o in by_stream(outputs, Stream.MODEL_HEALTH) if o.value["model"] == "value"]
    assert health.value["status"] == "fit_failed"
    assert (
        health.value["detail"] == "kept previous: no convergence within 2000 likelihood evaluations"
    )
    assert health.value["model_version"] == version == engine.scorer.model_version
    assert (engine.counters.skipped_refits, engine.counters.failed_refits) == (0, 1)


def test_a_failed_final_refit_on_a_failed_refits_day_has_an_event_id_of_its_own(monkeypatch):
    """Both failed on the same day with the same model version kept: one id, so a
    consumer de-duplicating by id dropped the final refit's report."""
    from models import engine_refits

    def no_convergence(*args, **kwargs):
        raise FitError("no convergence within 2000 likelihood evaluations")

    monkeypatch.setattr(refit_schedule, "fit_value_params", no_convergence)
    monkeypatch.setattr(engine_refits, "fit_value_params", no_convergence)
    engine = ScoringEngine(ScoringConfig(refit_interval_days=30))
    outputs = feed(engine, [purchase(f"c{i}", i) for i in range(75)])
    [scheduled] = [
        o for o in by_stream(outputs, Stream.MODEL_HEALTH) if o.value["model"] == "value"
    ]
    day = day_of(datetime.fromisoformat(scheduled.value["occurred_at"]).timestamp())
    final = engine.refit(day)
    assert final.value["status"] == scheduled.value["status"] == "fit_failed"
    assert final.value["occurred_at"] == scheduled.value["occurred_at"]
    assert final.value["event_id"] != scheduled.value["event_id"]


def test_a_processing_error_is_dead_lettered_and_the_engine_goes_on(monkeypatch):
    engine = ScoringEngine(ScoringConfig(), refit=False)

    def broken(*args):
        raise ZeroDivisionError("boom")

    monkeypatch.setattr(engine.scorer.value_model, "score", broken)
    [letter] = feed(engine, [purchase("a", 0)])
    assert letter.value["reason"] == "processing_error" and "boom" in letter.value["detail"]
    monkeypatch.undo()
    assert by_stream(feed(engine, [purchase("b", 1)]), Stream.SCORES)


class UnreadableStates(dict):
    """A state store whose reads fail (a disk store's I/O error)."""

    def get(self, key, default=None):
        raise OSError("IO error: read failed")


def test_a_state_store_that_cannot_read_stops_the_engine_not_the_event():
    """A good event is not dead-lettered as a processing error for the store's fault."""
    engine = ScoringEngine(ScoringConfig(), refit=False, states=UnreadableStates())
    with pytest.raises(OSError, match="read failed"):
        feed(engine, [purchase("a", 0)])
    assert engine.counters.as_dict()["dead_lettered_by_reason"] == {}


def random_history(customers: int, days: int, seed: int = 5) -> list[dict]:
    rng = random.Random(seed)
    events = []
    for number in range(customers):
        start = rng.uniform(0, days / 2)
        # Heterogeneous customers: own purchase rate, own dropout rate, own spend level.
        rate = rng.gammavariate(0.8, 0.06)
        lifetime = rng.expovariate(rng.gammavariate(0.7, 1 / 100))
        spend_level = rng.gammavariate(3, 15)
        t = start
        while t < min(days, start + lifetime):
            events.append(purchase(f"c{number}", t, round(rng.gammavariate(4, spend_level / 4), 2)))
            t += rng.expovariate(rate)
        events.append(interaction(f"c{number}", rng.uniform(start, days)))
    return sorted(events, key=lambda e: e["occurred_at"])


@pytest.mark.parametrize("refit", [False, True])
def test_same_input_same_output(refit):
    config = ScoringConfig(
        min_customers_for_fit=100, min_fit_history_days=60, min_repeat_customers_for_spend_fit=20
    )
    events = random_history(600, 300)

    def outputs():
        engine = ScoringEngine(config, refit=refit)
        return [(o.stream, o.key, o.value) for o in feed(engine, events)]

    first = outputs()
    assert first == outputs()
    if refit:
        statuses = [v["status"] for s, _, v in first if s is Stream.MODEL_HEALTH]
        assert "fitted" in statuses


def test_restoring_states_rebuilds_the_due_timers():
    engine = ScoringEngine(ScoringConfig(rescore_after_days=(7,)), refit=False)
    feed(engine, [purchase("a", 0), purchase("b", 1)])
    restored = ScoringEngine(ScoringConfig(rescore_after_days=(7,)), states=dict(engine.states))
    restored.clock.observe(engine.clock.max_event_time)
    rescored = by_stream(restored.advance_watermark(T0 + 30 * DAY), Stream.SCORES)
    assert sorted(o.key for o in rescored) == ["a", "b"]


def test_deriving_in_steps_gives_what_deriving_at_once_gives():
    config = ScoringConfig(rescore_after_days=(7, 30))
    engine = ScoringEngine(config, refit=False)
    feed(engine, [purchase(f"c{n}", n // 3, 10.0 + n) for n in range(50)])
    assert len(engine.states) == 50

    def restored(in_steps: bool) -> ScoringEngine:
        twin = ScoringEngine(config, states=dict(engine.states), derive_from_states=not in_steps)
        if in_steps:
            assert list(twin.rebuild_in_steps(states_per_step=8)) == [8, 16, 24, 32, 40, 48]
        twin.clock.observe(engine.clock.max_event_time)
        return twin

    at_once, stepped = restored(False), restored(True)
    assert stepped.statistics(40).x.tolist() == at_once.statistics(40).x.tolist()
    outputs = [
        [(o.stream, o.key, o.value) for o in twin.advance_watermark(T0 + 60 * DAY)]
        for twin in (at_once, stepped)
    ]
    assert len(by_stream(at_once.advance_watermark(T0 + 61 * DAY), Stream.SCORES)) == 0
    assert outputs[0] == outputs[1] and len(outputs[0]) > 50  # re-scores of every customer


def test_compacting_the_timer_heap_changes_no_output():
    """Compacting stale timers (done when the heap outgrows the live timers) at any
    moment gives the outputs of never compacting."""
    config = ScoringConfig(rescore_after_days=(2, 7, 20), allowed_lateness_seconds=5 * DAY)
    rng = random.Random(11)
    events = []
    for number in range(300):
        customer, day = f"c{rng.randrange(12)}", rng.uniform(0, 120)
        kind = "erase" if number % 25 == 0 else rng.choice(["buy", "visit"])
        if kind == "erase":
            events.append(customer_event(customer, day, "erasure"))
        elif kind == "buy":
            events.append(purchase(customer, day, rng.uniform(5, 80)))
        else:
            events.append(interaction(customer, day))
    events.sort(key=lambda event: event["occurred_at"])

    def run(compact_every: int | None) -> list:
        engine, outputs = ScoringEngine(config, refit=False), []
        for number, event in enumerate(events, 1):
            outputs += engine.process_raw(raw(event), origin(number))
            if compact_every and number % compact_every == 0:
                engine._compact_timers()
        outputs += engine.advance_watermark(T0 + 300 * DAY)
        return [(o.stream, o.key, o.value) for o in outputs]

    plain = run(None)
    assert sum(1 for stream, _, _ in plain if stream is Stream.SCORES) > 300  # re-scores too
    for every in (1, 3, 17):
        assert run(every) == plain


def _catch_up(engine: ScoringEngine, max_rescores: int | None) -> list:
    """The clock work after a jump, as the worker runs it: pieces until none is due."""
    outputs = []
    while True:
        outputs += engine.on_clock(max_rescores)
        if not engine.clock_work_due():
            return [(o.stream, o.key, o.value) for o in outputs]
        assert max_rescores is not None, "one unbounded call leaves nothing due"


@pytest.mark.parametrize("max_rescores", [1, 7, 50])
def test_a_jump_past_the_churn_window_caught_up_in_pieces_gives_one_calls_outputs(max_rescores):
    """After a gap longer than the churn window, the catch-up re-scores take snapshots
    whose labels are due at once. Pieces used to learn them between pieces (the next
    piece resolved labels first), so their re-scores served another model than one call;
    one call left them due, so the worker learned them before the next event and the
    offline scorer after it."""
    config = ScoringConfig(
        min_customers_for_fit=100, min_fit_history_days=60, min_repeat_customers_for_spend_fit=20
    )
    events = random_history(120, 150, seed=3)

    def run(limit: int | None) -> tuple[list, dict]:
        engine = ScoringEngine(config)
        feed(engine, events)
        engine.advance_clock(T0 + 800 * DAY)
        outputs = _catch_up(engine, limit)
        return outputs, {c: s.to_bytes() for c, s in engine.states.items()}

    one_call, pieces = run(None), run(max_rescores)
    assert sum(1 for s, _, _ in one_call[0] if s is Stream.SCORES) > 200
    assert pieces[0] == one_call[0]
    assert pieces[1] == one_call[1]


def test_a_repeat_in_reach_is_caught_after_an_earlier_dated_event_went_out_of_reach():
    """The dedupe memory forced out an id in reach while keeping one behind the watermark
    (it had arrived after it): the purchase's repeat was counted as a second purchase."""
    config = ScoringConfig(allowed_lateness_seconds=10 * DAY, dedupe_window=2)
    engine = ScoringEngine(config, refit=False)
    first = purchase("a", 20, 30.0, event_id="p1")
    feed(engine, [first, purchase("a", 12, 5.0), purchase("z", 26), purchase("a", 27, 7.0)])
    assert engine.states["a"].purchase_count == 3
    feed(engine, [first])  # a retry, within the lateness
    assert engine.states["a"].purchase_count == 3
    assert engine.counters.duplicates == 1 and engine.counters.dedupe_overflows == 0


@pytest.mark.parametrize("refit", [False, True])
def test_a_catch_up_learns_every_label_a_day_by_day_clock_learns(refit):
    """A silent customer's re-scores in one catch-up take more snapshots than the few
    kept open; the clock labels the oldest before the next is taken, so must a catch-up."""
    config = ScoringConfig(churn_window_days=90, churn_snapshot_interval_days=30)
    events = [purchase(f"c{n}", n * 0.1, 20.0 + n) for n in range(30)]

    def labels(day_by_day: bool) -> int:
        engine = ScoringEngine(config, refit=refit)
        for number, event in enumerate(events, 1):
            engine.process_raw(raw(event), origin(number))
        if day_by_day:
            for day in range(1, 500):
                engine.advance_watermark(T0 + day * DAY)
        engine.advance_watermark(T0 + 500 * DAY)  # past every snapshot's window
        return engine._learning.model.labels

    stepped = labels(day_by_day=True)
    assert stepped > 30 * config.max_snapshots  # more than each customer keeps open
    assert labels(day_by_day=False) == stepped
