"""The report's settings and period, and the conventions its figures share: times as
UTC epoch seconds, segment names in a fixed order.

>>> options = ReportOptions(start=midnight(date(2024, 3, 1)))
>>> options.start.isoformat(), utc(timestamp("2024-03-01T00:00:00")) == options.start
('2024-03-01T00:00:00+00:00', True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from models.config import ScoringConfig
from models.segments import UNRANKED

LIFECYCLE_ORDER = (
    "new",
    "active",
    "reactivated",
    "at_risk",
    "lapsing",
    "lost",
    "prospect",
    "not_profiled",
)


@dataclass(frozen=True)
class ReportOptions:
    """What the report needs from the settings, and the period (UTC, end exclusive)."""

    currency: str = "USD"
    margin: float = 1.0
    churn_window_days: int = 90
    horizon_days: int = 365
    tiers: tuple[str, ...] = ("top_5", "next_15", "next_30", "rest", UNRANKED)
    programmes: Mapping[str, tuple[str, float]] = field(default_factory=dict)  # name, cost
    auc_floor: float | None = None  # triggers freeze below this rolling AUC
    start: datetime | None = None
    end: datetime | None = None
    calibration_bins: int = 10
    min_calibration: int = 200  # labelled predictions needed to draw the curve

    @classmethod
    def of(
        cls, scoring: ScoringConfig, first: date | None = None, last: date | None = None
    ) -> ReportOptions:
        """From the scoring settings; the period covers the whole days `first`..`last`.

        >>> options = ReportOptions.of(ScoringConfig(), last=date(2024, 1, 31))
        >>> options.end.isoformat(), options.programmes["win_back"][1]
        ('2024-02-01T00:00:00+00:00', 5.0)
        """
        catalogue = scoring.programmes.catalogue
        return cls(
            currency=scoring.base_currency,
            margin=scoring.margin_rate,
            churn_window_days=scoring.churn_window_days,
            horizon_days=scoring.horizon_days,
            tiers=(*(name for name, _ in scoring.segments.value_tiers), "rest", UNRANKED),
            programmes={p.id: (p.name, p.cost_per_contact) for p in catalogue},
            auc_floor=scoring.programmes.freeze_below_auc,
            start=midnight(first) if first else None,
            end=midnight(last + timedelta(days=1)) if last else None,
        )


def midnight(day: date) -> datetime:
    """The start of a UTC day."""
    return datetime.combine(day, time(), tzinfo=UTC)


def timestamp(text: str) -> float:
    """Epoch seconds of an ISO 8601 time (a time without offset is taken as UTC).

    >>> timestamp("1970-01-02T00:00:00+00:00"), timestamp("1970-01-01T00:01:00")
    (86400.0, 60.0)
    """
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


def order(names: set[str], preferred: tuple[str, ...]) -> tuple[str, ...]:
    """`names` in the preferred order, unknown ones after it alphabetically.

    >>> order({"x", "lost", "new"}, LIFECYCLE_ORDER)
    ('new', 'lost', 'x')
    """
    return tuple(n for n in preferred if n in names) + tuple(sorted(names - set(preferred)))
