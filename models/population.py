"""Where a customer stands in the population: online quantiles without a full sort.

Each customer is counted once per measure, in the bin of their latest score (CLV,
last purchase day, purchase days, spend per purchase day). When a customer is
re-scored the engine moves them from the old bins to the new ones, so the counts
always describe the current population. Percentiles are read from a frozen
`PopulationSnapshot` that the engine refreshes once per event-time day: a score
depends only on the inputs before it, never on when it is read.

Value bins are logarithmic (about 2.5% wide), so a percentile is exact up to one
bin; day and count bins are exact.

>>> population = Population()
>>> for clv in (10.0, 20.0, 40.0, 80.0):
...     population.move(None, population_bins(clv, 100, 1, clv))
>>> snapshot = population.snapshot()
>>> snapshot.customers, round(snapshot.percentile(CLV, value_bin(40.0)), 3)
(4, 0.625)
"""

from __future__ import annotations

import bisect
import math
from itertools import accumulate

CLV, LAST_DAY, PURCHASE_DAYS, SPEND = range(4)
MEASURES = ("clv", "last_purchase_day", "purchase_days", "spend_per_purchase_day")

_BINS_PER_LOG_UNIT = 40
_MAX_VALUE_BIN = 1200  # e^30: anything larger shares the top bin
_MAX_COUNT_BIN = 10_000

Bins = tuple[int, int, int, int]


def value_bin(amount: float) -> int:
    """The log bin of a non-negative amount (0 for zero or less).

    >>> value_bin(0.0), value_bin(1.0), value_bin(100.0) > value_bin(97.0)
    (0, 27, True)
    """
    if not amount > 0.0:
        return 0
    return min(_MAX_VALUE_BIN, int(math.log1p(amount) * _BINS_PER_LOG_UNIT))


def population_bins(clv: float, last_day: int, purchase_days: int, spend_per_day: float) -> Bins:
    """A customer's bins in every measure."""
    return (
        value_bin(clv),
        last_day,
        min(purchase_days, _MAX_COUNT_BIN),
        value_bin(spend_per_day),
    )


class Population:
    """Customer counts per bin of each measure (partition state; picklable)."""

    def __init__(self) -> None:
        self.counts: list[dict[int, int]] = [{} for _ in MEASURES]
        self.customers = 0

    def move(self, old: Bins | None, new: Bins | None) -> None:
        """Move one customer from `old` bins to `new` ones (None: not counted)."""
        if old is new or old == new:
            return
        if old is not None and new is not None:  # the common case: a re-scored customer
            for measure in range(len(MEASURES)):  # only the bins that changed move
                was, now = old[measure], new[measure]
                if was != now:
                    counts = self.counts[measure]
                    left = counts[was] - 1
                    if left:
                        counts[was] = left
                    else:
                        del counts[was]
                    counts[now] = counts.get(now, 0) + 1
            return
        if old is not None:
            self.customers -= 1
            for counts, key in zip(self.counts, old, strict=True):
                left = counts[key] - 1
                if left:
                    counts[key] = left
                else:
                    del counts[key]
        if new is not None:
            self.customers += 1
            for counts, key in zip(self.counts, new, strict=True):
                counts[key] = counts.get(key, 0) + 1

    def snapshot(self) -> PopulationSnapshot:
        return PopulationSnapshot(self.counts, self.customers)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Population):
            return NotImplemented
        return self.counts == other.counts and self.customers == other.customers


class PopulationSnapshot:
    """Frozen cumulative counts: percentile of a bin in O(log bins)."""

    __slots__ = ("_below", "_keys", "_same", "customers")

    def __init__(self, counts: list[dict[int, int]], customers: int) -> None:
        self.customers = customers
        self._keys: list[list[int]] = []
        self._below: list[list[int]] = []
        self._same: list[list[int]] = []
        for measure in counts:
            keys = sorted(measure)
            same = [measure[key] for key in keys]
            self._keys.append(keys)
            self._same.append(same)
            self._below.append([0, *accumulate(same)][:-1] if same else [])

    def percentile(self, measure: int, key: int) -> float:
        """Mid-rank share of customers below `key` (ties count half), in [0, 1].

        A key not in the snapshot (a customer new since) ranks among its neighbours.
        """
        if not self.customers:
            return 0.5
        keys = self._keys[measure]
        index = bisect.bisect_left(keys, key)
        if index < len(keys) and keys[index] == key:
            rank = self._below[measure][index] + self._same[measure][index] / 2
        else:
            rank = self._below[measure][index] if index < len(keys) else self.customers
        return rank / self.customers

    def share_below(self, measure: int, key: int) -> float:
        """Share of customers strictly below `key` (ties count nothing), in [0, 1]: the
        frequency's rank, where most customers tie at the bottom (one-time buyers must
        score F = 1, not the middle of their tie)."""
        if not self.customers:
            return 0.5
        index = bisect.bisect_left(self._keys[measure], key)
        below = self._below[measure]
        return (below[index] if index < len(below) else self.customers) / self.customers


EMPTY_SNAPSHOT = PopulationSnapshot([{} for _ in MEASURES], 0)
