"""One input partition of the scorer: its input topics merged by event time, fed to a
`ScoringEngine`, with the bookkeeping a checkpoint needs. No I/O here.

Partition p of every input topic (transactions, interactions, customer-events) holds
the same customers, so one engine scores all three. Fetches from the three topics do
not arrive in step: a topic fetched ahead would push the event clock past events of
the others still in flight and make them late. So records wait in per-topic buffers
and go to the engine in event-time order, as far as every input that may still hold
data has caught up; an input with nothing left to read (idle) does not hold the
others back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import NamedTuple

import msgpack

from agents.arrival import ArrivalGate
from agents.disk_states import DiskStates
from models.checkpoint import checkpoint_bytes, restore_checkpoint
from models.config import ScoringConfig
from models.emitted import Output
from models.engine import ScoringEngine, future_detail
from models.shared_fits import SharedFits
from models.state import CustomerState
from schemas.common import MAX_PAYLOAD_BYTES
from schemas.outputs import DeadLetterReason
from schemas.parsing import Event, Rejected, parse_event

CHECKPOINT_KEY = b"\x00checkpoint"
"""Changelog key of a partition's checkpoint record (customer ids never hold NUL)."""

FENCE_PREFIX = b"\x00owner:"
"""Changelog key prefix of a fence: written, with the new owner's token after it, by
each restore before it reads the changelog (`agents.changelog.ChangelogFold`); one key
per owner, so that compaction keeps every fence."""

OWNER_HEADER = "owner"
"""Header naming the owner (its fence's token) that wrote a changelog record."""

NEW, UPDATED = b"N", b"U"
"""First byte of a changelog state record: whether the customer had no state in the
previous checkpoint (restore drops such a customer if the checkpoint never came)."""

# A rejected record keeps no more of its input than its dead letter shows (its first
# MAX_PAYLOAD_BYTES characters, 4 bytes each at most, and one more to say it was cut):
# up to `max_buffered_per_input` oversized records wait in a buffer.
_KEPT_RAW_BYTES = 4 * MAX_PAYLOAD_BYTES + 4
_KEPT_KEY_BYTES = 4 * 256  # a key in a dead letter's origin: 256 characters at most
_CHECKPOINT_FORMATS = (1, 2)  # 2: confirmed past Redis (`Checkpoint.past_redis`)


