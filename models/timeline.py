"""Event time helpers. Time is UTC epoch seconds; calendar days are UTC epoch days.

>>> day_of(86_400 * 3 + 5)
3
>>> iso_utc(0.0)
'1970-01-01T00:00:00+00:00'
>>> date_of_day(day_of(end_of_day(9)))
'1970-01-10'
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

SECONDS_PER_DAY = 86_400
_EPOCH_DATE = date(1970, 1, 1)


def day_of(ts: float) -> int:
    """UTC calendar day (days since 1970-01-01) of an epoch timestamp."""
    return int(ts // SECONDS_PER_DAY)


def start_of_day(day: int) -> float:
    return float(day * SECONDS_PER_DAY)


def end_of_day(day: int) -> float:
    """The last representable instant (microsecond) of a UTC day."""
    return day * SECONDS_PER_DAY + SECONDS_PER_DAY - 1e-6


def day_of_date(value: date) -> int:
    return (value - _EPOCH_DATE).days


@lru_cache(maxsize=4096)  # every re-score names its due day
def date_of_day(day: int) -> str:
    return (_EPOCH_DATE + timedelta(days=day)).isoformat()


def iso_utc(ts: float) -> str:
    """ISO 8601 text of an epoch timestamp, with the `+00:00` offset."""
    return datetime.fromtimestamp(ts, UTC).isoformat()
