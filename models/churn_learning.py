"""The engine's side of the churn model: label timers, learning, quality reports.

Snapshots live in the customers' states; this keeps one timer per snapshot, on the
first day after its window ends (the label can only be "churned" once the watermark
is past the window), feeds resolved labels to the model in event-time order, and
reports the model's online quality every `interval_days` of event time.
"""

from __future__ import annotations

from collections.abc import Iterable

from models.churn import ChurnModel
from models.config import ScoringConfig
from models.ids import deterministic_id
from models.timeline import date_of_day, iso_utc, start_of_day
from models.timers import DayTimers
from models.transition import Label, label_day


class ChurnLearning:
    def __init__(self, config: ScoringConfig, model: ChurnModel | None, scope: str = "all") -> None:
        self.model = model
        self.scope = scope  # names the engine's partition in report ids
        self.window_days = config.churn_window_days
        self.interval_days = config.refit_interval_days
        self.timers = DayTimers()
        self.next_report_day: int | None = None

    def learn(self, labels: Iterable[Label]) -> None:
        model = self.model
        if model is None:
            return
        for label in labels:
            model.record(label.served, label.churned)
            model.learn_one(ChurnModel.as_features(label.vector), label.churned)

    def schedule(self, customer_id: str, snapshot_at: float) -> int:
        """Set the label timer of a new snapshot; returns its day."""
        day = label_day(snapshot_at, self.window_days)
        self.timers.add(day, customer_id)
        return day

    def next_day(self) -> int | None:
        """The earliest day with label timers or a quality report due."""
        days = [d for d in (self.timers.next_day(), self.next_report_day) if d is not None]
        return min(days) if days else None

    def due_customers(self, watermark: float) -> Iterable[str]:
        """Customers with a label timer due by the watermark, in (day, id) order."""
        timers = self.timers
        while (day := timers.next_day()) is not None and start_of_day(day) <= watermark:
            yield from timers.pop_day()[1]

    def report(self, watermark_day: int) -> dict | None:
        """A `model_health` event when a report is due (the first one starts the cycle)."""
        if self.model is None:
            return None
        if self.next_report_day is None:
            self.next_report_day = (watermark_day // self.interval_days + 1) * self.interval_days
            return None
        if watermark_day < self.next_report_day:
            return None
        day = self.next_report_day
        self.next_report_day = (watermark_day // self.interval_days + 1) * self.interval_days
        metrics = self.model.health()
        version = self.model.version
        return {
            "event_type": "model_health",
            "schema_version": 1,
            "event_id": deterministic_id(
                "model", "churn", "quality", date_of_day(day), version, self.scope
            ),
            "occurred_at": iso_utc(start_of_day(day)),
            "model": "churn",
            "scope": self.scope,
            "model_version": version,
            "status": "quality",
            "detail": (
                f"{metrics['labels']:.0f} labels learned; rolling AUC "
                f"{metrics['rolling_auc']:.3f}, log loss {metrics['rolling_log_loss']:.3f}; "
                f"drifts detected {metrics['drifts_detected']:.0f}"
            ),
            "parameters": {},
            "metrics": metrics,
        }

    def rebuild(self, snapshots_by_customer: Iterable[tuple[str, tuple]]) -> None:
        """Timers from restored states."""
        self.timers.clear()
        for customer_id, snapshots in snapshots_by_customer:
            for snapshot in snapshots:
                self.schedule(customer_id, snapshot[0])
