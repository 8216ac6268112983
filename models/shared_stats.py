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
`("stats", lo, hi, partition, generation, chunk, chunks, data)`, `data` being base64
of the chunk's rows packed little-endian (int32 first day, last day, repeat days;
float64 mean repeat spend), 20 bytes per purchasing customer; `generation` a digest
of the whole snapshot, so that chunks of two copies (a follower restarted from a
checkpoint publishes its snapshot again, its rows perhaps in another order) never mix.
Every reader takes the records in the topic's order and so agrees on which snapshot
stands: the first complete one covering a slot; a later snapshot of the same follower
closes an open one where it starts.

>>> rows = StatsRows.of([3, 5], [9, 5], [2, 0], [12.5, 0.0])
>>> records = rows.records(lo=60, hi=90, partition=2)
>>> [r[:4] + r[5:7] for r in records]
[('stats', 60, 90, 2, 0, 1)]
>>> book = StatsBook()
>>> book.add(records[0]), book.rows_for(2, 90) == rows, book.rows_for(2, 120)
(True, True, None)
>>> rows.stats(through_day=10).T_days.tolist()
[7.0, 5.0]
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field, replace

import numpy as np

from models.refit import PopulationStats
from models.value import ValueParams

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
        chunks = [self._packed(start) for start in starts]
        generation = hashlib.sha1("".join(chunks).encode()).hexdigest()[:16]
        return [
            ("stats", lo, hi, partition, generation, index, len(chunks), data)
            for index, data in enumerate(chunks)
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
        len(record) == 8
        and isinstance(record[1], int)
        and (record[2] is None or isinstance(record[2], int))
        and isinstance(record[3], int)
        and isinstance(record[4], str)
        and all(isinstance(value, int) for value in record[5:7])
        and 0 <= record[5] < record[6]
        and isinstance(record[7], str)
    )
    if not ok:
        raise ValueError(f"not a value-statistics record: {record!r:.200}")


@dataclass
class _Snapshot:
    lo: int
    hi: int | None  # as published (None: open); the key of its records
    generation: str
    chunks: int
    data: dict[int, str] = field(default_factory=dict)
    until: int | None = None  # the last slot it covers: `hi`, or where a later one starts
    completed: int | None = None  # its rank among the snapshots completed, once complete

    def covers(self, slot: int) -> bool:
        return self.lo <= slot and (self.until is None or slot <= self.until)

    def keys(self, partition: int) -> list[tuple]:
        return [(partition, self.lo, self.hi, self.generation, i) for i in sorted(self.data)]


class StatsBook:
    """The followers' snapshots as received, per partition in arrival order (the same
    order for every reader of the topic; the first copy of a chunk stands)."""

    def __init__(self) -> None:
        self._snapshots: dict[int, list[_Snapshot]] = {}
        self._completed = 0
        # Snapshots superseded as a whole: (partition, lo, hi, generation, chunk) of
        # their records, for tombstones (`prune` returns them with the others).
        self._replaced: list[tuple] = []

    def add(self, record: tuple) -> bool:
        """Take in one chunk; True when it was new."""
        check_stats_record(record)
        _, lo, hi, partition, generation, index, chunks, data = record
        snapshots = self._snapshots.setdefault(partition, [])
        snapshot = next(
            (s for s in snapshots if (s.lo, s.hi, s.generation) == (lo, hi, generation)), None
        )
        if snapshot is None:
            snapshot = _Snapshot(lo, hi, generation, chunks, until=hi)
            self._supersede_open(partition, snapshot)
            snapshots.append(snapshot)
        if index in snapshot.data or snapshot.chunks != chunks:
            return False
        snapshot.data[index] = data
        if len(snapshot.data) == snapshot.chunks:
            self._completed += 1
            snapshot.completed = self._completed
        return True

    def _supersede_open(self, partition: int, new: _Snapshot) -> None:
        """A follower that published an open snapshot (idle, or its end) and then
        another: the open one stops where the new one starts, or goes if both start
        together (the new one is what the follower knows now)."""
        snapshots = self._snapshots[partition]
        for old in list(snapshots):
            if old.until is None and old.lo <= new.lo:
                if old.lo < new.lo:
                    old.until = new.lo - 1
                else:
                    snapshots.remove(old)
                    self._replaced.extend(old.keys(partition))

    def rows_for(self, partition: int, slot: int) -> StatsRows | None:
        """The partition's snapshot for `slot` (None: none complete yet): the first
        completed of those covering it."""
        snapshot = self._find(partition, slot)
        if snapshot is None:
            return None
        return StatsRows.unpacked([snapshot.data[i] for i in range(snapshot.chunks)])

    def has(self, partition: int, slot: int) -> bool:
        return self._find(partition, slot) is not None

    def passed(self, partition: int, slot: int) -> bool:
        """True when the partition has published a snapshot for later slots only: its
        snapshot for `slot`, if any, is gone (deleted once a later refit was out)."""
        return any(s.lo > slot for s in self._snapshots.get(partition, ()))

    def _find(self, partition: int, slot: int) -> _Snapshot | None:
        found = [
            s
            for s in self._snapshots.get(partition, ())
            if s.completed is not None and s.covers(slot)
        ]
        return min(found, key=lambda s: s.completed) if found else None  # type: ignore[arg-type, return-value]

    def prune(self, before_slot: int) -> list[tuple]:
        """Forget the snapshots of slots before `before_slot` only (no refit will need
        them); returns the (partition, lo, hi, generation, chunk) of their records,
        and of the snapshots replaced meanwhile, for tombstones."""
        gone, self._replaced = self._replaced, []
        for partition, snapshots in self._snapshots.items():
            keep = []
            for s in snapshots:
                if s.until is not None and s.until < before_slot:
                    gone.extend(s.keys(partition))
                else:
                    keep.append(s)
            snapshots[:] = keep
        return gone

    def __len__(self) -> int:
        return sum(len(s) for s in self._snapshots.values())


def noted_absent(params: ValueParams, absent: list[int]) -> ValueParams:
    """A fit that went without some followers' statistics says so (its caller did not
    wait for them, or they were gone: not as a replay fits).

    >>> from models.value import PRIOR_PARAMS
    >>> noted_absent(PRIOR_PARAMS, [2]).notes[-1]
    'without the statistics of partitions [2]: not published'
    """
    if not absent:
        return params
    note = f"{_ABSENT_NOTE} {absent}: not published"
    return replace(params, notes=(*params.notes, note))


_ABSENT_NOTE = "without the statistics of partitions"


def fitted_without_some(params: ValueParams) -> bool:
    """Whether a fit went without some followers' statistics (`noted_absent`).

    >>> from models.value import PRIOR_PARAMS
    >>> fitted_without_some(PRIOR_PARAMS), fitted_without_some(noted_absent(PRIOR_PARAMS, [1]))
    (False, True)
    """
    return any(note.startswith(_ABSENT_NOTE) for note in params.notes)


def stats_key(partition: int, lo: int, hi: int | None, generation: str, chunk: int) -> bytes:
    """A chunk's key on the value-fits topic (compacted: one value per chunk).

    >>> stats_key(2, 60, None, "ab12", 0)
    b'stats:2:60:open:ab12:0'
    """
    return f"stats:{partition}:{lo}:{'open' if hi is None else hi}:{generation}:{chunk}".encode()
