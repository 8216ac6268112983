"""Partitions sharing one value model: the leader publishes, followers install the
same parameters on the same days and wait rather than run ahead of it."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models import refit_schedule
from models.checkpoint import checkpoint_bytes, restore_checkpoint
from models.config import ScoringConfig
from models.emitted import Stream
from models.engine import ScoringEngine
from models.refit_schedule import RefitSchedule
from models.shared_fits import FollowerSchedule, SharedFits
from models.timeline import SECONDS_PER_DAY, day_of
from tests.factories import BASE, purchase, raw
from tests.unit.test_engine import random_history

CONFIG = ScoringConfig(
    min_customers_for_fit=50, min_fit_history_days=60, min_repeat_customers_for_spend_fit=10
)
T0 = BASE.timestamp()


def origin(line: int) -> dict:
    return {"source": "file", "file": "t.jsonl", "line": line}


def installs(outputs) -> list[tuple[str, str, str]]:
    return [
        (o.value["status"], o.value["model_version"], o.value["occurred_at"])
        for o in outputs
        if o.stream is Stream.MODEL_HEALTH and o.value.get("model") == "value"
    ]


def test_a_follower_installs_the_leaders_fits_on_their_days_and_waits_for_them():
    book = SharedFits(CONFIG.refit_install_delay_days)
    leader = ScoringEngine(CONFIG, shared=book, publish=book.apply, scope="p0")
    follower = ScoringEngine(CONFIG, shared=book, scope="p1")
    history = random_history(400, 300, seed=2)
    leading = [e for e in history if int(e["customer_id"][1:]) % 2 == 0]
    following = [e for e in history if int(e["customer_id"][1:]) % 2 == 1]
    assert follower.waiting_for_fit(T0)  # nothing published yet
    led, followed, held = [], [], 0
    for number, event in enumerate(following, 1):
        at = _time(event)
        while follower.waiting_for_fit(at) and leading:  # the leader goes on meanwhile
            held += 1
            led += leader.process_raw(raw(leading.pop(0)), origin(number))
        followed += follower.process_raw(raw(event), origin(number))
    assert held > 0
    by_leader = [i for i in installs(led) if i[0] == "fitted"]
    by_follower = [i for i in installs(followed) if i[0] == "fitted"]
    assert len(by_follower) >= 2 and by_follower == by_leader[: len(by_follower)]
    assert follower._refits.late_installs == 0


def test_a_restored_follower_does_not_install_a_fit_twice():
    book = SharedFits(30)
    follower = ScoringEngine(CONFIG, shared=book, scope="p1")
    params = follower.scorer.params
    book.apply(("progress", day_of(T0) + 100))
    book.apply(("start", day_of(T0) + 40))
    assert follower.waiting_for_fit(T0 + 45 * SECONDS_PER_DAY)  # its outcome is unknown
    record = ("outcome", day_of(T0) + 40, {**params.as_dict(), "fitted_through": "2024-01-10"},
              None, False)  # fmt: skip
    book.apply(record)
    assert not follower.waiting_for_fit(T0 + 45 * SECONDS_PER_DAY)
    assert follower.waiting_for_fit(T0 + 140 * SECONDS_PER_DAY)  # past what is known
    outputs = []
    for day in (1, 20, 39, 41, 50):
        outputs += follower.process_raw(raw(purchase("a", day)), origin(day))
    assert installs(outputs) == [
        ("fitted", follower.scorer.model_version, "2024-02-10T00:00:00+00:00")
    ]
    twin = ScoringEngine(CONFIG, shared=book, states=dict(follower.states), scope="p1",
                         derive_from_states=False)  # fmt: skip
    restore_checkpoint(twin, checkpoint_bytes(follower))
    later = twin.process_raw(raw(purchase("a", 60)), origin(60))
    assert installs(later) == [] and twin.scorer.model_version == follower.scorer.model_version


def test_the_first_outcome_of_an_install_day_stands():
    book = SharedFits(30)
    assert book.apply(("outcome", 10, None, "first", False))
    assert not book.apply(("outcome", 10, None, "second", False))
    assert not book.apply(("start", 10))  # known already: a repeat changes nothing
    assert book.outcomes[10].error == "first"
    book.apply(("progress", 50))
    assert not book.apply(("progress", 20))  # a restarted leader's older progress
    assert book.known_through == 80


_RECORDS = st.one_of(
    st.tuples(st.just("progress"), st.integers(0, 200)),
    st.tuples(st.just("start"), st.integers(0, 200)),
    st.tuples(st.just("idle"), st.integers(0, 1)),
    st.tuples(st.just("outcome"), st.integers(0, 200), st.none(), st.just("x"), st.booleans()),
)


@given(st.lists(_RECORDS, max_size=30))
def test_blocks_means_past_what_is_known_or_onto_a_refit_still_running(records):
    book = SharedFits(30)
    for record in records:
        book.apply(record)
    known = book.known_through
    for day in range(0, 262):
        behind_leader = (known is None or day > known) and not book.leader_idle
        running = any(outcome is None for at, outcome in book.outcomes.items() if at <= day)
        assert book.blocks(day) == (behind_leader or running), day


def _time(event: dict) -> float:
    from datetime import datetime

    return datetime.fromisoformat(event["occurred_at"]).timestamp()


def test_records_of_another_shape_are_refused_and_change_nothing():
    book = SharedFits(30)
    for record in (("progress",), ("progress", "5"), ("outcome", 5, [1, 2], None, False),
                   ("start", 5, 6), ("later", 5), "progress"):  # fmt: skip
        with pytest.raises(ValueError):
            book.apply(record)
    assert book.version == 0 and book.progress_day is None and not book.outcomes


def leader_schedule(published: list, executor=None) -> RefitSchedule:
    book = SharedFits(CONFIG.refit_install_delay_days)

    def publish(record):
        published.append(record)
        book.apply(record)

    return RefitSchedule(CONFIG, executor, publish=publish, book=book)


def inputs_of(engine: ScoringEngine):
    return lambda: (engine.statistics(engine.current_day), engine.scorer.params)


def test_a_leader_keeps_the_install_day_it_announced_and_publishes_a_fit_once_done():
    engine = ScoringEngine(CONFIG, refit=False)
    for number, event in enumerate(random_history(300, 200, seed=4), 1):
        engine.process_raw(raw(event), origin(number))
    published: list = []
    schedule = leader_schedule(published)
    schedule.step(200, inputs_of(engine))  # the first call only sets the schedule
    schedule.step(215, inputs_of(engine))  # crosses day 210 (a gap): takes effect on 245
    assert ("start", 245) in published
    schedule.step(241, inputs_of(engine))  # crosses 240 before 245: no new refit yet
    assert schedule.pending.install_day == 245 and published.count(("start", 245)) == 1
    assert not any(r[0] == "start" and r[1] != 245 for r in published)
    schedule.poll()  # no executor: fitted now, published before its day
    assert any(r[0] == "outcome" and r[1] == 245 for r in published)
    assert [o.install_day for o in schedule.step(245, inputs_of(engine))] == [245]
    assert sum(1 for r in published if r[0] == "outcome") == 1  # not published twice


def test_a_leader_closes_refits_a_former_run_announced_but_it_will_not_finish():
    published: list = []
    schedule = leader_schedule(published)
    schedule.book.apply(("start", 130))  # from before a restart; this run crosses elsewhere
    schedule.book.apply(("start", 400))  # not due before a refit it could still start
    schedule.step(90, lambda: None)
    schedule.step(101, lambda: None)  # progress 101: 130 <= 101 + 30
    closed = [r for r in published if r[0] == "outcome"]
    assert [(r[1], r[2]) for r in closed] == [(130, None)] and "restarted" in closed[0][3]
    assert not schedule.book.blocks(131) and schedule.book.blocks(400)


def test_a_restored_pending_refit_is_fitted_in_the_executor_again():
    engine = ScoringEngine(CONFIG, refit=False)
    for number, event in enumerate(random_history(300, 200, seed=4), 1):
        engine.process_raw(raw(event), origin(number))
    with ThreadPoolExecutor(1) as executor:
        published: list = []
        schedule = leader_schedule(published, executor)
        schedule.step(200, inputs_of(engine))
        schedule.step(215, inputs_of(engine))
        schedule.pending = replace(schedule.pending, future=None)  # as a checkpoint keeps it
        schedule.resume()
        assert schedule.pending.future is not None
        schedule.pending.future.result()
        schedule.poll()
    assert any(r[0] == "outcome" and r[1] == 245 and r[2] for r in published)


def test_an_idle_leader_lets_the_others_go_on_except_past_a_running_refit():
    book = SharedFits(30)
    book.apply(("progress", 100))
    book.apply(("start", 125))
    assert book.blocks(200)
    book.apply(("idle", 1))
    assert not book.blocks(120) and book.blocks(125)  # its refit still runs
    book.apply(("outcome", 125, None, "too few", True))
    assert not book.blocks(200)
    book.apply(("idle", 0))
    assert book.blocks(200)


def test_a_fit_published_after_a_follower_passed_its_day_is_installed_late_and_counted():
    book = SharedFits(30)
    follower = ScoringEngine(CONFIG, shared=book, scope="p1")
    book.apply(("progress", day_of(T0)))
    book.apply(("idle", 1))  # the leader fell silent: the follower goes on without it
    for day in (0, 50, 80):
        follower.process_raw(raw(purchase("c1", day)), origin(day + 1))
    assert follower.late_fit_installs == 0
    params = follower.scorer.params.as_dict()
    book.apply(("start", day_of(T0) + 40))
    book.apply(("outcome", day_of(T0) + 40, {**params, "fitted_through": "2024-01-10"},
                None, False))  # fmt: skip
    book.apply(("idle", 0))
    outputs = follower.process_raw(raw(purchase("c1", 81)), origin(99))
    assert installs(outputs)  # installed now, on day 81's clock, not on day 40
    assert follower.late_fit_installs == 1


def fed_engine() -> ScoringEngine:
    engine = ScoringEngine(CONFIG, refit=False)
    for number, event in enumerate(random_history(300, 200, seed=4), 1):
        engine.process_raw(raw(event), origin(number))
    return engine


def test_a_leader_whose_fit_process_died_fits_in_process_and_publishes():
    class Broken:
        def submit(self, *args, **kwargs):
            raise BrokenProcessPool("the fit process died")

    engine, published = fed_engine(), []
    schedule = leader_schedule(published, Broken())
    schedule.step(200, inputs_of(engine))
    schedule.step(215, inputs_of(engine))
    schedule.poll()
    assert any(r[0] == "outcome" and r[1] == 245 and r[2] for r in published)


def test_a_published_fit_is_not_fitted_again_while_its_record_travels(monkeypatch):
    engine, published = fed_engine(), []
    book = SharedFits(CONFIG.refit_install_delay_days)  # fed by the topic: not yet
    schedule = RefitSchedule(CONFIG, None, publish=published.append, book=book)
    schedule.step(200, inputs_of(engine))
    schedule.step(215, inputs_of(engine))
    schedule.poll()
    fits: list = []
    real = refit_schedule.fit_value_params
    monkeypatch.setattr(
        refit_schedule, "fit_value_params", lambda *a, **k: fits.append(1) or real(*a, **k)
    )
    book.apply(("start", 230))  # a former run's, read late: closed
    schedule.step(216, inputs_of(engine))
    for _ in range(3):
        schedule.poll()
    assert fits == [] and [r[1] for r in published if r[0] == "outcome"] == [245, 230]


def test_a_restarted_leader_fits_no_refit_the_others_may_have_passed_unannounced():
    """A leader restarted from a checkpoint, its live input merged differently, may
    start a refit its former run never announced, due on a day within what that run
    had published: a follower may be past that day already and never installs it
    (its installs only go forward). The leader must not install it either (closed as
    not fitted, like a refit the former run announced and this one will not finish):
    every partition keeps one version."""
    engine, published = fed_engine(), []
    schedule = leader_schedule(published)
    book = schedule.book
    book.apply(("progress", 230))  # the former run's: followers may reach day 260
    follower = FollowerSchedule(book)
    assert follower.step(250) == []  # a follower on day 250: nothing to install
    schedule.step(200, inputs_of(engine))
    schedule.step(215, inputs_of(engine))  # crosses 210: would take effect on 245
    schedule.poll()
    leader_installs = [o for o in schedule.step(245, inputs_of(engine)) if o.params]
    follower_installs = [o for o in follower.step(251) if o.params]
    assert leader_installs == follower_installs == []
    closed = [r for r in published if r[0] == "outcome" and r[1] == 245]
    assert closed and closed[0][2] is None  # said, so that nobody waits for it
