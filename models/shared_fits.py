"""One set of value-model parameters for every partition: the leader fits, the others
install what it published, at the same event-time days.

With several partitions, partition 0 (the leader) refits the value model on every
partition's customers on its event-time schedule, as a single partition does, and
publishes what it does as records:

- `("progress", day)`: its refit schedule has seen every watermark day up to `day`,
  so every refit it will still start takes effect after `day + install delay`;
- `("start", install_day)`: a refit started; it takes effect on `install_day`;
- `("outcome", install_day, params, error, too_early)`: how that refit ended;
- `("final", day, params, error, too_early)`: the final refit of an offline run;
- `("idle", 1 or 0)`: the service's partition 0 has had nothing to read for a while
  (the others go on without it), or reads again.

The followers publish their value statistics for the leader's refit slots
(`models.shared_stats`), so the leader fits on every partition's customers: its refit
starts when its watermark passes a slot, and is fitted once every follower's
statistics for that slot are in (a leader whose install day comes first waits for
them, as for a fit still running). A follower publishes before its watermark reaches
a slot, even with the event that would take it there held back, so leader and
followers never wait for each other.

The followers never fit: each installs the published outcomes
when its own watermark reaches their install days. A follower whose next event would
take its watermark past what the leader has published waits (the caller holds the
event back), so every partition installs the same parameters at the same event time
whatever the speed of the others: replays stay deterministic.

Records are plain tuples of JSON types (a published topic carries them as JSON).

>>> book = SharedFits(install_delay_days=30)
>>> book.blocks(5)  # the leader has published nothing yet
True
>>> book.apply(("progress", 100)), book.apply(("start", 130)), book.blocks(129)
(True, True, False)
>>> book.blocks(130)  # the refit taking effect on day 130 has no outcome yet
True
>>> book.apply(("outcome", 130, None, "too few customers", True)), book.blocks(130)
(True, False)
>>> book.outcomes[130].error
'too few customers'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from models.refit import PopulationStats
from models.refit_schedule import FitOutcome
from models.shared_stats import FINAL_SLOT, FROM_THE_START, StatsBook, StatsRows
from models.value import ValueParams

Record = tuple


@dataclass
class SharedFits:
    """What the leader has published, as known here (records in any repetition)."""

    install_delay_days: int
    progress_day: int | None = None
    final: FitOutcome | None = None
    partitions: int = 1  # the leader fits on the statistics of all of them
    interval_days: int = 30  # refit slots are multiples of it

    def __post_init__(self) -> None:
        self.stats = StatsBook()  # the followers' statistics, for the leader's refits
        self.outcomes: dict[int, FitOutcome | None] = {}  # install day -> outcome (None: running)
        self._running: set[int] = set()  # install days whose outcome is not known yet
        self.version = 0  # bumped by every record that changed something
        # The leader has had nothing to read for a while (the service's setting): the
        # others go on without waiting for its progress, at the cost of late installs.
        self.leader_idle = False
        # Followers' statistics no refit needs any more, (partition, lo, hi, chunk)
        # each: the worker holding the leader deletes them from the topic.
        self.pruned: list[tuple[int, int, int | None, int]] = []

    def slot_of(self, day: int) -> int:
        """The refit slot of a refit started with the watermark on `day`."""
        return day // self.interval_days * self.interval_days

    def with_followers(self, own: PopulationStats, slot: int) -> PopulationStats:
        """The leader's statistics `own` joined by each follower's for `slot`
        (`FINAL_SLOT`: the final refit), aged to the same day, in partition order; a
        follower whose statistics are not in is left out (`absent_stats`)."""
        parts = [own]
        for partition in range(1, self.partitions):
            rows = self.stats.rows_for(partition, slot)
            if rows is not None:
                parts.append(rows.stats(own.through_day))
        return PopulationStats.merge(parts) if len(parts) > 1 else own

    def missing_stats(self, slot: int) -> list[int]:
        """The followers whose statistics for `slot` are not in yet and may still come
        (cheap: nothing is decoded). A follower that has published statistics for
        later slots only is not waited for: those for `slot` were deleted (a later
        refit was out; only a leader restarted from an older checkpoint asks)."""
        return [
            p
            for p in range(1, self.partitions)
            if not self.stats.has(p, slot) and not self.stats.passed(p, slot)
        ]

    def absent_stats(self, slot: int) -> list[int]:
        """The followers whose statistics for `slot` a fit now would go without."""
        return [p for p in range(1, self.partitions) if not self.stats.has(p, slot)]

    def has_final_stats(self) -> bool:
        return not self.missing_stats(FINAL_SLOT)

    def apply(self, record: Record) -> bool:
        """Take in one record; the first outcome per install day stands (a leader that
        restarted publishes its refits again). True when something changed; ValueError
        for a record of another shape."""
        if isinstance(record, tuple | list) and record and record[0] == "stats":
            changed = self.stats.add(tuple(record))
            self.version += changed
            return changed
        _check(record)
        kind, day = record[0], int(record[1])
        changed = False
        if kind == "idle":
            if self.leader_idle != bool(day):
                self.leader_idle, changed = bool(day), True
        elif kind == "progress":
            if self.progress_day is None or day > self.progress_day:
                self.progress_day, changed = day, True
        elif kind == "start":
            if day not in self.outcomes:
                self.outcomes[day], changed = None, True
                self._running.add(day)
        elif kind in ("outcome", "final"):
            outcome = _outcome(record)
            if kind == "final":
                if self.final is None:
                    self.final, changed = outcome, True
            elif self.outcomes.get(day) is None:
                self.outcomes[day], changed = outcome, True
                self._running.discard(day)
                self.pruned.extend(self.stats.prune(self.slot_of(day - self.install_delay_days)))
        if changed:
            self.version += 1
        return changed

    @property
    def known_through(self) -> int | None:
        """The last watermark day a follower may reach: no refit the leader has yet
        to start takes effect by then."""
        if self.progress_day is None:
            return None
        return self.progress_day + self.install_delay_days

    def blocks(self, day: int) -> bool:
        """True when a follower must not move its watermark to `day` yet."""
        known = self.known_through
        if (known is None or day > known) and not self.leader_idle:
            return True
        # (checked per event: the running refits, not every outcome ever published)
        return any(at <= day for at in self._running)

    def next_install_after(self, day: int | None) -> int | None:
        later = [at for at in self.outcomes if day is None or at > day]
        return min(later) if later else None


def _check(record: Record) -> None:
    sizes = {"progress": 2, "start": 2, "idle": 2, "outcome": 5, "final": 5}
    if (
        not isinstance(record, tuple | list)
        or len(record) < 2
        or not isinstance(record[0], str)
        or sizes.get(record[0]) != len(record)
        or not isinstance(record[1], int)
        or (len(record) == 5 and not isinstance(record[2], dict | None))
    ):
        raise ValueError(f"not a shared-fit record: {record!r:.200}")


def _outcome(record: Record) -> FitOutcome:
    _, install_day, params, error, too_early = record
    value = ValueParams.from_dict(params) if params is not None else None
    return FitOutcome(
        through_day=install_day, install_day=install_day, params=value, error=error,
        too_early=bool(too_early),
    )  # fmt: skip


class FollowerSchedule:
    """A follower partition's refits: the leader's outcomes, each installed when the
    watermark reaches its install day. Its caller holds back an event that `blocks`.
    With `publish_stats`, it publishes its statistics for the leader's refit slots
    (`models.shared_stats`) before its watermark reaches them."""

    pending = None  # never a fit of its own (read by checkpoints)
    next_day = None
    publish = None

    def __init__(
        self,
        book: SharedFits,
        partition: int | None = None,
        publish_stats: Callable[[tuple], None] | None = None,
    ) -> None:
        self.book = book
        self.installed_through: int | None = None  # every install day up to it is done
        self.late_installs = 0  # outcomes installed after their day (a caller did not wait)
        self._last_step_day: int | None = None
        self.partition = partition
        self.publish_stats = publish_stats if partition is not None else None
        self.stats_through: int | None = None  # the last slot its snapshots cover
        self.open_stats = False  # it published an open snapshot (idle, or its end)

    @property
    def snapshot_day(self) -> int | None:
        """The watermark day from which it publishes its next snapshot (None: never)."""
        if self.publish_stats is None:
            return None
        if self.stats_through is None:
            return -(1 << 40)
        interval = self.book.interval_days  # (on its grid, should the interval change)
        return (self.stats_through // interval + 1) * interval

    def snapshot(self, day: int, rows: StatsRows) -> None:
        """Publish `rows` for every slot up to `day` not covered yet (its watermark is
        about to reach `day`; `rows` are its statistics as they stand before)."""
        top = self.book.slot_of(day)
        if self.publish_stats is None or (
            self.stats_through is not None and top <= self.stats_through
        ):
            return
        lo = FROM_THE_START if self.stats_through is None else self.stats_through + 1
        self.stats_through = top
        self.open_stats = False
        for record in rows.records(lo, top, self.partition):  # type: ignore[arg-type]
            self.publish_stats(record)

    def snapshot_open(self, rows: StatsRows) -> None:
        """Publish `rows` for every later slot and the final refit (its input has ended,
        or it is idle: a later event that changes them is not seen by fits that used
        them, unlike in a replay)."""
        if self.publish_stats is None:
            return
        lo = FROM_THE_START if self.stats_through is None else self.stats_through + 1
        self.open_stats = True
        for record in rows.records(lo, None, self.partition):  # type: ignore[arg-type]
            self.publish_stats(record)

    def blocks(self, day: int) -> bool:
        return self.book.blocks(day)

    @property
    def next_work_day(self) -> int | None:
        """The next install day known, or the day after what is known (the leader will
        have published more by the time the watermark may get there)."""
        book = self.book
        days = [book.next_install_after(self.installed_through)]
        if book.known_through is not None and not book.leader_idle:
            days.append(book.known_through + 1)
        known = [day for day in days if day is not None]
        return min(known) if known else None

    def step(self, watermark_day: int, fit_inputs: object = None) -> list[FitOutcome]:
        """The outcomes due by `watermark_day` not installed yet, in order."""
        book, outcomes = self.book, []
        last, self._last_step_day = self._last_step_day, watermark_day
        for day in sorted(d for d in book.outcomes if self._after(d) and d <= watermark_day):
            outcome = book.outcomes[day]
            if outcome is None:  # still running at the leader: installed when known
                return outcomes
            if last is not None and day <= last:  # its day had passed here already
                self.late_installs += 1
            outcomes.append(outcome)
            self.installed_through = day
        known = book.known_through
        if known is not None:
            through = min(watermark_day, known)
            if self._after(through):
                self.installed_through = through
        return outcomes

    def _after(self, day: int) -> bool:
        return self.installed_through is None or day > self.installed_through

    def poll(self) -> None:
        pass

    def cancel(self) -> None:
        pass
