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
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from agents.disk_states import DiskStates
from agents.partition import CHECKPOINT_KEY, NEW, decode_checkpoint
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
    """

    def __init__(self, into: DiskStates | None = None) -> None:
        self._into = into
        # flagged values as of the last checkpoint (a disk fold writes them `into` it)
        self._confirmed: dict[str, bytes] = {}
        self._pending: dict[str, bytes | None] = {}  # written since, latest first wins
        self._pending_new: set[str] = set()  # had no state at the last checkpoint
        self._checkpoint: bytes | None = None
        self._records = 0

    def add(self, key: bytes | None, value: bytes | None) -> None:
        self._records += 1
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
        fold.add(record.key, record.value)
    return fold.result()


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
