"""When population refits start and when their results take effect, in event time.

A refit starts when the watermark passes a multiple of `refit_interval_days` and
takes effect when it passes `refit_install_delay_days` later. Fitting may run in
another process (an `Executor`) meanwhile, off the hot path; the install point does
not depend on how long the fit took (the caller waits if it is not done), so replays
stay deterministic whether or not an executor is used.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from models.config import ScoringConfig
from models.errors import FitError, NotEnoughData
from models.refit import PopulationStats, fit_value_params
from models.shared_stats import noted_absent
from models.value import ValueParams

if TYPE_CHECKING:
    from models.shared_fits import SharedFits


@dataclass(frozen=True, slots=True)
class PendingFit:
    future: Future | None  # None: fit in-process when the result is due
    through_day: int
    install_day: int
    stats: PopulationStats  # the partition's own
    previous: ValueParams
    slot: int | None = None  # a leader's: the followers' statistics it fits with


@dataclass(frozen=True, slots=True)
class FitOutcome:
    """A finished refit: new parameters, or the reason none were installed."""

    through_day: int
    install_day: int
    params: ValueParams | None
    error: str | None
    too_early: bool = False  # no fit for lack of data yet (NotEnoughData), not a fault

    @classmethod
    def failed(cls, through_day: int, install_day: int, error: FitError) -> FitOutcome:
        return cls(through_day, install_day, None, str(error), isinstance(error, NotEnoughData))


def outcome_record(outcome: FitOutcome, kind: str = "outcome") -> tuple:
    """A refit's outcome as a record of JSON types (`models.shared_fits`)."""
    params = outcome.params.as_dict() if outcome.params is not None else None
    return (kind, outcome.install_day, params, outcome.error, outcome.too_early)


