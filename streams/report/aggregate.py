"""The management report's figures, folded from scores and emitted events (no I/O).

A `ReportBuilder` takes the current score of every customer (`add_customer`) and
the output events in any order (`add_event(stream, value)`); `build()` returns the
`Report`. Events are de-duplicated on their id, so a replayed or retried event
counts once. The figures are folded by concept: `equity` (customer equity, the
header), `migration` (segment moves), `churn_quality` (AUC, calibration) and
`programmes` (measured results); this module routes the events and composes them.

>>> builder = ReportBuilder(ReportOptions())
>>> builder.add_customer({"customer_id": "c1", "clv": 120.0, "lifecycle": "active",
...                       "value_tier": "top_5"})
>>> builder.add_customer({"customer_id": "c2", "clv": None, "lifecycle": "prospect",
...                       "value_tier": None})
>>> builder.add_event("segment-changes", {"event_type": "segment_change", "event_id": "e1",
...     "customer_id": "c1", "occurred_at": "2024-03-01T00:00:00+00:00", "dimension": "lifecycle",
...     "from_segment": "new", "to_segment": "active"})
>>> report = builder.build()
>>> report.customers, report.equity, [(s.name, s.equity) for s in report.by_lifecycle]
(2, 120.0, [('active', 120.0), ('prospect', 0.0)])
>>> report.migration.count("(new in the period)", "active"), report.calibration is None
(1, True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from streams.report.churn_quality import Calibration, ChurnQuality, QualityPoint
from streams.report.equity import CustomerValues, SegmentValue, period_day
from streams.report.migration import Migration, MigrationCounts
from streams.report.options import ReportOptions, timestamp, utc
from streams.report.pauses import Pause, pauses
from streams.report.programmes import ProgrammeResults, ProgrammeRow


@dataclass(frozen=True)
class Report:
    currency: str
    margin: float
    churn_window_days: int
    horizon_days: int
    period_first: date | None  # first and last day covered (UTC)
    period_last: date | None
    scores_as_of: datetime | None
    customers: int
    prospects: int  # no purchase yet
    equity: float
    by_lifecycle: tuple[SegmentValue, ...]
    by_tier: tuple[SegmentValue, ...]
    migration: Migration
    quality: tuple[QualityPoint, ...]
    auc_floor: float | None
    pauses: tuple[Pause, ...]  # of programme triggers, by model health
    calibration: Calibration | None
    calibration_note: str
    programmes: tuple[ProgrammeRow, ...]
    dead_letters: int
    skipped: int  # events that could not be read


# what reading a foreign or malformed record raises: it is skipped and counted
UNREADABLE = (KeyError, TypeError, ValueError, AttributeError)


class ReportBuilder:
    """Folds current scores and output events into a `Report`."""

    def __init__(self, options: ReportOptions) -> None:
        self.options = options
        self._start = options.start.timestamp() if options.start else -math.inf
        self._end = options.end.timestamp() if options.end else math.inf
        self._customers = CustomerValues()
        self._migration = MigrationCounts(self._start, self._end)
        self._quality = ChurnQuality()
        self._programmes = ProgrammeResults(until=self._end)
        self._seen: set[str] = set()
        self._first = math.inf
        self._last = -math.inf
        self._last_score = -math.inf
        self.dead_letters = 0
        self.skipped = 0

    # current scores
    def add_customer(self, row: Mapping[str, Any]) -> None:
        """A customer's current score: customer_id, clv (None for prospects),
        lifecycle, value_tier."""
        self._customers.add(row)

    def add_current_score(self, value: Any, key: str | None) -> None:
        """A record of the live `scores` topic: a point of the customer's history and,
        the latest read, their current score; a null value is an erasure (of `key`).
        An unreadable record changes nothing and counts as skipped."""
        if value is None:
            self.add_event("scores", None, key)
            return
        try:
            customer_id, current = CustomerValues.read(value)
            self._add_score(value)
        except UNREADABLE:
            self.skipped += 1
            return
        self._customers.put(customer_id, current)

    def remove_customer(self, customer_id: str) -> None:
        """An erased customer: no figures of theirs remain."""
        self._customers.remove(customer_id)
        self._quality.remove(customer_id)

    # emitted events
    def add_event(
        self, stream: str, value: Mapping[str, Any] | None, key: str | None = None
    ) -> None:
        """One output event as emitted on `stream` (a null score is an erasure)."""
        try:
            self._add(stream, value, key)
        except UNREADABLE:
            self.skipped += 1

    def _add(self, stream: str, value: Mapping[str, Any] | None, key: str | None) -> None:
        if value is None:
            if stream == "scores" and key:
                self.remove_customer(key)
            return
        if stream == "scores":
            self._add_score(value)
            return
        if stream == "dead-letter":
            self.dead_letters += 1
            return
        event_id = value["event_id"]
        if event_id in self._seen:
            return
        self._seen.add(event_id)
        at = timestamp(value["occurred_at"])
        self._first, self._last = min(self._first, at), max(self._last, at)
        in_period = self._start <= at < self._end
        kind = value["event_type"]
        if kind == "segment_change":
            self._migration.add(at, value["customer_id"], value)
        elif kind == "programme_trigger":
            self._programmes.add_trigger(value, in_period)
        elif kind == "programme_outcome":
            self._programmes.add_outcome(value)
        elif kind == "programme_result":
            self._programmes.add_result(at, value)
        elif kind == "model_health" and in_period:
            self._quality.add_health(at, value)

    def _add_score(self, value: Mapping[str, Any]) -> None:
        customer_id = value["customer_id"]
        at = timestamp(value["scored_at"])
        self._quality.add_score(customer_id, at, value)  # (first: it may find it unreadable)
        self._first, self._last = min(self._first, at), max(self._last, at)
        self._last_score = max(self._last_score, at)

    # the report
    def build(self) -> Report:
        options = self.options
        return Report(
            currency=options.currency,
            margin=options.margin,
            churn_window_days=options.churn_window_days,
            horizon_days=options.horizon_days,
            period_first=period_day(options.start, self._first),
            period_last=period_day(options.end, self._last, last=True),
            scores_as_of=utc(self._last_score) if self._last_score > -math.inf else None,
            **self._customers.figures(options.tiers),
            migration=self._migration.matrix(
                self._customers.lifecycles(), end_is_now=self._end > self._last
            ),
            quality=self._quality.points(),
            auc_floor=options.auc_floor,
            pauses=pauses(self._quality.freezes()),
            **self._quality.calibration(
                options, start=self._start, end=self._end - 1, observed_until=self._last_score
            ),
            programmes=self._programmes.rows(options.programmes, options.margin),
            dead_letters=self.dead_letters,
            skipped=self.skipped,
        )
