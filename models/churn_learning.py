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
from models.health_events import daily_event_id, model_health_event
from models.timeline import start_of_day
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
            model.record(label.served, label.churned, label.version_number)
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

    def reports(self, watermark_day: int) -> list[dict]:
        """`model_health` events when a report is due (the first call starts the cycle):
        the rolling quality, then the quality of each model version that gained labels
        since the last report (`version_quality`)."""
        if self.model is None:
            return []
        if self.next_report_day is None:
            self.next_report_day = (watermark_day // self.interval_days + 1) * self.interval_days
            return []
        if watermark_day < self.next_report_day:
            return []
        day = self.next_report_day
        self.next_report_day = (watermark_day // self.interval_days + 1) * self.interval_days
        metrics = self.model.health()
        version = self.model.version
        events = [
            self._event(
                day,
                version,
                "quality",
                f"{metrics['labels']:.0f} labels learned; rolling AUC "
                f"{metrics['rolling_auc']:.3f}, log loss {metrics['rolling_log_loss']:.3f}; "
                f"drifts detected {metrics['drifts_detected']:.0f}",
                metrics,
            )
        ]
        for served_by, quality in self.model.by_version.changed():
            events.append(
                self._event(
                    day,
                    served_by,
                    "version_quality",
                    f"scores served under {served_by}: {version_quality_text(quality)}",
                    quality,
                )
            )
        return events

    def _event(self, day: int, version: str, status: str, detail: str, metrics: dict) -> dict:
        event_id = daily_event_id("churn", status, day, version, self.scope)
        at, scope = start_of_day(day), self.scope
        return model_health_event(event_id, at, "churn", scope, version, status, detail, metrics)

    def rebuild(self, snapshot_times: Iterable[tuple[str, Iterable[float]]]) -> None:
        """Timers from restored states: each customer's open snapshots' times."""
        self.timers.clear()
        for customer_id, times in snapshot_times:
            for taken_at in times:
                self.schedule(customer_id, taken_at)


def version_quality_text(metrics: dict[str, float]) -> str:
    """One version's figures in words ("n/a" for an AUC with one class only).

    >>> version_quality_text({"labels": 40.0, "churn_rate": 0.25, "log_loss": 0.5,
    ...     "brier": 0.17})
    '40 labels (churn rate 0.25): AUC n/a, log loss 0.500, Brier 0.170'
    """
    auc = f"{metrics['auc']:.3f}" if "auc" in metrics else "n/a"
    return (
        f"{metrics['labels']:,.0f} labels (churn rate {metrics['churn_rate']:.2f}): "
        f"AUC {auc}, log loss {metrics['log_loss']:.3f}, Brier {metrics['brier']:.3f}"
    )
