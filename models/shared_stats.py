"""The followers' value statistics, shipped to the leader so that it fits the shared
value model on every partition's customers (`models.shared_fits`).

The leader starts a refit when its watermark passes a refit slot (a multiple of
`refit_interval_days`). For that slot it needs each follower's statistics as they
stood just before the follower's own watermark first reached the slot day: a point in
the follower's input fixed by its data alone, so replays stay deterministic whatever
the speed of each partition. A follower publishes such a snapshot each time its
watermark is about to pass one or more slot days (an event it must hold back still
publishes first, so the leader never waits on a follower that waits on it). The
snapshot covers every slot day it passes at once: `lo <= slot <= hi`. An idle or
finished follower publishes an open snapshot (`hi` None): its statistics for every
later slot and for the final refit.

Records are plain tuples of JSON types, split into chunks that a broker accepts:
`("stats", lo, hi, partition, chunk, chunks, data)`, `data` being base64 of the
chunk's rows packed little-endian (int32 first day, last day, repeat days; float64
mean repeat spend), 20 bytes per purchasing customer.

>>> rows = StatsRows.of([3, 5], [9, 5], [2, 0], [12.5, 0.0])
>>> records = rows.records(lo=60, hi=90, partition=2)
>>> [r[:6] for r in records]
[('stats', 60, 90, 2, 0, 1)]
>>> book = StatsBook()
>>> book.add(records[0]), book.rows_for(2, 90) == rows, book.rows_for(2, 120)
(True, True, None)
>>> rows.stats(through_day=10).T_days.tolist()
[7.0, 5.0]
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field

import numpy as np

from models.refit import PopulationStats

FROM_THE_START = -(1 << 31)  # `lo` of a follower's first snapshot: every slot before
FINAL_SLOT = 1 << 40  # the slot of a final refit: only open snapshots cover it
CHUNK_ROWS = 20_000  # 400 kB a chunk, about 530 kB in base64: under a broker's 1 MB
_ROW_BYTES = 20


@dataclass(frozen=True, eq=False)
class StatsRows:
    """Per purchasing customer: first and last purchase day, repeat days, mean repeat
    spend (`models.value_stats.ValueStatsIndex.rows`)."""

    first: np.ndarray
    last: np.ndarray
    repeat: np.ndarray
    spend: np.ndarray

    @classmethod
    def of(cls, first, last, repeat, spend) -> StatsRows:
        """Copies: the arrays of a `ValueStatsIndex` change (and grow) later."""
        return cls(
            np.array(first, dtype="<i4"),
            np.array(last, dtype="<i4"),
            np.array(repeat, dtype="<i4"),
            np.array(spend, dtype="<f8"),
        )

    @classmethod
    def joined(cls, parts: list[StatsRows]) -> StatsRows:
        if not parts:
            return cls.of([], [], [], [])
        return cls(*(np.concatenate([getattr(p, name) for p in parts]) for name in _FIELDS))

    def __len__(self) -> int:
        return len(self.first)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, StatsRows) and all(
            np.array_equal(getattr(self, name), getattr(other, name)) for name in _FIELDS
        )

    def stats(self, through_day: int) -> PopulationStats:
        """The fit's statistics as of `through_day` (the leader's day)."""
        first, last = self.first.astype(float), self.last.astype(float)
        age = np.maximum(float(through_day), last) - first
        return PopulationStats(
            self.repeat.astype(float), last - first, age, self.spend.astype(float), through_day
        )

    def records(self, lo: int, hi: int | None, partition: int) -> list[tuple]:
        """The snapshot as records, one per chunk of `CHUNK_ROWS` rows (one at least)."""
        starts = range(0, max(len(self), 1), CHUNK_ROWS)
        return [
            ("stats", lo, hi, partition, index, len(starts), self._packed(start))
            for index, start in enumerate(starts)
        ]

    def _packed(self, start: int) -> str:
        end = start + CHUNK_ROWS
        raw = b"".join(
            np.ascontiguousarray(getattr(self, name)[start:end]).tobytes() for name in _FIELDS
        )
        return base64.b64encode(raw).decode("ascii")

    @classmethod
    def unpacked(cls, chunks: list[str]) -> StatsRows:
        parts = []
        for data in chunks:
            raw = base64.b64decode(data)
            n = len(raw) // _ROW_BYTES
            ints = np.frombuffer(raw, dtype="<i4", count=3 * n)
            spend = np.frombuffer(raw, dtype="<f8", count=n, offset=12 * n)
            parts.append(cls(ints[:n], ints[n : 2 * n], ints[2 * n :], spend))
        return cls.joined(parts)


_FIELDS = ("first", "last", "repeat", "spend")


def check_stats_record(record: tuple) -> None:
    """ValueError for a "stats" record of another shape."""
    ok = (
        len(record) == 7
        and isinstance(record[1], int)
        and (record[2] is None or isinstance(record[2], int))
        and all(isinstance(value, int) for value in record[3:6])
        and 0 <= record[4] < record[5]
        and isinstance(record[6], str)
    )
    if not ok:
        raise ValueError(f"not a value-statistics record: {record!r:.200}")


@dataclass
class _Snapshot:
    lo: int
    hi: int | None
    chunks: int
    data: dict[int, str] = field(default_factory=dict)

    def covers(self, slot: int) -> bool:
        return self.lo <= slot and (self.hi is None or slot <= self.hi)

    @property
    def complete(self) -> bool:
        return len(self.data) == self.chunks


class StatsBook:
    """The followers' snapshots as received, per partition in arrival order (the same
    order for every reader of the topic; the first copy of a chunk stands)."""

    def __init__(self) -> None:
        self._snapshots: dict[int, list[_Snapshot]] = {}

    def add(self, record: tuple) -> bool:
        """Take in one chunk; True when it was new."""
        check_stats_record(record)
        _, lo, hi, partition, index, chunks, data = record
        snapshots = self._snapshots.setdefault(partition, [])
        snapshot = next((s for s in snapshots if (s.lo, s.hi) == (lo, hi)), None)
        if snapshot is None:
            snapshot = _Snapshot(lo, hi, chunks)
            snapshots.append(snapshot)
        if index in snapshot.data or snapshot.chunks != chunks:
            return False
        snapshot.data[index] = data
        return True

    def rows_for(self, partition: int, slot: int) -> StatsRows | None:
        """The partition's first complete snapshot covering `slot` (None: none yet)."""
        snapshot = self._find(partition, slot)
        if snapshot is None:
            return None
        return StatsRows.unpacked([snapshot.data[i] for i in range(snapshot.chunks)])

    def has(self, partition: int, slot: int) -> bool:
        return self._find(partition, slot) is not None

    def _find(self, partition: int, slot: int) -> _Snapshot | None:
        for snapshot in self._snapshots.get(partition, ()):
            if snapshot.complete and snapshot.covers(slot):
                return snapshot
        return None

    def prune(self, before_slot: int) -> list[tuple[int, int, int | None, int]]:
        """Forget the closed snapshots of slots before `before_slot` (no refit will need
        them); returns their chunks' (partition, lo, hi, chunk), for tombstones."""
        gone = []
        for partition, snapshots in self._snapshots.items():
            keep = []
            for s in snapshots:
                if s.hi is not None and s.hi < before_slot:
                    gone.extend((partition, s.lo, s.hi, index) for index in sorted(s.data))
                else:
                    keep.append(s)
            snapshots[:] = keep
        return gone

    def __len__(self) -> int:
        return sum(len(s) for s in self._snapshots.values())


def stats_key(partition: int, lo: int, hi: int | None, chunk: int) -> bytes:
    """A chunk's key on the value-fits topic (compacted: one value per chunk).

    >>> stats_key(2, 60, None, 0)
    b'stats:2:60:open:0'
    """
    return f"stats:{partition}:{lo}:{'open' if hi is None else hi}:{chunk}".encode()
