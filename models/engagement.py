"""A customer's engagement, kept in the state for the churn model.

Per tracked interaction kind: an exponentially decayed count (event-time half-life)
and the time of the last one; the times of the recent support tickets and complaints
(the last 8 of each), for exact "N in the last 30 days" counts; the last survey score.
Everything is plain numbers in one `array('d')`, so copies are cheap and small.

>>> e = Engagement()
>>> e = e.observe("login", 0.0); e = e.observe("login", 30 * 86_400.0)
>>> round(e.decayed_count("login", 30 * 86_400.0), 3)  # 1 (halved) + 1
1.5
>>> e.days_since("login", 41 * 86_400.0), e.days_since("email_open", 0.0)
(11.0, None)
"""

from __future__ import annotations

import math
from array import array

from models.timeline import SECONDS_PER_DAY

TRACKED_KINDS = (
    "login",
    "page_view",
    "email_open",
    "email_click",
    "support_ticket",
    "complaint",
    "cart_abandon",
    "survey",
    "unsubscribe",
    "review",
)
ISSUE_KINDS = ("support_ticket", "complaint")
HALF_LIFE_DAYS = 30.0
MAX_RECENT_ISSUES = 8
_NONE = -1.0  # "never" in the array (event times are >= 0: 1970 onwards)
_KIND_INDEX = {kind: index for index, kind in enumerate(TRACKED_KINDS)}
_K = len(TRACKED_KINDS)
# layout: [decayed_at, last_survey, counts x K, last_at x K]
_COUNTS, _LAST = 2, 2 + _K
_LN2_PER_SECOND = math.log(2.0) / (HALF_LIFE_DAYS * SECONDS_PER_DAY)
_TICKET, _COMPLAINT = float(_KIND_INDEX["support_ticket"]), float(_KIND_INDEX["complaint"])
# The kinds whose "days since the last one" the churn features read, in their order.
DAYS_SINCE_KINDS = (
    "login",
    "page_view",
    "email_open",
    "email_click",
    "cart_abandon",
    "support_ticket",
    "complaint",
    "survey",
    "unsubscribe",
    "review",
)
_DAYS_SINCE = tuple(_LAST + _KIND_INDEX[kind] for kind in DAYS_SINCE_KINDS)
_DECAYED = tuple(
    _COUNTS + _KIND_INDEX[kind]
    for kind in ("login", "page_view", "email_open", "email_click", "cart_abandon")
)


def _kept_issues(issues: tuple[float, ...], kind: float) -> tuple[float, ...]:
    """The last `MAX_RECENT_ISSUES` of each kind: a burst of tickets must not push the
    complaints out (they would count, and be described, as none).

    >>> many = tuple(x for day in range(10) for x in (float(day), 4.0))  # 10 of kind 4
    >>> kept = _kept_issues((0.5, 5.0, *many), 4.0)
    >>> kept[:2], len(kept) // 2
    ((0.5, 5.0), 9)
    """
    positions = [k for k in range(0, len(issues), 2) if issues[k + 1] == kind]
    if len(positions) <= MAX_RECENT_ISSUES:
        return issues
    drop = set(positions[: len(positions) - MAX_RECENT_ISSUES])
    return tuple(x for k in range(0, len(issues), 2) if k not in drop for x in issues[k : k + 2])


