"""The partition's programme book: budgets spent per event-time day, the measured
results per programme (and the uplifts learned from them), stopped programmes, the
freeze on model-health alarms, and the timers of open attribution windows.

It is partition state (checkpointed with the scorer); the timers are rebuilt from
the customers' states. Results are per partition; their sums pool exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from models.health_events import model_health_event
from models.ids import deterministic_id
from models.programmes.catalogue import Programme, ProgrammesConfig
from models.programmes.decision import Moment, screened
from models.programmes.measurement import ArmStats, Estimate, estimate, posterior_uplift
from models.programmes.memory import Attribution
from models.timeline import SECONDS_PER_DAY, date_of_day, day_of, iso_utc, start_of_day
from models.timers import DayTimers

SPEND_DAYS_BEHIND_WATERMARK = 7
"""Days before the watermark's day whose spend the book keeps, at least (more with an
allowed lateness over 5 days: `spend_days_for`). No event before the watermark
triggers, whatever the allowed lateness; only a catch-up re-score (at most a day plus
the allowed lateness behind it) can trigger earlier. Spend of days before that is
forgotten, and those days count as spent (`budget_left` 0): a trigger on a forgotten
day could otherwise spend its budget a second time."""


def spend_days_for(allowed_lateness_seconds: float) -> int:
    """Days of spend to keep behind the watermark for this allowed lateness.

    >>> spend_days_for(86_400.0), spend_days_for(10 * 86_400.0)
    (7, 12)
    """
    reach = math.ceil(allowed_lateness_seconds / SECONDS_PER_DAY) + 2
    return max(SPEND_DAYS_BEHIND_WATERMARK, reach)


class ProgrammeBook:
    def __init__(
        self,
        config: ProgrammesConfig,
        margin: float = 1.0,
        scope: str = "all",
        spend_days: int = SPEND_DAYS_BEHIND_WATERMARK,
    ) -> None:
        self.spend_days = spend_days  # days of spend kept behind the watermark's day
        self.config = config
        self.margin = margin
        self.scope = scope  # names the partition in result ids
        self.arms: dict[str, tuple[ArmStats, ArmStats]] = {
            p.id: (ArmStats(), ArmStats()) for p in config.catalogue
        }
        self.uplifts = {p.id: p.uplift_prior for p in config.catalogue}
        self.stop_reasons: dict[str, str] = {}
        self.next_stop_check = {p.id: config.stop_min_control for p in config.catalogue}
        self.spent: dict[tuple[str, int], float] = {}  # (programme, event-time day)
        self.spent_from: float = -math.inf  # first day whose spend is kept (int once set)
        self.triggers = {p.id: [0, 0] for p in config.catalogue}  # treatment, control
        self.erased_windows: dict[str, list[int]] = {}  # first exposures lost, by arm
        self.keep_days = max(
            config.contact_window_days, *(p.cooldown_days for p in config.catalogue)
        )
        self.frozen_until = -math.inf
        self.freeze_reason: str | None = None
        self.auc_alarm: str | None = None
        self.drifts_seen = 0
        self.was_frozen = False
        self._changed: set[str] = set()
        self.timers = DayTimers()
        self._screens: dict[tuple[str, Moment], tuple[Programme, ...]] = {}

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["timers"] = None  # rebuilt from the customers' states
        state["_screens"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        state.setdefault("spend_days", SPEND_DAYS_BEHIND_WATERMARK)
        state.setdefault("erased_windows", {})
        if "spent_from" not in state:  # an older checkpoint forgot spend 7 days before
            # some trigger's day: count every day before the oldest it kept as spent
            state["spent_from"] = min((day for _, day in state["spent"]), default=-math.inf)
        self.__dict__.update(state)
        self.timers = DayTimers()
        self._screens = {}

    def reconfigure(self, config: ProgrammesConfig, margin: float, spend_days: int) -> None:
        """Take the current settings after a restore, keeping the measurements: a new
        programme starts fresh, a withdrawn one triggers no more (its open windows still
        close and are counted), a changed prior gives the uplift it implies with the
        windows measured so far, and a stop is tested again against the current cost
        when the cost or the margin changed (a stop no longer clearly below the cost is
        lifted; with the same settings a restore changes nothing)."""
        costs = {p.id: p.cost_per_contact for p in self.config.catalogue}
        margin_changed = margin != self.margin
        self.config, self.margin, self.spend_days = config, margin, spend_days
        for programme in config.catalogue:
            if programme.id not in self.arms:
                self.arms[programme.id] = (ArmStats(), ArmStats())
                self.triggers[programme.id] = [0, 0]
                self.next_stop_check[programme.id] = config.stop_min_control
            self.uplifts[programme.id] = self._learned_uplift(
                programme, self.estimate(programme.id)
            )
            repriced = margin_changed or costs.get(programme.id) != programme.cost_per_contact
            if programme.id in self.stop_reasons and repriced and not self._below_cost(programme):
                del self.stop_reasons[programme.id]
        self.keep_days = max(
            config.contact_window_days, *(p.cooldown_days for p in config.catalogue)
        )
        self._screens = {}

    def screen(self, lifecycle: str, moment: Moment) -> tuple[Programme, ...]:
        """The programmes whose lifecycle, event and transition conditions hold (cached:
        there are few distinct moments)."""
        key = (lifecycle, moment)
        programmes = self._screens.get(key)
        if programmes is None:
            if len(self._screens) > 4096:
                self._screens.clear()
            programmes = self._screens[key] = tuple(
                p for p in self.config.catalogue if screened(p, lifecycle, moment)
            )
        return programmes

    # -- what the decision reads ------------------------------------------------------
    def uplift(self, programme_id: str) -> float:
        return self.uplifts[programme_id]

    def stopped(self, programme_id: str) -> str | None:
        return self.stop_reasons.get(programme_id)

    def budget_left(self, programme: Programme, day: int) -> float:
        if programme.daily_budget is None:
            return math.inf
        if day < self.spent_from:  # forgotten: it may have been spent already
            return 0.0
        budget = programme.daily_budget * self.config.budget_share
        return budget - self.spent.get((programme.id, day), 0.0)

    def frozen(self, at: float) -> str | None:
        if self.auc_alarm is not None:
            return self.auc_alarm
        return self.freeze_reason if at < self.frozen_until else None

    # -- triggers and windows -------------------------------------------------------
    def record(self, customer_id: str, attribution: Attribution) -> None:
        """A trigger was emitted: spend its cost and set its window's timer."""
        programme_id = attribution.programme_id
        day = day_of(attribution.start)
        if attribution.cost > 0:
            key = (programme_id, day)
            self.spent[key] = self.spent.get(key, 0.0) + attribution.cost
        self.triggers[programme_id][attribution.arm == "control"] += 1
        self.schedule(customer_id, attribution.end)

    def schedule(self, customer_id: str, end: float) -> None:
        """The timer of a window ending at `end`: the day after its refunds' grace."""
        self.timers.add(day_of(end + self.config.refund_grace_seconds) + 1, customer_id)

    def next_day(self) -> int | None:
        return self.timers.next_day()

    def due_customers(self, watermark: float) -> Iterator[str]:
        """Customers with a window timer due by the watermark (each once per day). The
        engine calls this whenever its clock moves on: spend of days far enough behind
        the watermark is forgotten here."""
        if math.isfinite(watermark):
            self._forget_spend(day_of(watermark) - self.spend_days)
        return self._due(watermark)

    def _forget_spend(self, keep_from: int) -> None:
        if keep_from > self.spent_from:  # at most once per day of the watermark
            self.spent_from = keep_from
            if any(day < keep_from for _, day in self.spent):
                self.spent = {k: v for k, v in self.spent.items() if k[1] >= keep_from}

    def _due(self, watermark: float) -> Iterator[str]:
        timers = self.timers
        while (day := timers.next_day()) is not None and start_of_day(day) <= watermark:
            yield from dict.fromkeys(timers.pop_day()[1])

    def rebuild(self, window_ends: Iterable[tuple[str, Iterable[float]]]) -> None:
        """Timers from restored states: the ends of each customer's open windows."""
        self.timers.clear()
        for customer_id, ends in window_ends:
            for end in ends:
                self.schedule(customer_id, end)

    def erased(self, open_windows: Iterable[Attribution]) -> None:
        """The open windows of a customer who was erased: never measured. Counted by
        arm (first exposures), so attrition that differs between the arms shows."""
        for attribution in open_windows:
            if attribution.first:
                counts = self.erased_windows.setdefault(attribution.programme_id, [0, 0])
                counts[attribution.arm == "control"] += 1

    def observe(self, customer_id: str, attribution: Attribution) -> dict:
        """A window closed: return its `programme_outcome` event, and count it if it
        was the customer's first exposure to the programme. A customer is always in
        the same arm of a programme, so repeat windows are not independent draws
        (and their pre-period value holds earlier treatment): they are reported, not
        pooled."""
        arms = self.arms.get(attribution.programme_id)
        if arms is not None and attribution.first:
            arm = arms[0] if attribution.arm == "treatment" else arms[1]
            arm.add(attribution.covariate, attribution.revenue, attribution.stake, attribution.cost)
            self._changed.add(attribution.programme_id)
        return {
            "event_type": "programme_outcome",
            "schema_version": 1,
            "event_id": deterministic_id("outcome", attribution.trigger_id),
            "customer_id": customer_id,
            "occurred_at": iso_utc(attribution.end),
            "programme_id": attribution.programme_id,
            "arm": attribution.arm,
            "trigger_id": attribution.trigger_id,
            "triggered_at": iso_utc(attribution.start),
            "revenue": round(attribution.revenue, 6),
            "pre_period_value": round(attribution.covariate, 6),
            "value_at_stake": round(attribution.stake, 6),
            "cost": attribution.cost,
            "first_exposure": attribution.first,
        }

    # -- results --------------------------------------------------------------------
    def estimate(self, programme_id: str) -> Estimate | None:
        treated, control = self.arms[programme_id]
        return estimate(treated, control, margin=self.margin)

    def results(self, day: int) -> list[dict]:
        """A `programme_result` per programme with newly closed windows: the estimate,
        the learned uplift, and whether it was stopped (now or before)."""
        events = []
        for programme in self.config.catalogue:
            if programme.id not in self._changed:
                continue
            result = self.estimate(programme.id)
            self.uplifts[programme.id] = self._learned_uplift(programme, result)
            self._maybe_stop(programme)
            events.append(self._result_event(programme, result, day))
        self._changed.clear()
        return events

    def _learned_uplift(self, programme: Programme, result: Estimate | None) -> float:
        """The prior, updated by the measured `result` once each arm has
        `learn_min_windows` windows."""
        learn = self.config.learn_min_windows
        if result is not None and min(result.treated, result.control) >= learn:
            return posterior_uplift(programme.uplift_prior, programme.uplift_prior_sd, result)
        return programme.uplift_prior

    def _below_cost(self, programme: Programme) -> Estimate | None:
        """The estimate at the stop confidence, if its interval lies below the cost."""
        treated, control = self.arms[programme.id]
        strict = estimate(treated, control, level=self.config.stop_confidence, margin=self.margin)
        if strict is not None and strict.high * self.margin < programme.cost_per_contact:
            return strict
        return None

    def _maybe_stop(self, programme: Programme) -> None:
        """Stop a programme whose interval (at `stop_confidence`, 99% by default) lies
        below its cost. Checked only when the control windows reach 50, 100, 200, ...
        (not at every close): looking daily at a fixed level would stop a break-even
        programme far too often."""
        if programme.id in self.stop_reasons:
            return
        control = self.arms[programme.id][1]
        if control.n < self.next_stop_check[programme.id]:
            return
        self.next_stop_check[programme.id] = 2 * control.n
        strict = self._below_cost(programme)
        if strict is not None:
            self.stop_reasons[programme.id] = (
                f"stopped: incremental revenue per customer {strict.per_customer:.2f} "
                f"({100 * self.config.stop_confidence:.4g}% CI {strict.low:.2f} to "
                f"{strict.high:.2f}) is clearly below the cost per contact "
                f"{programme.cost_per_contact:.2f}"
            )

    def _result_event(self, programme: Programme, result: Estimate | None, day: int) -> dict:
        treated, control = self.arms[programme.id]
        stopped = self.stop_reasons.get(programme.id)
        figures = {}
        if result is not None:
            figures = {
                "incremental_revenue_per_customer": result.per_customer,
                "ci_low": result.low,
                "ci_high": result.high,
                "total_incremental_revenue": result.total,
                "roi": result.roi if math.isfinite(result.roi) else None,
                "variance_reduction": result.variance_reduction,
            }
        return {
            "event_type": "programme_result",
            "schema_version": 1,
            "event_id": deterministic_id(
                "result", programme.id, self.scope, date_of_day(day), str(treated.n), str(control.n)
            ),
            "occurred_at": iso_utc(start_of_day(day)),
            "programme_id": programme.id,
            "scope": self.scope,
            "status": "stopped" if stopped else "active",
            "detail": stopped or self._learning_note(programme),
            "treated": treated.n,
            "control": control.n,
            "cost": treated.cost,
            "uplift_prior": programme.uplift_prior,
            "uplift": self.uplifts[programme.id],
            "treatment_stats": treated.as_dict(),
            "control_stats": control.as_dict(),
            **figures,
            **self._erased_figures(programme.id),
        }

    def _learning_note(self, programme: Programme) -> str:
        """Says so when the measurement has cut the uplift to half its prior or less:
        the programme then pays for fewer customers and may trigger for none, which
        would otherwise look like a quiet programme, not a learned one."""
        uplift, prior = self.uplifts[programme.id], programme.uplift_prior
        if prior <= 0 or uplift > prior / 2:
            return ""
        return (
            f"learned uplift {uplift:.3f} (prior {prior:.3f}): offered only where it still "
            "pays for the contact"
        )

    def _erased_figures(self, programme_id: str) -> dict:
        counts = self.erased_windows.get(programme_id)
        if counts is None:
            return {}
        return {"erased_windows": {"treatment": counts[0], "control": counts[1]}}

    # -- freeze on model health -----------------------------------------------------
    def on_health(self, metrics: dict[str, float], at: float) -> dict | None:
        """Read the churn model's health (daily); a `model_health` event when the
        freeze starts or ends."""
        config = self.config
        drifts = int(metrics.get("drifts_detected", 0))
        if drifts > self.drifts_seen and config.freeze_days_after_drift > 0:
            self.frozen_until = at + config.freeze_days_after_drift * SECONDS_PER_DAY
            self.freeze_reason = (
                f"churn drift alarm: triggers frozen until {iso_utc(self.frozen_until)[:10]}"
            )
        self.drifts_seen = drifts
        auc = metrics.get("rolling_auc", 1.0)
        level = config.freeze_below_auc
        if self.auc_alarm is not None:  # frozen on the AUC: resume only clearly above it
            level += config.unfreeze_auc_margin
        if metrics.get("labels", 0) >= config.freeze_min_labels and auc < level:
            self.auc_alarm = f"churn model rolling AUC {auc:.3f} below {level:.2f}: triggers frozen"
        else:
            self.auc_alarm = None
        now = self.frozen(at)
        if (now is not None) == self.was_frozen:
            return None
        self.was_frozen = now is not None
        status = "frozen" if now is not None else "unfrozen"
        return model_health_event(
            deterministic_id("programmes", status, self.scope, iso_utc(at)),
            at,
            "programmes",
            self.scope,
            "programmes",
            status,
            now or "model health recovered: triggers resume",
            {"rolling_auc": auc, "drifts_detected": float(drifts)},
        )


