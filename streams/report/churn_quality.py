"""The churn model's quality: its online rolling AUC (from `model_health` reports),
the freezes of programme triggers it caused, and a calibration curve of predicted
against observed churn, drawn from the customers' score history.

>>> quality = ChurnQuality()
>>> quality.add_health(86_400.0, {"model": "churn", "status": "quality",
...     "metrics": {"labels": 50, "rolling_auc": 0.8}})
>>> quality.add_health(86_400.0, {"model": "programmes", "status": "frozen", "detail": "AUC"})
>>> [(p.at.date().isoformat(), p.rolling_auc) for p in quality.points()]
[('1970-01-02', 0.8)]
>>> [(f.status, f.detail, f.scope) for f in quality.freezes()]
[('frozen', 'AUC', 'all')]
"""

from __future__ import annotations

import bisect
import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from models.timeline import SECONDS_PER_DAY
from streams.report.options import ReportOptions, midnight, utc
from streams.report.pauses import Freeze


@dataclass(frozen=True)
class QualityPoint:
    """The churn model's online quality at one report time (partitions averaged)."""

    at: datetime
    rolling_auc: float
    labels: float
    log_loss: float
    brier: float
    drifts: float
    reports: int


@dataclass(frozen=True)
class CalibrationBin:
    low: float
    high: float
    n: int
    predicted: float  # mean predicted churn probability
    observed: float  # share without a purchase in the churn window

    @property
    def stderr(self) -> float:
        return math.sqrt(max(self.observed * (1 - self.observed), 1e-12) / self.n)


@dataclass(frozen=True)
class Calibration:
    bins: tuple[CalibrationBin, ...]
    n: int
    customers: int
    cutoffs: tuple[datetime, ...]
    predicted: float
    observed: float
    brier: float


class ChurnQuality:
    """Folds scores (each customer's churn probability and purchase count over time)
    and `model_health` events of the period."""

    def __init__(self) -> None:
        self._history: dict[str, list[tuple[float, float | None, int]]] = defaultdict(list)
        self._erased: set[str] = set()
        self._reports: dict[float, list[Mapping[str, float]]] = defaultdict(list)
        self._freezes: list[tuple[float, str, str, str]] = []  # at, status, detail, scope

    def add_score(self, customer_id: str, at: float, value: Mapping[str, Any]) -> None:
        """A `score` of `customer_id` at `at` (ignored once the customer is erased)."""
        if customer_id in self._erased:
            return
        probability = value.get("churn_probability")
        point = (at, None if probability is None else float(probability), int(value["frequency"]))
        self._history[customer_id].append(point)

    def remove(self, customer_id: str) -> None:
        """An erased customer: their history goes, and later scores are ignored."""
        self._history.pop(customer_id, None)
        self._erased.add(customer_id)

    def add_health(self, at: float, value: Mapping[str, Any]) -> None:
        """A `model_health` event: a churn quality report, or a trigger freeze."""
        model, status = value["model"], value["status"]
        if model == "churn" and status == "quality":
            metrics = value["metrics"]
            if metrics.get("labels", 0) > 0:
                self._reports[at].append(metrics)
        elif model == "programmes" and status in ("frozen", "unfrozen"):
            self._freezes.append((at, status, value.get("detail", ""), value.get("scope", "all")))

    def points(self) -> tuple[QualityPoint, ...]:
        """The quality over time; the partitions' reports at one time are pooled."""
        points = []
        for at, reports in sorted(self._reports.items()):
            points.append(
                QualityPoint(
                    at=utc(at),
                    rolling_auc=_weighted(reports, "rolling_auc"),
                    labels=sum(m.get("labels", 0.0) for m in reports),
                    log_loss=_weighted(reports, "rolling_log_loss"),
                    brier=_weighted(reports, "rolling_brier"),
                    drifts=sum(m.get("drifts_detected", 0.0) for m in reports),
                    reports=len(reports),
                )
            )
        return tuple(points)

    def freezes(self) -> tuple[Freeze, ...]:
        return tuple(Freeze(utc(at), s, d, scope) for at, s, d, scope in sorted(self._freezes))

    def calibration(
        self, options: ReportOptions, *, start: float, end: float, observed_until: float
    ) -> dict[str, Any]:
        """The `Report` fields calibration (None without enough labelled predictions)
        and calibration_note (why there is no curve); see `calibration_pairs`."""
        pairs, cutoffs, customers = calibration_pairs(
            self._history,
            window_days=options.churn_window_days,
            start=start,
            end=end,
            observed_until=observed_until,
        )
        if len(pairs) < options.min_calibration:
            note = (
                f"Not enough data: {len(pairs):,} labelled predictions "
                f"(at least {options.min_calibration:,} needed). A prediction is labelled "
                f"once {options.churn_window_days} days of history follow it."
            )
            return {"calibration": None, "calibration_note": note}
        curve = calibrate(pairs, options.calibration_bins)
        curve = replace(curve, customers=customers, cutoffs=tuple(utc(c) for c in cutoffs))
        return {"calibration": curve, "calibration_note": ""}


