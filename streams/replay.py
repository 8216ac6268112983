"""`clvstream replay`: produce an events file to the input topics, keyed by customer.

Each line goes to the topic of its `event_type` (transactions, interactions,
customer-events), keyed by `customer_id` so one customer's events stay in order on
one partition. Lines that are not JSON objects are produced as they are (to
transactions, unkeyed): the worker dead-letters them, as it would in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from models.errors import ClvError
from streams.lines import json_lines
from streams.progress import Progress
from streams.settings import Settings
from streams.topics import Partitioner, TopicNames, partition_of, routing_fields

_RATE_SLICE_SECONDS = 0.2  # a paced replay asked to stop notices within this
PRODUCER_STOP_SECONDS = 10.0  # the producer's stop at most (with its broker gone it keeps trying)


class ReplayError(ClvError):
    """The broker did not take every event (its summary says how far it got)."""


@dataclass
class ReplaySummary:
    events: int = 0  # handed to the producer
    failed: int = 0  # the broker did not take them (after the producer's retries)
    too_large: int = 0  # lines over the producer's request limit, skipped
    unreadable: int = 0  # lines that are not JSON objects with a customer id (in `events`)
    stopped: bool = False  # asked to stop before the end of the file
    first_error: str = ""
    seconds: float = 0.0
    by_topic: dict[str, int] = field(default_factory=dict)
    first_produced_at: float | None = None  # wall clock, for end-to-end benchmarks

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def __str__(self) -> str:
        topics = ", ".join(f"{topic} {n:,}" for topic, n in sorted(self.by_topic.items()))
        text = f"{self.events:,} events in {self.seconds:.1f} s ({self.rate:,.0f}/s): {topics}"
        if self.unreadable:
            text += (
                f"; {self.unreadable:,} of them not JSON objects with a customer id "
                "(sent as they are, for the worker to dead-letter)"
            )
        if self.stopped:
            text += "; stopped before the end of the file"
        if self.too_large:
            text += f"; {self.too_large:,} lines too large for the broker skipped"
        if self.failed:
            text += f"; {self.failed:,} NOT taken by the broker ({self.first_error})"
        return text

    def delivered(self, delivery: asyncio.Future) -> None:
        """A send's outcome: a failed one is counted (and stops the replay)."""
        if delivery.cancelled() or delivery.exception() is None:
            return
        self.failed += 1
        self.first_error = self.first_error or f"{type(delivery.exception()).__name__}"


def route(line: bytes, names: TopicNames) -> tuple[str, bytes | None]:
    """The topic and key of one input line.

    >>> route(b'{"event_type": "interaction", "customer_id": "c1"}', TopicNames("clv."))
    ('clv.interactions', b'c1')
    >>> route(b'not json', TopicNames("clv."))
    ('clv.transactions', None)
    """
    event_type, customer_id = routing_fields(line)
    key = customer_id.encode() if customer_id is not None else None
    return names.for_event_type(event_type), key


class KeyPartitioner:
    """An aiokafka partitioner: a keyed record goes where `partitioner` puts its key, as
    the service's other producers do (`Settings.input_partitioner`); an unkeyed one to
    a random partition.

    >>> KeyPartitioner("crc32")(b"c1", [0, 1, 2, 3], [0, 1, 2, 3])
    1
    """

    def __init__(self, partitioner: Partitioner) -> None:
        self.partitioner = partitioner

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        index = partition_of(key.decode("utf-8", "replace"), len(all_partitions), self.partitioner)
        return sorted(all_partitions)[index]


def input_producer(settings: Settings) -> AIOKafkaProducer:
    """A producer to the input topics that places records as the service's producers
    do (`KeyPartitioner`), tuned for sending many."""
    return AIOKafkaProducer(
        acks=1,
        linger_ms=20,
        max_batch_size=512 * 1024,
        partitioner=KeyPartitioner(settings.partitioner),
        **settings.client_options(),
    )


async def replay_file(
    path: Path,
    settings: Settings,
    *,
    rate: float | None = None,
    show_progress: bool = True,
    summary: ReplaySummary | None = None,
    should_stop: Callable[[], bool] = lambda: False,
) -> ReplaySummary:
    """Produce every line of `path` (as fast as possible, or `rate` events/s), counted
    in `summary` (a new one if not given: a caller in another thread may watch it),
    until the end of the file or `should_stop()`."""
    names = TopicNames(settings.topic_prefix)
    producer = input_producer(settings)
    summary = summary if summary is not None else ReplaySummary()
    progress = Progress(os.path.getsize(path), "replaying") if show_progress else None
    started = time.perf_counter()
    done_bytes = 0
    try:
        await producer.start()  # inside: a producer that failed to start is closed too
        with open(path, "rb") as lines:
            for _, done_bytes, raw in json_lines(lines):
                if not raw.strip():
                    continue
                topic, key = route(raw, names)
                if summary.first_produced_at is None:
                    summary.first_produced_at = time.time()
                if summary.failed:
                    break  # the broker is gone or refuses: stop, and say how far it got
                if should_stop():
                    summary.stopped = True
                    break
                try:
                    delivery = await producer.send(topic, raw, key=key)
                except MessageSizeTooLargeError:
                    summary.too_large += 1
                    continue
                delivery.add_done_callback(summary.delivered)
                summary.events += 1
                summary.unreadable += key is None
                summary.by_topic[topic] = summary.by_topic.get(topic, 0) + 1
                if rate is not None:
                    ahead = summary.events / rate - (time.perf_counter() - started)
                    while ahead > 0.001 and not should_stop():  # (a slow rate: in slices)
                        await asyncio.sleep(min(ahead, _RATE_SLICE_SECONDS))
                        ahead = summary.events / rate - (time.perf_counter() - started)
                if progress is not None and summary.events % 2048 == 0:
                    progress.update(done_bytes, summary.events)
        await producer.flush()
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(producer.stop(), PRODUCER_STOP_SECONDS)
    summary.seconds = time.perf_counter() - started
    if progress is not None:
        progress.close(done_bytes, summary.events)
    if summary.failed:
        raise ReplayError(f"replay incomplete: {summary}")
    return summary
