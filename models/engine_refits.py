"""The engine's population refits of the value model (`models.engine.ScoringEngine`
inherits them): the event-time schedule, a leader's publishing and a follower's
installs (`models.shared_fits`), the final refit, and the model-health event of each.

They use the engine's `config`, `scope`, `clock`, `counters`, `scorer`,
`refit_enabled`, `_refits` (a `RefitSchedule` or a `FollowerSchedule`) and
`_value_stats`.
"""

from __future__ import annotations

import math

from models.emitted import Output, Stream
from models.errors import FitError
from models.health_events import daily_event_id, model_health_event
from models.refit import PopulationStats, fit_value_params
from models.refit_schedule import FitOutcome, outcome_record
from models.shared_fits import FollowerSchedule
from models.shared_stats import FINAL_SLOT, fitted_without_some, noted_absent
from models.timeline import day_of, start_of_day
from models.value import ValueParams


class EngineRefits:
    """The refit half of `ScoringEngine` (a base class of it, never used alone)."""

    def _maybe_refit(self, outputs: list[Output]) -> list[Output]:
        if not self.refit_enabled or not self.clock.started:
            return outputs
        outcomes = self._refits.step(day_of(self.clock.watermark), self._fit_inputs)
        outputs.extend(self._apply_fit(outcome) for outcome in outcomes)
        return outputs

    def waiting_for_fit(self, at: float) -> bool:
        """True when an event at `at` would move the clock to the install day of a refit
        still running in the executor, or (a leader of several partitions) still
        waiting for the followers' statistics, or (a follower) past what the leader
        has published: a caller that must not block holds the event back until then.
        A follower whose clock the event would take to a refit slot publishes its
        statistics first (`models.shared_stats`), so the leader never waits for it."""
        if not self.refit_enabled:
            return False
        refits = self._refits
        watermark = max(at - self.clock.allowed_lateness, self.clock.watermark)
        if not math.isfinite(watermark):
            return False  # a record that moves no clock
        day = day_of(watermark)
        if at >= self._snapshot_at:  # a follower publishes first, even if it must wait
            self._snapshot_stats(day)
        if refits.blocks(day):
            return True  # a follower ahead of what the leader has published
        pending = refits.pending
        if pending is None or day < refits.due_day:
            return False
        if refits.awaiting_stats():
            return True  # a leader waiting for the followers' statistics
        refits.poll()  # (a leader: submit a fit whose statistics just came in)
        pending = refits.pending
        return pending is not None and pending.future is not None and not pending.future.done()

    @property
    def late_fit_installs(self) -> int:
        """Shared refits this follower installed after their day (their leader was
        released as idle, or a restarted leader merged live input differently): the
        scores between the two days used the older parameters, unlike a replay."""
        refits = self._refits
        return refits.late_installs if isinstance(refits, FollowerSchedule) else 0

    def poll_fits(self) -> None:
        """A leader starts a fit whose followers' statistics came in, and publishes a
        fit that is done (call it now and then)."""
        self._refits.poll()

    # -- a follower's statistics for the leader (`models.shared_stats`) --------------
    def _plan_snapshot(self) -> None:
        """The event time from which an event takes a follower's watermark to its next
        snapshot day (infinite: it publishes none)."""
        refits = self._refits
        day = refits.snapshot_day if isinstance(refits, FollowerSchedule) else None
        if day is None or not self.refit_enabled:
            self._snapshot_at = math.inf
        else:
            self._snapshot_at = start_of_day(day) + self.clock.allowed_lateness

    def _snapshot_stats(self, day: int) -> None:
        """A follower's watermark is about to reach `day`: publish its statistics for
        the slots up to it, as they stand (before the event that moves it)."""
        refits = self._refits
        if isinstance(refits, FollowerSchedule):
            refits.snapshot(day, self._value_stats.rows())
        self._plan_snapshot()

    def advance_clock(self, ts: float) -> None:
        """Move the watermark to `ts` without an event (a follower publishes first)."""
        if ts + self.clock.allowed_lateness >= self._snapshot_at and ts > self.clock.watermark:
            self._snapshot_stats(day_of(ts))
        self.clock.advance_watermark_to(ts)

    def publish_stats_end(self) -> None:
        """A follower whose input has ended (or is idle): its statistics for every later
        refit slot and the leader's final refit."""
        refits = self._refits
        if isinstance(refits, FollowerSchedule) and self.refit_enabled:
            refits.snapshot_open(self._value_stats.rows())

    def _fit_inputs(self) -> tuple[PopulationStats, ValueParams]:
        return self.statistics(self.current_day), self.scorer.params

    @property
    def current_day(self) -> int:
        """The latest day the data covers: the max event time or the watermark floor."""
        return day_of(max(self.clock.max_event_time, self.clock.watermark))

    def statistics(self, through_day: int) -> PopulationStats:
        return self._value_stats.collect(through_day)

    def refit(self, through_day: int) -> Output:
        """Fit the value model on all states now, precisely, and install it (a final or
        on-demand refit); a scheduled refit still pending is dropped."""
        refits = self._refits
        refits.cancel()
        if isinstance(refits, FollowerSchedule):  # the leader's final fit
            final = refits.book.final
            if final is None:
                raise FitError("the leading partition has published no final refit")
            return self._apply_fit(final, final=True)
        previous = self.scorer.params
        try:
            stats = self.statistics(through_day)
            book = refits.book if refits.publish is not None else None
            absent = []
            if book is not None and book.partitions > 1:  # a leader: everyone's
                stats, absent = (
                    book.with_followers(stats, FINAL_SLOT),
                    book.absent_stats(FINAL_SLOT),
                )
            params = noted_absent(
                fit_value_params(stats, self.config, previous, precise=True), absent
            )
            outcome = FitOutcome(through_day, through_day, params, None)
        except FitError as error:
            outcome = FitOutcome.failed(through_day, through_day, error)
        if refits.publish is not None:
            refits.publish(outcome_record(outcome, "final"))
        return self._apply_fit(outcome, final=True)

    def publish_end(self, as_of_day: int) -> None:
        """The leading partition at the end of an offline run (its clock advanced to
        the end of the as-of day): its progress to the end, for the others (their
        last events wait for it); its final refit follows (`publish_final`), once the
        followers' end statistics are in."""
        refits = self._refits
        if refits.publish is None:
            raise ValueError("only a leading partition publishes its end")
        refits.publish(("progress", as_of_day))

    def publish_final(self, as_of_day: int) -> list[Output]:
        """The leading partition's final refit, for everyone."""
        refits = self._refits
        if refits.publish is None:
            raise ValueError("only a leading partition publishes its final refit")
        if self.clock.started:
            return [self.refit(as_of_day)]
        nothing = FitOutcome(as_of_day, as_of_day, None, "no data in the leading partition")
        refits.publish(outcome_record(nothing, "final"))
        return []

    def _apply_fit(self, outcome: FitOutcome, final: bool = False) -> Output:
        if outcome.params is None:
            if outcome.too_early:
                self.counters.skipped_refits += 1
                status = "fit_skipped"
            else:
                self.counters.failed_refits += 1
                status = "fit_failed"
            detail = f"kept previous: {outcome.error}"
            return self._model_event(outcome.install_day, status, detail, final)
        params = outcome.params
        self.install(params)
        self.counters.refits += 1
        if fitted_without_some(params) and not isinstance(self._refits, FollowerSchedule):
            self.counters.refits_missing_statistics += 1  # unlike a replay: counted once
        detail = f"fitted on {params.n_customers} customers through {params.fitted_through}"
        if params.notes:
            detail += "; " + "; ".join(params.notes)
        return self._model_event(outcome.install_day, "fitted", detail, final)

    def install(self, params: ValueParams) -> None:
        if params.version != self.scorer.model_version:
            self.scorer = self.scorer.with_params(params)

    def _model_event(self, day: int, status: str, detail: str, final: bool = False) -> Output:
        """The model-health event of a refit; a final refit's id is its own (it may
        fall on a scheduled refit's day with the same outcome and version)."""
        params = self.scorer.params
        names = (
            ("r", "alpha", "s", "beta")
            if params.model == "pareto_nbd"
            else ("r", "alpha", "a", "b")
        )
        values = (*params.purchase, *params.spend)  # plain floats: numpy's do not serialize
        parameters = {n: float(v) for n, v in zip((*names, "p", "q", "v"), values, strict=True)}
        metrics = {
            "log_likelihood": float(params.log_likelihood or 0.0),
            "customers": params.n_customers,
        }
        kind = f"{status}:final" if final else status
        event_id = daily_event_id("value", kind, day, params.version, self.scope)
        value = model_health_event(
            event_id, start_of_day(day), "value", self.scope, params.version, status, detail,
            metrics, parameters,
        )  # fmt: skip
        return Output(Stream.MODEL_HEALTH, None, value)