def _weighted(reports: list[Mapping[str, float]], name: str) -> float:
    """The labels-weighted mean of a metric over the partitions' reports."""
    weights = [max(m.get("labels", 0.0), 1e-9) for m in reports]
    return sum(w * m.get(name, math.nan) for w, m in zip(weights, reports, strict=True)) / sum(
        weights
    )


def month_starts(start: float, end: float) -> list[float]:
    """First days of the months (UTC midnight) in [start, end].

    >>> from streams.report.options import timestamp
    >>> [utc(t).date().isoformat() for t in month_starts(timestamp("2024-01-15T00:00:00"),
    ...                                                   timestamp("2024-03-01T00:00:00"))]
    ['2024-02-01', '2024-03-01']
    """
    if not (math.isfinite(start) and math.isfinite(end)) or end < start:
        return []
    day = utc(start).date().replace(day=1)
    result = []
    while (at := midnight(day).timestamp()) <= end:
        if at >= start:
            result.append(at)
        day = (day + timedelta(days=32)).replace(day=1)
    return result


def calibration_pairs(
    history: Mapping[str, list[tuple[float, float | None, int]]],
    *,
    window_days: int,
    start: float,
    end: float,
    observed_until: float,
) -> tuple[list[tuple[float, bool]], list[float], int]:
    """(predicted churn probability, churned) per customer and month start.

    At each month start C in [start, end] whose churn window has passed by the end of
    the data (C + window <= observed_until), every customer's latest score at or before C gives
    the prediction; the customer "churned" when no later score shows a new purchase
    day (frequency up) in (C, C + window]. Prospects (no prediction) are left out.
    Returns the pairs, the month starts used and the customers that contributed.

    >>> day = 86_400.0
    >>> history = {"a": [(0.0, 0.2, 0), (40 * day, 0.1, 1)], "b": [(0.0, 0.9, 0)]}
    >>> pairs, cutoffs, customers = calibration_pairs(
    ...     history, window_days=60, start=0.0, end=100 * day, observed_until=100 * day)
    >>> [utc(c).date().isoformat() for c in cutoffs], customers
    (['1970-01-01', '1970-02-01'], 2)
    >>> pairs  # a bought on day 40, b never again
    [(0.2, False), (0.2, False), (0.9, True), (0.9, True)]
    """
    window = window_days * SECONDS_PER_DAY
    first = min((h[0][0] for h in history.values() if h), default=math.inf)
    cutoffs = month_starts(max(start, first), min(end, observed_until - window))
    pairs: list[tuple[float, bool]] = []
    contributors = 0
    for events in history.values():
        events = sorted(events, key=lambda e: e[0])
        times = [e[0] for e in events]
        purchases = [events[i][0] for i in range(1, len(events)) if events[i][2] > events[i - 1][2]]
        added = False
        for cutoff in cutoffs:
            latest = bisect.bisect_right(times, cutoff) - 1
            if latest < 0 or events[latest][1] is None:
                continue
            after = bisect.bisect_right(purchases, cutoff)
            bought = after < len(purchases) and purchases[after] <= cutoff + window
            pairs.append((events[latest][1], not bought))
            added = True
        contributors += added
    return pairs, cutoffs, contributors


def calibrate(pairs: list[tuple[float, bool]], bins: int = 10) -> Calibration:
    """Equal-width bins of the predicted probability: mean prediction vs observed rate.

    >>> result = calibrate([(0.1, False), (0.15, True), (0.9, True), (0.95, True)], bins=2)
    >>> [(b.n, round(b.predicted, 3), b.observed) for b in result.bins]
    [(2, 0.125, 0.5), (2, 0.925, 1.0)]
    >>> round(result.brier, 4), result.observed
    (0.1862, 0.75)
    """
    sums: dict[int, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
    brier = 0.0
    for probability, churned in pairs:
        index = min(int(probability * bins), bins - 1)
        cell = sums[index]
        cell[0] += 1
        cell[1] += probability
        cell[2] += churned
        brier += (probability - churned) ** 2
    n = len(pairs)
    return Calibration(
        bins=tuple(
            CalibrationBin(i / bins, (i + 1) / bins, int(c[0]), c[1] / c[0], c[2] / c[0])
            for i, c in sorted(sums.items())
        ),
        n=n,
        customers=0,
        cutoffs=(),
        predicted=sum(p for p, _ in pairs) / n if n else math.nan,
        observed=sum(c for _, c in pairs) / n if n else math.nan,
        brier=brier / n if n else math.nan,
    )
