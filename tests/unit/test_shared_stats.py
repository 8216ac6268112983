"""The followers' value statistics for the leader's refits (`models.shared_stats`): one
value model fitted on every partition's customers, with no partition waiting for
another that waits for it."""

from __future__ import annotations

from datetime import datetime

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from models import shared_stats
from models.checkpoint import checkpoint_bytes, restore_checkpoint
from models.config import ScoringConfig
from models.emitted import Stream
from models.engine import ScoringEngine
from models.shared_fits import SharedFits
from models.shared_stats import FINAL_SLOT, FROM_THE_START, StatsBook, StatsRows
from models.timeline import day_of
from tests.factories import BASE, purchase, raw
from tests.unit.test_engine import random_history

CONFIG = ScoringConfig(
    min_customers_for_fit=50, min_fit_history_days=60, min_repeat_customers_for_spend_fit=10
)
T0 = BASE.timestamp()
DAY0 = day_of(T0)


def origin(line: int) -> dict:
    return {"source": "file", "file": "t.jsonl", "line": line}


def at(event: dict) -> float:
    return datetime.fromisoformat(event["occurred_at"]).timestamp()


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**31) + 1, 2**31 - 1),
            st.integers(-(2**31), 2**31 - 1),
            st.integers(0, 10_000),
            st.floats(allow_nan=False, allow_infinity=False),
        ),
        max_size=60,
    ),
    st.integers(1, 7),
)
def test_statistics_travel_in_chunks_and_arrive_unchanged(table, chunk_rows):
    rows = StatsRows.of(*(zip(*table, strict=True) if table else ([], [], [], [])))
    original = shared_stats.CHUNK_ROWS
    shared_stats.CHUNK_ROWS = chunk_rows
    try:
        records = rows.records(lo=30, hi=90, partition=3)
    finally:
        shared_stats.CHUNK_ROWS = original
    assert len(records) == max(1, -(-len(table) // chunk_rows))
    book = StatsBook()
    for record in reversed(records):  # any order of arrival
        assert book.rows_for(3, 60) is None  # not before its last chunk
        assert book.add(record)
    assert not book.add(records[0])  # a copy changes nothing
    assert book.rows_for(3, 60) == rows and book.rows_for(3, 30) == rows
    assert book.rows_for(3, 91) is None and book.rows_for(2, 60) is None


def test_the_first_snapshot_covering_a_slot_stands_and_pruned_ones_are_named():
    book = StatsBook()
    early, late = StatsRows.of([1], [5], [1], [9.0]), StatsRows.of([1, 2], [5, 8], [1, 0], [9, 0])
    for record in early.records(FROM_THE_START, 60, 1) + late.records(61, None, 1):
        book.add(record)
    assert book.rows_for(1, 30) == early and book.rows_for(1, 90) == late
    assert book.rows_for(1, FINAL_SLOT) == late  # an open snapshot: the final refit's too
    generation = early.records(FROM_THE_START, 60, 1)[0][4]
    assert book.prune(before_slot=90) == [(1, FROM_THE_START, 60, generation, 0)]
    assert book.rows_for(1, 30) is None and book.rows_for(1, 90) == late


def engines(book: SharedFits) -> tuple[ScoringEngine, ScoringEngine, list]:
    published: list = []

    def publish(record):
        published.append(record)
        book.apply(record)

    leader = ScoringEngine(CONFIG, shared=book, publish=publish, scope="p0", partition=0)
    follower = ScoringEngine(CONFIG, shared=book, publish=publish, scope="p1", partition=1)
    return leader, follower, published


def stats_records(published: list) -> list[tuple]:
    return [r for r in published if r[0] == "stats"]


def test_a_follower_publishes_its_statistics_before_the_event_that_reaches_a_slot():
    book = SharedFits(30, partitions=2, interval_days=30)
    _, follower, published = engines(book)
    slot = book.slot_of(DAY0 + 40)  # the first slot after day 0
    follower.process_raw(raw(purchase("a", 0)), origin(1))
    first = stats_records(published)
    assert [(r[1], r[2]) for r in first] == [(FROM_THE_START, book.slot_of(DAY0))]
    assert len(StatsRows.unpacked([first[0][7]])) == 0  # before its first event: nobody
    follower.process_raw(raw(purchase("b", 10)), origin(2))
    follower.process_raw(raw(purchase("a", slot - DAY0 - 5)), origin(3))  # not there yet
    assert len(stats_records(published)) == 1
    # the leader has published nothing yet: the event that reaches the slot is held
    # back, and the statistics go out all the same, as they stand before it
    event = purchase("c", slot - DAY0 + 70)
    assert follower.waiting_for_fit(at(event))
    second = stats_records(published)[1:]
    assert [(r[1], r[2], r[3]) for r in second] == [
        (book.slot_of(DAY0) + 1, book.slot_of(DAY0 + 70 + slot - DAY0), 1)
    ]  # every slot the event passes at once
    rows = StatsRows.unpacked([second[0][7]])
    assert sorted(rows.first.tolist()) == [DAY0, DAY0 + 10]  # a and b, not c
    assert book.missing_stats(slot) == [] and book.missing_stats(slot + 100) == [1]
    follower.waiting_for_fit(at(event))  # asked again: published once
    assert len(stats_records(published)) == 2


def test_a_leader_of_two_partitions_fits_on_both_and_waits_for_the_statistics():
    book = SharedFits(30, partitions=2, interval_days=30)
    leader, follower, _ = engines(book)
    history = random_history(400, 300, seed=2)
    streams = {
        leader: [e for e in history if int(e["customer_id"][1:]) % 2 == 0],
        follower: [e for e in history if int(e["customer_id"][1:]) % 2 == 1],
    }
    # The leader runs ahead: it must wait for its follower's statistics at the install
    # day of its first refit, while the follower catches up (then waits for the leader).
    waited, outputs, number = {leader: 0, follower: 0}, [], 0
    while any(streams.values()):
        moved = False
        for engine in (leader, follower):
            while streams[engine]:
                event = streams[engine][0]
                if engine.waiting_for_fit(at(event)):
                    waited[engine] += 1
                    break
                number += 1
                outputs += engine.process_raw(raw(streams[engine].pop(0)), origin(number))
                moved = True
        assert moved, "the partitions wait for each other"
    assert waited[leader] > 0 and waited[follower] > 0
    fits = [o.value for o in outputs if o.stream is Stream.MODEL_HEALTH
            and o.value.get("model") == "value" and o.value["status"] == "fitted"]  # fmt: skip
    by_scope = {scope: [f["model_version"] for f in fits if f["scope"] == scope]
                for scope in ("p0", "p1")}  # fmt: skip
    assert len(by_scope["p0"]) >= 3 and by_scope["p0"] == by_scope["p1"]
    leaders_customers = {e["customer_id"] for e in history if int(e["customer_id"][1:]) % 2 == 0
                         and e["event_type"] == "transaction"}  # fmt: skip
    assert max(f["metrics"]["customers"] for f in fits) > len(leaders_customers)
    assert not any("without the statistics" in f["detail"] for f in fits)
    assert leader.counters.refits_missing_statistics == 0


def test_a_leader_that_was_not_held_back_fits_on_what_it_has_and_says_so():
    book = SharedFits(30, partitions=3, interval_days=30)
    leader, _, _ = engines(book)
    outputs = []
    for number, event in enumerate(random_history(300, 200, seed=4), 1):
        outputs += leader.process_raw(raw(event), origin(number))  # nobody holds it back
    details = [o.value["detail"] for o in outputs if o.stream is Stream.MODEL_HEALTH
               and o.value.get("model") == "value" and o.value["status"] == "fitted"]  # fmt: skip
    assert details and all("without the statistics of partitions [1, 2]" in d for d in details)
    assert leader.counters.refits_missing_statistics == len(details)  # counted, too


def test_a_finished_follower_covers_every_later_slot_and_the_final_refit():
    book = SharedFits(30, partitions=2, interval_days=30)
    leader, follower, _ = engines(book)
    for day in (0, 20, 45):
        follower.process_raw(raw(purchase("f", day, 10.0)), origin(day))
        leader.process_raw(raw(purchase("l", day, 10.0)), origin(day))
    follower.publish_stats_end()
    assert book.has_final_stats()
    rows = book.stats.rows_for(1, FINAL_SLOT)
    assert rows.first.tolist() == [DAY0] and rows.repeat.tolist() == [2]
    assert book.missing_stats(book.slot_of(DAY0 + 400)) == []


def test_a_restored_follower_does_not_publish_the_slots_it_covered_again():
    book = SharedFits(30, partitions=2, interval_days=30)
    _, follower, published = engines(book)
    for day in (0, 40, 70):
        follower.process_raw(raw(purchase("f", day)), origin(day))
    count = len(stats_records(published))
    twin = ScoringEngine(CONFIG, states=dict(follower.states), shared=book,
                         publish=published.append, scope="p1", partition=1)  # fmt: skip
    restore_checkpoint(twin, checkpoint_bytes(follower))
    twin.process_raw(raw(purchase("f", 75)), origin(75))  # the same slot as day 70
    assert len(stats_records(published)) == count
    twin.process_raw(raw(purchase("f", 95)), origin(95))  # the next slot
    assert len(stats_records(published)) == count + 1


def test_an_outcome_prunes_the_statistics_its_refit_no_longer_needs():
    book = SharedFits(30, partitions=2, interval_days=30)
    rows = StatsRows.of([DAY0], [DAY0], [0], [0.0])
    for lo, hi in (
        (FROM_THE_START, 30 * (DAY0 // 30)),
        (30 * (DAY0 // 30) + 1, 30 * (DAY0 // 30) + 60),
    ):
        for record in rows.records(lo, hi, 1):
            book.apply(record)
    install = 30 * (DAY0 // 30) + 60 + 30  # a refit started on the second snapshot's slot
    book.apply(("start", install))
    book.apply(("outcome", install, None, "too few", True))
    assert [p[:3] for p in book.pruned] == [(1, FROM_THE_START, 30 * (DAY0 // 30))]
    assert book.pruned[0][3] == rows.records(0, 0, 1)[0][4] and book.pruned[0][4] == 0
    assert np.array_equal(book.stats.rows_for(1, install - 30).first, rows.first)


def test_a_restored_leader_does_not_wait_for_statistics_of_a_refit_it_published():
    """Statistics are deleted once a later refit is out; a leader restored from a
    checkpoint taken before it published its pending refit takes the published outcome
    instead of waiting for them."""
    book = SharedFits(30, partitions=2, interval_days=30)
    leader, follower, _ = engines(book)
    for day in range(0, 200, 5):
        follower.process_raw(raw(purchase(f"f{day % 20}", day)), origin(day))
    follower.publish_stats_end()
    blob, states = None, None
    for day in range(0, 200, 5):
        leader.process_raw(raw(purchase(f"l{day % 20}", day)), origin(day))
        pending = leader._refits.pending
        if blob is None and pending is not None and pending.install_day > DAY0 + day + 5:
            blob, states = checkpoint_bytes(leader), dict(leader.states)  # before its outcome
    assert blob is not None and book.outcomes
    twin = ScoringEngine(CONFIG, states=states, shared=book, publish=book.apply, scope="p0",
                         partition=0)  # fmt: skip
    restore_checkpoint(twin, blob)
    pending = twin._refits.pending
    assert book.outcomes.get(pending.install_day) is not None
    book.stats._snapshots.clear()  # the topic's statistics were deleted meanwhile
    assert not twin._refits.awaiting_stats()
    assert not twin.waiting_for_fit(T0 + (pending.install_day - DAY0) * 86_400.0)


def test_a_follower_that_reads_again_after_an_open_snapshot_is_seen_again():
    """An idle follower's open snapshot serves later slots only until the follower
    publishes again: then its newer statistics stand."""
    book = StatsBook()
    idle, again, later = (StatsRows.of([1] * n, [1] * n, [0] * n, [0.0] * n) for n in (1, 2, 3))
    first = StatsRows.of([1], [1], [0], [0.0])
    for record in first.records(FROM_THE_START, 60, 1) + idle.records(61, None, 1):
        book.add(record)
    assert len(book.rows_for(1, 150)) == 1  # the open one, for every later slot
    for record in again.records(61, 120, 1):  # reads again, crosses 90 and 120
        book.add(record)
    assert len(book.rows_for(1, 90)) == 2 and book.rows_for(1, 150) is None
    for record in later.records(121, 150, 1):
        book.add(record)
    assert len(book.rows_for(1, 150)) == 3
    gone = book.prune(before_slot=121)  # the open one was replaced: deleted too
    assert {g[1:3] for g in gone} == {(61, None), (FROM_THE_START, 60), (61, 120)}


def test_an_open_snapshot_stops_where_a_later_one_starts():
    book = StatsBook()
    end, later = StatsRows.of([1], [1], [0], [0.0]), StatsRows.of([1, 2], [1, 2], [0, 0], [0, 0])
    for record in end.records(31, None, 2) + later.records(91, 120, 2):
        book.add(record)
    assert book.rows_for(2, 60) == end and book.rows_for(2, 90) == end
    assert book.rows_for(2, 120) == later and book.rows_for(2, 121) is None


def test_chunks_of_two_copies_of_a_snapshot_never_mix(monkeypatch):
    """A follower restarted from a checkpoint publishes a slot's snapshot again, its
    rows in another order: each copy is assembled from its own chunks, and the first
    complete one stands for every reader."""
    monkeypatch.setattr(shared_stats, "CHUNK_ROWS", 2)
    rows = StatsRows.of([1, 2, 3], [4, 5, 6], [0, 1, 2], [0.0, 5.0, 7.5])
    shuffled = StatsRows.of([3, 1, 2], [6, 4, 5], [2, 0, 1], [7.5, 0.0, 5.0])
    first, second = rows.records(0, 30, 1), shuffled.records(0, 30, 1)
    assert first[0][4] != second[0][4]  # two generations
    book = StatsBook()
    for record in (first[0], second[0], second[1]):  # the first copy lost its last chunk
        book.add(record)
    assert book.rows_for(1, 30) == shuffled
    book.add(first[1])  # arrives late: the second copy completed first and stands
    assert book.rows_for(1, 30) == shuffled


def test_a_follower_past_a_slot_whose_statistics_are_gone_is_not_waited_for():
    book = SharedFits(30, partitions=3, interval_days=30)
    for record in StatsRows.of([1], [1], [0], [0.0]).records(91, 120, 1):
        book.apply(record)  # partition 1 published for slots 91-120 only
    assert book.missing_stats(60) == [2]  # 2 may still come; 1's are gone
    assert book.absent_stats(60) == [1, 2] and book.missing_stats(120) == [2]


def test_a_follower_publishes_on_the_grid_of_the_current_interval():
    book = SharedFits(30, partitions=2, interval_days=7)  # restored after a change
    _, follower, _ = engines(book)
    follower._refits.stats_through = 90  # on the former 30-day grid
    follower._plan_snapshot()
    assert follower._refits.snapshot_day == 91  # 13 * 7, not 90 + 7
