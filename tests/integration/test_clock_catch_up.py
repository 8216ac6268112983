"""Bounded work per poll: a partition whose clock jumps re-scores at most
`max_rescores_per_tick` silent customers per poll, and every due customer in the end.

A jump without events is the live idle clock (`live_clock_idle_seconds`): an idle
partition's clock follows the wall clock, days or years after its last event when it
scored old data. In-process first, no broker: the partition, then the service's poll
(`ScoringService._handle`) with stand-ins for the consumer, the producer and Redis;
last a real worker on the test broker.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime

import orjson
import pytest
from aiokafka import TopicPartition

from agents.partition import PartitionScorer
from agents.scoring import ScoringService
from models.config import ScoringConfig
from models.emitted import Output, Stream
from models.engine import ScoringEngine
from streams.settings import load_settings
from streams.topics import TopicNames
from tests.factories import purchase
from tests.unit.test_engine import random_history

NAMES = TopicNames("t.")
TRANSACTIONS = "t.transactions"
LIMIT = 40
#: The wall clock of the tests: noon, so that stepping it by seconds stays in one day.
NOON = datetime(2026, 3, 2, 12, tzinfo=UTC).timestamp()
CONFIG = ScoringConfig(
    churn_model=False,
    min_customers_for_fit=100,
    min_fit_history_days=60,
    min_repeat_customers_for_spend_fit=20,
)


@pytest.fixture(scope="module")
def history() -> list[bytes]:
    return [orjson.dumps(event) for event in random_history(400, 120, seed=3)]


def fed(
    history: list[bytes], max_rescores: int | None, config: ScoringConfig = CONFIG
) -> PartitionScorer:
    """A partition that has scored `history` (old data: 2024), all inputs idle now."""
    scorer = PartitionScorer(0, NAMES.merge_order, config, max_rescores=max_rescores)
    scorer.add(TRANSACTIONS, [(offset, None, raw, 0.0) for offset, raw in enumerate(history)])
    catch_up_and_drain(scorer)
    assert scorer.buffered() == 0 and not scorer.behind
    return scorer


def catch_up_and_drain(scorer: PartitionScorer) -> list[Output]:
    """Polls until every buffered event is applied and nothing is left due."""
    outputs = scorer.drain(idle=set(NAMES.merge_order))
    while scorer.behind or scorer.buffered():
        outputs += scorer.catch_up()
        outputs += scorer.drain(idle=set(NAMES.merge_order))
    return outputs


def emitted(outputs: list[Output]) -> Counter:
    """The outputs as a multiset (the model-health reports of a day may come first)."""
    return Counter(
        (o.stream, o.key, orjson.dumps(o.value))
        for o in outputs
        if o.stream is not Stream.MODEL_HEALTH
    )


def model_events(outputs: list[Output]) -> list[bytes]:
    return sorted(orjson.dumps(o.value) for o in outputs if o.stream is Stream.MODEL_HEALTH)


def states(engine: ScoringEngine) -> dict[str, bytes]:
    return {customer: state.to_bytes() for customer, state in engine.states.items()}


def test_a_clock_jump_rescores_a_bounded_number_per_poll_and_all_in_the_end(history):
    reference = fed(history, None)
    start = reference.engine.counters.rescored
    expected = reference.follow_wall_clock(NOON)
    total = reference.engine.counters.rescored - start
    assert total > 5 * LIMIT  # everyone is due after two years of silence
    assert any(o.value.get("status") == "fitted" for o in expected if o.value)  # a refit too

    scorer = fed(history, LIMIT)
    counters = scorer.engine.counters
    assert counters.rescored == start
    outputs = scorer.follow_wall_clock(NOON)
    per_poll = [counters.rescored - start]
    assert per_poll[0] == LIMIT and scorer.behind
    assert scorer.follow_wall_clock(NOON + 60) == []  # no further jump while behind
    while scorer.behind:
        before = counters.rescored
        outputs += scorer.catch_up()
        per_poll.append(counters.rescored - before)
    assert max(per_poll) <= LIMIT and len(per_poll) >= total // LIMIT
    assert sum(per_poll) == total
    assert scorer.catch_up() == []
    # What one unbounded advance gives, in pieces: the refit after the last of them.
    assert emitted(outputs) == emitted(expected)
    assert model_events(outputs) == model_events(expected)
    assert states(scorer.engine) == states(reference.engine)
    assert scorer.engine.scorer.model_version == reference.engine.scorer.model_version


def test_with_churn_learning_too_every_due_customer_is_rescored_as_of_the_same_days(history):
    """Labels of the snapshots re-scored in one poll are learned at the next, so the
    churn probabilities differ a little from one unbounded advance; who is re-scored,
    and as of which day, does not."""
    learning = CONFIG.model_copy(update={"churn_model": True})
    reference = fed(history, None, learning)
    expected = reference.follow_wall_clock(NOON)
    scorer = fed(history, LIMIT, learning)
    counters = scorer.engine.counters
    before = counters.rescored
    outputs = scorer.follow_wall_clock(NOON)
    per_poll = [counters.rescored - before]
    while scorer.behind:
        before = counters.rescored
        outputs += scorer.catch_up()
        per_poll.append(counters.rescored - before)
    assert max(per_poll) == LIMIT and len(per_poll) > 5
    assert rescored(outputs) == rescored(expected)
    assert set(scorer.engine.states) == set(reference.engine.states)


def rescored(outputs: list[Output]) -> Counter:
    """Who was re-scored as of when, and why (the due day)."""
    return Counter(
        (o.key, o.value["scored_at"], o.value["cause"])
        for o in outputs
        if o.stream is Stream.SCORES and o.value is not None
    )


def test_events_wait_until_the_customers_due_before_them_are_rescored(history):
    late_comer = [orjson.dumps(purchase("c1", 800.5, 30.0))]  # 2026-03-11, after the jump
    reference = fed(history, None)
    reference.follow_wall_clock(NOON)
    reference.add(TRANSACTIONS, [(len(history), None, late_comer[0], 0.0)])
    expected = reference.drain(idle=set(NAMES.merge_order))

    scorer = fed(history, LIMIT)
    scorer.follow_wall_clock(NOON)
    scorer.add(TRANSACTIONS, [(len(history), None, late_comer[0], 0.0)])
    assert scorer.drain(idle=set(NAMES.merge_order)) == []  # held back: still behind
    assert scorer.buffered() == 1
    while scorer.behind:
        scorer.catch_up()
    outputs = scorer.drain(idle=set(NAMES.merge_order))
    assert scorer.buffered() == 0 and scorer.next_offsets[TRANSACTIONS] == len(history) + 1
    assert [(o.stream, o.key, o.value) for o in outputs] == [
        (o.stream, o.key, o.value) for o in expected
    ]
    assert states(scorer.engine) == states(reference.engine)


def test_a_jump_made_by_an_event_is_bounded_too_and_events_after_it_wait(history):
    """The first event after a gap in the data makes everyone due at once: the event is
    applied, then the re-scores run in bounded pieces before the next event."""
    after_gap = [purchase("c1", 800.5, 30.0), purchase("c2", 800.6, 10.0)]
    raws = [(len(history) + i, None, orjson.dumps(e), 0.0) for i, e in enumerate(after_gap)]
    reference = fed(history, None)
    reference.add(TRANSACTIONS, raws)
    start = reference.engine.counters.rescored
    expected = reference.drain(idle=set(NAMES.merge_order))
    assert reference.engine.counters.rescored - start > 5 * LIMIT

    scorer = fed(history, LIMIT)
    scorer.add(TRANSACTIONS, raws)
    counters = scorer.engine.counters
    outputs = scorer.drain(idle=set(NAMES.merge_order))
    assert counters.rescored - start == LIMIT and scorer.behind
    assert scorer.buffered() == 1  # the second event waits
    per_poll = []
    while scorer.behind or scorer.buffered():
        before = counters.rescored
        outputs += scorer.catch_up() + scorer.drain(idle=set(NAMES.merge_order))
        per_poll.append(counters.rescored - before)
    assert max(per_poll) <= LIMIT
    assert emitted(outputs) == emitted(expected)
    assert model_events(outputs) == model_events(expected)
    assert states(scorer.engine) == states(reference.engine)


class _Consumer:
    """Nothing more to fetch on any input: every partition is idle."""

    def __init__(self) -> None:
        self.paused: set[TopicPartition] = set()
        self.was_paused = False

    def highwater(self, tp) -> int:
        return 0

    def last_poll_timestamp(self, tp) -> None:
        return None  # (the worker takes its own clock's now)

    def pause(self, *tps: TopicPartition) -> None:
        self.paused.update(tps)
        self.was_paused = True

    def resume(self, *tps: TopicPartition) -> None:
        self.paused.difference_update(tps)


class _Clock:
    """The wall clock of `agents.scoring`, one second further at each poll."""

    def __init__(self, now: float) -> None:
        self.now = now

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return time.monotonic()


def test_the_service_catches_up_at_the_following_polls_without_new_events(history, monkeypatch):
    """The live idle clock: no input arrives, yet the polls go on re-scoring."""
    clock = _Clock(NOON)
    monkeypatch.setattr("agents.scoring.time", clock)
    settings = load_settings(
        topic_prefix="t.", max_rescores_per_tick=LIMIT, live_clock_idle_seconds=2,
        scoring=CONFIG.model_dump(),
    )  # fmt: skip

    async def polls() -> tuple[list[int], list[Output], ScoringService]:
        service = ScoringService(settings)
        service.consumer = _Consumer()
        sent: list[Output] = []

        async def emit(partition: int, outputs: list[Output]) -> None:
            sent.extend(outputs)

        async def flush_redis() -> None:
            pass

        service._emit, service._flush_redis = emit, flush_redis
        scorer = fed(history, settings.max_rescores_per_tick)
        service.partitions[0] = scorer
        counters, per_poll = scorer.engine.counters, []
        for _ in range(500):
            before = counters.rescored
            await service._handle({})  # a poll that fetched nothing
            per_poll.append(counters.rescored - before)
            assert service.caught_up() == (not scorer.behind)
            # Fetching waits while the partition catches up (its inputs stay in the broker).
            paused = {tp.partition for tp in service.consumer.paused}
            assert paused == ({0} if scorer.behind else set())
            if per_poll[-1] == 0 and sum(per_poll) and not scorer.behind:
                break
            clock.now += 1.0
        return per_poll, sent, service

    per_poll, sent, service = asyncio.run(polls())
    scorer = service.partitions[0]
    assert scorer.max_rescores == LIMIT and not scorer.behind
    reference = fed(history, None)
    start = reference.engine.counters.rescored
    lateness = CONFIG.allowed_lateness_seconds
    expected = reference.follow_wall_clock(scorer.engine.clock.watermark + lateness)
    assert per_poll[:2] == [0, 0]  # idle for 2 s before the clock follows the wall clock
    assert max(per_poll) == LIMIT
    assert sum(per_poll) == reference.engine.counters.rescored - start
    assert sum(1 for n in per_poll if n) > 5  # spread over many polls
    assert emitted(sent) == emitted(expected)
    assert states(scorer.engine) == states(reference.engine)
    assert service.status()["catching_up"] == []
    assert service.consumer.was_paused and not service.consumer.paused


def test_a_live_worker_rescores_everyone_due_after_old_data_in_bounded_polls(
    kafka_url, redis_url, tmp_path
):
    """The real worker: old data (2024) replayed, then no events. Each partition's clock
    follows the wall clock, years ahead; the partitions catch up poll by poll (their
    fetching paused meanwhile) and every silent customer ends re-scored as of the
    same day as one unbounded advance would."""
    from models.timeline import day_of
    from streams.partitioned import Job, Replay, Sinks
    from tests.integration.worker_harness import (
        fresh_settings,
        metric,
        redis_scores,
        replay,
        simulated_file,
        wait_until_scored,
        worker,
    )

    settings = fresh_settings(kafka_url, redis_url, partitions=2).model_copy(
        update={"live_clock_idle_seconds": 1.0, "max_rescores_per_tick": 20}
    )
    events = simulated_file(tmp_path, 300, 200, seed=6)
    sent = replay(events, settings)
    lateness = settings.scoring.allowed_lateness_seconds
    started = time.time()
    process = worker(settings, tmp_path)
    try:
        seen_catching_up, deadline = False, time.monotonic() + 120
        while True:
            health = process.get("/health")[1]
            seen_catching_up |= bool(health["catching_up"])
            done = not health["catching_up"] and not health["waiting_for_fits"]
            if seen_catching_up and done and health["caught_up"]:
                break
            assert time.monotonic() < deadline, health
            time.sleep(0.1)
        wait_until_scored([process], sent)
        served = redis_scores(settings)
        rescored = metric(process, "clvstream_rescored_total")
    finally:
        assert process.stop() == 0
    now = time.time()
    if day_of(started - lateness) != day_of(now - lateness):
        pytest.skip("the wall clock passed midnight (UTC) during the test")

    job = Job(events, 2, (0, 1), settings.scoring, None, None, final_refit=False)
    offline = Replay(job, Sinks(None, None, tagged=False))
    offline.run(lambda done, read: None)
    expected_rescored = 0
    last: dict[str, str] = {}
    for engine in offline.engines.values():
        for output in engine.advance_watermark(now - lateness):
            if output.stream is Stream.SCORES and output.value is not None:
                last[output.key] = output.value["scored_at"]
        expected_rescored += engine.counters.rescored
    assert rescored == expected_rescored > 20 * 20
    assert len(last) > 200  # nearly everyone was due at some point of the two years
    missed = [c for c, at in last.items() if served[c]["scored_at"] != at]
    assert not missed, f"{len(missed)} customers not re-scored as of their due day"
