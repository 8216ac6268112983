"""The shared value model's records, relayed through the value-fits topic.

With several partitions they share one value model (`models.shared_fits`): the engine
of partition 0 fits it and publishes records (a refit started, its outcome, progress,
idle), and each other partition publishes its value statistics for partition 0's
refits (`models.shared_stats`), into `FitRelay.queue`; the worker holding a partition
produces its records to the value-fits topic (one partition, compacted by `fit_key`),
and every worker reads the topic back into its `SharedFits` book, where partition 0
finds the statistics and the others the refits they wait for. A checkpoint of a
partition must not cover its records the broker has not acknowledged (`undelivered`):
a restart from it would never send them again. Statistics no refit needs any more are
deleted from the topic (tombstones) by the worker holding partition 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.deliveries import refused, unanswered_or_refused
from models.engine import ScoringEngine
from models.shared_fits import SharedFits
from models.shared_stats import stats_key
from streams.settings import Settings

log = logging.getLogger(__name__)


class FitRelay:
    """The value-fits records of one worker: those to produce (its partitions'), and
    those read back (everyone's `book`)."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings, self.topic = settings, topic
        self.book = SharedFits(
            settings.scoring.refit_install_delay_days,
            partitions=settings.partitions,
            interval_days=settings.scoring.refit_interval_days,
        )
        self.queue: list[tuple] = []  # published by this worker's engines, to produce
        self.in_flight: list[tuple[tuple, asyncio.Future]] = []
        self._sending: tuple | None = None  # off the queue, its send under way
        self._requeued = 0  # records put back at the front while it was sent
        self._quiet_since: float | None = None
        self._released = False
        self._followers_quiet_since: dict[int, float] = {}
        self._followers_released: set[int] = set()
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
                    if record.value is None:
                        continue  # a tombstone: statistics no refit needs any more
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

    # -- the followers ---------------------------------------------------------------
    def watch_follower(self, partition: int, quiet: bool, now: float, engine) -> None:
        """A follower with nothing to read for `leader_idle_release_seconds` publishes
        its statistics for every later refit slot (`publish_stats_end`), so that
        partition 0's refits do not wait for it; once per quiet spell."""
        release = self.settings.leader_idle_release_seconds
        if release is None:
            return
        if not quiet:
            self._followers_quiet_since.pop(partition, None)
            self._followers_released.discard(partition)
            return
        since = self._followers_quiet_since.setdefault(partition, now)
        if now - since >= release and partition not in self._followers_released:
            self._followers_released.add(partition)
            engine.publish_stats_end()

    def forget(self, partition: int) -> None:
        """A follower no longer held here (revoked, or to be read again): should it
        come back quiet, it publishes its statistics again after a whole release time.
        Meanwhile another worker may have held it and published statistics that close
        the open ones it published here (it read events): left released, partition 0
        would wait for its statistics for the next refit, and everyone for partition
        0, until it reads again."""
        self._followers_quiet_since.pop(partition, None)
        self._followers_released.discard(partition)

    def queued_by(self, partition: int) -> bool:
        """True while records of `partition` wait to be sent (a send failed)."""
        return any(_partition_of(r) == partition for r in self.queue)

    def sent_by(self, partition: int) -> list[tuple[tuple, asyncio.Future]]:
        """The records of `partition` sent and their deliveries."""
        return [(r, d) for r, d in self.in_flight if _partition_of(r) == partition]

    def settle(self, sent: list[tuple[tuple, asyncio.Future]]) -> bool:
        """Once the deliveries of `sent` are done: forget them, put those that failed
        back at the front of the queue; True when every one was acknowledged."""
        done = {id(d) for _, d in sent}
        self.in_flight = [(r, d) for r, d in self.in_flight if id(d) not in done]
        answered = [(r, refused(d)) for r, d in sent]
        self._requeue(answered, later=[r for r, _ in self.in_flight])
        return not any(failed for _, failed in answered)

    def publishes(self, partition: int) -> bool:
        """True while records of `partition` wait to be produced or acknowledged."""
        return any(_partition_of(r) == partition for r in self.queue) or any(
            _partition_of(r) == partition for r, _ in self.in_flight
        )

    async def publish(self, producer: AIOKafkaProducer, leader: ScoringEngine | None) -> None:
        """Produce what this worker's partitions published since the last batch (a fit
        done in the executor included); the worker holding partition 0 deletes the
        statistics no refit needs any more."""
        if leader is None:
            self.book.pruned.clear()  # (deleted by the worker holding partition 0)
        else:
            leader.poll_fits()
            while self.book.pruned:
                pruned = self.book.pruned.pop()  # (the reader may add more meanwhile)
                try:
                    await producer.send(self.topic, None, stats_key(*pruned), partition=0)
                except Exception as error:  # kept, sent again after the next batch
                    log.warning("value-fits tombstone not sent: %s", error)
                    self.book.pruned.append(pruned)
                    break
        refused_records = [(r, d) for r, d in self.in_flight if d.done() and refused(d)]
        if refused_records:
            # Back to the front of the queue now, not at their partition's next
            # checkpoint: a refused start holds every record behind it, a follower's
            # statistics too, and a partition being replayed from its checkpoint (an
            # output batch refused in the same outage) takes no checkpoint: the leader
            # waited for those statistics and the followers for its refits, for ever.
            self.settle(refused_records)
        while self.queue:
            if self._start_unacknowledged():
                # A follower that reads a progress past a refit's install day before its
                # start never installs it (installs only go forward): nothing goes after
                # a start until the broker has it (a refused one is put back above, then
                # sent first).
                return
            # Taken off before the send, which may wait: a checkpoint writer settling
            # meanwhile puts failed records back at the front (the leader's engine
            # appends to this very list).
            record = self._sending = self.queue.pop(0)
            self._requeued = 0
            value = orjson.dumps(list(record))
            key = fit_key(record, value)
            try:
                delivery = await producer.send(self.topic, value, key, partition=0)
            except Exception as error:  # kept, sent again after the next batch
                log.warning("value-fits record not sent: %s", error)
                self.queue.insert(self._requeued, record)  # after older ones put back
                return
            finally:
                self._sending = None
            self.in_flight.append((record, delivery))

    def _start_unacknowledged(self) -> bool:
        return any(r[0] == "start" and unanswered_or_refused(d) for r, d in self.in_flight)

    def undelivered(self) -> set[int]:
        """After a flush: the partitions with value-fits records not acknowledged (those
        that failed go back to the front of the queue) or not sent yet."""
        answered = [(r, unanswered_or_refused(d)) for r, d in self.in_flight]
        self.in_flight = []
        self._requeue(answered, later=[])
        return {_partition_of(record) for record in self.queue}

    def _requeue(self, answered: list[tuple[tuple, bool]], later: list[tuple]) -> None:
        """Put the records that failed (`answered` in the order sent: record, failed)
        back at the front of the queue, except a progress or idle state superseded by
        one sent or queued after it (`later`: sent after all of them): sent again, it
        would undo the newer one (and stand after compaction)."""
        failed = []
        sending = [self._sending[0]] if self._sending is not None else []
        after = [r[0] for r, _ in answered] + [r[0] for r in later + self.queue] + sending
        for position, (record, did_fail) in enumerate(answered):
            superseded = record[0] in ("progress", "idle") and record[0] in after[position + 1 :]
            if did_fail and not superseded:
                failed.append(record)
        if failed:
            log.warning("%d value-fits records not acknowledged: sent again", len(failed))
            self.queue[:0] = failed
            self._requeued += len(failed)


def _partition_of(record: tuple) -> int:
    """The partition that published a record: a follower's statistics, else 0."""
    return record[3] if record[0] == "stats" else 0


def fit_key(record: tuple, value: bytes) -> bytes:
    """The value-fits key under compaction: the latest progress and idle state; every
    distinct announcement and outcome (readers keep the first per install day).

    >>> fit_key(("progress", 12), b""), fit_key(("start", 70), b"")
    (b'progress', b'start:70')
    >>> fit_key(("stats", 0, 90, 3, "ab12", 1, 2, "..."), b"")
    b'stats:3:0:90:ab12:1'
    """
    kind = record[0]
    if kind == "stats":
        return stats_key(record[3], record[1], record[2], record[4], record[5])
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