class RefitSchedule:
    """A partition's own refits. With `publish` set it leads the other partitions
    (`models.shared_fits`): it publishes its progress, its refits and their outcomes;
    with `book` set, an outcome already published for an install day is the one
    installed (a leader that took over installs what its predecessor published), and
    with the book's `partitions` above 1 it fits on the followers' statistics too:
    a refit is submitted once they are in (`awaiting_stats` until then)."""

    def __init__(
        self,
        config: ScoringConfig,
        executor: Executor | None = None,
        publish: Callable[[tuple], None] | None = None,
        book: SharedFits | None = None,
    ) -> None:
        self.interval = config.refit_interval_days
        self.delay = config.refit_install_delay_days
        self.config = config
        self.executor = executor
        self.next_day: int | None = None
        self.pending: PendingFit | None = None
        self.publish = publish
        self.book = book
        self._published_progress: int | None = None
        self._ready: FitOutcome | None = None  # the pending fit's outcome, once known
        self._published_days: set[int] = set()  # install days of the outcomes it published

    @property
    def next_work_day(self) -> int | None:
        """The watermark day from which `step` has work to do; None: it has not started."""
        if self.next_day is None:
            return None
        if self.pending is None:
            return self.next_day
        return min(self.next_day, self.pending.install_day)

    @property
    def due_day(self) -> int | None:
        """The watermark day from which `step` needs the pending refit's outcome: its
        install day or, alone, the next refit slot if that comes first (a refit started
        between slots, after a gap in the data, is finished there); None: none pending."""
        pending = self.pending
        if pending is None:
            return None
        if self.publish is None and self.next_day is not None:
            return min(pending.install_day, self.next_day)
        return pending.install_day

    def step(
        self,
        watermark_day: int,
        fit_inputs: Callable[[], tuple[PopulationStats, ValueParams]],
    ) -> list[FitOutcome]:
        """Install what is due, then start a refit if one is due; returns the outcomes."""
        if (
            self.next_day is not None
            and watermark_day < self.next_day
            and (self.pending is None or watermark_day < self.pending.install_day)
        ):
            self._progress(watermark_day)
            return []  # the common case, once per event: nothing to do
        outcomes = []
        if self.pending is not None and watermark_day >= self.pending.install_day:
            outcomes.append(self._finish())
        if self.next_day is None:
            self.next_day = (watermark_day // self.interval + 1) * self.interval
        elif watermark_day >= self.next_day:
            self.next_day = (watermark_day // self.interval + 1) * self.interval
            # A leader keeps the install day it announced (the other partitions install
            # on it): while a refit is pending it starts none. Alone, a partition
            # finishes a slow or long-delayed fit first.
            if self.pending is None or self.publish is None:
                if self.pending is not None:
                    outcomes.append(self._finish())
                stats, previous = fit_inputs()
                self._start(stats, previous, watermark_day)
        self._progress(watermark_day)
        return outcomes

    def _progress(self, watermark_day: int) -> None:
        if self.publish is not None and (
            self._published_progress is None or watermark_day > self._published_progress
        ):
            self._published_progress = watermark_day
            self._close_stale(watermark_day)
            self.publish(("progress", watermark_day))

    def poll(self) -> None:
        """A leader publishes the outcome of a fit as soon as it is done (the followers
        may need it before the leader's own clock reaches the install day)."""
        pending = self.pending
        if (
            self.publish is None
            or pending is None
            or pending.install_day in self._published_days
            or (pending.future is not None and not pending.future.done())
        ):
            return
        if self.awaiting_stats():
            return  # fitted once the followers' statistics are in
        if pending.future is None and self.executor is not None:
            self.resume()  # restored from a checkpoint, or its statistics just came in
            if self.pending is not None and self.pending.future is not None:
                return
            pending = self.pending  # the executor is broken: fit in-process now
        self._ready = self._outcome(pending)
        self._publish_outcome(self._ready)

    def resume(self) -> None:
        """After a restore: fit the pending refit in the executor again (a checkpoint
        keeps no future), once its statistics are all in."""
        pending = self.pending
        if pending is not None and pending.install_day not in self._published_days:
            self._submit_pending()

    def _close_stale(self, watermark_day: int) -> None:
        """Close the refits announced (by a former run of this leader) that it will not
        finish: not its pending one, and due before any it could still start. Followers
        would wait for them for ever. (Replays of data at rest never leave any.)"""
        book, pending = self.book, self.pending
        if book is None:
            return
        for day, outcome in sorted(book.outcomes.items()):
            if day > watermark_day + self.delay:
                break
            if (
                outcome is None
                and day not in self._published_days
                and (pending is None or day != pending.install_day)
            ):
                error = "not fitted: the leading partition restarted from an earlier checkpoint"
                self._publish_outcome(FitOutcome(day, day, None, error, True))

    def _publish_outcome(self, outcome: FitOutcome) -> None:
        if self.publish is not None and outcome.install_day not in self._published_days:
            self._published_days.add(outcome.install_day)
            self.publish(outcome_record(outcome))

    def _start(self, stats: PopulationStats, previous: ValueParams, day: int) -> None:
        slot = self.book.slot_of(day) if self._gathers else None
        self.pending = PendingFit(None, stats.through_day, day + self.delay, stats, previous, slot)
        self._ready = None
        if self.publish is not None:
            passed = self._passed_unannounced(day + self.delay)
            self.publish(("start", day + self.delay))
            if passed:
                error = "not fitted: the others may have passed its day (leader restarted)"
                self._ready = FitOutcome(stats.through_day, day + self.delay, None, error, True)
                self._publish_outcome(self._ready)
                return
        self._submit_pending()

    def _passed_unannounced(self, install_day: int) -> bool:
        """True for a refit due on a day within what a former run of this leader
        published (its progress) that the former run never announced: a leader
        restarted from a checkpoint whose live input merged differently. Followers may
        be past that day and would never install it. (Never in a run that was not
        restarted: each refit is announced before the progress that covers it.)"""
        book = self.book
        if book is None:
            return False
        known = book.known_through
        return known is not None and install_day <= known and install_day not in book.outcomes

    @property
    def _gathers(self) -> bool:
        """A leader of several partitions: its fits take in the followers' statistics."""
        return self.publish is not None and self.book is not None and self.book.partitions > 1

    def awaiting_stats(self) -> bool:
        """True while the pending refit waits for followers' statistics (a caller due
        to install it holds its events back meanwhile)."""
        pending, book = self.pending, self.book
        return (
            pending is not None
            and pending.future is None
            and getattr(pending, "slot", None) is not None
            # published already (by this leader before a restart): not fitted again,
            # and its statistics may be gone from the topic
            and book.outcomes.get(pending.install_day) is None  # type: ignore[union-attr]
            and bool(book.missing_stats(pending.slot))  # type: ignore[union-attr]
        )

    def _fit_stats(self, pending: PendingFit) -> PopulationStats:
        """The statistics to fit on: the partition's own and, for a leader of several,
        the followers' for the refit's slot."""
        slot = getattr(pending, "slot", None)
        if slot is None or self.book is None:
            return pending.stats
        return self.book.with_followers(pending.stats, slot)

    def _absent(self, pending: PendingFit) -> list[int]:
        slot = getattr(pending, "slot", None)
        return self.book.absent_stats(slot) if slot is not None and self.book else []

    def _submit_pending(self) -> None:
        """Start the pending fit in the executor, once its statistics are all in."""
        pending = self.pending
        if (
            pending is None
            or pending.future is not None
            or self.executor is None
            or pending.install_day in self._published_days
            or (self.book is not None and self.book.outcomes.get(pending.install_day) is not None)
            or self.awaiting_stats()
        ):
            return
        self.pending = replace(
            pending, future=self._submit(self._fit_stats(pending), pending.previous)
        )

    def _submit(self, stats: PopulationStats, previous: ValueParams) -> Future | None:
        """The fit in the executor; None without one, or when it is shut down or broken
        (the fit then runs in-process when its outcome is needed)."""
        if self.executor is None:
            return None
        try:
            return self.executor.submit(fit_value_params, stats, self.config, previous)
        except RuntimeError:
            return None

    def _finish(self) -> FitOutcome:
        pending, self.pending = self.pending, None
        ready, self._ready = self._ready, None
        outcome = ready if ready is not None else self._outcome(pending)
        self._publish_outcome(outcome)
        return outcome

    def _outcome(self, pending: PendingFit) -> FitOutcome:
        published = self.book.outcomes.get(pending.install_day) if self.book else None
        if published is not None:
            return published
        try:
            params = self._result(pending)
        except FitError as error:
            return FitOutcome.failed(pending.through_day, pending.install_day, error)
        return FitOutcome(pending.through_day, pending.install_day, params, None)

    def _result(self, pending: PendingFit) -> ValueParams:
        if pending.future is not None:
            try:
                return noted_absent(pending.future.result(), self._absent(pending))
            except FitError:
                raise
            except Exception:  # the fit process died (e.g. OOM-killed): same fit, in-process
                pass
        params = fit_value_params(self._fit_stats(pending), self.config, pending.previous)
        return noted_absent(params, self._absent(pending))

    def blocks(self, day: int) -> bool:
        return False  # a partition fitting for itself never waits for another

    def cancel(self) -> None:
        """Drop a fit not yet due (e.g. a final refit replaces it); a leader closes it
        as not fitted, so that no follower waits for it."""
        pending = self.pending
        if pending is not None and pending.future is not None:
            pending.future.cancel()
        if pending is not None and self.publish is not None:
            error = "not fitted: replaced by the final refit"
            self._publish_outcome(
                FitOutcome(pending.through_day, pending.install_day, None, error, True)
            )
        self.pending = None
