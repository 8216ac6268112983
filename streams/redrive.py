"""`clvstream redrive`: send dead-lettered inputs back to the input topics.

A producer's mistake dead-letters valid events (a record keyed otherwise, on another
type's topic, or on another partition than its key's); so does a setting corrected
since (an exchange rate that was missing: `unsupported_currency`). Once the cause is
fixed, redrive reads the dead letters of the chosen reasons (the service's
dead-letter topic, or the `--dead-letter` file of `clvstream score`) and produces
each raw input again as `clvstream replay` does: to its event type's topic, keyed by
customer id, on the partition the configured partitioner gives it.

Redriving twice is harmless: an input is sent once per run however many dead letters
it has (one repeated after a crash, or one more per redrive that failed again: each
has its own origin and id), and the worker drops an event id it has already applied
(within the de-duplication window). An event dated before its partition's watermark
minus the allowed lateness is dead-lettered again as `late` (the clock does not go
back).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from models.errors import ClvError
from schemas.outputs import DeadLetterReason
from streams.lines import json_lines
from streams.replay import PRODUCER_STOP_SECONDS, input_producer, route
from streams.settings import Settings
from streams.topics import TopicNames

ROUTING_REASONS = (
    DeadLetterReason.KEY_MISMATCH,
    DeadLetterReason.WRONG_TOPIC,
    DeadLetterReason.WRONG_PARTITION,
)
"""Redriven by default: valid events a producer sent to the wrong place."""


@dataclass
class RedriveSummary:
    read: int = 0  # dead letters read
    unreadable: int = 0  # records that are not dead letters (skipped)
    repeated: int = 0  # a selected dead letter of an input seen before: sent once
    produced: int = 0  # taken by the broker
    failed: int = 0  # not taken by the broker (after the producer's retries)
    first_error: str = ""
    by_reason: Counter = field(default_factory=Counter)  # of those produced (or to produce)

    def __str__(self) -> str:
        reasons = ", ".join(f"{reason} {n:,}" for reason, n in sorted(self.by_reason.items()))
        text = (
            f"{self.read:,} dead letters read, {sum(self.by_reason.values()):,} selected "
            f"({reasons or 'none'}), {self.produced:,} produced; {self.repeated:,} repeated "
            f"and {self.unreadable:,} unreadable skipped"
        )
        if self.failed:
            text += f"; {self.failed:,} NOT taken by the broker ({self.first_error})"
        return text

    def delivered(self, delivery: asyncio.Future) -> None:
        """A send's outcome: produced, or failed (which stops the redrive)."""
        if delivery.cancelled() or delivery.exception() is not None:
            self.failed += 1
            error = "cancelled" if delivery.cancelled() else type(delivery.exception()).__name__
            self.first_error = self.first_error or error
        else:
            self.produced += 1


class RedriveError(ClvError):
    """The broker did not take every selected dead letter (the summary says which part)."""


def selected(
    dead_letters: Iterable[bytes], reasons: Iterable[str], summary: RedriveSummary
) -> Iterator[bytes]:
    """The raw inputs of the dead letters with one of `reasons`, each input once: a
    dead letter repeated, or another of the same input (a redriven input that failed
    again has a dead letter of its own, with another origin and id), is not sent again.

    >>> letter = {"event_type": "dead_letter", "event_id": "d1", "reason": "key_mismatch",
    ...           "raw": '{"event_id": "e1"}'}
    >>> other = {**letter, "event_id": "d2", "reason": "malformed_json", "raw": "{"}
    >>> again = {**letter, "event_id": "d3"}  # the same input, dead-lettered again
    >>> values = [orjson.dumps(letter), orjson.dumps(other), orjson.dumps(again), b"[1]"]
    >>> summary = RedriveSummary()
    >>> list(selected(values, ["key_mismatch"], summary))
    [b'{"event_id": "e1"}']
    >>> summary.read, summary.repeated, summary.unreadable, dict(summary.by_reason)
    (3, 1, 1, {'key_mismatch': 1})
    """
    wanted, seen = set(reasons), set()
    for value in dead_letters:
        letter = _dead_letter(value)
        if letter is None:
            summary.unreadable += 1
            continue
        summary.read += 1
        if letter["reason"] not in wanted:
            continue
        raw = letter["raw"].encode()
        digest = hashlib.blake2b(raw, digest_size=16).digest()
        if digest in seen:
            summary.repeated += 1
            continue
        seen.add(digest)
        summary.by_reason[letter["reason"]] += 1
        yield raw


def _dead_letter(value: bytes | None) -> dict | None:
    try:
        letter = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None
    if not isinstance(letter, dict) or letter.get("event_type") != "dead_letter":
        return None
    if not all(isinstance(letter.get(name), str) for name in ("event_id", "reason", "raw")):
        return None
    return letter


def file_dead_letters(path: Path) -> Iterator[bytes]:
    """The dead letters of a `clvstream score --dead-letter` file."""
    with open(path, "rb") as lines:
        for _, _, line in json_lines(lines):
            if line.strip():
                yield line


async def topic_dead_letters(settings: Settings) -> list[bytes]:
    """The dead letters on the service's dead-letter topic, from its start to its end
    as of now."""
    from aiokafka import AIOKafkaConsumer

    from models.emitted import Stream
    from streams.report.sources import read_to_end

    values: list[bytes] = []
    consumer = AIOKafkaConsumer(enable_auto_commit=False, **settings.consumer_options())
    try:
        await consumer.start()  # inside: a consumer that failed to start is closed too
        topic = TopicNames(settings.topic_prefix).output(Stream.DEAD_LETTER)
        await read_to_end(consumer, [topic], lambda _t, _k, value: values.append(value or b""))
    finally:
        await consumer.stop()
    return values


async def redrive(
    settings: Settings,
    reasons: Iterable[str] = ROUTING_REASONS,
    dead_letter_file: Path | None = None,
    dry_run: bool = False,
) -> RedriveSummary:
    """Produce the selected dead letters' raw inputs to the input topics (none with
    `dry_run`: count them only)."""
    summary = RedriveSummary()
    if dead_letter_file is not None:
        dead_letters: Iterable[bytes] = file_dead_letters(dead_letter_file)
    else:
        dead_letters = await topic_dead_letters(settings)
    raws = selected(dead_letters, reasons, summary)
    if dry_run:
        for _ in raws:
            pass
        return summary
    names = TopicNames(settings.topic_prefix)
    producer = input_producer(settings)
    try:
        await producer.start()  # inside: a producer that failed to start is closed too
        for raw in raws:
            if summary.failed:
                break  # the broker is gone or refuses: stop, and say how far it got
            topic, key = route(raw, names)
            delivery = await producer.send(topic, raw, key=key)
            delivery.add_done_callback(summary.delivered)
        await producer.flush()
    finally:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(producer.stop(), PRODUCER_STOP_SECONDS)
    if summary.failed:
        raise RedriveError(f"redrive incomplete: {summary}")
    return summary
