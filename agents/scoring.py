"""The scoring service: consumes the input topics in batches, scores, emits, serves.

Faust's per-event agent path costs more than the scoring itself (see DESIGN.md), so
the hot path is one aiokafka consumer in the consumer group `{app_id}-scorer`,
polled in batches: records go to their partition's `PartitionScorer`, outputs are
produced without waiting per message, scores are written to Redis once per batch.

Durability (`agents.partition_ownership`): every `checkpoint_interval_seconds`
(partitions one at a time, spread over the interval so that no poll waits for all of
them; and all of them when partitions are revoked or the worker stops) each
partition writes its changed customer states and then a checkpoint record (models,
clock, input offsets) to its changelog partition, waits for the broker to
acknowledge, then commits the offsets. A restarted or newly assigned partition
restores from the changelog (`agents.changelog`) and reads its inputs again from the
checkpoint's offsets: what is replayed after a crash is the input since the last
checkpoint, and its outputs repeat with the same event ids.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import shutil
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from pathlib import Path

import orjson
import redis.asyncio as aioredis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import KafkaError
from mode import Service
from redis.exceptions import RedisError

from agents.arrival import FetchStamps, produced_at
from agents.fit_relay import FitRelay, fetch
from agents.metrics import WorkerMetrics
from agents.partition import PartitionScorer
from agents.partition_ownership import PartitionOwnership
from agents.redis_backlog import ERASED_AT_HEADER, RedisBacklog
from agents.redis_loss import RedisLossWatch, RedisMarkers
from agents.redis_repair import RedisRepair
from agents.redis_store import RedisScoreStore
from models.emitted import Erasure, Output, Stream
from streams.settings import Settings
from streams.topics import TopicNames

log = logging.getLogger(__name__)

_NOT_SEEN_GRACE_SECONDS = 2.0  # an input never fetched yet counts as idle after this
_REDIS_RETRY_SECONDS = 1.0
_NO_HEADERS: list[tuple[str, bytes]] = []  # (read, never changed, by the producer)
_REDIS_PING_SECONDS = 1.0  # `/health`: a Redis slower than this to answer is not ready
_REDIS_COVER_SECONDS = 10.0  # a checkpoint waits this long for its scores' Redis writes
_END_OFFSETS_SECONDS = 1.0  # `/health`, `/metrics`: the inputs' end offsets, asked briefly


class _Listener(ConsumerRebalanceListener):
    def __init__(self, service: ScoringService) -> None:
        self.service = service

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.service.release({tp.partition for tp in revoked})

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.service.acquire({tp.partition for tp in assigned})


class ScoringService(PartitionOwnership, RedisRepair, Service):
    """One worker's share of the partitions (mode service, started by the Faust app)."""

    def __init__(self, settings: Settings, fit_executor: Executor | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.settings = settings
        self.names = TopicNames(settings.topic_prefix)
        self._output_topics = {stream: self.names.output(stream) for stream in Stream}
        self.fit_executor = fit_executor
        self.metrics = WorkerMetrics()
        self.partitions: dict[int, PartitionScorer] = {}
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.redis: aioredis.Redis | None = None
        self.store: RedisScoreStore | None = None
        self.redis_ok = True  # until a flush fails
        self.started_at = time.time()
        self._lock = asyncio.Lock()
        self._fetched_next: dict[TopicPartition, int] = {}
        # The inputs' end offsets as the broker last told them (`refresh_end_offsets`):
        # a fetch's high watermark goes stale while its input is paused or not fetched.
        self._end_offsets: dict[TopicPartition, int] = {}
        self._end_offsets_request: asyncio.Future | None = None  # one at a time
        self._assigned_at: dict[int, float] = {}
        # Not ready (`/health`) until the consumer group has given this worker its
        # partitions (perhaps none) and while assigned partitions are being restored.
        self.assigned = False
        self.restoring: set[int] = set()
        # When each partition was last checkpointed (monotonic): each is checkpointed on
        # its own, staggered, so no poll stalls for all of them at once.
        self._checkpointed_at: dict[int, float] = {}
        self._checkpoint_every = settings.checkpoint_interval_seconds
        self._checkpointer: asyncio.Task | None = None  # a checkpoint being written
        self._last_output: dict[tuple[str, int], asyncio.Future] = {}  # delivery, by topic
        self._refused: set[int] = set()  # partitions with an output batch refused
        self._unrestored: set[int] = set()  # forgotten to be replayed, restore failed
        self._replay_at: dict[int, float] = {}  # (monotonic) not replayed again before
        self._replays_in_a_row: dict[int, int] = {}  # since the partition's last checkpoint
        self._redis_retry_at = 0.0
        self._redis_writer: asyncio.Task | None = None  # writes to Redis, one at a time
        self._redis_produced_at: list[float] = []  # inputs whose scores wait for a flush
        self._redis_behind_since: float | None = None  # (monotonic) checkpoints wait for it
        self.redis_backlog = RedisBacklog()  # where Redis may lack scores from, by partition
        self.redis_loss = RedisLossWatch()  # writes Redis acknowledged and lost (`redis_loss`)
        self.markers: RedisMarkers | None = None
        self._init_redis_repair()
        self._idle_since: dict[int, float] = {}
        self._fetch_stamps = FetchStamps()  # when the inputs' last fetches were asked for
        # inputs whose fetching waits: a catch-up or a full buffer (_pause_or_resume_fetching)
        self._paused: set[TopicPartition] = set()
        self._store_dir: Path | None = None  # this worker's RocksDB directory, once made
        self._stop_deadline = 0.0  # (monotonic) the steps of a stop give up after it
        self.on_stopping: Callable[[], None] | None = None  # called as a stop begins
        # Several partitions share the value model of partition 0 (`models.shared_fits`):
        # its records go out on the value-fits topic and come back to every worker.
        self.fits = FitRelay(settings, self.names.value_fits) if settings.partitions > 1 else None

    # -- lifecycle ------------------------------------------------------------------
    async def on_start(self) -> None:
        settings = self.settings
        redis_url = settings.redis_url.get_secret_value() if settings.redis_url else ""
        self.redis = aioredis.from_url(redis_url, socket_connect_timeout=1, socket_timeout=5)
        self.store = RedisScoreStore(self.redis, settings.redis_prefix)
        self.markers = RedisMarkers(self.redis, settings.redis_prefix)
        self.producer = AIOKafkaProducer(
            acks="all",
            linger_ms=5,
            max_batch_size=1 << 20,
            max_request_size=16 << 20,
            **settings.client_options(),
        )
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            group_id=f"{settings.app_id}-scorer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            partition_assignment_strategy=(RangePartitionAssignor,),
            max_poll_records=settings.max_batch,
            session_timeout_ms=6_000,  # a join on Tansu waits half of this
            heartbeat_interval_ms=1_000,
            **settings.consumer_options(),
        )
        self.consumer.subscribe(list(self.names.inputs), listener=_Listener(self))
        if self.fits is not None:
            await self.fits.start()
        await self.consumer.start()

    async def on_stop(self) -> None:
        """The final checkpoint, then the clients, all within `stop_timeout_seconds`: a
        worker whose broker or Redis is gone still stops (a checkpoint given up mid-way
        is rolled back at the next start, which replays the input since the previous
        one). `on_stopping` is called first (the worker process arms its watchdog)."""
        self._stop_deadline = time.monotonic() + self.settings.stop_timeout_seconds
        if self.on_stopping is not None:
            self.on_stopping()
        await self._stop_read_back()
        if self.consumer is not None:
            async with self._lock:
                await self._bounded("the final checkpoint", self._checkpoint(set(self.partitions)))
            # leaves the group: the others take over now
            await self._bounded("leaving the consumer group", self.consumer.stop())
        if self.fits is not None:
            await self._bounded("the value-fits reader's stop", self.fits.stop())
        for scorer in self.partitions.values():
            scorer.close()
        if self._store_dir is not None:
            shutil.rmtree(self._store_dir, ignore_errors=True)
        if self.producer is not None:
            await self._bounded("the producer's last flush", self.producer.stop())
        if self.store is not None:
            await self._bounded("the last Redis write", self._last_redis_write())
        if self.redis is not None:
            await self._bounded("closing Redis", self.redis.aclose())
        if self.fit_executor is not None:
            self.fit_executor.shutdown(wait=False, cancel_futures=True)

    async def _bounded(self, what: str, step: Awaitable[object]) -> None:
        """Wait for a step of the stop until the stop's deadline, then give it up."""
        started = time.monotonic()
        try:
            await asyncio.wait_for(step, max(0.1, self._stop_deadline - started))
        except TimeoutError:
            log.warning("stopping: %s given up after %.1f s (broker or Redis unreachable)",
                        what, time.monotonic() - started)  # fmt: skip
        except Exception as error:
            log.warning("stopping: %s failed: %s", what, error)

    @Service.task
    async def _read_value_fits(self) -> None:
        """Every worker takes in partition 0's published refits (`agents.fit_relay`);
        a follower partition holds back events until they cover them."""
        if self.fits is not None:
            await self.fits.read(lambda: self.should_stop)

    @Service.task
    async def _check_redis_markers(self) -> None:
        await self._watch_redis()

    @Service.task
    async def _run(self) -> None:
        while not self.should_stop:
            # records left ready by a drain's limit go on at once, with what has arrived
            ready = any(scorer.more for scorer in self.partitions.values())
            gated = any(scorer.gated for scorer in self.partitions.values())
            batch = await fetch(self.consumer, 0 if ready else 10 if gated else 50, "input")
            if batch is None:
                continue
            # Shielded: a stop cancels `_run`, but a batch in progress completes (its
            # outputs are sent) before `on_stop` takes the lock for the final checkpoint.
            await asyncio.shield(self._step(batch))

    async def _step(self, batch: dict) -> None:
        async with self._lock:
            if self._stop_deadline:
                return  # fetched as the stop began: read again by the next owner
            await self.restore_assigned()
            await self._handle(batch)
            await self._replay_refused()
            due = self._checkpoint_due(time.monotonic())
            if due is not None:
                await self._checkpoint_in_background(due)

    def _checkpoint_due(self, now: float) -> int | None:
        """The partition most overdue for its checkpoint, if any is (one per poll)."""
        if not self._checkpointed_at:
            return None
        partition, at = min(self._checkpointed_at.items(), key=lambda item: item[1])
        return partition if now - at >= self._checkpoint_every else None

    # -- the batch ------------------------------------------------------------------
    async def _handle(self, batch: dict) -> None:
        metrics = self.metrics
        now = time.time()
        future_limit = now + self.settings.scoring.max_future_seconds
        for scorer in self.partitions.values():
            scorer.engine.future_limit = future_limit  # events dated later are bad
        for tp, records in batch.items():
            scorer = self.partitions.get(tp.partition)
            if scorer is None or not records:
                continue  # revoked meanwhile
            fetched_before = self._fetched_next.get(tp, 0)
            metrics.events_in[tp.topic] += sum(1 for r in records if r.offset >= fetched_before)
            self._fetched_next[tp] = max(fetched_before, records[-1].offset + 1)
            scorer.add(
                tp.topic,
                ((r.offset, r.key, r.value, produced_at(r.timestamp, now)) for r in records),
            )
            held = len(scorer.buffers[tp.topic])
            if held > metrics.buffered_high_water:
                metrics.buffered_high_water = held
        for partition, scorer in list(self.partitions.items()):
            if scorer.behind:  # a bounded clock advance left customers due: them first
                outputs = scorer.catch_up()
            else:
                idle = self._idle_inputs(partition, scorer, now)
                if self.fits is not None:
                    quiet = len(idle) == len(scorer.topics) and not scorer.buffered()
                    if partition == 0:
                        self.fits.watch_leader(quiet, now)
                    else:  # partition 0's refits stop waiting for its statistics
                        self.fits.watch_follower(partition, quiet, now, scorer.engine)
                outputs = scorer.drain(idle, self.settings.max_events_per_step)
                metrics.merge_waits += scorer.gated
                outputs += self._follow_wall_clock(partition, scorer, idle, now)
            self._pause_or_resume_fetching(partition, scorer)
            if outputs:
                await self._emit(partition, outputs)
            await asyncio.sleep(0)  # let the web server and heartbeats in between
        await self._publish_fits()
        await self._flush_redis()

    async def _publish_fits(self) -> None:
        if self.fits is not None:
            leader = self.partitions.get(0)
            await self.fits.publish(self.producer, leader.engine if leader is not None else None)

    def _idle_inputs(self, partition: int, scorer: PartitionScorer, now: float) -> dict[str, float]:
        """Inputs of the partition with nothing left to fetch (as of the last fetch),
        each with a wall time by which that fetch had been asked for (`now` for one
        never fetched)."""
        idle = {}
        for topic in scorer.topics:
            tp = TopicPartition(topic, partition)
            highwater = self.consumer.highwater(tp)
            fetched = self._fetched_next.get(tp, scorer.next_offsets[topic])
            if highwater is None:
                if now - self._assigned_at.get(partition, now) > _NOT_SEEN_GRACE_SECONDS:
                    idle[topic] = now
            elif fetched >= highwater:
                idle[topic] = self._fetch_stamps.asked_by(tp, self.consumer.last_poll_timestamp(tp))
        return idle

    def _pause_or_resume_fetching(self, partition: int, scorer: PartitionScorer) -> None:
        """Records wait in the broker, not in memory: a partition's inputs pause while it
        catches up with its clock, and an input pauses while it has
        `max_buffered_per_input` records buffered (the merge by event time waits for a
        sparser input, which goes on fetching); each resumes once that is over."""
        limit = self.settings.max_buffered_per_input
        for topic in scorer.topics:
            tp = TopicPartition(topic, partition)
            wait = scorer.behind or len(scorer.buffers[topic]) >= limit
            if wait and tp not in self._paused:
                self.consumer.pause(tp)
                self._paused.add(tp)
            elif not wait and tp in self._paused:
                self.consumer.resume(tp)
                self._paused.discard(tp)

    def _follow_wall_clock(
        self, partition: int, scorer: PartitionScorer, idle: Mapping[str, float], now: float
    ) -> list[Output]:
        after = self.settings.live_clock_idle_seconds
        if after is None or len(idle) < len(scorer.topics) or scorer.buffered():
            self._idle_since.pop(partition, None)
            return []
        since = self._idle_since.setdefault(partition, now)
        return scorer.follow_wall_clock(now) if now - since >= after else []

    async def _emit(self, partition: int, outputs: list[Output]) -> None:
        """Produce a partition's outputs in batches to the same partition of the output
        topics (co-partitioned: keyed by customer, as the inputs), scores to Redis."""
        metrics, store, topics = self.metrics, self.store, self._output_topics
        batches: dict[str, object] = {}
        for output in outputs:
            stream, key, value = output.stream, output.key, output.value
            metrics.events_out[stream.value] += 1
            if stream is Stream.DEAD_LETTER:
                metrics.dead_lettered[value["reason"]] += 1
            headers = _NO_HEADERS
            if stream is Stream.SCORES:
                if isinstance(output, Erasure):
                    store.add(key, None, erased_at=output.at)
                    headers = [(ERASED_AT_HEADER, repr(output.at).encode())]
                else:
                    store.add(key, value)
            topic = topics[stream]
            encoded_key = key.encode() if key is not None else None
            encoded = orjson.dumps(value) if value is not None else None
            batch = batches.get(topic)
            if batch is None:
                batch = batches[topic] = self.producer.create_batch()
            if (
                batch.append(key=encoded_key, value=encoded, timestamp=None, headers=headers)
                is None
            ):
                await self._send_output_batch(batch, topic, partition)
                batch = batches[topic] = self.producer.create_batch()
                batch.append(key=encoded_key, value=encoded, timestamp=None, headers=headers)
        for topic, batch in batches.items():
            await self._send_output_batch(batch, topic, partition)

    async def _send_output_batch(self, batch: object, topic: str, partition: int) -> None:
        if partition in self._refused:
            return  # its replay from the last checkpoint produces these outputs again
        scorer = self.partitions.get(partition)
        try:
            delivery = await self.producer.send_batch(batch, topic, partition=partition)
        except KafkaError as error:
            # Not even queued: the broker away for a whole request timeout (the batch
            # before it not sent, or no metadata). It crashed the worker before.
            self._refuse(partition, scorer, error)
            return
        delivery.add_done_callback(functools.partial(self._output_answered, partition, scorer))
        if topic == self._output_topics[Stream.SCORES]:
            delivery.add_done_callback(functools.partial(self._scores_delivered, partition))
        # a partition's checkpoint waits for its outputs' last batches (`_checkpoint_in_background`)
        self._last_output[(topic, partition)] = delivery

    def _output_answered(
        self, partition: int, scorer: PartitionScorer | None, delivery: asyncio.Future
    ) -> None:
        """A batch of outputs the broker refused (after the producer's retries) is
        counted and reported, and its partition writes no checkpoint until it has
        read its inputs again from the last one (`_replay_refused`); unless the
        partition was restored since (a batch of the scorer it replaced), or the
        delivery was cancelled (a stop)."""
        if delivery.cancelled() or delivery.exception() is None:
            return
        self._refuse(partition, scorer, delivery.exception())

    def _refuse(
        self, partition: int, scorer: PartitionScorer | None, error: BaseException | None
    ) -> None:
        self.metrics.output_batches_failed += 1
        log.error("partition %d: an output batch refused: %s", partition, error)
        if scorer is not None and self.partitions.get(partition) is scorer:
            self._refused.add(partition)

    def _scores_delivered(self, partition: int, delivery: asyncio.Future) -> None:
        if not delivery.cancelled() and delivery.exception() is None:
            self.redis_backlog.delivered(partition, delivery.result().offset)

    async def _flush_redis(self) -> None:
        """Have the pending scores written to Redis: by the writer under way, which
        takes them when its write is answered, or by a new one. Writes go one at a
        time, in the background, so Redis works on a batch while the next is scored
        (waiting for its answers was about a third of a busy worker's time)."""
        writer = self._redis_writer
        if writer is not None:
            if not writer.done():
                return
            self._redis_writer = None
            writer.result()  # (a fault other than an unreachable Redis is raised here)
        if self.store.pending and time.monotonic() >= self._redis_retry_at:
            self._redis_writer = asyncio.create_task(self._write_redis())

    async def _write_redis(self) -> None:
        """Flush the store until nothing is pending (or Redis is unreachable); the
        latency of the inputs whose scores a flush wrote is observed when Redis answers."""
        store, metrics = self.store, self.metrics
        while store.pending:
            produced_at = self._redis_produced_at
            for scorer in self.partitions.values():
                produced_at += scorer.processed_produced_at
                scorer.processed_produced_at.clear()
            self._redis_produced_at = []
            written_before = store.written
            # (the store takes its pending scores before its first wait: the same ones)
            self.redis_ok = await store.flush()
            if not self.redis_ok:
                metrics.redis_failed_flushes += 1
                self._redis_retry_at = time.monotonic() + _REDIS_RETRY_SECONDS
                self._redis_produced_at[:0] = produced_at  # their scores wait for the next
                return
            metrics.redis_writes += store.written - written_before
            if store.lost_writes:  # (found by the flush's token: `agents.redis_loss`)
                self._redis_lost_writes()
            done = time.time()
            metrics.latency.observe_many(done - at for at in produced_at)
        if store.written_upto >= store.added:
            self.redis_backlog.redis_caught_up()
            await self._raise_markers()  # (at once: nothing given meanwhile)

    async def _redis_covers(self, upto: int, timeout: float = _REDIS_COVER_SECONDS) -> bool:
        """Until Redis has answered for the first `upto` scores given to the store
        (writing them if no write is under way): True, or False at once while Redis's
        last write failed, once a write fails, or after `timeout` seconds (sooner if a
        stop's deadline comes first). A checkpoint is confirmed only then: one that
        covered scores Redis never got would leave them stale after a crash (its replay
        starts after them). Once Redis has been behind for a minute, True regardless
        (counted): see below."""
        store = self.store
        if store is None or store.written_upto >= upto:
            self._redis_behind_since = None
            return True
        now = time.monotonic()
        if self._redis_behind_since is None:
            self._redis_behind_since = now
        elif now - self._redis_behind_since >= self.settings.redis_outage_confirm_seconds:
            # A long outage: checkpoints go on without it (held back for ever, a restart
            # would replay the whole outage, and a restore hold all its states); their
            # records name where Redis may lack scores from (`agents.redis_backlog`).
            self.metrics.checkpoints_past_redis += 1
            return True
        if not self.redis_ok:
            return False  # its last write failed: no use waiting
        deadline = now + timeout
        failed_before = store.failed_flushes
        while store.written_upto < upto:
            if store.failed_flushes > failed_before:
                return False
            # (a stop that begins meanwhile brings the deadline forward)
            if time.monotonic() >= min(deadline, self._stop_deadline or math.inf):
                return False
            await self._flush_redis()
            await asyncio.sleep(0.005)
        self._redis_behind_since = None
        return True

    async def _last_redis_write(self) -> None:
        """On stop: the writer under way, then whatever is still pending."""
        if self._redis_writer is not None:
            await self._redis_writer
            self._redis_writer = None
        await self._write_redis()

    # -- views ----------------------------------------------------------------------
    async def redis_answers(self, timeout: float = _REDIS_PING_SECONDS) -> bool:
        """Redis answers a ping within `timeout` seconds."""
        if self.store is None:
            return False
        try:
            return bool(await asyncio.wait_for(self.store.client.ping(), timeout))
        except (TimeoutError, RedisError, OSError):
            return False

    async def refresh_end_offsets(self, timeout: float = _END_OFFSETS_SECONDS) -> None:
        """Ask the broker for the end offsets of every assigned input (kept for `lag` and
        `caught_up`); an answer slower than `timeout` leaves the last ones. Requests that
        come while one is under way share its answer (one request to the broker)."""
        if self._end_offsets_request is None or self._end_offsets_request.done():
            self._end_offsets_request = asyncio.ensure_future(self._ask_end_offsets(timeout))
        await asyncio.shield(self._end_offsets_request)

    async def _ask_end_offsets(self, timeout: float) -> None:
        tps = [TopicPartition(t, p) for p, scorer in self.partitions.items() for t in scorer.topics]
        if self.consumer is None or not tps:
            return
        try:
            ends = await asyncio.wait_for(self.consumer.end_offsets(tps), timeout)
        except (TimeoutError, KafkaError, OSError):
            return
        # a partition revoked meanwhile is not kept: it may come back further on
        owned = self.partitions
        self._end_offsets.update((tp, n) for tp, n in ends.items() if tp.partition in owned)

    def _end_of(self, tp: TopicPartition) -> int | None:
        """The latest end offset known of an input: a fetch's, or the broker's answer."""
        highwater = self.consumer.highwater(tp) if self.consumer else None
        known = [n for n in (highwater, self._end_offsets.get(tp)) if n is not None]
        return max(known) if known else None

    def lag(self) -> dict[str, int]:
        """Records of each assigned input not processed yet."""
        lag = {}
        for partition, scorer in self.partitions.items():
            for topic, processed in scorer.next_offsets.items():
                end = self._end_of(TopicPartition(topic, partition))
                if end is not None:
                    lag[f"{topic}/{partition}"] = max(0, end - processed)
        return lag

    def caught_up(self) -> bool:
        """Every input of every assigned partition processed up to its end offset."""
        if self.consumer is None or not self.partitions or self._unrestored:
            return False
        for partition, scorer in self.partitions.items():
            if scorer.behind:  # customers still due after a bounded clock advance
                return False
            for topic, processed in scorer.next_offsets.items():
                end = self._end_of(TopicPartition(topic, partition))
                if end is None or processed < end:
                    return False
        return True

    def status(self) -> dict:
        return {
            "partitions": sorted(self.partitions),
            "caught_up": self.caught_up(),
            "customers": sum(len(s.states) for s in self.partitions.values()),
            "buffered": sum(s.buffered() for s in self.partitions.values()),
            "catching_up": sorted(p for p, s in self.partitions.items() if s.behind),
            # holding events back until a refit's outcome is known (partition 0's)
            "waiting_for_fits": sorted(p for p, s in self.partitions.items() if s.waiting),
            # an output batch refused: to be read again from the last checkpoint
            "replaying": sorted(self._refused | self._unrestored),
            "assigned": self.assigned,  # (the consumer group's first assignment came)
            "restoring": sorted(self.restoring),
            "redis_ok": self.redis_ok,
            "redis_error": self.store.last_error if self.store else "",  # the last write's
            "redis_pending": self.store.pending if self.store else 0,
            # checked for scores Redis lacks, or reading them back (`agents.redis_loss`)
            "redis_reading_back": self.partitions_reading_back(),
            # keys Redis evicted at its memory limit while watched; its policy if it
            # may evict customer rows (`agents.redis_eviction`)
            "redis_evicted_keys": self.redis_eviction.evicted,
            "redis_eviction_policy": self.redis_eviction.risky_policy,
            "lag": sum(self.lag().values()),
            "uptime_seconds": round(time.time() - self.started_at, 1),
        }

    def counters(self) -> dict[str, int]:
        """What the engines counted while this worker held their partitions (their own
        counts move with a partition: `HeldPartitionCounts`)."""
        held = {partition: scorer.counts() for partition, scorer in self.partitions.items()}
        return dict(self.metrics.partition_counts.totals(held))