class TrackedStates(dict):
    """Customer states that remember which customers changed since `take_dirty`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.dirty: set[str] = set()

    def __setitem__(self, key: str, value: CustomerState) -> None:
        self.dirty.add(key)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self.dirty.add(key)
        super().__delitem__(key)

    def pop(self, key: str, *default):
        self.dirty.add(key)
        return super().pop(key, *default)

    def take_dirty(self) -> set[str]:
        dirty, self.dirty = self.dirty, set()
        return dirty


@dataclass(slots=True)
class Buffered:
    at: float  # event time; a rejected record takes its predecessor's, to keep its place
    offset: int
    raw: bytes
    key: bytes | None
    event: object  # the parsed event, or a Rejected
    produced_at: float  # its Kafka timestamp (seconds; not after its fetch): latency, merge


@dataclass(frozen=True)
class Checkpoint:
    """What a partition writes to its changelog: changed states, then the checkpoint."""

    states: list[tuple[bytes, bytes | None]]  # (customer id, flag + state | None)
    record: bytes  # the checkpoint record's value
    owner: bytes | None = None  # the token of the restore that made the partition's scorer

    def past_redis(self, redis_from: int | None) -> Checkpoint:
        """The same, its record naming where Redis may lack scores from (see
        `agents.redis_backlog`); itself when `redis_from` is None."""
        if redis_from is None:
            return self
        offsets, engine_blob, _ = decode_checkpoint(self.record)
        record = encode_checkpoint(offsets, engine_blob, redis_from)
        return Checkpoint(self.states, record, self.owner)


class CheckpointRecord(NamedTuple):
    offsets: dict[str, int]  # the next input offset of each input topic
    engine_blob: bytes
    redis_from: int | None  # confirmed past Redis: the `scores` offset to rewrite from


def encode_checkpoint(
    offsets: Mapping[str, int], engine_blob: bytes, redis_from: int | None = None
) -> bytes:
    """Format 1, or 2 when the record names `redis_from` (a worker of an earlier
    version reads the first, not the second, and says so).

    >>> decode_checkpoint(encode_checkpoint({"t": 5}, b"e", redis_from=9))
    CheckpointRecord(offsets={'t': 5}, engine_blob=b'e', redis_from=9)
    """
    if redis_from is None:
        return msgpack.packb([1, dict(offsets), engine_blob], use_bin_type=True)
    return msgpack.packb([2, dict(offsets), engine_blob, redis_from], use_bin_type=True)


def decode_checkpoint(value: bytes) -> CheckpointRecord:
    version, offsets, engine_blob, *rest = msgpack.unpackb(value, raw=False)
    if version not in _CHECKPOINT_FORMATS or len(rest) != version - 1:
        raise ValueError(f"unknown checkpoint record format {version!r}")
    return CheckpointRecord(offsets, engine_blob, rest[0] if rest else None)


class PartitionScorer:
    def __init__(
        self,
        partition: int,
        topics: Iterable[str],
        config: ScoringConfig,
        *,
        states: Mapping[str, CustomerState] | None = None,
        engine_blob: bytes | None = None,
        offsets: Mapping[str, int] | None = None,
        fit_executor: Executor | None = None,
        max_rescores: int | None = None,
        derive: bool = True,
        shared: SharedFits | None = None,
        publish: Callable[[tuple], None] | None = None,
        event_types: Mapping[str, str] | None = None,
        route: Callable[[str], int] | None = None,
        in_flight_seconds: float = 0.05,
    ) -> None:
        """`derive` off: the caller exhausts `engine.rebuild_in_steps()` before
        feeding it (to derive the timers from many states in steps). With
        `event_types` (input topic -> the event type it carries) every record must be
        of its topic's type and keyed by its customer id, else it is dead-lettered
        (`wrong_topic`, `key_mismatch`): a record keyed otherwise may sit on another
        partition than the customer's other events, whose state it would split. With
        `route` (customer id -> partition, the producers' partitioner) a record must be
        on its customer's partition, else it is dead-lettered (`wrong_partition`).
        `in_flight_seconds`: how long a record may take from its Kafka timestamp to the
        broker (see `agents.arrival`)."""
        self.partition = partition
        self.max_rescores = max_rescores  # per clock advance of `follow_wall_clock` / poll
        self.behind = False  # a bounded advance left customers due: `catch_up` goes on
        self.waiting = False  # its next event or clock move waits for a refit's outcome
        self.more = False  # a drain stopped at its limit: records may be ready to go on
        self.gated = False  # a drain stopped for a record that may be on its way
        self.topics = tuple(topics)
        self.event_types = dict(event_types) if event_types else None
        self.route = route
        # A disk store tracks its changes itself; plain states are wrapped to do so.
        self.states = states if isinstance(states, DiskStates) else TrackedStates(states or {})
        self.engine = ScoringEngine(
            config,
            states=self.states,
            fit_executor=fit_executor,
            scope=f"p{partition}",
            derive_from_states=derive and engine_blob is None,  # else restoring derives them
            shared=shared,
            publish=publish,
            partition=partition,
        )
        if engine_blob is not None:
            restore_checkpoint(self.engine, engine_blob, derive=derive)
            # checkpointed between the pieces of a catch-up: the rest go first
            self.behind = max_rescores is not None and self.engine.rescoring
        self.persisted: set[str] = set(self.states)  # customers in the last checkpoint
        self.buffers: dict[str, deque[Buffered]] = {topic: deque() for topic in self.topics}
        start = offsets or {}
        self.next_offsets = {topic: int(start.get(topic, 0)) for topic in self.topics}
        self._last_at = {topic: float("-inf") for topic in self.topics}
        self.processed_produced_at: list[float] = []
        # the token of the fence its restore wrote (`FENCE_PREFIX`): its changelog
        # records carry it, so a later restore tells them from a former owner's
        self.owner: bytes | None = None
        lateness = config.allowed_lateness_seconds
        self.arrival = ArrivalGate(lateness / 2, in_flight_seconds)
        self.arrival.restart_from(self.engine.clock.max_event_time)

    # -- input ----------------------------------------------------------------------
    def add(
        self, topic: str, records: Iterable[tuple[int, bytes | None, bytes | None, float]]
    ) -> None:
        """Buffer fetched records (offset, key, value, broker timestamp in seconds)."""
        buffer, last_at = self.buffers[topic], self._last_at[topic]
        expected_type = self.event_types.get(topic) if self.event_types else None
        for offset, key, raw, produced_at in records:
            if offset < self.next_offsets[topic] or (buffer and offset <= buffer[-1].offset):
                continue  # re-fetched after a seek: already buffered or processed
            raw = raw or b""  # a null value is rejected like any malformed input
            event = parse_event(raw)
            if len(raw) > _KEPT_RAW_BYTES and isinstance(event, Rejected):
                raw = raw[:_KEPT_RAW_BYTES]  # all its dead letter shows: buffered, not more
            checked = expected_type is not None or self.route is not None
            if checked and not isinstance(event, Rejected):
                misrouted = _misrouted(event, topic, key, expected_type, self.partition, self.route)
                event = misrouted or event
            if not isinstance(event, Rejected):
                at = event.occurred_at.timestamp()
                future_limit = self.engine.future_limit
                # A date beyond the limit is dead-lettered: merged where it stands, like
                # a rejected record, rather than holding back everything after it.
                if future_limit is None or at <= future_limit:
                    last_at = at
                else:  # decided now, as merged: a later limit must not let it jump the order
                    detail = future_detail(at, future_limit)
                    reason = DeadLetterReason.FUTURE_TIMESTAMP
                    event = Rejected(reason, detail, customer_id=event.customer_id)
            if key is not None and len(key) > _KEPT_KEY_BYTES:
                key = key[
                    :_KEPT_KEY_BYTES
                ]  # (checked against the event above; kept for its origin)
            buffer.append(Buffered(last_at, offset, raw, key, event, produced_at))
        self._last_at[topic] = last_at

    def buffered(self) -> int:
        return sum(len(buffer) for buffer in self.buffers.values())

    def drain(
        self, idle: Mapping[str, float] | Collection[str], limit: int | None = None
    ) -> list[Output]:
        """Process buffered records in event-time order while every input that is not
        idle has a record buffered (ties: topic order, then offset), at most `limit` of
        them (`more` tells whether it stopped there: the order is the same in chunks).
        `idle` maps each input with nothing left to fetch to by when its last fetch was
        asked for (wall seconds; a plain collection: nothing on its way): records
        beyond what `arrival` has confirmed wait for a later fetch (`gated`). Nothing
        while a bounded clock advance has customers left due (`behind`): an event
        would make the engine re-score all of them at once; they go first, as they
        would have."""
        outputs: list[Output] = []
        self.more = self.gated = False
        if self.behind:
            return outputs
        self.waiting = False
        buffers, topics, arrival = self.buffers, self.topics, self.arrival
        if not isinstance(idle, Mapping):
            idle = dict.fromkeys(idle, float("inf"))
        tails = {
            topic: buffer[-1].produced_at if buffer else None for topic, buffer in buffers.items()
        }
        complete_until = arrival.complete_until(idle, tails)
        left = limit if limit is not None else -1
        while True:
            if left == 0:
                self.more = True
                return outputs
            left -= 1
            best_topic, best = None, None
            for topic in topics:
                buffer = buffers[topic]
                if buffer:
                    head = buffer[0]
                    if best is None or head.at < best.at:
                        best_topic, best = topic, head
                elif topic not in idle:
                    return outputs  # that input may still bring earlier events
            if best is None:
                return outputs
            if self.engine.waiting_for_fit(best.at):
                self.waiting = True  # a refit due first is not done: go on at the next poll
                return outputs
            if not arrival.allows(best.at, best.produced_at, complete_until):
                self.gated = True  # another input's record may be on its way: next fetch
                return outputs
            buffer = buffers[best_topic]
            buffer.popleft()
            if not buffer and best_topic in idle:  # from now on it has nothing buffered
                complete_until = min(complete_until, idle[best_topic] - arrival.in_flight_seconds)
            arrival.processed(best.at, best.produced_at, complete_until)
            outputs.extend(self._process(best_topic, best))
            if self.behind:
                return outputs  # the customers the event made due go first

    def _process(self, topic: str, record: Buffered) -> list[Output]:
        self.next_offsets[topic] = record.offset + 1
        self.processed_produced_at.append(record.produced_at)
        engine = self.engine
        origin = {"source": "kafka", "topic": topic, "partition": self.partition}
        origin["offset"] = record.offset
        if record.key is not None:  # (a tombstone's dead letter has nothing else to name it by)
            origin["key"] = record.key.decode("utf-8", "replace")[:256]
        if isinstance(record.event, Rejected):
            return engine.process_parsed(record.event, record.raw, origin)  # a dead letter
        engine.counters.read += 1
        if self.max_rescores is None:
            return engine.process_event(record.event, record.raw, origin)
        # The clock work the event makes due runs bounded: a first event after a gap in
        # the data may make thousands of customers due at once.
        outputs = engine.process_event(record.event, record.raw, origin, clock_work=False)
        if engine.clock_work_due():
            outputs += self._on_clock()
        return outputs

    def follow_wall_clock(self, now: float) -> list[Output]:
        """Live mode, idle partition: time passes for silent customers all the same.

        At most `max_rescores` customers are re-scored now, however far the clock
        moves (days of idle time, or old data followed by the wall clock); the rest
        stay due and `catch_up` re-scores them at the next polls."""
        engine = self.engine
        watermark = now - engine.config.allowed_lateness_seconds
        if self.behind or watermark <= engine.clock.watermark:
            return []
        if engine.waiting_for_fit(now):  # a refit's outcome, or the followers' statistics
            self.waiting = True
            return []
        engine.advance_clock(watermark)
        return self._on_clock()

    def catch_up(self) -> list[Output]:
        """Re-score up to `max_rescores` more of the customers a bounded clock advance
        left due (nothing when none are left)."""
        return self._on_clock() if self.behind else []

    def _on_clock(self) -> list[Output]:
        """One bounded step of the engine's clock work; `behind` while customers are
        left due (the engine refits after the last of them)."""
        outputs = self.engine.on_clock(self.max_rescores)
        self.behind = self.max_rescores is not None and self.engine.clock_work_due()
        return outputs

    # -- checkpoints ----------------------------------------------------------------
    def take_checkpoint(self) -> Checkpoint:
        """The changed states since the last checkpoint and a new checkpoint record.
        Write them in this order to the partition's changelog."""
        states = self.states
        records: list[tuple[bytes, bytes | None]] = []
        for customer_id in sorted(states.take_dirty()):
            state = states.get(customer_id)
            key = customer_id.encode()
            if state is None:
                if customer_id in self.persisted:
                    self.persisted.discard(customer_id)
                    records.append((key, None))
                continue
            flag = UPDATED if customer_id in self.persisted else NEW
            self.persisted.add(customer_id)
            records.append((key, flag + state.to_bytes()))
        blob = checkpoint_bytes(self.engine)
        if isinstance(states, DiskStates):
            states.flush()  # bounded work per checkpoint rather than at eviction
        return Checkpoint(records, encode_checkpoint(self.next_offsets, blob), self.owner)

    def write_again(self, customer_ids: set[str]) -> None:
        """Customers whose changelog holds a version no checkpoint confirmed (dropped
        on restore): the next checkpoint writes their state, or deletes them, before
        its record would confirm that version."""
        self.persisted |= customer_ids  # in the changelog, in some version
        self.states.dirty |= customer_ids

    def not_written(self, records: list[tuple[bytes, bytes | None]]) -> None:
        """State records of a checkpoint the broker refused: written again by the next
        one, as they would have been (a new customer flagged new, an erasure deleted)."""
        states, persisted = self.states, self.persisted
        for key, value in records:
            customer_id = key.decode()
            if value is None:
                persisted.add(customer_id)  # still in the changelog: delete it next time
            elif value[:1] == NEW:
                persisted.discard(customer_id)
            states.dirty.add(customer_id)

    def counts(self) -> dict[str, int]:
        """The engine's whole-number counters (checkpointed with it) and its refits
        installed late, for the worker's metrics (`HeldPartitionCounts`)."""
        counts = {k: v for k, v in self.engine.counters.as_dict().items() if isinstance(v, int)}
        counts["late_fit_installs"] = self.engine.late_fit_installs
        return counts

    def close(self) -> None:
        """Release what the partition holds outside memory (a disk store)."""
        if isinstance(self.states, DiskStates):
            self.states.close()


def _misrouted(
    event: Event,
    topic: str,
    key: bytes | None,
    expected_type: str | None,
    partition: int,
    route: Callable[[str], int] | None,
) -> Rejected | None:
    """Why a valid event cannot be applied where it was read, if it cannot: not of its
    topic's `expected_type`, not keyed by its customer id (both checked when
    `expected_type` is given), or not on its customer's partition (with `route`,
    customer id -> the partition the producers' partitioner gives it).

    >>> from schemas.parsing import parse_event
    >>> event = parse_event(b'{"event_type":"interaction","event_id":"i1","customer_id":"c1",'
    ...                     b'"occurred_at":"2024-01-01T00:00:00+00:00","kind":"login"}')
    >>> _misrouted(event, "clv.interactions", b"c1", "interaction", 0, None) is None
    True
    >>> _misrouted(event, "clv.transactions", b"c1", "transaction", 0, None).reason.value
    'wrong_topic'
    >>> _misrouted(event, "clv.interactions", None, "interaction", 0, None).detail[:59]
    'the record has no key: records must be keyed by customer_id'
    >>> _misrouted(event, "clv.interactions", b"c1", "interaction", 0, lambda c: 1).reason.value
    'wrong_partition'
    """
    customer_id = event.customer_id
    if expected_type is not None:
        if event.event_type != expected_type:
            detail = f"a {event.event_type} event on {topic}, which carries {expected_type} events"
            return Rejected(DeadLetterReason.WRONG_TOPIC, detail, customer_id)
        if key is None or key != customer_id.encode():
            found = (
                "has no key"
                if key is None
                else f"key {key.decode('utf-8', 'replace')!r:.80} differs"
            )
            detail = (
                f"the record {found}: records must be keyed by customer_id ({customer_id}), "
                "so that all of a customer's events are on one partition"
            )
            return Rejected(DeadLetterReason.KEY_MISMATCH, detail, customer_id)
    if route is not None and (home := route(customer_id)) != partition:
        detail = (
            f"the record is on partition {partition} of {topic}, but the producers' "
            f"partitioner puts customer {customer_id} on partition {home}: every producer "
            "must use the partitioner the service is configured with (input_partitioner)"
        )
        return Rejected(DeadLetterReason.WRONG_PARTITION, detail, customer_id)
    return None
