"""The worker's lag and `caught_up` with a stand-in consumer (no broker: the broker path
is covered by the integration tests): a paused or never-fetched input's high watermark
is stale, so `/health` and `/metrics` ask the broker for the end offsets first."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from aiokafka import TopicPartition

from agents.scoring import ScoringService
from streams.settings import load_settings


class StaleConsumer:
    """High watermarks as of the last fetch; the broker's end offsets, when asked."""

    def __init__(self, fetched: dict, ends: dict, answers: bool = True) -> None:
        self.fetched, self.ends, self.answers = fetched, ends, answers
        self.asked: list[list[TopicPartition]] = []

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.fetched.get(tp)

    async def end_offsets(self, tps: list[TopicPartition]) -> dict:
        self.asked.append(tps)
        if not self.answers:
            await asyncio.sleep(3600)  # a broker that does not answer
        return {tp: self.ends[tp] for tp in tps}


def partition(**processed: int) -> SimpleNamespace:
    return SimpleNamespace(
        topics=tuple(processed),
        next_offsets=dict(processed),
        behind=False,
        close=lambda: None,
        counts=dict,
    )


def test_lag_and_caught_up_follow_the_brokers_end_offsets_not_a_stale_fetch():
    a0, b0 = TopicPartition("a", 0), TopicPartition("b", 0)
    consumer = StaleConsumer(fetched={a0: 10}, ends={a0: 25, b0: 7})  # b never fetched

    async def scenario() -> None:
        service = ScoringService(load_settings(topic_prefix="t.", partitions=1, app_id="lag"))
        service.consumer, service.partitions = consumer, {0: partition(a=10, b=0)}
        assert service.lag() == {"a/0": 0} and service.caught_up() is False  # b unknown
        await service.refresh_end_offsets()
        assert sorted(consumer.asked[0]) == [a0, b0]
        assert service.lag() == {"a/0": 15, "b/0": 7} and not service.caught_up()
        service.partitions[0].next_offsets.update(a=25, b=7)
        assert service.lag() == {"a/0": 0, "b/0": 0} and service.caught_up()
        consumer.fetched[a0] = 30  # a later fetch knows more than the last answer
        assert service.lag()["a/0"] == 5 and not service.caught_up()
        consumer.answers = False  # a slow broker: the last answers stay
        await service.refresh_end_offsets(timeout=0.01)
        assert service.lag() == {"a/0": 5, "b/0": 0}
        # the partition goes to another worker, which moves on, and comes back: what
        # was known of its ends then says nothing now
        service._forget({0})
        consumer.fetched.clear()
        service.partitions = {0: partition(a=60, b=7)}
        await service.refresh_end_offsets(timeout=0.01)
        assert service.lag() == {} and not service.caught_up()
        consumer.answers, consumer.ends[a0] = True, 90
        await service.refresh_end_offsets()
        assert service.lag() == {"a/0": 30, "b/0": 0}

    asyncio.run(scenario())


def test_requests_for_the_end_offsets_under_way_share_one_answer_from_the_broker():
    a0 = TopicPartition("a", 0)

    class SlowConsumer(StaleConsumer):
        async def end_offsets(self, tps: list[TopicPartition]) -> dict:
            self.asked.append(tps)
            await asyncio.sleep(0.05)
            return {tp: self.ends[tp] for tp in tps}

    consumer = SlowConsumer(fetched={}, ends={a0: 12})

    async def scenario() -> None:
        service = ScoringService(load_settings(topic_prefix="t.", partitions=1, app_id="lag"))
        service.consumer, service.partitions = consumer, {0: partition(a=2)}
        await asyncio.gather(*(service.refresh_end_offsets() for _ in range(5)))
        assert len(consumer.asked) == 1 and service.lag() == {"a/0": 10}
        consumer.ends[a0] = 20  # a request after that answer asks again
        await service.refresh_end_offsets()
        assert len(consumer.asked) == 2 and service.lag() == {"a/0": 18}

    asyncio.run(scenario())
