"""Partition 0's value-model records, relayed through the value-fits topic.

With several partitions they share one value model (`models.shared_fits`): the engine
of partition 0 fits it and publishes records (a refit started, its outcome, progress,
idle) into `FitRelay.queue`; the worker holding partition 0 produces them to the
value-fits topic (one partition, compacted by `fit_key`), and every worker reads the
topic back into its `SharedFits` book, where the other partitions find the refits they
wait for. A checkpoint of partition 0 must not cover records the broker has not
acknowledged (`delivered`): a restart from it would never send them again.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from models.engine import ScoringEngine
from models.shared_fits import SharedFits
from streams.settings import Settings

log = logging.getLogger(__name__)


class FitRelay:
    """The value-fits records of one worker: those to produce (partition 0's), and
    those read back (everyone's `book`)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings, self.topic = settings, topic
        self.book = SharedFits(settings.scoring.refit_install_delay_days)
        self.queue: list[tuple] = []  # published by partition 0's engine, to produce
        self.in_flight: list[tuple[tuple, asyncio.Future]] = []
        self._quiet_since: float | None = None
        self._released = False
        self._reader: AIOKafkaConsumer | None = None

    # -- reading ---------------------------------------------------------------------
    async def start(self) -> None:
        """Read the topic from its beginning: every install and outcome is in the book."""
        self._reader = AIOKafkaConsumer(
            enable_auto_commit=False, **self.settings.consumer_options()
        )
        await self._reader.start()
        fits = TopicPartition(self.topic, 0)
        self._reader.assign([fits])
        await self._reader.seek_to_beginning(fits)

    async def stop(self) -> None:
        if self._reader is not None:
            await self._reader.stop()

    async def read(self, should_stop: Callable[[], bool]) -> None:
        """Apply the records as they come (an unreadable one is logged and skipped)."""
        while self._reader is not None and not should_stop():
            batch = await fetch(self._reader, 200, "value-fits")
            for records in (batch or {}).values():
                for record in records:
                    try:
                        self.book.apply(tuple(orjson.loads(record.value)))
                    except Exception as error:  # not ours: skipped, never a crash
                        log.error("unreadable value-fits record %s: %s", record.offset, error)

    # -- partition 0 -----------------------------------------------------------------
    def leader_assigned(self) -> None:
        """Partition 0 is this worker's now: a former owner may have released it."""
        self._quiet_since, self._released = None, False
        self.queue.append(("idle", 0))

    def watch_leader(self, quiet: bool, now: float) -> None:
        """Partition 0 with nothing to read for `leader_idle_release_seconds`: the other
        partitions stop waiting for its refits (`("idle", 1)`) until it reads again."""
        release = self.settings.leader_idle_release_seconds
        if release is None:
            return
        if not quiet:
            self._quiet_since = None
            if self._released:
                self._released = False
                self.queue.append(("idle", 0))
            return
        if self._quiet_since is None:
            self._quiet_since = now
        if now - self._quiet_since >= release and not self._released:
            self._released = True
            self.queue.append(("idle", 1))

    async def publish(self, producer: AIOKafkaProducer, leader: ScoringEngine | None) -> None:
        """Produce what partition 0 published since the last batch (a fit done in the
        executor included)."""
        if leader is not None:
            leader.poll_fits()
        while self.queue:
            record = self.queue[0]  # (the leader's engine appends to this very list)
            value = orjson.dumps(list(record))
            key = fit_key(record, value)
            try:
                delivery = await producer.send(self.topic, value, key, partition=0)
            except Exception as error:  # kept, sent again after the next batch
                log.warning("value-fits record not sent: %s", error)
                return
            self.queue.pop(0)
            self.in_flight.append((record, delivery))

    def delivered(self) -> bool:
        """After a flush: True when every value-fits record is acknowledged; those that
        failed go back to the front of the queue."""
        failed = []
        for record, delivery in self.in_flight:
            if not delivery.done() or delivery.cancelled() or delivery.exception() is not None:
                failed.append(record)
        self.in_flight = []
        if failed:
            log.warning("%d value-fits records not acknowledged: sent again", len(failed))
            self.queue[:0] = failed
        return not self.queue


def fit_key(record: tuple, value: bytes) -> bytes:
    """The value-fits key under compaction: the latest progress and idle state; every
    distinct announcement and outcome (readers keep the first per install day).

    >>> fit_key(("progress", 12), b""), fit_key(("start", 70), b"")
    (b'progress', b'start:70')
    """
    kind = record[0]
    if kind in ("progress", "idle"):
        return kind.encode()
    if kind == "start":
        return f"start:{record[1]}".encode()
    return f"{kind}:{record[1]}:{hashlib.sha1(value).hexdigest()[:16]}".encode()


async def fetch(consumer: AIOKafkaConsumer, timeout_ms: int, what: str) -> dict | None:
    """One `getmany`; on broker trouble: report, back off, and None (go on after)."""
    try:
        return await consumer.getmany(timeout_ms=timeout_ms)
    except Exception as error:
        log.warning("%s fetch failed: %s", what, error)
        await asyncio.sleep(0.5)
        return None
