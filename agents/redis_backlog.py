"""Scores Redis may lack after a checkpoint confirmed without them, and their rewrite.

A checkpoint is confirmed only once Redis has the scores it covers, except after a
long Redis outage (`redis_outage_confirm_seconds`): then it is confirmed regardless,
and its record names the offset of the partition's `scores` topic from which Redis
may lack scores (`redis_from`). The partition's Redis marker is never past it, and a
worker that holds the partition next reads its `scores` back from the marker in the
background (`agents.redis_loss`, with `latest_scores` and `give_again` here): each
customer's latest score (or erasure) goes to the Redis store again. Redis keeps
whichever is newer, so what it has is not disturbed; without the read-back a crash
after the outage left those customers' Redis rows stale, and erased customers' rows
in place, until their next event.
"""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from agents.changelog import records_to_end
from agents.redis_store import RedisScoreStore

ERASED_AT_HEADER = "erased_at"  # on a `scores` tombstone: the erasure's event time
_FIRST = -1  # the base offset of the first score batch delivered from now on


class RedisBacklog:
    """Per partition held: the `scores` offset from which Redis may lack scores.

    >>> backlog = RedisBacklog()
    >>> backlog.held(0, redis_from=None)  # restored from a checkpoint Redis had in full
    >>> backlog.since(0) is None  # (no score delivered since)
    True
    >>> backlog.delivered(0, 120); backlog.delivered(0, 180); backlog.since(0)
    120
    >>> backlog.redis_caught_up(); backlog.since(0)  # Redis has every score given so far
    180
    >>> backlog.held(1, redis_from=40); backlog.since(1)  # a checkpoint past Redis
    40
    >>> backlog.forget(1); backlog.delivered(1, 20)  # given up, a batch still under way
    >>> backlog.held(1, redis_from=None); backlog.since(1)  # held again (a replay)
    20
    """

    def __init__(self) -> None:
        self._from: dict[int, int] = {}
        self._delivered: dict[int, int] = {}
        # partitions given up since Redis last had everything: where it may lack their
        # scores from (a partition held again, after a replay or a rebalance, keeps it)
        self._left: dict[int, int] = {}

    def held(self, partition: int, redis_from: int | None) -> None:
        """A partition restored from a checkpoint that names `redis_from` (or none)."""
        restored = _FIRST if redis_from is None else redis_from
        self._from[partition] = _earliest(restored, self._left.pop(partition, _FIRST))
        self._delivered.pop(partition, None)

    def forget(self, partition: int) -> None:
        """Given up: its scores that Redis may lack are remembered until Redis has
        everything (its batches still under way included)."""
        offset = self._from.pop(partition, _FIRST)
        self._delivered.pop(partition, None)
        self._left[partition] = _earliest(self._left.get(partition, _FIRST), offset)

    def delivered(self, partition: int, base_offset: int) -> None:
        """A batch of scores acknowledged at `base_offset` (a partition's batches are
        acknowledged in the order sent)."""
        if partition not in self._from:
            if partition in self._left:  # a batch of a partition given up meanwhile
                self._left[partition] = _earliest(self._left[partition], base_offset)
            return
        self._delivered[partition] = max(base_offset, self._delivered.get(partition, 0))
        if self._from[partition] == _FIRST:
            self._from[partition] = base_offset

    def redis_caught_up(self) -> None:
        """Redis has answered for every score given so far: scores given later go out
        after every batch acknowledged now."""
        for partition in self._from:
            self._from[partition] = self._delivered.get(partition, _FIRST)
        self._left.clear()

    def since(self, partition: int) -> int | None:
        """Where a checkpoint confirmed now without Redis must have Redis's scores
        rewritten from (None: no score Redis may lack has been delivered)."""
        offset = self._from.get(partition, _FIRST)
        return None if offset == _FIRST else offset


async def latest_scores(
    consumer: AIOKafkaConsumer, tp: TopicPartition, start: int, no_data_timeout: float = 5.0
) -> dict[str, tuple[dict | None, float | None]]:
    """Each customer's latest record in `tp` from offset `start` to the end as of now:
    (score, None), or (None, erased at) for an erasure's tombstone (one written before
    tombstones carried their time is skipped)."""
    latest: dict[str, tuple[bytes | None, float | None]] = {}
    async for record in records_to_end(consumer, tp, start, no_data_timeout):
        if record.key is None:
            continue
        customer_id = record.key.decode()
        if record.value is not None:
            latest[customer_id] = (record.value, None)  # parsed once it is the latest
            continue
        erased_at = dict(record.headers or ()).get(ERASED_AT_HEADER)
        if erased_at is not None:
            latest[customer_id] = (None, float(erased_at))
    return {
        customer_id: (None if value is None else orjson.loads(value), erased_at)
        for customer_id, (value, erased_at) in latest.items()
    }


def give_again(
    store: RedisScoreStore, latest: Iterable[tuple[str, tuple[dict | None, float | None]]]
) -> int:
    """Give each customer's latest score (or erasure) read back to the store; how many."""
    given = 0
    for customer_id, (score, erased_at) in latest:
        store.add(customer_id, score, erased_at=erased_at)
        given += 1
    return given


def _earliest(offset: int, other: int) -> int:
    """The lower of two offsets, either of which may be `_FIRST` (not known yet)."""
    if offset == _FIRST or other == _FIRST:
        return other if offset == _FIRST else offset
    return min(offset, other)
