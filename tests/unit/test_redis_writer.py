"""The worker's writes to Redis, with a stand-in store (no Redis: the Redis path is
covered by the integration tests): one write at a time, in the background, so scoring
goes on while Redis answers; what arrives meanwhile goes out with the next write of
the same writer; an unreachable Redis keeps the scores (and their latency) for later."""

from __future__ import annotations

import asyncio

from agents.scoring import ScoringService
from streams.settings import load_settings


class GatedStore:
    """Takes its pending scores when a flush starts (as `RedisScoreStore` does), then
    waits for `gate`; answers `ok`."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.ok = True
        self.queued: dict[str, float] = {}
        self.in_flight = 0
        self.flushes: list[list[str]] = []  # the customers of each flush started
        self.written = 0
        self.added = self.written_upto = 0  # scores given, and answered for
        self.lost_writes = False  # (the flush token: covered by the integration tests)

    def forget_token(self) -> None:
        pass

    def add(self, customer_id: str, at: float) -> None:
        self.queued[customer_id] = at
        self.added += 1

    @property
    def pending(self) -> int:
        return len(self.queued) + self.in_flight

    async def flush(self) -> bool:
        batch, self.queued, taken_upto = self.queued, {}, self.added
        self.flushes.append(sorted(batch))
        self.in_flight = len(batch)
        await self.gate.wait()
        self.in_flight = 0
        if not self.ok:
            self.queued = {**batch, **self.queued}
            return False
        self.written += len(batch)
        self.written_upto = taken_upto
        return True


class Scored:
    """A partition's stand-in: the broker timestamps of the inputs it has scored."""

    def __init__(self) -> None:
        self.processed_produced_at: list[float] = []


def service_and_store() -> tuple[ScoringService, GatedStore, Scored]:
    service = ScoringService(load_settings(topic_prefix="t.", partitions=1, app_id="redis-test"))
    store, partition = GatedStore(), Scored()
    service.store, service.partitions = store, {0: partition}
    return service, store, partition


def score(store: GatedStore, partition: Scored, customer_id: str) -> None:
    store.add(customer_id, 1.0)
    partition.processed_produced_at.append(0.0)


def test_one_write_at_a_time_and_what_comes_meanwhile_goes_with_the_next():
    async def scenario() -> None:
        service, store, partition = service_and_store()
        score(store, partition, "a")
        await service._flush_redis()
        await asyncio.sleep(0)  # the writer starts its flush and waits for Redis
        assert store.flushes == [["a"]]
        score(store, partition, "b")
        score(store, partition, "c")
        await service._flush_redis()  # a batch later: the write is still under way
        await asyncio.sleep(0)
        assert store.flushes == [["a"]] and store.pending == 3
        store.gate.set()
        await service._redis_writer
        assert store.flushes == [["a"], ["b", "c"]]  # by the same writer, in order
        assert (store.pending, service.metrics.redis_writes) == (0, 3)
        assert service.metrics.latency.count == 3  # each input once, when written
        assert partition.processed_produced_at == []

    asyncio.run(scenario())


def test_an_unreachable_redis_keeps_the_scores_and_their_latency_for_a_later_write():
    async def scenario() -> None:
        service, store, partition = service_and_store()
        store.ok = False
        store.gate.set()
        score(store, partition, "a")
        await service._flush_redis()
        await service._redis_writer
        assert not service.redis_ok and service.metrics.redis_failed_flushes == 1
        score(store, partition, "b")
        await service._flush_redis()  # within the retry pause: no write
        assert service._redis_writer is None and len(store.flushes) == 1
        store.ok, service._redis_retry_at = True, 0.0  # Redis is back, the pause over
        await service._flush_redis()
        await service._redis_writer
        assert service.redis_ok and store.flushes[-1] == ["a", "b"]
        assert (store.pending, service.metrics.latency.count) == (0, 2)

    asyncio.run(scenario())


def test_a_stop_waits_for_the_write_under_way_then_writes_the_rest():
    async def scenario() -> None:
        service, store, partition = service_and_store()
        score(store, partition, "a")
        await service._flush_redis()
        await asyncio.sleep(0)
        score(store, partition, "b")
        stop = asyncio.create_task(service._last_redis_write())
        await asyncio.sleep(0)
        assert not stop.done()
        store.gate.set()
        await stop
        assert store.flushes == [["a"], ["b"]] and store.pending == 0

    asyncio.run(scenario())
