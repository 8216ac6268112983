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
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.partition import CHECKPOINT_KEY, NEW, decode_checkpoint
from models.state import CustomerState


@dataclass
class Restored:
    states: dict[str, CustomerState] = field(default_factory=dict)
    # the same states still serialized, instead (`result(decode=False)`: a disk store)
    serialized: dict[str, bytes] = field(default_factory=dict)
    engine_blob: bytes | None = None
    offsets: dict[str, int] = field(default_factory=dict)
    records: int = 0
    rolled_back: int = 0  # customers whose post-checkpoint version was dropped

    @property
    def customers(self) -> int:
        return len(self.states) + len(self.serialized)


class ChangelogFold:
    """Folds one changelog partition's records, in offset order, into a `Restored`.

    >>> fold = ChangelogFold()
    >>> fold.add(b"c1", NEW + CustomerState().to_bytes())
    >>> fold.result().states, fold.result().rolled_back
    ({}, 1)
    """

    def __init__(self) -> None:
        self._confirmed: dict[str, bytes] = {}  # as of the last checkpoint
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
        for customer_id, value in self._pending.items():
            if value is None:
                self._confirmed.pop(customer_id, None)
            else:
                self._confirmed[customer_id] = value
        self._pending, self._pending_new = {}, set()

    def result(self, decode: bool = True) -> Restored:
        """The restored partition; with `decode` off its states stay serialized."""
        restored = Restored(records=self._records)
        kept = restored.states if decode else restored.serialized
        read = CustomerState.from_bytes if decode else bytes
        for customer_id, value in self._confirmed.items():
            kept[customer_id] = read(value[1:])
        for customer_id, value in self._pending.items():
            if customer_id in self._confirmed or customer_id in self._pending_new:
                restored.rolled_back += 1  # back to the checkpoint's version (or none)
            elif value is not None:  # the checkpointed version was compacted away
                kept[customer_id] = read(value[1:])
        if self._checkpoint is not None:
            restored.offsets, restored.engine_blob = decode_checkpoint(self._checkpoint)
        return restored


async def read_changelog(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    no_data_timeout: float = 5.0,
    decode: bool = True,
) -> Restored:
    """Fold one changelog partition, from its start to its end as of now, with an
    assigned (group-less) consumer. The end is the high watermark of the fetch
    responses (Tansu answers ListOffsets with the wrong end offset). With `decode`
    off, the states stay serialized (for a disk store)."""
    fold = ChangelogFold()
    consumer.assign([tp])
    await consumer.seek_to_beginning(tp)
    position, last_data = 0, time.monotonic()
    while True:
        records = (await consumer.getmany(tp, timeout_ms=200)).get(tp, ())
        for record in records:
            fold.add(record.key, record.value)
            position = record.offset + 1
        highwater = consumer.highwater(tp)
        if highwater is not None and position >= highwater:
            return fold.result(decode)
        if records:
            last_data = time.monotonic()
        elif time.monotonic() - last_data > no_data_timeout:
            raise TimeoutError(f"{tp.topic}/{tp.partition}: no data at offset {position}")
