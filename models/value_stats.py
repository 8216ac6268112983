"""The value model's statistics of every customer, kept up to date as states change.

A refit needs (x, t_x, first purchase day, mean repeat spend) of every purchasing
customer. Reading them from the states would be a pass over all of them on the hot
path (seconds for a million customers, more when the states live on disk); this index
keeps them in flat arrays instead, updated with each stored state, so a refit's
statistics cost one vectorized pass over numbers.

Rows keep the customers' first-insertion order, the order the state mapping iterates
in, so the statistics (and the fit, whose sums depend on the order of the terms)
equal those read from the states.

>>> from models.state import CustomerState
>>> index, state = ValueStatsIndex(), CustomerState.new(0.0)
>>> state.add_purchase(10, 20.0); state.add_purchase(40, 30.0)
>>> index.put("a", state); index.put("b", CustomerState.new(0.0))
>>> stats = index.collect(100)
>>> stats.x.tolist(), stats.t_x_days.tolist(), stats.T_days.tolist(), stats.mean_spend.tolist()
([1.0], [30.0], [90.0], [30.0])
>>> index.remove("a"); len(index.collect(100))
0
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

import numpy as np

from models.refit import PopulationStats
from models.shared_stats import StatsRows
from models.state import CustomerState

_NEVER = -(1 << 31)  # first day of a customer without a purchase (and of a freed row)


class ValueStatsIndex:
    """Per-customer (first day, last day, repeat days, mean repeat spend), by row."""

    __slots__ = ("_first", "_freed", "_last", "_repeat", "_rows", "_spend")

    def __init__(self) -> None:
        self._rows: dict[str, int] = {}
        self._first = array("i")
        self._last = array("i")
        self._repeat = array("i")
        self._spend = array("d")
        self._freed = 0  # rows of removed customers, left in place until compacted

    @classmethod
    def of(cls, states: Iterable[tuple[str, CustomerState]]) -> ValueStatsIndex:
        index = cls()
        for customer_id, state in states:
            index.put(customer_id, state)
        return index

    def __len__(self) -> int:
        return len(self._rows)

    def put(self, customer_id: str, state: CustomerState) -> None:
        row = self._rows.get(customer_id)
        if row is None:
            row = self._rows[customer_id] = len(self._first)
            self._first.append(_NEVER)
            self._last.append(0)
            self._repeat.append(0)
            self._spend.append(0.0)
        first = state.first_day
        if first is None:
            if self._first[row] != _NEVER:  # a purchase history can only be erased
                self._first[row] = _NEVER
            return
        self._first[row] = first
        self._last[row] = state.last_day
        self._repeat[row] = state.repeat_days
        self._spend[row] = state.mean_repeat_spend

    def remove(self, customer_id: str) -> None:
        row = self._rows.pop(customer_id, None)
        if row is None:
            return
        self._first[row] = _NEVER
        self._freed += 1
        if self._freed > 1024 and self._freed > len(self._rows):
            self._compact()

    def collect(self, through_day: int) -> PopulationStats:
        """The statistics of every purchasing customer as of `through_day`."""
        first = np.frombuffer(self._first, dtype=np.int32)
        purchased = first != _NEVER
        first = first[purchased].astype(float)
        last = np.frombuffer(self._last, dtype=np.int32)[purchased].astype(float)
        repeat = np.frombuffer(self._repeat, dtype=np.int32)[purchased].astype(float)
        spend = np.frombuffer(self._spend, dtype=np.float64)[purchased].copy()
        age = np.maximum(float(through_day), last) - first
        return PopulationStats(repeat, last - first, age, spend, through_day)

    def rows(self) -> StatsRows:
        """The raw statistics of every purchasing customer, for the leading partition's
        fit (`models.shared_stats`)."""
        first = np.frombuffer(self._first, dtype=np.int32)
        purchased = first != _NEVER
        return StatsRows.of(
            first[purchased],
            np.frombuffer(self._last, dtype=np.int32)[purchased],
            np.frombuffer(self._repeat, dtype=np.int32)[purchased],
            np.frombuffer(self._spend, dtype=np.float64)[purchased],
        )

    def _compact(self) -> None:
        """Drop the freed rows, keeping the live ones in order."""
        order = sorted(self._rows.items(), key=lambda item: item[1])
        keep = [row for _, row in order]
        self._first = array("i", (self._first[r] for r in keep))
        self._last = array("i", (self._last[r] for r in keep))
        self._repeat = array("i", (self._repeat[r] for r in keep))
        self._spend = array("d", (self._spend[r] for r in keep))
        self._rows = {customer_id: new for new, (customer_id, _) in enumerate(order)}
        self._freed = 0
