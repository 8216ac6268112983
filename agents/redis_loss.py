"""Scores Redis acknowledged and then lost: noticed, read back and written again.

Redis may lose writes it acknowledged: a restart without persistence (the embedded
Valkey, a cache run without AOF), `FLUSHALL`, a crash that loses AOF's last unsynced
second, a failover to a replica that was behind. The worker never reads scores back
from Redis, so without this the lost rows stay missing, or stale, until each
customer's next event.

Each partition has a marker in Redis, `{prefix}scores-offset:{partition}`: an offset of
the partition's `scores` topic below which Redis has every score (or a newer one, or
the erasure). The worker raises it once Redis has answered for every score given so
far, after those writes, so a Redis that keeps a prefix of its writes (AOF, a replica)
never keeps a marker ahead of the scores it kept; a Lua maximum means it is never
lowered (a former owner's late write cannot). Nor is it raised once gone or lower than
this worker last acknowledged: raised on a Redis restarted empty (or flushed, or failed
over) before the check, it would claim the scores lost and hide the loss for good. A
partition read back for want of a marker gets marker 0 first, so its first raise has a
marker to find too. Every `redis_check_seconds` the worker
reads the markers of its partitions:

- a partition newly held: its `scores` from the marker on (from the beginning without
  one) are read back and given to Redis again: what a former owner wrote after its
  last marker, or everything if Redis lost it all while no worker watched;
- a marker below the last one Redis acknowledged to this worker, or gone: Redis lost
  writes (counted), the same read-back.

The read-back runs beside the scoring, and Redis keeps whichever score is newer, so
nothing newer is disturbed; a partition's marker is not raised during its read-back.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import redis.asyncio as aioredis

_RAISE = """
-- KEYS[1], ARGV[1]: this worker's flush token and the value Redis acknowledged last (-1:
-- none yet). Gone or other: Redis lost writes after the last token it kept, which the
-- markers would claim: nothing is raised, {0} is returned.
-- KEYS[2..], ARGV[2..]: per marker, the value as this worker last acknowledged it (-1:
-- none) and the new one. A marker gone, or lower than acknowledged, is not raised:
-- Redis lost writes (restarted empty, flushed, failed over) and the scores the new one
-- would claim may be among them; the check finds the loss and reads the partition back.
-- Returns {1, the refused markers' positions (1-based)...}.
if tonumber(ARGV[1]) >= 0 and redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {0}
end
local result = {1}
for i = 2, #KEYS do
  local old = redis.call('GET', KEYS[i])
  local known, new = tonumber(ARGV[2 * i - 2]), tonumber(ARGV[2 * i - 1])
  if known >= 0 and (not old or tonumber(old) < known) then
    result[#result + 1] = i - 1
  elseif not old or tonumber(old) < new then
    redis.call('SET', KEYS[i], ARGV[2 * i - 1])
  end
end
return result
"""


def marker_key(prefix: str, partition: int) -> str:
    """The key of a partition's marker.

    >>> marker_key("clvstream:", 3)
    'clvstream:scores-offset:3'
    """
    return f"{prefix}scores-offset:{partition}"


@dataclass(frozen=True)
class ReadBack:
    """A partition's scores to give to Redis again, from `start` (None: the beginning)."""

    partition: int
    start: int | None
    lost: bool  # Redis lost what it had acknowledged (else: newly held)


class RedisLossWatch:
    """The bookkeeping, per partition: the marker as last acknowledged, read-backs due.

    >>> watch = RedisLossWatch()
    >>> watch.check(watch.known(), {0: 120, 1: None})  # newly held: read back from the marker
    [ReadBack(partition=0, start=120, lost=False), ReadBack(partition=1, start=None, lost=False)]
    >>> watch.to_raise([0, 1], {0: 300, 1: 40}.get)  # not during their read-backs
    {}
    >>> watch.read_back_done(0); watch.read_back_done(1)
    >>> watch.to_raise([0, 1], {0: 300, 1: 40}.get)
    {0: 300, 1: 40}
    >>> watch.raised({0: 300, 1: 40})
    >>> watch.check(watch.known(), {0: 300, 1: 40})  # as acknowledged: nothing lost
    []
    >>> watch.check(watch.known(), {0: 120, 1: None})  # behind, or gone: lost
    [ReadBack(partition=0, start=120, lost=True), ReadBack(partition=1, start=None, lost=True)]
    """

    def __init__(self) -> None:
        self._acknowledged: dict[int, int | None] = {}  # partitions checked since held
        self.reading_back: set[int] = set()
        # where each partition's last read-back ended: Redis has every score below once
        # it has answered for them (a partition with no score since holds it at that)
        self._read_upto: dict[int, int] = {}

    def known(self) -> dict[int, int | None]:
        """The markers as acknowledged now: what a read sent after this must show."""
        return dict(self._acknowledged)

    def check(self, known: dict[int, int | None], read: dict[int, int | None]) -> list[ReadBack]:
        """The read-backs due, given the markers `read` from Redis (None: missing) and
        what was `known` before the read was sent."""
        due = []
        for partition, marker in read.items():
            if partition in self.reading_back:
                continue
            before = known.get(partition)
            if partition not in known:
                due.append(ReadBack(partition, marker, lost=False))
            elif before is not None and (marker is None or marker < before):
                due.append(ReadBack(partition, marker, lost=True))
            else:  # nothing lost: the higher of this and a marker raised meanwhile stands
                now = self._acknowledged.get(partition)
                if marker is not None and (now is None or marker > now):
                    self._acknowledged[partition] = marker
                continue
            self._acknowledged[partition] = marker
        self.reading_back.update(read_back.partition for read_back in due)
        return due

    def checked(self, partition: int) -> bool:
        """Checked since held (a partition reading back has been)."""
        return partition in self._acknowledged

    def settled(self, partition: int) -> bool:
        """Checked since held, and not reading back."""
        return self.checked(partition) and partition not in self.reading_back

    def read_back_done(self, partition: int, upto: int | None = None) -> None:
        """Its scores below `upto` read back and given to the store."""
        self.reading_back.discard(partition)
        if upto is not None:
            self._read_upto[partition] = upto

    def read_back_failed(self, partition: int) -> None:
        """Checked again as if newly held: the read-back is tried again."""
        self.reading_back.discard(partition)
        self._acknowledged.pop(partition, None)
        self._read_upto.pop(partition, None)

    def forget(self, partition: int) -> None:
        """Given up (revoked, or replayed): checked again once held again."""
        self.read_back_failed(partition)  # (the same bookkeeping: unchecked)

    def to_raise(
        self, partitions: Iterable[int], covered: Callable[[int], int | None]
    ) -> dict[int, int]:
        """The markers to raise, with Redis having answered for every score given so far:
        `covered(p)`, an offset below which every score of partition p was given (or
        where its last read-back ended, if higher)."""
        markers = {}
        for partition in partitions:
            if not self.settled(partition):
                continue  # not checked yet (its read-back may be due), or reading back
            offsets = [covered(partition), self._read_upto.get(partition)]
            offset = max((o for o in offsets if o is not None), default=None)
            before = self._acknowledged[partition]
            if offset is not None and (before is None or offset > before):
                markers[partition] = offset
        return markers

    def raised(self, markers: dict[int, int]) -> None:
        for partition, offset in markers.items():
            if partition in self._acknowledged:
                before = self._acknowledged[partition]
                self._acknowledged[partition] = offset if before is None else max(before, offset)


class RedisMarkers:
    """The markers in Redis: read, and raised (never lowered)."""

    def __init__(self, client: aioredis.Redis, prefix: str) -> None:
        self.client, self.prefix = client, prefix
        self._raise = client.register_script(_RAISE)

    async def read(self, partitions: list[int]) -> dict[int, int | None]:
        keys = [marker_key(self.prefix, partition) for partition in partitions]
        values = await self.client.mget(keys) if keys else []
        return {
            partition: None if value is None else int(value)
            for partition, value in zip(partitions, values, strict=True)
        }

    async def raise_to(
        self,
        markers: dict[int, int],
        known: dict[int, int | None],
        token: tuple[str, int] | None = None,
    ) -> set[int] | None:
        """Raise the markers, each only if Redis still has it as `known` (acknowledged to
        this worker, None: no condition), and all only if Redis still has the flush
        `token` (key, value) this worker last had acknowledged; the partitions refused,
        or None when the token was not there (Redis lost writes: nothing raised)."""
        keys = [token[0] if token else f"{self.prefix}no-token", *map(self._key, markers)]
        args: list[int] = [token[1] if token and token[1] else -1]
        for partition, offset in markers.items():
            before = known.get(partition)
            args += (-1 if before is None else before, offset)
        token_kept, *refused = await self._raise(keys=keys, args=args)
        if not token_kept:
            return None
        partitions = list(markers)
        return {partitions[int(i) - 1] for i in refused}

    def _key(self, partition: int) -> str:
        return marker_key(self.prefix, partition)