def pooled_summary(books: list[ProgrammeBook]) -> list[dict]:
    """Per programme, the partitions' books pooled: triggers by arm, the measured
    effect of all closed first-exposure windows, and which partitions stopped it."""
    if not books:
        return []
    summary = []
    for programme in books[0].config.catalogue:
        treated, control = ArmStats(), ArmStats()
        triggers = [0, 0]
        for book in books:
            arms = book.arms[programme.id]
            treated, control = treated.merged(arms[0]), control.merged(arms[1])
            triggers = [a + b for a, b in zip(triggers, book.triggers[programme.id], strict=True)]
        result = estimate(treated, control, margin=books[0].margin)
        row = {
            "programme_id": programme.id,
            "name": programme.name,
            "triggers": {"treatment": triggers[0], "control": triggers[1]},
            "closed": {"treatment": treated.n, "control": control.n},
            "cost": treated.cost,
            "stopped_in": sorted(b.scope for b in books if b.stopped(programme.id)),
        }
        erased = [b.erased_windows.get(programme.id, (0, 0)) for b in books]
        if any(any(counts) for counts in erased):
            row["erased_windows"] = {
                "treatment": sum(c[0] for c in erased),
                "control": sum(c[1] for c in erased),
            }
        if result is not None:
            row |= {
                "incremental_revenue_per_customer": result.per_customer,
                "ci_low": result.low,
                "ci_high": result.high,
                "total_incremental_revenue": result.total,
                "roi": result.roi if math.isfinite(result.roi) else None,
            }
        summary.append(row)
    return summary
