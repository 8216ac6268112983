"""`clvstream report --from-service` against an in-memory consumer: the cut a read
makes while a worker writes, partitions (empty, trimmed by retention), unreadable
records, and the memory a read holds."""

from __future__ import annotations

import asyncio
import tracemalloc
from typing import Any, NamedTuple

import aiokafka
import orjson
import pytest
from aiokafka import TopicPartition

from streams.report.aggregate import ReportBuilder
from streams.report.options import ReportOptions
from streams.report.sources import read_service, read_to_end
from streams.settings import load_settings

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


def change(customer: str, day: int, source: str | None, target: str) -> dict:
    return {
        "event_type": "segment_change",
        "event_id": f"m-{customer}-{day}",
        "customer_id": customer,
        "occurred_at": f"2024-01-{day:02d}T00:00:00+00:00",
        "dimension": "lifecycle",
        "from_segment": source,
        "to_segment": target,
    }


def records(pairs: list[tuple[str, Any]], first_offset: int = 0) -> list[Record]:
    return [
        Record(first_offset + i, key.encode(), v if isinstance(v, bytes) else orjson.dumps(v))
        for i, (key, v) in enumerate(pairs)
    ]


def read(monkeypatch, log: dict, **fake: Any) -> tuple[int, ReportBuilder, FakeConsumer]:
    consumers: list[FakeConsumer] = []

    def consumer(**options: Any) -> FakeConsumer:
        consumers.append(FakeConsumer(log, **fake, **options))
        return consumers[-1]

    monkeypatch.setattr(aiokafka, "AIOKafkaConsumer", consumer)
    settings = load_settings(kafka_url="kafka://127.0.0.1:1", topic_prefix=PREFIX)
    builder = ReportBuilder(ReportOptions())
    count = asyncio.run(read_service(settings, builder, timeout=1))
    return count, builder, consumers[0]


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


def test_partitions_empty_trimmed_and_missing_are_read_to_their_end(monkeypatch):
    log = {
        TopicPartition(SCORES, 0): records([("c1", score("c1", 1)), ("c1", score("c1", 3, 30.0))]),
        TopicPartition(SCORES, 1): [],  # empty
        TopicPartition(SCORES, 2): records([("c2", score("c2", 2, 20.0))], first_offset=500),
        TopicPartition(CHANGES, 0): records([("c1", change("c1", 1, None, "active"))], 40),
        TopicPartition(CHANGES, 1): [],
    }
    count, builder, _ = read(monkeypatch, log)
    report = builder.build()
    assert count == 4
    assert (report.customers, report.equity, report.migration.changes) == (2, 50.0, 1)


UNREADABLE = [
    b"not json",
    b"[1, 2]",
    b'"a string"',
    b"42",
    orjson.dumps({**score("c1", 5), "clv": "lots"}),
    orjson.dumps({**score("c1", 5), "lifecycle": ["active"]}),
    orjson.dumps({k: v for k, v in score("c1", 5).items() if k != "customer_id"}),
    orjson.dumps({k: v for k, v in score("c1", 5).items() if k != "scored_at"}),
]


@pytest.mark.parametrize("value", UNREADABLE)
def test_an_unreadable_latest_score_is_skipped_and_counted(monkeypatch, value):
    """A foreign or malformed record after a customer's last score: the report keeps
    the score before it and counts the record, instead of failing."""
    log = {TopicPartition(SCORES, 0): records([("c1", score("c1", 1, 12.0)), ("c1", value)])}
    count, builder, _ = read(monkeypatch, log)
    report = builder.build()
    assert (count, report.customers, report.equity, report.skipped) == (2, 1, 12.0, 1)


def test_an_unreadable_score_does_not_move_the_reports_times(monkeypatch):
    """A score that fails part-way (no `frequency` for the calibration history) is
    skipped whole: its time does not become the time the scores are as of."""
    late = {k: v for k, v in score("c1", 20).items() if k != "frequency"}
    log = {TopicPartition(SCORES, 0): records([("c1", score("c1", 1)), ("c1", orjson.dumps(late))])}
    _, builder, _ = read(monkeypatch, log)
    report = builder.build()
    assert report.skipped == 1 and report.scores_as_of.day == 1


def test_scores_read_after_an_erasure_and_before(monkeypatch):
    tp = TopicPartition(SCORES, 0)
    log = {
        tp: records([("a", score("a", 1)), ("b", score("b", 1)), ("a", None), ("b", score("b", 2))])
    }
    log[tp][2] = Record(2, b"a", None)  # a tombstone
    _, builder, _ = read(monkeypatch, log)
    assert builder.build().customers == 1


def test_a_read_does_not_hold_each_customers_whole_score(monkeypatch):
    """The current score of a customer is kept as its figures, not as the decoded
    record (about 3 KB each for the service's records)."""
    customers = 4_000
    tp = TopicPartition(SCORES, 0)
    log = {tp: records([(f"c{i:05d}", score(f"c{i:05d}", 1)) for i in range(customers)])}
    tracemalloc.start()
    try:
        _, builder, _ = read(monkeypatch, log)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert builder.build().customers == customers
    assert peak / customers < 1_000