class Engagement:
    """Immutable: `observe` returns a new value (states stay cheap to copy)."""

    __slots__ = ("_issues", "_values")

    def __init__(self, values: array | None = None, issues: tuple[float, ...] = ()) -> None:
        if values is None:
            values = array("d", [_NONE, _NONE] + [0.0] * _K + [_NONE] * _K)
        self._values = values
        self._issues = issues  # (time, kind index) pairs, flattened, oldest first

    def observe(self, kind: str, at: float, value: float | None = None) -> Engagement:
        """The engagement after an interaction of `kind` at event time `at`."""
        values = array("d", self._values)
        issues = self._issues
        if kind == "survey" and value is not None:
            values[1] = value
        index = _KIND_INDEX.get(kind)
        if index is not None:
            _decay_to(values, at)
            values[_COUNTS + index] += 1.0
            values[_LAST + index] = max(values[_LAST + index], at)
            if kind in ISSUE_KINDS:
                issues = _kept_issues((*issues, at, float(index)), float(index))
        return Engagement(values, issues)

    def decayed_count(self, kind: str, at: float) -> float:
        """Events of `kind`, each weighted 2^(-age / half-life), as of `at`."""
        values = self._values
        count = values[_COUNTS + _KIND_INDEX[kind]]
        if count == 0.0 or at <= values[0]:
            return count
        return count * math.exp(-(at - values[0]) * _LN2_PER_SECOND)

    def last_time(self, kind: str) -> float | None:
        """Event time of the last interaction of `kind` (None if never)."""
        last = self._values[_LAST + _KIND_INDEX[kind]]
        return None if last == _NONE else last

    def days_since(self, kind: str, at: float) -> float | None:
        last = self._values[_LAST + _KIND_INDEX[kind]]
        return None if last == _NONE else max(0.0, (at - last) / SECONDS_PER_DAY)

    def issues_within(self, kind: str, at: float, days: float) -> int:
        """Exact count of `kind` (a support ticket or complaint) in (at - days, at]."""
        issues = self._issues
        if not issues:
            return 0
        index, since = float(_KIND_INDEX[kind]), at - days * SECONDS_PER_DAY
        return sum(
            1
            for k in range(0, len(issues), 2)
            if issues[k + 1] == index and since < issues[k] <= at
        )

    def churn_inputs(self, at: float, never_days: float) -> tuple[float, ...]:
        """What the churn features read, in one pass, as of `at`: the decayed counts of
        login, page_view, email_open, email_click and cart_abandon; support tickets and
        complaints in the last 30 days; days since the last interaction of each kind in
        `DAYS_SINCE_KINDS` (`never_days` if never, capped at it). The same values as
        `decayed_count`, `issues_within` and `days_since` give one by one."""
        values = self._values
        logins, views, opens, clicks, carts = map(values.__getitem__, _DECAYED)
        decayed_at = values[0]
        if at > decayed_at:  # a zero count stays zero
            factor = math.exp(-(at - decayed_at) * _LN2_PER_SECOND)
            logins, views, opens = logins * factor, views * factor, opens * factor
            clicks, carts = clicks * factor, carts * factor
        tickets = complaints = 0
        issues = self._issues
        if issues:
            since = at - 30.0 * SECONDS_PER_DAY
            for k in range(0, len(issues), 2):
                if since < issues[k] <= at:
                    if issues[k + 1] == _TICKET:
                        tickets += 1
                    elif issues[k + 1] == _COMPLAINT:
                        complaints += 1
        inputs = [logins, views, opens, clicks, carts, float(tickets), float(complaints)]
        append = inputs.append
        for index in _DAYS_SINCE:  # days since, capped (`never_days` if never)
            last = values[index]
            if last == _NONE:
                append(never_days)
            else:
                days = (at - last) / SECONDS_PER_DAY
                append((days if days < never_days else never_days) if days > 0.0 else 0.0)
        return tuple(inputs)

    @property
    def last_survey(self) -> float | None:
        return None if self._values[1] == _NONE else self._values[1]

    def to_list(self) -> list:
        return [self._values.tobytes(), list(self._issues)]

    @classmethod
    def from_list(cls, data: list) -> Engagement:
        values = array("d")
        values.frombytes(data[0])
        old_k = (len(values) - 2) // 2
        if old_k < _K:  # an older format tracked fewer kinds (appended since): never seen
            values = (
                values[: 2 + old_k]
                + array("d", [0.0] * (_K - old_k))
                + values[2 + old_k :]
                + array("d", [_NONE] * (_K - old_k))
            )
        return cls(values, tuple(data[1]))

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Engagement)
            and self._values == other._values
            and self._issues == other._issues
        )

    def __repr__(self) -> str:
        return f"Engagement({list(self._values)!r}, {self._issues!r})"


def _decay_to(values: array, at: float) -> None:
    """Bring every decayed count to time `at` (never backwards: a late event adds at
    full weight, a small and bounded overcount)."""
    if values[0] == _NONE:
        values[0] = at
        return
    if at <= values[0]:
        return
    factor = math.exp(-(at - values[0]) * _LN2_PER_SECOND)
    for index in range(_COUNTS, _COUNTS + _K):
        values[index] *= factor
    values[0] = at
