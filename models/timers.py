"""Per-customer timers on whole event-time days, fired in (day, customer id) order.

Cheaper than a heap of (day, id) tuples: one small heap of distinct days and a
bucket of ids per day, sorted once when the day fires.

>>> timers = DayTimers()
>>> timers.add(12, "b"); timers.add(10, "z"); timers.add(12, "a")
>>> timers.next_day(), len(timers)
(10, 3)
>>> timers.pop_day(), timers.pop_day(), timers.next_day()
((10, ['z']), (12, ['a', 'b']), None)
"""

from __future__ import annotations

import heapq


class DayTimers:
    __slots__ = ("_buckets", "_days", "_size")

    def __init__(self) -> None:
        self._days: list[int] = []  # heap of the days that have timers
        self._buckets: dict[int, list[str]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, day: int, key: str) -> None:
        bucket = self._buckets.get(day)
        if bucket is None:
            self._buckets[day] = [key]
            heapq.heappush(self._days, day)
        else:
            bucket.append(key)
        self._size += 1

    def next_day(self) -> int | None:
        return self._days[0] if self._days else None

    def pop_day(self) -> tuple[int, list[str]]:
        """The earliest day and its keys, sorted; they are removed."""
        day = heapq.heappop(self._days)
        keys = self._buckets.pop(day)
        self._size -= len(keys)
        keys.sort()
        return day, keys

    def clear(self) -> None:
        self._days.clear()
        self._buckets.clear()
        self._size = 0
