"""Inputs of the report: an offline run's files, or the live service's output topics.

Both feed a `ReportBuilder`: the current score of every customer, and every output
event with the stream it was emitted on.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from models.errors import ClvError
from streams.lines import json_lines
from streams.report.aggregate import ReportBuilder

if TYPE_CHECKING:
    from aiokafka import AIOKafkaConsumer

    from streams.settings import Settings


def read_scores_csv(path: Path, builder: ReportBuilder) -> int:
    """Current scores from `clvstream score --out`; returns the customers read."""
    count = 0
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:  # BOM or not
            for row in csv.DictReader(handle):
                if not row.get("customer_id"):
                    continue
                builder.add_customer(row)
                count += 1
    except OSError as error:
        raise ClvError(f"cannot read the scores file: {error}") from error
    return count


def read_emitted(path: Path, builder: ReportBuilder) -> int:
    """Events from `clvstream score --emitted` (one `{stream, key, value}` per line);
    returns the lines read (unreadable lines count as skipped in the builder)."""
    count = 0
    try:
        with open(path, "rb") as handle:
            for _, _, line in json_lines(handle):
                if not line.strip():
                    continue
                count += 1
                try:
                    envelope = orjson.loads(line)
                    stream, key, value = envelope["stream"], envelope.get("key"), envelope["value"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    builder.skipped += 1
                    continue
                builder.add_event(stream, value, key)
    except OSError as error:
        raise ClvError(f"cannot read the emitted events: {error}") from error
    return count


# -- the live service ------------------------------------------------------------------

Handler = Callable[[str, bytes | None, bytes | None], None]  # topic, key, value


async def read_service(settings: Settings, builder: ReportBuilder, timeout: float = 10.0) -> int:
    """Read every output topic of the configured broker from its beginning to its
    end as of the start (`read_to_end`); the latest value per key of the compacted
    `scores` topic are the current scores (a null value: the customer was erased).
    Each record is folded as it is read: memory grows with the customers and their
    history, not with the records' size. Returns the records read."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.errors import KafkaError

    from models.emitted import Stream
    from streams.topics import TopicNames

    if not settings.kafka_url:
        raise ClvError("no broker configured: set CLVSTREAM_KAFKA_URL (or kafka_url)")
    names = TopicNames(settings.topic_prefix)
    streams = {names.output(stream): stream.value for stream in Stream}

    def handle(topic: str, key: bytes | None, value: bytes | None) -> None:
        stream = streams[topic]
        customer = key.decode(errors="replace") if key is not None else None
        try:
            event = orjson.loads(value) if value is not None else None
        except orjson.JSONDecodeError:
            builder.skipped += 1
            return
        if stream == "scores":
            builder.add_current_score(event, customer)
        else:
            builder.add_event(stream, event, customer)

    consumer = AIOKafkaConsumer(
        enable_auto_commit=False, auto_offset_reset="earliest", **settings.consumer_options()
    )
    try:
        await consumer.start()
        records = await read_to_end(consumer, list(streams), handle, timeout)
    except KafkaError as error:
        raise ClvError(f"cannot read the output topics at {settings.kafka_url}: {error}") from error
    finally:
        await consumer.stop()
    return records


async def read_to_end(
    consumer: AIOKafkaConsumer, topics: list[str], handle: Handler, timeout: float = 10.0
) -> int:
    """Every record of `topics` (those that exist), from the beginning to the end as of
    now, with an assigned (group-less) consumer; returns the records read.

    The end of each partition is fixed when it is first known, so records written
    while it is read (a running worker) are left out: the read is one cut, and it
    ends even when the writer is faster than the reader. The end is the high watermark
    of the fetch responses (Tansu answers ListOffsets with the wrong end offset)."""
    from aiokafka import TopicPartition

    existing = await consumer.topics()
    partitions = [
        TopicPartition(topic, partition)
        for topic in topics
        if topic in existing
        for partition in sorted(consumer.partitions_for_topic(topic) or ())
    ]
    if not partitions:
        return 0
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    ends: dict[TopicPartition, int] = {}
    open_partitions, records, last_data = set(partitions), 0, time.monotonic()
    while open_partitions:
        batches = await consumer.getmany(*open_partitions, timeout_ms=200)
        for tp in open_partitions:
            highwater = consumer.highwater(tp)
            if tp not in ends and highwater is not None:
                ends[tp] = highwater
        for tp, batch in batches.items():
            for record in batch:
                if record.offset < ends.get(tp, record.offset + 1):
                    handle(tp.topic, record.key, record.value)
                    records += 1
        for tp in list(open_partitions):
            if tp in ends and await consumer.position(tp) >= ends[tp]:
                open_partitions.discard(tp)
                consumer.pause(tp)
        if any(batches.values()):
            last_data = time.monotonic()
        elif time.monotonic() - last_data > timeout:
            stuck = ", ".join(f"{tp.topic}/{tp.partition}" for tp in sorted(open_partitions))
            raise ClvError(f"no data from {stuck} for {timeout:.0f} s before its end")
    return records
