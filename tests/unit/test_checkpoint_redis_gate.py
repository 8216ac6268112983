"""When a checkpoint may be confirmed, as far as Redis goes (`_redis_covers`), and what
a failed restore on assignment leaves; stand-ins for Redis and the consumer (the real
ones: tests/integration/test_worker.py, test_redis_store.py)."""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition

from agents.scoring import ScoringService
from streams.settings import load_settings


class HungStore:
    """A store whose writes are never answered (Redis hung), or fail at once."""

    def __init__(self, fails: bool = False) -> None:
        self.fails, self.added, self.written_upto, self.failed_flushes = fails, 5, 0, 0
        self.pending, self.written = 1, 0
        self.last_error = ""

    async def flush(self) -> bool:
        if self.fails:
            self.failed_flushes += 1
            return False
        await asyncio.sleep(3600)
        return True


def service_with(store: HungStore, outage_seconds: float = 60.0) -> ScoringService:
    settings = load_settings(
        topic_prefix="t.", partitions=1, app_id="gate", redis_outage_confirm_seconds=outage_seconds
    )
    service = ScoringService(settings)
    service.store = store
    return service


def test_a_checkpoint_waits_for_a_hung_redis_only_until_its_timeout_or_the_stop():
    async def scenario() -> None:
        service = service_with(HungStore())
        started = time.monotonic()
        assert not await service._redis_covers(5, timeout=0.2)
        assert 0.2 <= time.monotonic() - started < 1.0
        service._stop_deadline = time.monotonic() + 0.1  # a stop begins: sooner
        started = time.monotonic()
        assert not await service._redis_covers(5, timeout=30)
        assert time.monotonic() - started < 1.0
        service._redis_writer.cancel()

    asyncio.run(scenario())


def test_a_failing_redis_refuses_at_once_and_a_long_outage_no_longer_holds_checkpoints():
    async def scenario() -> None:
        store = HungStore(fails=True)
        service = service_with(store, outage_seconds=0.3)
        assert not await service._redis_covers(5, timeout=30)  # its write failed
        assert service.redis_ok is False
        started = time.monotonic()
        assert not await service._redis_covers(5, timeout=30)  # no waiting meanwhile
        assert time.monotonic() - started < 0.1
        await asyncio.sleep(0.31)
        assert await service._redis_covers(5) and service.metrics.checkpoints_past_redis == 1
        store.written_upto = 5  # Redis back and caught up: waiting again from now on
        assert await service._redis_covers(5) and service._redis_behind_since is None
        store.added, store.fails = 9, False
        assert not await service._redis_covers(9, timeout=0.05)
        assert service.metrics.checkpoints_past_redis == 1
        service._redis_writer.cancel()

    asyncio.run(scenario())


class Consumer:
    def __init__(self, assigned: set[TopicPartition]) -> None:
        self.assigned, self.paused = assigned, set()

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def pause(self, *tps: TopicPartition) -> None:
        self.paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused -= set(tps)


def test_a_partition_whose_restore_fails_on_assignment_is_paused_and_tried_again():
    """The consumer only logs what its rebalance listener raises: the partition stayed
    assigned, its records were dropped, and nothing tried again."""

    async def scenario() -> None:
        service = service_with(HungStore())
        inputs = service.names.inputs
        service.consumer = Consumer({TopicPartition(t, p) for t in inputs for p in (0, 1)})

        async def restore(partitions, each_on_its_own=False):
            assert each_on_its_own and partitions == {0, 1}
            return {1: TimeoutError("no changelog data within 5 s")}

        service._restore = restore
        await service.acquire({0, 1})  # (restored by the scoring loop, inputs paused)
        assert service.restoring == {0, 1} and len(service.consumer.paused) == 2 * len(inputs)
        await service.restore_assigned()
        assert service._unrestored == {1} and service.restoring == set()
        assert service.consumer.paused == {TopicPartition(t, 1) for t in inputs}
        assert service._replay_at[1] > time.monotonic()  # after a backoff

    asyncio.run(scenario())
