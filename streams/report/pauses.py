"""Pauses of programme triggers: the `frozen` and `unfrozen` model-health events of
each scope (partition) paired into periods, one line each in the report, the same
period of several scopes once.

>>> from datetime import datetime, UTC
>>> day = lambda d: datetime(2024, 7, d, tzinfo=UTC)
>>> drift = "churn drift alarm: triggers frozen until 2024-07-15"
>>> [(p.start.day, p.end.day, p.days, p.reason, p.scopes) for p in pauses([
...     Freeze(day(1), "frozen", drift, "p0"), Freeze(day(1), "frozen", drift, "p1"),
...     Freeze(day(15), "unfrozen", "model health recovered: triggers resume", "p0"),
...     Freeze(day(15), "unfrozen", "model health recovered: triggers resume", "p1")])]
[(1, 15, 14, 'churn drift alarm', 2)]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Freeze:
    """A `model_health` event of the programmes: triggers frozen or resumed."""

    at: datetime
    status: str  # frozen, unfrozen
    detail: str
    scope: str = "all"


@dataclass(frozen=True)
class Pause:
    start: datetime | None  # None: paused since before the period
    end: datetime | None  # None: still paused at the period's end
    reason: str
    scopes: int  # the partitions paused over this very period

    @property
    def days(self) -> int | None:
        if self.start is None or self.end is None:
            return None
        return (self.end - self.start).days


def pauses(freezes: Iterable[Freeze]) -> tuple[Pause, ...]:
    """The periods between a scope's `frozen` and its next `unfrozen`, in time order.
    A repeated `frozen` of a paused scope keeps the pause; an `unfrozen` without one
    ends a pause that began before the period."""
    found: Counter[tuple[datetime | None, datetime | None, str]] = Counter()
    open_: dict[str, tuple[datetime, str]] = {}
    for freeze in sorted(freezes, key=lambda f: (f.at, f.scope, f.status)):
        if freeze.status == "frozen":
            open_.setdefault(freeze.scope, (freeze.at, _reason(freeze.detail)))
        elif freeze.status == "unfrozen":
            start, reason = open_.pop(freeze.scope, (None, ""))
            found[start, freeze.at, reason] += 1
    for start, reason in open_.values():
        found[start, None, reason] += 1
    return tuple(
        Pause(start, end, reason, scopes)
        for (start, end, reason), scopes in sorted(found.items(), key=_when)
    )


def _reason(detail: str) -> str:
    """Why, without what it does ("churn drift alarm: triggers frozen until ...")."""
    return detail.split(": triggers frozen")[0]


def _when(item: tuple[tuple[datetime | None, datetime | None, str], int]) -> tuple:
    (start, end, reason), _ = item
    return (start is not None, start or end, end is None, end or start, reason)
