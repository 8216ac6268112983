"""`clvstream report --from-service` against an in-memory consumer: the cut a read
makes while a worker writes."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import orjson
from aiokafka import TopicPartition

from streams.report.sources import read_to_end

PREFIX = "t."
SCORES, CHANGES = PREFIX + "scores", PREFIX + "segment-changes"


class Record(NamedTuple):
    offset: int
    key: bytes | None
    value: bytes | None


class FakeConsumer:
    """The part of `AIOKafkaConsumer` the readers use, over in-memory partitions.
    A fetch returns up to `batch` records of each partition and reports its current
    end; `writer` runs after every fetch (a worker writing on)."""

    def __init__(
        self,
        log: dict[TopicPartition, list[Record]],
        batch: int = 100,
        writer: Any = None,
        **_options: Any,
    ) -> None:
        self.log, self.batch, self.writer = log, batch, writer
        self.positions: dict[TopicPartition, int] = {}
        self.highwaters: dict[TopicPartition, int] = {}
        self.fetches = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def topics(self) -> set[str]:
        return {tp.topic for tp in self.log}

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {tp.partition for tp in self.log if tp.topic == topic}

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.positions = dict.fromkeys(partitions, 0)

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        for tp in partitions:  # the log start: records before it were deleted
            self.positions[tp] = self.log[tp][0].offset if self.log[tp] else self.end(tp)

    def end(self, tp: TopicPartition) -> int:
        return self.log[tp][-1].offset + 1 if self.log[tp] else getattr(self, "empty_end", 0)

    async def getmany(self, *partitions: TopicPartition, timeout_ms: int) -> dict:
        self.fetches += 1
        if self.fetches > 1_000:
            raise AssertionError("still reading after 1,000 fetches")
        result = {}
        for tp in partitions:
            position = self.positions[tp]
            batch = [r for r in self.log[tp] if r.offset >= position][: self.batch]
            self.highwaters[tp] = self.end(tp)
            if batch:
                result[tp] = batch
                self.positions[tp] = batch[-1].offset + 1
        if self.writer:
            self.writer(self.log)
        return result

    def highwater(self, tp: TopicPartition) -> int | None:
        return self.highwaters.get(tp)

    async def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def pause(self, tp: TopicPartition) -> None: ...


def score(customer: str, day: int, clv: float = 10.0, lifecycle: str = "active") -> dict:
    return {
        "event_type": "score",
        "event_id": f"s-{customer}-{day}",
        "customer_id": customer,
        "scored_at": f"2024-01-{day:02d}T00:00:00+00:00",
        "frequency": day,
        "churn_probability": 0.5,
        "clv": clv,
        "lifecycle": lifecycle,
        "value_tier": "rest",
        "churn_reasons": ["recency", "frequency_drop"],
        "top_needs": ["boots", "socks", "jackets"],
        "model_version": "v12",
        "currency": "USD",
        "cause": f"t-{customer}-{day}-{'x' * 30}",
    }


def records(pairs: list[tuple[str, Any]], first_offset: int = 0) -> list[Record]:
    return [
        Record(first_offset + i, key.encode(), v if isinstance(v, bytes) else orjson.dumps(v))
        for i, (key, v) in enumerate(pairs)
    ]


def test_a_read_ends_at_the_end_it_started_with_while_a_worker_writes_on():
    """A writer faster than the reader: the read still ends, and leaves out what was
    written after it started."""
    tp = TopicPartition(SCORES, 0)
    log = {tp: records([(f"c{i}", score(f"c{i}", 1)) for i in range(10)])}

    def writer(log: dict) -> None:
        n = len(log[tp])
        log[tp].extend(records([(f"late{n}", score(f"late{n}", 2)), ("x", b"{}")], n))

    seen: list[bytes | None] = []
    consumer = FakeConsumer(log, batch=1, writer=writer)
    count = asyncio.run(read_to_end(consumer, [SCORES], lambda _t, _k, v: seen.append(v)))
    assert count == len(seen) == 10
    assert all(b"late" not in (value or b"") for value in seen)
