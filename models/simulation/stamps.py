"""ISO 8601 timestamps of whole seconds since the start, from two lookup tables.

Formatting millions of datetimes one by one is slow; a day table and a
time-of-day table make each timestamp two list lookups.

>>> from datetime import date
>>> table = StampTable(date(2024, 2, 28), days=3)
>>> table.iso(np.array([0, 86_400 + 3_661]))
['2024-02-28T00:00:00+00:00', '2024-02-29T01:01:01+00:00']
>>> table.pieces(np.array([172_799]))
([b'2024-02-29T'], [b'23:59:59+00:00'])
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np

from models.simulation.sampling import SECONDS_PER_DAY

UTC_OFFSET = "+00:00"


class StampTable:
    """Timestamps for seconds in [0, days x 86400) after midnight UTC of `start`."""

    def __init__(self, start: date, days: int) -> None:
        self._days = [f"{start + timedelta(days=day)}T".encode() for day in range(days)]
        self._times = [
            f"{hour:02d}:{minute:02d}:{second:02d}{UTC_OFFSET}".encode()
            for hour in range(24)
            for minute in range(60)
            for second in range(60)
        ]

    def pieces(self, seconds: np.ndarray) -> tuple[list[bytes], list[bytes]]:
        """("YYYY-MM-DDT", "HH:MM:SS+00:00") per second; concatenated, an ISO timestamp."""
        day, time_of_day = np.divmod(seconds, SECONDS_PER_DAY)
        days, times = self._days, self._times
        return [days[d] for d in day.tolist()], [times[t] for t in time_of_day.tolist()]

    def iso(self, seconds: np.ndarray) -> list[str]:
        """ISO 8601 strings with a "+00:00" offset."""
        days, times = self.pieces(seconds)
        return [(day + time).decode() for day, time in zip(days, times, strict=True)]
