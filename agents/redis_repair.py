"""The worker's side of `agents.redis_loss`: markers raised, checked, scores read back.

A base class of `agents.scoring.ScoringService` (never used alone). It uses the
service's `settings`, `names`, `partitions`, `store`, `metrics`, `redis_backlog`,
`redis_loss`, `markers` and `_stop_deadline`, and the attributes set by
`_init_redis_repair`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from aiokafka import AIOKafkaConsumer, TopicPartition
from redis.exceptions import RedisError

from agents.redis_backlog import give_again, latest_scores
from agents.redis_eviction import EvictionWatch
from agents.redis_loss import ReadBack
from models.emitted import Stream

log = logging.getLogger(__name__)

_RAISE_EVERY_SECONDS = 1.0  # markers move on with every batch: one write a second at most
_FIRST_CHECK_SECONDS = 0.2  # a partition newly held (or lost writes): checked this soon
_GIVEN_AT_ONCE = 5_000  # read-back scores given to the store between two loop turns
_EVICTION_ADVICE = (
    "rows evicted stay missing until the customer's next score; give Redis more memory, "
    "or set maxmemory-policy noeviction (writes refused when full are kept and written later)"
)


class RedisRepair:
    """Markers raised after Redis catches up; checked every `redis_check_seconds`."""

    def _init_redis_repair(self) -> None:
        self._markers_due_at = 0.0  # (monotonic)
        self._read_back_task: asyncio.Task | None = None
        self.redis_eviction = EvictionWatch()
        self._eviction_warned = ""  # the risky policy last warned of

    async def _raise_markers(self) -> None:
        """Redis has answered for every score given so far (called at once, before any
        wait): raise the markers of the partitions whose scores moved on."""
        now = time.monotonic()
        if self.markers is None or now < self._markers_due_at:
            return
        markers = self.redis_loss.to_raise(sorted(self.partitions), self.redis_backlog.since)
        if not markers:
            return
        self._markers_due_at = now + _RAISE_EVERY_SECONDS
        token = (self.store.token_key, self.store.token)
        try:  # (a marker gone or lower than acknowledged is refused: the check finds why)
            refused = await self.markers.raise_to(markers, self.redis_loss.known(), token)
        except (RedisError, OSError) as error:
            log.debug("Redis markers not raised: %s", error)  # (again after the next write)
            return
        if refused is None:  # the flush token behind: Redis lost writes since it
            self.store.forget_token()  # (the same loss: not to be found again by a flush)
            self._redis_lost_writes()
            return
        self.redis_loss.raised({p: m for p, m in markers.items() if p not in refused})

    def _redis_lost_writes(self) -> None:
        """Redis lost writes it had acknowledged after the last flush token it kept (a
        crash losing AOF's last second, a failover to a replica behind), which may be any
        held partition's: each is checked again as if newly held, so it is read back from
        the marker Redis kept (which such a Redis never has ahead of the scores it kept)."""
        self.store.lost_writes = False
        for partition in sorted(self.partitions):
            self.metrics.redis_losses += 1
            self.redis_loss.read_back_failed(partition)
        log.warning(
            "Redis lost writes it had acknowledged (its flush token is behind): "
            "partitions %s read back from their markers",
            sorted(self.partitions),
        )

    async def _watch_redis(self) -> None:
        """Check the markers every `redis_check_seconds` until the service stops; soon
        (`_FIRST_CHECK_SECONDS`) while a held partition is not checked yet."""
        while not self.should_stop:
            interval = self.settings.redis_check_seconds
            if self.markers is not None and any(
                not self.redis_loss.checked(p) for p in self.partitions
            ):
                interval = min(interval, _FIRST_CHECK_SECONDS)
            await asyncio.sleep(interval)
            await self.check_redis()
            await self.check_evictions()

    async def check_evictions(self) -> None:
        """Count the keys Redis evicted since the last look (`agents.redis_eviction`)."""
        if self.store is None:
            return
        watch = self.redis_eviction
        try:
            async with self.store.client.pipeline(transaction=False) as pipe:
                for section in ("server", "stats", "memory"):
                    pipe.info(section)
                info = {k: v for part in await pipe.execute() for k, v in part.items()}
        except (RedisError, OSError):
            return  # unreachable, or INFO not allowed (some hosted Redis): not counted
        evicted = watch.observe(info)
        self.metrics.redis_evicted_keys += evicted
        if evicted:
            log.warning(
                "Redis evicted %d keys at its memory limit (maxmemory-policy %s): %s",
                evicted, watch.policy, _EVICTION_ADVICE,
            )  # fmt: skip
        elif watch.risky_policy and watch.risky_policy != self._eviction_warned:
            self._eviction_warned = watch.risky_policy
            log.warning(
                "Redis may evict customer rows (maxmemory %d, maxmemory-policy %s): %s",
                watch.maxmemory, watch.policy, _EVICTION_ADVICE,
            )  # fmt: skip

    def partitions_reading_back(self) -> list[int]:
        """Held partitions not checked yet, or reading back what Redis may lack."""
        if self.markers is None:
            return []
        return sorted(p for p in self.partitions if not self.redis_loss.settled(p))

    async def check_redis(self) -> None:
        """Read the held partitions' markers; start the read-backs due (one at a time)."""
        task = self._read_back_task
        if self.markers is None or not self.partitions or (task is not None and not task.done()):
            return
        held = sorted(self.partitions)
        known = self.redis_loss.known()
        try:
            read = await self.markers.read(held)
        except (RedisError, OSError):
            return  # unreachable: checked again later (the writes wait meanwhile)
        if self._stop_deadline:
            return  # a stop began meanwhile: no read-back after `_stop_read_back`
        read = {p: marker for p, marker in read.items() if p in self.partitions}
        due = self.redis_loss.check(known, read)
        if any(read_back.lost for read_back in due):
            self.store.forget_token()  # (the same loss: not to be found again by a flush)
        for read_back in due:
            if read_back.lost:
                self.metrics.redis_losses += 1
                log.warning(
                    "partition %d: Redis lost scores it had acknowledged (its marker is %s, "
                    "was %s): read back from the scores topic and written again",
                    read_back.partition, read_back.start, known.get(read_back.partition),
                )  # fmt: skip
        # A partition without a marker gets 0 before its read-back, so that its first raise
        # is refused by a Redis that lost the read-back's writes (as later ones are).
        unmarked = {read_back.partition: 0 for read_back in due if read_back.start is None}
        if unmarked:
            try:
                await self.markers.raise_to(unmarked, {})
            except (RedisError, OSError):
                for read_back in due:
                    self.redis_loss.read_back_failed(read_back.partition)
                return  # (read back at the next check)
            self.redis_loss.raised(unmarked)
        if due and self._stop_deadline:  # (a stop began during the marker write)
            for read_back in due:
                self.redis_loss.read_back_failed(read_back.partition)
        elif due:
            self._read_back_task = asyncio.create_task(self._read_back(due))

    async def _read_back(self, due: list[ReadBack]) -> None:
        reader = AIOKafkaConsumer(
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self.settings.consumer_options(),
        )
        try:
            await reader.start()
        except Exception as error:
            with contextlib.suppress(Exception):
                await reader.stop()  # (its client and connections: left open, one per try)
            log.warning("scores not read back (tried again): %s", error)
            for read_back in due:
                self.redis_loss.read_back_failed(read_back.partition)
            return
        try:
            for read_back in due:
                partition = read_back.partition
                tp = TopicPartition(self.names.output(Stream.SCORES), partition)
                try:
                    latest = await latest_scores(reader, tp, read_back.start)
                    upto = await reader.position(tp)  # the end as read (compacted or not)
                except Exception as error:
                    log.warning("partition %d: scores not read back (tried again): %s",
                                partition, error)  # fmt: skip
                    self.redis_loss.read_back_failed(partition)
                    continue
                if (
                    partition not in self.partitions
                    or partition not in self.redis_loss.reading_back
                ):
                    continue  # given up meanwhile: its next holder reads it back
                items = list(latest.items())
                for start in range(0, len(items), _GIVEN_AT_ONCE):  # the loop let in between
                    self.metrics.redis_read_back += give_again(
                        self.store, items[start : start + _GIVEN_AT_ONCE]
                    )
                    await asyncio.sleep(0)
                if partition in self.partitions and partition in self.redis_loss.reading_back:
                    self.redis_loss.read_back_done(partition, upto)
        finally:
            for read_back in due:  # (cancelled: checked again, if still held)
                if read_back.partition in self.redis_loss.reading_back:
                    self.redis_loss.read_back_failed(read_back.partition)
            await reader.stop()

    async def _stop_read_back(self) -> None:
        task = self._read_back_task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
