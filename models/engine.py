"""One partition's scoring loop (or one offline replay's): pure, no I/O.

It owns the event clock, the customers' states (any mutable mapping: a dict
offline, a table-backed mapping in the service), the due-time heap of silent
customers, the population refit schedule and the counters. Callers feed raw
inputs or parsed events and get outputs back; they decide where outputs go.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, MutableMapping
from concurrent.futures import Executor

from models.churn_learning import ChurnLearning
from models.clock import EventClock
from models.config import ScoringConfig
from models.counters import Counters
from models.dead_letters import OriginInfo, dead_letter
from models.emitted import Output, Stream
from models.engine_refits import EngineRefits
from models.population import Population
from models.refit_schedule import RefitSchedule
from models.scorer import Scorer
from models.shared_fits import FollowerSchedule, SharedFits
from models.state import CustomerState
from models.timeline import SECONDS_PER_DAY, day_of, iso_utc, start_of_day
from models.timers import DayTimers
from models.transition import Status, Step, apply_event, due_cause, rescore, resolve_expired
from models.value import PRIOR_PARAMS, ValueParams
from models.value_stats import ValueStatsIndex
from schemas.outputs import DeadLetterReason
from schemas.parsing import Event, Rejected, parse_event


def future_detail(at: float, limit: float) -> str:
    """Why an event dated after the future limit is dead-lettered.

    >>> future_detail(86_400.0, 0.0)
    'event time 1970-01-02T00:00:00+00:00 is after 1970-01-01T00:00:00+00:00'
    """
    return f"event time {iso_utc(at)} is after {iso_utc(limit)}"


class ScoringEngine(EngineRefits):
    def __init__(
        self,
        config: ScoringConfig,
        params: ValueParams = PRIOR_PARAMS,
        states: MutableMapping[str, CustomerState] | None = None,
        *,
        refit: bool = True,
        fit_executor: Executor | None = None,
        scope: str = "all",
        derive_from_states: bool = True,
        shared: SharedFits | None = None,
        publish: Callable[[tuple], None] | None = None,
        partition: int | None = None,
    ) -> None:
        """`derive_from_states` off: the caller restores a checkpoint next, which
        derives the timers and quantiles from the states (one pass over them, not two:
        they may be on disk).

        `shared` (several partitions, `models.shared_fits`): partition 0 (or, without
        `partition`, the one given `publish`) leads and publishes its refits; another
        `partition` follows and publishes its value statistics with `publish`."""
        self.config = config
        self.scorer = Scorer(config, params)
        self.scope = scope  # names this engine's partition in programme result ids
        if self.scorer.programmes is not None:
            self.scorer.programmes.scope = scope
        self.states: MutableMapping[str, CustomerState] = {} if states is None else states
        self.clock = EventClock(config.allowed_lateness_seconds)
        self.counters = Counters()
        self.refit_enabled = refit
        # Events dated after this epoch time are dead-lettered (set by the caller from
        # the wall clock: the engine never reads it); None: no limit.
        self.future_limit: float | None = None
        # Erasure time by customer, while an earlier-dated event could still be applied.
        self.erasures: dict[str, float] = {}
        self._timers = DayTimers()
        # Each customer's live timer day; heap entries for other days are stale. Kept
        # here, not in the state: a state may live on disk (the worker's RocksDB store).
        self._timer_days: dict[str, int] = {}
        # The value model's statistics, kept as states change: a refit reads no state.
        self._value_stats = ValueStatsIndex()
        self._learning = ChurnLearning(config, self.scorer.churn, scope)
        # Several partitions share one value model: a follower installs what the leader
        # publishes (`models.shared_fits`); a partition alone, or the leader, fits.
        leads = shared is None or (publish is not None and partition in (None, 0))
        self._refits: RefitSchedule | FollowerSchedule = (
            RefitSchedule(config, fit_executor, publish, shared)
            if leads
            else FollowerSchedule(shared, partition, publish)  # type: ignore[arg-type]
        )
        self._snapshot_at = math.inf  # (a follower: `EngineRefits._plan_snapshot`)
        self._next_work_at = -math.inf
        # A bounded `on_clock` left customers due: the next call re-scores them first,
        # as one unbounded call would have (no labels learned in between).
        self._rescoring = False
        self._refreshed_day: int | None = None  # of the scorer's population snapshots
        self._plan_snapshot()
        if derive_from_states:
            self.rebuild_timers()

    # -- inputs ---------------------------------------------------------------------
    def process_raw(
        self, raw: bytes | str, origin: OriginInfo, until: float | None = None
    ) -> list[Output]:
        """Parse and apply one raw input; bad input becomes a dead-letter output.

        Events after `until` (event time) are counted and skipped.
        """
        return self.process_parsed(parse_event(raw), raw, origin, until)

    def process_parsed(
        self,
        parsed: Event | Rejected,
        raw: bytes | str,
        origin: OriginInfo,
        until: float | None = None,
    ) -> list[Output]:
        """`process_raw` of an input parsed already (`parse_event`)."""
        self.counters.read += 1
        if isinstance(parsed, Rejected):
            reason, detail = parsed.reason, parsed.detail
            return [self._counted(dead_letter(raw, origin, reason, detail, parsed.customer_id))]
        if until is not None and parsed.occurred_at.timestamp() > until:  # rare: offline only
            self.counters.after_until += 1
            return []
        return self.process_event(parsed, raw, origin)

    def process_event(
        self, event: Event, raw: bytes | str, origin: OriginInfo, clock_work: bool = True
    ) -> list[Output]:
        """Apply one parsed event, then the clock work its time makes due (`on_clock`),
        unless `clock_work` is off: a caller that bounds that work (the worker) checks
        `clock_work_due` and runs it in pieces before the next event."""
        customer_id = event.customer_id
        at = event.occurred_at.timestamp()
        clock = self.clock
        if self.future_limit is not None and at > self.future_limit:
            detail = future_detail(at, self.future_limit)
            reason = DeadLetterReason.FUTURE_TIMESTAMP
            return [self._counted(dead_letter(raw, origin, reason, detail, customer_id))]
        if at >= self._snapshot_at:  # a follower's statistics, before its clock moves on
            self._snapshot_stats(day_of(max(at - clock.allowed_lateness, clock.watermark)))
        if self.erasures and self._erased_before(customer_id, at):
            # Kept nowhere, not even as a dead letter: the customer asked to be erased.
            self.counters.dropped_after_erasure += 1
            return []
        # (outside the try: a store that fails to read, a disk store's I/O error, is no
        # fault of the event; dead-lettered, good data would be counted as bad input)
        state = self.states.get(customer_id)
        try:
            step = apply_event(state, event, clock.watermark, self.scorer, at)
            if step.status is Status.APPLIED or step.status is Status.ERASED:
                self._learn_population(state, step)
        except Exception as error:  # a bug must not stop the partition: dead-letter it
            detail = f"{type(error).__name__}: {error}"
            reason = DeadLetterReason.PROCESSING_ERROR
            return [self._counted(dead_letter(raw, origin, reason, detail, customer_id))]
        outputs = step.outputs
        if step.reason is not None:
            outputs.append(
                self._counted(dead_letter(raw, origin, step.reason, step.detail, customer_id))
            )
            return outputs
        if step.status is Status.DUPLICATE:
            self.counters.duplicates += 1
            return outputs
        if step.status is Status.PREDATES_CUSTOMER:
            self.counters.erasures_predating_customer += 1
            if at >= clock.watermark:  # events dated before it may still come: dropped
                self.erasures[customer_id] = max(at, self.erasures.get(customer_id, at))
            return outputs
        if step.status is Status.ERASED:
            self.erasures[customer_id] = outputs[0].at
            book = self.scorer.programmes
            if book is not None and state is not None and state.programmes is not None:
                book.erased(state.programmes.open)
        if step.dedupe_overflow:
            self.counters.dedupe_overflows += 1
        self._store(customer_id, step)
        self.counters.applied += 1
        clock.observe(at)
        if clock_work and clock.watermark >= self._next_work_at:
            outputs.extend(self.on_clock())
        return outputs

    @property
    def rescoring(self) -> bool:
        """True while a bounded `on_clock` has left customers due (also as restored from
        a checkpoint): they are re-scored before anything else happens."""
        return self._rescoring

    def clock_work_due(self) -> bool:
        """True when `on_clock` has something to do at the current watermark; never
        before the clock has started (no event applied yet: nothing can be due, though
        the schedules that start with the first clock work read as due)."""
        return self.clock.started and self.clock.watermark >= self._next_work_at

    # -- time -----------------------------------------------------------------------
    def advance_watermark(self, ts: float) -> list[Output]:
        """Move the watermark to `ts` (end of a replay; idle partitions in live mode)."""
        self.advance_clock(ts)
        return self.on_clock()

    def on_clock(self, max_rescores: int | None = None) -> list[Output]:
        """Re-score silent customers whose due time the watermark has passed (at most
        `max_rescores` of them), then refit. With customers left due, the refit waits
        for the call that re-scores the last of them (`clock_work_due` stays true), so
        a bounded caller's pieces give the outputs of one unbounded call."""
        watermark = self.clock.watermark
        timers = self._timers
        outputs: list[Output] = []
        today = day_of(watermark)
        if not self._rescoring:  # (else an earlier piece did it: the rest are re-scored first)
            if self.clock.started and self._refresh(today):
                self._check_health(outputs)
            first = timers.next_day()  # a catch-up's first day: only what came before it
            self._passed(
                start_of_day(first) if first is not None and first < today else watermark, outputs
            )
            if self.erasures:
                self._forget_erasures(watermark)
        budget = max_rescores if max_rescores is not None else math.inf
        passed_day = None
        while budget > 0:
            day = timers.next_day()
            if day is None or start_of_day(day) > watermark:
                break
            if day != passed_day and day < today:
                # A catch-up: what the clock passed before this day is labelled and closed
                # first, as a clock moving day by day would have (else a snapshot labelled
                # now is not there to space the next, or one is pushed out unlabelled).
                self._passed(start_of_day(day), outputs)
                passed_day = day
            day, customer_ids = timers.pop_day()
            for index, customer_id in enumerate(customer_ids):
                if budget <= 0:  # the rest stay due
                    for rest in customer_ids[index:]:
                        timers.add(day, rest)
                    break
                budget -= self._fire(day, customer_id, outputs)
        day = timers.next_day()
        self._rescoring = day is not None and start_of_day(day) <= watermark
        if self._rescoring:
            self._plan_next_work()
            return outputs
        # A catch-up's re-scores (days behind the watermark) may have taken snapshots
        # whose windows it has passed already: labelled now, as the watermark is past.
        self._passed(watermark, outputs)
        outputs = self._maybe_refit(outputs)
        if self.clock.started:
            for report in self._learning.reports(day_of(watermark)):
                outputs.append(Output(Stream.MODEL_HEALTH, None, report))
        self._plan_next_work()
        return outputs

    def _passed(self, watermark: float, outputs: list[Output]) -> None:
        """Label the churn snapshots and close the programme windows the watermark has
        passed."""
        self._resolve_labels(watermark)
        self._close_windows(watermark, outputs)

    def _erased_before(self, customer_id: str, at: float) -> bool:
        """True for an event of an erased customer dated at or before the erasure (a
        re-sent old event must not bring the customer back)."""
        erased_at = self.erasures.get(customer_id)
        return erased_at is not None and at <= erased_at

    def _forget_erasures(self, watermark: float) -> None:
        """Erasures the watermark has passed: any event dated before them is late now."""
        self.erasures = {c: t for c, t in self.erasures.items() if t >= watermark}

    def _resolve_labels(self, watermark: float) -> None:
        """Label as churned every snapshot whose window the watermark has passed."""
        window = self.config.churn_window_days
        for customer_id in self._learning.due_customers(watermark):
            state = self.states.get(customer_id)
            if state is not None and state.snapshots:
                step = resolve_expired(state, watermark, window)
                if step.labels:
                    self._store(customer_id, step)

    def _close_windows(self, watermark: float, outputs: list[Output]) -> None:
        """Close the programme attribution windows the watermark has passed: an outcome
        per window, then each changed programme's result."""
        book = self.scorer.programmes
        if book is None:
            return
        closed_any = False
        for customer_id in book.due_customers(watermark):
            state = self.states.get(customer_id)
            if state is None or state.programmes is None:
                continue  # erased: nothing kept
            memory, closed = state.programmes.closing(watermark, book.config.refund_grace_seconds)
            if not closed:
                continue
            new = state.copy()
            new.programmes = memory
            self.states[customer_id] = new  # no value statistic changed: index as it is
            for attribution in closed:
                value = book.observe(customer_id, attribution)
                outputs.append(Output(Stream.PROGRAMME_OUTCOMES, customer_id, value))
            closed_any = True
        if closed_any:
            for value in book.results(day_of(watermark)):
                outputs.append(Output(Stream.PROGRAMME_OUTCOMES, value["programme_id"], value))

    def _fire(self, day: int, customer_id: str, outputs: list[Output]) -> int:
        """Handle one timer; returns 1 when the customer was re-scored."""
        if self._timer_days.get(customer_id) != day:
            return 0  # erased, or superseded by an earlier timer
        state = self.states.get(customer_id)
        if state is None:
            return 0
        if state.due_day is None or state.due_day > day:
            # Newer events moved the due time later: follow it now, lazily.
            self._set_timer(customer_id, state.due_day)
            return 0
        at = start_of_day(day)
        clock = self.clock
        current = at >= clock.watermark - SECONDS_PER_DAY - clock.allowed_lateness
        step = rescore(state, customer_id, at, due_cause(day), self.scorer, current)
        self._learn_population(state, step)
        self._store(customer_id, step)
        self._set_timer(customer_id, step.state.due_day)
        self.counters.rescored += 1
        outputs.extend(step.outputs)
        return 1

    def rebuild_timers(self) -> None:
        """Rebuild what derives from the states (after restoring them, or to drop stale
        timers): the due and label timers, the population quantiles and the value-model
        statistics."""
        for _ in self.rebuild_in_steps():
            pass

    def rebuild_in_steps(self, states_per_step: int = 20_000) -> Iterator[int]:
        """`rebuild_timers` in steps, yielding the states read so far after every
        `states_per_step`, so a caller on an event loop can let others run (a million
        states on disk take seconds). The engine is not usable until it is exhausted."""
        if states_per_step < 1:
            raise ValueError("states_per_step must be at least 1")
        self._timers.clear()
        self._timer_days.clear()
        # One pass keeping only times: the states may be on disk (read, then dropped).
        snapshot_times, window_ends = [], []
        population = self.scorer.population = Population()
        value_stats = self._value_stats = ValueStatsIndex()
        for read, (customer_id, state) in enumerate(self.states.items(), 1):
            if read % states_per_step == 0:
                yield read
            self._set_timer(customer_id, state.due_day)
            value_stats.put(customer_id, state)
            if state.snapshots:
                snapshot_times.append((customer_id, [s[0] for s in state.snapshots]))
            if state.programmes is not None and state.programmes.open:
                window_ends.append((customer_id, [a.end for a in state.programmes.open]))
            population.move(None, state.population_bins)
        self._learning.rebuild(snapshot_times)
        if self.scorer.programmes is not None:
            self.scorer.programmes.rebuild(window_ends)
        self._plan_next_work()

    def _compact_timers(self) -> None:
        """Drop the stale heap entries: one per customer, at their live timer day (no
        state is read)."""
        self._timers.clear()
        for customer_id, day in self._timer_days.items():
            self._timers.add(day, customer_id)

    def _set_timer(self, customer_id: str, day: int | None) -> None:
        """The customer's one live timer (older heap entries for them are stale)."""
        if day is None:
            self._timer_days.pop(customer_id, None)
        else:
            self._timer_days[customer_id] = day
            self._timers.add(day, customer_id)

    def _refresh(self, day: int) -> bool:
        """Once per event-time day: freeze the population quantiles and the needs model
        that scores read until the next day. True on a new day."""
        if self._refreshed_day is None or day > self._refreshed_day:
            self._refreshed_day = day
            self.scorer.refresh(day)
            return True
        return False

    def _check_health(self, outputs: list[Output]) -> None:
        """Once per event-time day: programmes freeze or resume on the churn model's
        health (drift alarm, rolling AUC)."""
        book, churn = self.scorer.programmes, self.scorer.churn
        if book is None or churn is None:
            return
        event = book.on_health(churn.health(), start_of_day(self._refreshed_day))
        if event is not None:
            outputs.append(Output(Stream.MODEL_HEALTH, None, event))

    def _learn_population(self, previous: CustomerState | None, step: Step) -> None:
        """Move the customer in the population quantiles; learn what they bought."""
        new_bins = step.state.population_bins if step.state is not None else None
        old_bins = previous.population_bins if previous is not None else None
        self.scorer.population.move(old_bins, new_bins)
        if step.basket is not None:
            basket = step.basket
            self.scorer.needs.learn(basket.prior, basket.bought, basket.day)

    def _plan_next_work(self) -> None:
        """The watermark at which `on_clock` next has something to do (checked per event)."""
        next_day = self._timers.next_day()
        next_at = math.inf if next_day is None else start_of_day(next_day)
        if self._refreshed_day is not None:
            next_at = min(next_at, start_of_day(self._refreshed_day + 1))
        if self.refit_enabled:
            refit_day = self._refits.next_work_day
            if refit_day is not None:
                next_at = min(next_at, start_of_day(refit_day))
            elif not isinstance(self._refits, FollowerSchedule):
                next_at = -math.inf  # its schedule starts at the next clock work
            # (a follower with nothing known to install waits for nothing)
        book = self.scorer.programmes
        if book is not None and (window_day := book.next_day()) is not None:
            next_at = min(next_at, start_of_day(window_day))
        if self._learning.model is not None:
            learning_day = self._learning.next_day()
            next_at = min(
                next_at, -math.inf if learning_day is None else start_of_day(learning_day)
            )
        self._next_work_at = next_at

    def _store(self, customer_id: str, step: Step) -> None:
        """Keep the new state. Each customer has one live timer; a due time
        that moved earlier gets a new one, one that moved later is followed lazily when the
        old timer fires (events move it on almost every time, so this saves heap work)."""
        state = step.state
        if state is None:
            self.states.pop(customer_id, None)
            self._timer_days.pop(customer_id, None)
            self._value_stats.remove(customer_id)
            self.counters.erased += 1
            return
        self.states[customer_id] = state
        if step.status is not Status.RESCORED and step.status is not Status.LABELLED:
            self._value_stats.put(customer_id, state)  # (those two change no statistic)
        if step.labels:
            self._learning.learn(step.labels)
        if step.trigger is not None:
            self.scorer.programmes.record(customer_id, step.trigger)
            self._wake_by(day_of(step.trigger.end) + 1)
        if step.snapshot_at is not None:
            self._wake_by(self._learning.schedule(customer_id, step.snapshot_at))
        due_day = state.due_day
        if due_day is not None:
            timer_day = self._timer_days.get(customer_id)
            if timer_day is None or due_day < timer_day:
                self._set_timer(customer_id, due_day)
            self._wake_by(due_day)
            if len(self._timers) > 2 * len(self._timer_days) + 1024:
                self._compact_timers()

    def _wake_by(self, day: int) -> None:
        if start_of_day(day) < self._next_work_at:
            self._next_work_at = start_of_day(day)

    # -- outputs --------------------------------------------------------------------
    def score_rows(self, at: float) -> Iterator[dict]:
        """Every customer's scores as of `at`, by customer id (nothing is emitted)."""
        for customer_id in sorted(self.states):
            yield self.scorer.scores_of(self.states[customer_id], at).as_row(customer_id)

    def _counted(self, letter: Output) -> Output:
        """A dead-letter output, counted by its reason."""
        self.counters.dead_lettered[letter.value["reason"]] += 1
        return letter
