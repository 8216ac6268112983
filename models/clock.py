"""The event-time clock of one partition (or of one offline replay).

The watermark is the largest event time seen minus the allowed lateness, or a
floor set explicitly (end of a replay; idle time in live mode), whichever is
later. An event older than the watermark is late. Nothing here reads the wall clock.

>>> clock = EventClock(allowed_lateness=60.0)
>>> clock.observe(1000.0); clock.watermark
940.0
>>> clock.is_late(939.0), clock.is_late(940.0)
(True, False)
>>> clock.advance_watermark_to(2000.0); clock.watermark, clock.max_event_time
(2000.0, 1000.0)
"""

from __future__ import annotations

from dataclasses import dataclass

_NEVER = float("-inf")


@dataclass(slots=True)
class EventClock:
    allowed_lateness: float
    max_event_time: float = _NEVER
    floor: float = _NEVER

    @property
    def watermark(self) -> float:
        return max(self.max_event_time - self.allowed_lateness, self.floor)

    @property
    def started(self) -> bool:
        return self.watermark > _NEVER

    def is_late(self, ts: float) -> bool:
        return ts < self.watermark

    def observe(self, ts: float) -> None:
        """Record an applied event's time (moves the clock forward only)."""
        if ts > self.max_event_time:
            self.max_event_time = ts

    def advance_watermark_to(self, ts: float) -> None:
        """Declare that no event before `ts` will be accepted any more."""
        if ts > self.floor:
            self.floor = ts
