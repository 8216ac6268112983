"""The partitions a worker holds: restored on assignment, checkpointed, handed back.

A base class of `agents.scoring.ScoringService` (never used alone). Every
`checkpoint_interval_seconds`, on a rebalance and on stop, a partition writes the
customer states that changed to its changelog partition, then a checkpoint record
(models, clock, input offsets), waits for the broker's acknowledgement and commits
the offsets; the periodic checkpoint of a partition is written in the background,
one at a time, while scoring goes on (its states and offsets are taken when it
starts). A partition assigned to this worker is folded from its changelog
(`agents.changelog`) and reads its inputs again from the checkpoint's offsets.

It uses the service's `settings`, `names`, `producer`, `consumer`, `fits`,
`fit_executor`, `metrics`, `partitions`, `store` (Redis; a checkpoint is confirmed
only once Redis has the scores it covers, `_redis_covers`) and the bookkeeping dicts
set in its `__init__`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.changelog import Restored, read_changelog
from agents.deliveries import refused
from agents.disk_states import DiskStates, worker_store_dir
from agents.partition import (
    CHECKPOINT_KEY,
    FENCE_PREFIX,
    OWNER_HEADER,
    Checkpoint,
    PartitionScorer,
)
from models.config import ScoringConfig
from streams.settings import Settings
from streams.topics import partition_of

log = logging.getLogger(__name__)

_FIT_RECORDS_RETRY_SECONDS = 0.2  # a checkpoint, while its value-fits records are out
_REPLAY_BACKOFF_CAP_SECONDS = 60.0  # between replays of a partition whose outputs fail
_COMMIT_SECONDS = 5.0  # an offset commit after a checkpoint (monitoring only) at most
_FENCE_SECONDS = 5.0  # a restore's fence (`_fence`): queued, then acknowledged, at most


class PartitionOwnership:
    """The checkpoint and rebalance half of the scoring service."""

    async def _checkpoint(self, partitions: set[int]) -> None:
        """Checkpoint `partitions` now and wait until it is written (after the one
        under way in the background, if any)."""
        await self._checkpoint_written()
        producer = self.producer
        fits = self.fits
        if fits is not None:
            await self._publish_fits()
        await producer.flush()  # outputs first: a checkpoint never covers unsent outputs
        if fits is not None:
            # A checkpoint must not cover value-fits records (partition 0's refits, a
            # follower's statistics) the others never got: such a partition is
            # checkpointed once they are out (a restart would not send them again).
            for partition in fits.undelivered() & partitions:
                partitions = partitions - {partition}
                self._retry_soon(partition)
        taken = [self._take(p) for p in sorted(partitions) if p in self.partitions]
        # (a rebalance or a stop waits for Redis briefly: the group waits meanwhile)
        await self._write_checkpoints(taken, redis_upto=self._scores_given(), redis_wait=2.0)

    def _retry_soon(self, partition: int) -> None:
        """A checkpoint not confirmed (its value-fits or state records not all
        acknowledged, a record left out): due again shortly."""
        if partition in self._checkpointed_at:
            retry_at = time.monotonic() + _FIT_RECORDS_RETRY_SECONDS
            self._checkpointed_at[partition] = retry_at - self._checkpoint_every

    async def _checkpoint_in_background(self, partition: int) -> None:
        """Checkpoint `partition` as of now and go on scoring while it is written: the
        states and offsets are taken now; the checkpoint record goes out once every
        output sent before is acknowledged (so it never covers an unsent one), then its
        own records. One at a time (none is started while one is under way). A
        partition's value-fits records (partition 0's refits, a follower's statistics)
        sent before are waited for too: if one failed, its states are written but its
        checkpoint record is not (the record goes out again, the checkpoint is tried
        again shortly). A partition waiting to be replayed takes none."""
        writer = self._checkpointer
        if writer is not None:
            if not writer.done():
                return
            self._checkpointer = None
            writer.result()
        if partition not in self.partitions:
            return
        if partition in self._refused:  # not confirmed before its replay: none taken
            self._checkpointed_at[partition] = time.monotonic()
            return
        fits, fit_records = self.fits, None
        if fits is not None:
            await self._publish_fits()
            if fits.queued_by(partition):  # not even sent: not covered by a checkpoint yet
                self._retry_soon(partition)
                return
            fit_records = fits.sent_by(partition)
        sent = [f for (_, p), f in self._last_output.items() if p == partition]
        taken = [self._take(partition)]
        self._checkpointed_at[partition] = time.monotonic()  # not due again meanwhile
        self._checkpointer = asyncio.create_task(
            self._write_checkpoints(
                taken, after=sent, fit_records=fit_records, redis_upto=self._scores_given()
            )
        )

    def _scores_given(self) -> int | None:
        """How many scores the Redis store has been given so far (a checkpoint taken
        now is confirmed once Redis has answered for all of them)."""
        return self.store.added if self.store is not None else None

    async def _checkpoint_written(self) -> None:
        """Until the checkpoint under way in the background, if any, is written."""
        writer, self._checkpointer = self._checkpointer, None
        if writer is not None:
            await writer

    def _take(self, partition: int) -> tuple[int, Checkpoint, dict[TopicPartition, int]]:
        scorer = self.partitions[partition]
        offsets = {TopicPartition(t, partition): o for t, o in scorer.next_offsets.items()}
        return partition, scorer.take_checkpoint(), offsets

    async def _write_checkpoints(
        self,
        taken: list[tuple[int, Checkpoint, dict[TopicPartition, int]]],
        after: list[asyncio.Future] | None = None,
        fit_records: list[tuple[tuple, asyncio.Future]] | None = None,
        redis_upto: int | None = None,
        redis_wait: float = 10.0,
    ) -> None:
        """Write checkpoints taken to the changelog: each partition's changed states,
        and once the broker has acknowledged them its checkpoint record, which
        confirms them (a restore rolls back states no checkpoint record confirms); then
        commit their offsets. A state record the broker refused is written again by
        the next checkpoint, and this one's record is not written: it would confirm the
        states with a gap. With `after` (the deliveries of the last output batches sent
        before, a partition's batches being acknowledged in order) first wait for
        those, and for the checkpoint's own records rather than for everything sent
        meanwhile: a flush would send every batch at once, scoring going on. With
        `fit_records` (one partition's value-fits records and deliveries) the states
        are written but not confirmed unless those were all acknowledged (they go out
        again; the checkpoint is due again shortly). With `redis_upto` (the scores
        given to the Redis store when the checkpoint was taken) likewise unless Redis
        has answered for them: a restart replays from the last confirmed checkpoint,
        so no score it covers may be missing from Redis."""
        producer, changelog = self.producer, self.names.changelog
        if after is not None:
            await asyncio.gather(*after, return_exceptions=True)
        confirm = True
        if fit_records is not None:
            await asyncio.gather(*(d for _, d in fit_records), return_exceptions=True)
            confirm = self.fits.settle(fit_records)
        if redis_upto is not None and not await self._redis_covers(redis_upto, redis_wait):
            log.info("checkpoint not confirmed: Redis has not taken its scores yet")
            confirm = False
        elif redis_upto is not None and self._redis_behind_since is not None:  # regardless
            backlog = self.redis_backlog
            taken = [(p, c.past_redis(backlog.since(p)), o) for p, c, o in taken]
        sent_states = []
        for partition, checkpoint, _ in taken:
            headers = owned_by(checkpoint.owner)
            deliveries = [
                await producer.send(changelog, value, key, partition=partition, headers=headers)
                for key, value in checkpoint.states
            ]
            sent_states.append(deliveries)
        await self._acknowledged([d for ds in sent_states for d in ds], flush=after is None)
        confirmed = []
        for (partition, checkpoint, its_offsets), deliveries in zip(
            taken, sent_states, strict=True
        ):
            answers = zip(checkpoint.states, deliveries, strict=True)
            rejected = [record for record, delivery in answers if refused(delivery)]
            scorer = self.partitions.get(partition)
            if rejected and scorer is not None:
                log.warning(
                    "%d changelog records of partition %d refused", len(rejected), partition
                )
                scorer.not_written(rejected)
            if confirm and not rejected and partition not in self._refused:
                record = await producer.send(
                    changelog,
                    checkpoint.record,
                    CHECKPOINT_KEY,
                    partition=partition,
                    headers=owned_by(checkpoint.owner),
                )
                confirmed.append((partition, len(checkpoint.states), its_offsets, record))
            else:
                self._retry_soon(partition)
        await self._acknowledged([c[3] for c in confirmed], flush=after is None)
        done = time.monotonic()
        offsets: dict[TopicPartition, int] = {}
        states = 0
        for partition, its_states, its_offsets, record in confirmed:
            if refused(record):
                self._retry_soon(partition)
                continue
            if partition in self.partitions:
                self._checkpointed_at[partition] = done
            self._replays_in_a_row.pop(partition, None)
            states += its_states
            offsets.update(its_offsets)
        if offsets:
            self.metrics.checkpoints += 1  # (none when a partition waits for its records)
            self.metrics.checkpointed_states += states
            try:  # for lag monitoring only: restores read the offsets from the changelog
                # (bounded: a commit waits for a coordinator while none is known)
                await asyncio.wait_for(self.consumer.commit(offsets), _COMMIT_SECONDS)
            except Exception as error:
                log.warning("offset commit failed: %s", error)

    async def _acknowledged(self, deliveries: list[asyncio.Future], flush: bool) -> None:
        """Until the broker has answered for `deliveries` (with `flush`: for everything
        sent; a stop or rebalance)."""
        if flush:
            await self.producer.flush()
        await asyncio.gather(*deliveries, return_exceptions=True)

    async def release(self, partitions: set[int]) -> None:
        async with self._lock:
            try:
                await self._checkpoint(partitions)
            finally:  # (a checkpoint that failed: the next owner replays from the last)
                self._forget(partitions)
                for partition in partitions:  # (a replay's backoff starts again elsewhere)
                    self._replay_at.pop(partition, None)
                    self._replays_in_a_row.pop(partition, None)

    def _forget(self, partitions: set[int]) -> None:
        for partition in partitions:
            scorer = self.partitions.pop(partition, None)
            if scorer is not None:
                self.metrics.partition_counts.released(partition, scorer.counts())
                scorer.close()
            self._assigned_at.pop(partition, None)
            self._checkpointed_at.pop(partition, None)
            self._paused -= {tp for tp in self._paused if tp.partition == partition}
            self._idle_since.pop(partition, None)
            self.redis_backlog.forget(partition)
            self.redis_loss.forget(partition)
            if self.fits is not None:
                self.fits.forget(partition)
        self._fetched_next = {
            tp: n for tp, n in self._fetched_next.items() if tp.partition not in partitions
        }
        self._end_offsets = {
            tp: n for tp, n in self._end_offsets.items() if tp.partition not in partitions
        }
        self._refused -= partitions
        self._unrestored -= partitions
        self.restoring -= partitions  # (assigned, revoked before its restore)

    async def acquire(self, partitions: set[int]) -> None:
        """Newly assigned partitions: their inputs are paused until the scoring loop
        has restored them (`restore_assigned`), not here: the consumer sends no
        heartbeats while this callback runs, and a restore longer than the session
        timeout (6 s: a large partition, or several) had the group take the
        partitions away again, at every rebalance. `/health` says not ready until they
        are restored (or failed)."""
        self.assigned = True
        async with self._lock:
            new = partitions - set(self.partitions)
            self.restoring |= new
            assigned = self.consumer.assignment()
            inputs = [TopicPartition(t, p) for p in new for t in self.names.inputs]
            self.consumer.pause(*(tp for tp in inputs if tp in assigned))

    async def restore_assigned(self) -> None:
        """Restore the partitions assigned since the last call, each on its own: one
        whose restore fails (the broker away, its changelog unreadable in time) keeps
        its inputs paused and is tried again after a backoff (`_replay_refused`).
        Call with the lock held."""
        new = self.restoring - set(self.partitions)
        if not new:
            return
        assigned = self.consumer.assignment()
        gone = {p for p in new if TopicPartition(self.names.inputs[0], p) not in assigned}
        self.restoring -= gone
        new -= gone
        try:
            failed = await self._restore(new, each_on_its_own=True)
        except Exception as error:  # (the changelog reader did not start)
            failed = dict.fromkeys(new, error)
        finally:
            self.restoring -= new
        for partition in sorted(new):
            inputs = [TopicPartition(topic, partition) for topic in self.names.inputs]
            if partition not in failed:
                self.consumer.resume(*inputs)
                continue
            log.warning(
                "partition %d: restore failed, tried again: %s", partition, failed[partition]
            )
            self._unrestored.add(partition)
            self._replay_at[partition] = time.monotonic() + 2.0

    async def _replay_refused(self) -> None:
        """Partitions with an output batch the broker refused (after the producer's
        retries) wrote no checkpoint since: each is restored from its last checkpoint
        and reads its inputs again from there, so the outputs since are produced
        again (with the same ids), as after a crash. Again after a backoff, should it
        be refused again (up to a minute apart); a restore that fails (the broker
        away) is tried again likewise, the partition's inputs paused meanwhile. Call
        with the lock held."""
        now = time.monotonic()
        due = {p for p in self._refused if p in self.partitions} | self._unrestored
        due = {p for p in due if now >= self._replay_at.get(p, 0.0)}
        if not due:
            return
        try:
            await self._checkpoint_written()  # (it leaves refused partitions unconfirmed)
        except Exception as error:  # (the broker away): tried again at the next poll
            log.warning("checkpoint not written: %s", error)
            return
        assigned = self.consumer.assignment()
        for partition in sorted(due):
            inputs = [TopicPartition(topic, partition) for topic in self.names.inputs]
            if not all(tp in assigned for tp in inputs):  # gone meanwhile
                self._forget({partition})
                continue
            if partition in self.partitions:
                log.warning("partition %d: read again from its last checkpoint", partition)
                self.metrics.replays += 1
                self._forget({partition})
                self.consumer.pause(*inputs)  # (nothing to fetch for until restored)
            attempts = self._replays_in_a_row[partition] = (
                self._replays_in_a_row.get(partition, 0) + 1
            )
            try:
                await self._restore({partition})
            except Exception as error:
                log.warning("partition %d: restore failed, tried again: %s", partition, error)
                self._unrestored.add(partition)
            else:
                self._unrestored.discard(partition)
                self.consumer.resume(*inputs)
            backoff = min(_REPLAY_BACKOFF_CAP_SECONDS, 2.0 ** min(attempts, 6))
            self._replay_at[partition] = time.monotonic() + backoff  # (after the restore)

    async def _restore(
        self, partitions: set[int], each_on_its_own: bool = False
    ) -> dict[int, Exception]:
        """Fold the partitions' changelogs and score them from there. A failure is
        raised, or with `each_on_its_own` returned by partition (the others go on)."""
        failed: dict[int, Exception] = {}
        if not partitions:
            return failed
        reader = AIOKafkaConsumer(
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            **self.settings.consumer_options(),
        )
        try:
            await reader.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await reader.stop()  # (its client and connections: left open, one per try)
            raise
        try:
            for partition in sorted(partitions):
                tp = TopicPartition(self.names.changelog, partition)
                disk = self._disk(partition) if self.settings.store == "rocksdb" else None
                try:
                    owner = await self._fence(partition)
                    # (scores Redis may lack, `restored.redis_from` on, are read back in
                    # the background from the partition's Redis marker: `agents.redis_loss`)
                    restored = await read_changelog(reader, tp, into=disk)
                except BaseException as error:
                    if disk is not None:
                        disk.close()
                    if not each_on_its_own or not isinstance(error, Exception):
                        raise
                    failed[partition] = error
                    continue
                await self._install(partition, restored, owner)
        finally:
            await reader.stop()
        return failed

    async def _fence(self, partition: int) -> bytes:
        """Write a fence with a new owner token to the partition's changelog and wait
        for the broker's acknowledgement (raised if refused or not within a few
        seconds: the restore is tried again later); read up to it, the
        changelog then holds everything a former owner wrote before, and a restore
        leaves out what it writes after (`agents.changelog`)."""
        token = uuid.uuid4().hex.encode()
        sending = self.producer.send(
            self.names.changelog,
            token,
            FENCE_PREFIX + token,
            partition=partition,
            headers=owned_by(token),
        )
        # bounded as the changelog's read is: the group's heartbeats wait meanwhile
        delivery = await asyncio.wait_for(sending, _FENCE_SECONDS)
        done, _ = await asyncio.wait({delivery}, timeout=_FENCE_SECONDS)
        if not done:
            raise TimeoutError(f"partition {partition}: the changelog fence not acknowledged")
        delivery.result()  # (refused: raised)
        return token

    async def _install(self, partition: int, restored: Restored, owner: bytes) -> None:
        """Score a newly assigned partition from its restored state and offsets (its
        changelog records carry `owner`, its fence's token). The timers are derived
        from the states in steps, with the event loop let in between (heartbeats: a
        million states on disk take seconds to read)."""
        scorer = PartitionScorer(
            partition,
            self.names.merge_order,
            partition_config(self.settings),
            states=restored.states,  # a dict, or the disk store folded into
            engine_blob=restored.engine_blob,
            offsets=restored.offsets,
            fit_executor=self.fit_executor,
            max_rescores=self.settings.max_rescores_per_tick,
            derive=False,
            shared=self.fits.book if self.fits else None,
            publish=self.fits.queue.append if self.fits else None,
            event_types=self.names.event_types,
            route=input_router(self.settings),
            in_flight_seconds=self.settings.input_in_flight_seconds,
        )
        try:
            for _ in scorer.engine.rebuild_in_steps():
                await asyncio.sleep(0)
        except BaseException:  # e.g. cancelled mid-way: do not leak the disk store
            scorer.close()
            raise
        scorer.owner = owner
        scorer.write_again(restored.rolled_back_ids)
        try:
            for topic in self.names.inputs:
                self.consumer.seek(TopicPartition(topic, partition), scorer.next_offsets[topic])
        except BaseException:  # (no longer assigned): not installed
            scorer.close()
            raise
        self.partitions[partition] = scorer
        self.restoring.discard(partition)
        self.metrics.partition_counts.held(partition, scorer.counts())  # (its history)
        self.redis_backlog.held(partition, restored.redis_from)
        if partition == 0 and self.fits is not None:
            self.fits.leader_assigned()
        self._assigned_at[partition] = time.time()
        # A phase per partition spreads their checkpoints over the interval.
        phase = (partition * 0.6180339887) % 1.0
        self._checkpointed_at[partition] = time.monotonic() - phase * self._checkpoint_every
        self.metrics.restored_customers += restored.customers
        for topic in self.names.inputs:
            self._fetched_next[TopicPartition(topic, partition)] = scorer.next_offsets[topic]
        log.info(
            "partition %d: restored %d customers from %d changelog records "
            "(%d rolled back), inputs from %s",
            partition, restored.customers, restored.records,
            restored.rolled_back, scorer.next_offsets,
        )  # fmt: skip

    def _disk(self, partition: int) -> DiskStates:
        """A fresh RocksDB store for a partition's states (each worker has its own
        directory: partitions move between workers)."""
        if self._store_dir is None:
            self._store_dir = worker_store_dir(self.settings.store_dir, self.settings.app_id)
        return DiskStates(self._store_dir / f"p{partition}", self.settings.store_cache_customers)


def owned_by(owner: bytes | None) -> list[tuple[str, bytes]] | None:
    """The headers of a changelog record its partition's `owner` writes."""
    return [(OWNER_HEADER, owner)] if owner is not None else None


def partition_config(settings: Settings) -> ScoringConfig:
    """The scoring config of one partition (its share of the programme budgets)."""
    return settings.scoring.for_partition(settings.partitions)


def input_router(settings: Settings) -> Callable[[str], int] | None:
    """Customer id -> the partition the producers of the input put it on (None: the
    input's partitions are not checked).

    >>> input_router(Settings(partitions=4))("c1"), input_router(Settings(input_partitioner="none"))
    (3, None)
    """
    if settings.input_partitioner == "none":
        return None
    partitions, partitioner = settings.partitions, settings.input_partitioner
    return lambda customer_id: partition_of(customer_id, partitions, partitioner)
