"""Topic names of the service, from the configured prefix.

>>> names = TopicNames("clv.")
>>> names.inputs
('clv.transactions', 'clv.interactions', 'clv.customer-events')
>>> names.output(Stream.SCORES), names.changelog
('clv.scores', 'clv.state-changelog')
>>> names.input_kind("clv.interactions")
'interactions'
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import orjson
from aiokafka.partitioner import murmur2

from models.emitted import Stream

Partitioner = Literal["murmur2", "crc32"]
"""How producers choose a keyed record's partition: `murmur2` (the Java client's and
aiokafka's default, librdkafka's `murmur2_random`), `crc32` (librdkafka's default
`consistent_random`, e.g. confluent-kafka)."""

INPUT_KINDS = ("transactions", "interactions", "customer-events")
OUTPUT_STREAMS = tuple(Stream)


@dataclass(frozen=True)
class TopicNames:
    prefix: str = "clv."

    @property
    def inputs(self) -> tuple[str, ...]:
        return tuple(self.prefix + kind for kind in INPUT_KINDS)

    @property
    def merge_order(self) -> tuple[str, ...]:
        """Inputs in the order that breaks event-time ties: a profile or consent change
        applies before a purchase stamped the same second."""
        return (
            self.prefix + "customer-events",
            self.prefix + "transactions",
            self.prefix + "interactions",
        )

    def output(self, stream: Stream) -> str:
        return self.prefix + stream.value

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(self.output(stream) for stream in OUTPUT_STREAMS)

    @property
    def changelog(self) -> str:
        """Per-partition customer states and model checkpoints of the scorer."""
        return self.prefix + "state-changelog"

    @property
    def value_fits(self) -> str:
        """The leading partition's value-model refits, read by every worker (partition
        0 only; `models.shared_fits`)."""
        return self.prefix + "value-fits"

    @property
    def all(self) -> tuple[str, ...]:
        return (*self.inputs, *self.outputs, self.changelog, self.value_fits)

    @property
    def compacted(self) -> tuple[str, ...]:
        """Topics keyed where only the latest value per key matters."""
        return (self.output(Stream.SCORES), self.changelog, self.value_fits)

    def input_kind(self, topic: str) -> str:
        return topic.removeprefix(self.prefix)

    @property
    def event_types(self) -> dict[str, str]:
        """The event type each input topic carries.

        >>> TopicNames("x.").event_types["x.customer-events"]
        'customer'
        """
        return {self.prefix + kind: event_type for event_type, kind in _KIND_OF_EVENT_TYPE.items()}

    def for_event_type(self, event_type: str) -> str:
        """The input topic an event of this type is produced to (replay); input that
        names no known type goes to transactions, where it is dead-lettered.

        >>> TopicNames("x.").for_event_type("interaction")
        'x.interactions'
        """
        return self.prefix + _KIND_OF_EVENT_TYPE.get(event_type, "transactions")


_KIND_OF_EVENT_TYPE = {
    "transaction": "transactions",
    "interaction": "interactions",
    "customer": "customer-events",
}


def partition_of(customer_id: str, partitions: int, partitioner: Partitioner = "murmur2") -> int:
    """The partition of a customer's events: what a Kafka producer's partitioner gives
    their id as key. `murmur2` (the default) is how `clvstream replay` produces them.

    >>> [partition_of(customer_id, 4) for customer_id in ("c1", "c2", "00001")]
    [3, 1, 3]
    >>> [partition_of(customer_id, 4, "crc32") for customer_id in ("c1", "c2", "00001")]
    [1, 3, 3]
    """
    if partitioner == "crc32":
        return _crc32_hash(customer_id) % partitions
    return (_murmur2_hash(customer_id) & 0x7FFFFFFF) % partitions


# Hashing in pure Python costs microseconds; a replay or a worker asks for every event.
@lru_cache(maxsize=1 << 16)
def _murmur2_hash(customer_id: str) -> int:
    return murmur2(customer_id.encode())


@lru_cache(maxsize=1 << 16)
def _crc32_hash(customer_id: str) -> int:
    return zlib.crc32(customer_id.encode())


def routing_fields(line: bytes) -> tuple[str, str | None]:
    """The event type and customer id of a raw input line, as far as they can be read:
    what decides its topic and its key (and so its partition).

    >>> routing_fields(b'{"event_type": "interaction", "customer_id": "c1"}')
    ('interaction', 'c1')
    >>> routing_fields(b'not json'), routing_fields(b'[1]'), routing_fields(b'{"customer_id": 7}')
    (('', None), ('', None), ('', None))
    """
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        return "", None
    if not isinstance(document, dict):
        return "", None
    customer_id = document.get("customer_id")
    return str(document.get("event_type", "")), customer_id if isinstance(
        customer_id, str
    ) else None
