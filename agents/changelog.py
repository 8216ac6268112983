"""Restoring a partition from its changelog: the states as of its last checkpoint.

The changelog partition holds, in order, batches of changed customer states each
followed by a checkpoint record (the engine's partition-wide state and the input
offsets it had processed). States written after the last checkpoint belong to a
batch whose checkpoint never arrived (the worker died in between): they are rolled
back to their version in the checkpoint, and the inputs are read again from the
checkpoint's offsets, so the restored partition replays exactly what it lost.

With log compaction (Apache Kafka), the checkpointed version of such a customer may
already be compacted away; the newer version is then kept, and de-duplication by
event id keeps it from counting the replayed events twice.

A partition has one writer at a time: each restore first writes a fence (its own
token) and then reads the changelog up to it; every record its worker writes after
carries that token (`OWNER_HEADER`). A worker that lost the partition without knowing
it yet (its session expired while it stalled or was cut off from the broker: the
group gave the partition to another) may still write a checkpoint of its stale
states; those records, after the new owner's fence and with another token, are left
out of every later restore (their customers are written again by the next
checkpoint, so that the owner's version is the latest), where they would have stood
over what the new owner applied since.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from agents.disk_states import DiskStates
from agents.partition import (
    CHECKPOINT_KEY,
    FENCE_PREFIX,
    NEW,
    OWNER_HEADER,
    decode_checkpoint,
)
from models.state import CustomerState


@dataclass
class Restored:
    # the states, in memory; or, folded into a disk store, the store
    states: Mapping[str, CustomerState] = field(default_factory=dict)
    engine_blob: bytes | None = None
    offsets: dict[str, int] = field(default_factory=dict)
    # confirmed past Redis: the `scores` offset from which Redis may lack scores
    redis_from: int | None = None
    records: int = 0
    # customers whose version written after the checkpoint was dropped: still in the
    # changelog, unconfirmed, so the next checkpoint must write them again (or the
    # checkpoint record that follows it would confirm the dropped versions)
    rolled_back_ids: set[str] = field(default_factory=set)

    @property
    def rolled_back(self) -> int:
        return len(self.rolled_back_ids)

    @property
    def customers(self) -> int:
        return len(self.states)


class ChangelogFold:
    """Folds one changelog partition's records, in offset order, into a `Restored`:
    in memory, or straight into a disk store (`into`), so that the partition's states
    are never all in memory; only those written since the last checkpoint record are
    (one checkpoint interval's changes), until the next one confirms them.

    >>> fold = ChangelogFold()
    >>> fold.add(b"c1", NEW + CustomerState().to_bytes())
    >>> fold.result().states, fold.result().rolled_back_ids
    ({}, {'c1'})

    After a fence only its owner's records count (a former owner's are written again):

    >>> from agents.partition import encode_checkpoint
    >>> fold = ChangelogFold()
    >>> fold.add(FENCE_PREFIX + b"b", b"b")
    >>> fold.add(b"c2", NEW + CustomerState().to_bytes(), owner=b"a")
    >>> fold.add(CHECKPOINT_KEY, encode_checkpoint({"t": 9}, b""), owner=b"a")
    >>> fold.result().offsets, fold.result().rolled_back_ids
    ({}, {'c2'})
    """

    def __init__(self, into: DiskStates | None = None) -> None:
        self._into = into
        # flagged values as of the last checkpoint (a disk fold writes them `into` it)
        self._confirmed: dict[str, bytes] = {}
        self._pending: dict[str, bytes | None] = {}  # written since, latest first wins
        self._pending_new: set[str] = set()  # had no state at the last checkpoint
        self._checkpoint: bytes | None = None
        self._records = 0
        self._owner: bytes | None = None  # the token of the last fence (None: none yet)
        self._foreign: set[str] = set()  # customers a former owner wrote after it

    def add(self, key: bytes | None, value: bytes | None, owner: bytes | None = None) -> None:
        """Fold one record; `owner`: the token its writer put in `OWNER_HEADER`."""
        self._records += 1
        if key is not None and key.startswith(FENCE_PREFIX):
            self._owner = key[len(FENCE_PREFIX) :]
            return
        if self._owner is not None and owner != self._owner:
            if key is not None and key != CHECKPOINT_KEY:
                self._foreign.add(key.decode())
            return  # written by a worker that had lost the partition
        if key == CHECKPOINT_KEY:
            if value is not None:
                self._confirm()
                self._checkpoint = value
            return
        if key is None:
            return
        customer_id = key.decode()
        if customer_id not in self._pending and value is not None and value[:1] == NEW:
            self._pending_new.add(customer_id)
        self._pending[customer_id] = value

    def _confirm(self) -> None:
        into = self._into
        for customer_id, value in self._pending.items():
            if into is not None:
                into.put_serialized(customer_id, None if value is None else value[1:])
            elif value is None:
                self._confirmed.pop(customer_id, None)
            else:
                self._confirmed[customer_id] = value
        self._pending, self._pending_new = {}, set()

    def _was_confirmed(self, customer_id: str) -> bool:
        into = self._into
        return customer_id in (self._confirmed if into is None else into)

    def result(self) -> Restored:
        restored = Restored(records=self._records)
        states: dict[str, CustomerState] = {}
        for customer_id, value in self._confirmed.items():
            states[customer_id] = CustomerState.from_bytes(value[1:])
        restored.rolled_back_ids |= self._foreign  # (their owner's version goes last)
        for customer_id, value in self._pending.items():
            if self._was_confirmed(customer_id) or customer_id in self._pending_new:
                restored.rolled_back_ids.add(customer_id)  # back to the checkpoint's (or none)
            elif value is not None:  # the checkpointed version was compacted away
                if self._into is not None:
                    self._into.put_serialized(customer_id, value[1:])
                else:
                    states[customer_id] = CustomerState.from_bytes(value[1:])
        if self._into is not None:
            self._into.finish_load()
        restored.states = states if self._into is None else self._into
        if self._checkpoint is not None:
            record = decode_checkpoint(self._checkpoint)
            restored.offsets, restored.engine_blob = record.offsets, record.engine_blob
            restored.redis_from = record.redis_from
        return restored


async def read_changelog(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    no_data_timeout: float = 5.0,
    into: DiskStates | None = None,
) -> Restored:
    """Fold one changelog partition, from its start to its end as of now, with an
    assigned (group-less) consumer, into memory or `into` a disk store."""
    fold = ChangelogFold(into)
    async for record in records_to_end(consumer, tp, None, no_data_timeout):
        fold.add(record.key, record.value, owner_of(record))
    return fold.result()


def owner_of(record: ConsumerRecord) -> bytes | None:
    """The token in a changelog record's `OWNER_HEADER` (None: it has none)."""
    for name, value in record.headers or ():
        if name == OWNER_HEADER:
            return value
    return None


async def records_to_end(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int | None, no_data_timeout: float
) -> AsyncIterator[ConsumerRecord]:
    """The records of `tp` from offset `start` (None: its beginning) to its end as of
    now, read by an assigned (group-less) consumer. The end is the high watermark of
    the fetch responses (Tansu answers ListOffsets with the wrong end offset); a
    partition that sends nothing for `no_data_timeout` seconds before it is a
    TimeoutError."""
    consumer.assign([tp])
    if start is None:
        await consumer.seek_to_beginning(tp)
    else:
        consumer.seek(tp, start)
    last_data = time.monotonic()
    while True:
        records = (await consumer.getmany(tp, timeout_ms=50)).get(tp, ())
        for record in records:
            yield record
        # (the consumer's position, not the last record's offset + 1: on a compacted
        # topic the end of the log may hold no record any more)
        position = await consumer.position(tp)
        highwater = consumer.highwater(tp)
        if highwater is not None and position >= highwater:
            return
        if records:
            last_data = time.monotonic()
        elif time.monotonic() - last_data > no_data_timeout:
            raise TimeoutError(f"{tp.topic}/{tp.partition}: no data at offset {position}")
