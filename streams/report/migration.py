"""Segment migration over a period: customers by lifecycle segment at the period's
start (rows) and at its end (columns), from the lifecycle `segment_change` events.

A customer's segment at a moment is the target of their last lifecycle change before
it. Customers who had none before the start entered the base in the period
(`NEW_IN_PERIOD`); customers who had none before the end, and customers no longer
in the current scores (erased), are not counted; a period that reaches past the last
event ends with the current scores. The
diagonal holds those who ended where they started, including any who moved away
and came back; the number of changes in the period is kept beside the matrix.

>>> moves = MigrationCounts(start=10.0, end=20.0)
>>> moves.add(1.0, "c1", {"dimension": "lifecycle", "from_segment": None, "to_segment": "new"})
>>> moves.add(12.0, "c1", {"dimension": "lifecycle", "from_segment": "new", "to_segment": "active"})
>>> moves.add(15.0, "c2", {"dimension": "lifecycle", "from_segment": None, "to_segment": "new"})
>>> moves.add(25.0, "c2", {"dimension": "lifecycle", "from_segment": "new", "to_segment": "lost"})
>>> matrix = moves.matrix({"c1": "active", "c2": "lost"}, end_is_now=False)
>>> matrix.rows, matrix.columns, matrix.count("new", "active"), matrix.count(NEW_IN_PERIOD, "new")
(('(new in the period)', 'new'), ('new', 'active'), 1, 1)
>>> matrix.customers, matrix.moved, matrix.entered, matrix.changes
(2, 1, 1, 2)
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from streams.report.options import LIFECYCLE_ORDER, order

NEW_IN_PERIOD = "(new in the period)"


@dataclass(frozen=True)
class Migration:
    """Customers by lifecycle segment, rows = at the start, columns = at the end."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    counts: Mapping[tuple[str, str], int]
    changes: int  # lifecycle changes in the period (a customer may move several times)
    end_is_now: bool = False  # the columns are the current scores

    def count(self, source: str, target: str) -> int:
        return self.counts.get((source, target), 0)

    @property
    def customers(self) -> int:
        return sum(self.counts.values())

    @property
    def moved(self) -> int:
        """Customers who ended the period in another segment than they started it in."""
        return sum(
            n
            for (source, target), n in self.counts.items()
            if source not in (target, NEW_IN_PERIOD)
        )

    @property
    def entered(self) -> int:
        """Customers first seen in the period."""
        return sum(n for (source, _), n in self.counts.items() if source == NEW_IN_PERIOD)


class _Change(NamedTuple):
    at: float
    target: str  # (interned: one string per segment name, not one per event)


def _later(held: _Change | None, change: _Change) -> _Change:
    """The later of two changes of one customer. Customers' events come in any order,
    but each customer's in the order emitted: at the same moment the one read last."""
    return change if held is None or change.at >= held.at else held


class MigrationCounts:
    """Folds lifecycle `segment_change` events (any order, each once) into a
    `Migration` over [start, end) (epoch seconds)."""

    def __init__(self, start: float, end: float) -> None:
        self._start, self._end = start, end
        self._before_start: dict[str, _Change] = {}
        self._before_end: dict[str, _Change] = {}
        self._changes: Counter[str] = Counter()  # in the period, by customer

    def add(self, at: float, customer_id: str, value: Mapping[str, Any]) -> None:
        """One `segment_change` at `at`; only lifecycle changes count."""
        if value["dimension"] != "lifecycle" or at >= self._end:
            return
        change = _Change(at, sys.intern(value["to_segment"]))
        self._before_end[customer_id] = _later(self._before_end.get(customer_id), change)
        if at < self._start:
            self._before_start[customer_id] = _later(self._before_start.get(customer_id), change)
        else:
            self._changes[customer_id] += 1

    def matrix(self, current: Mapping[str, str], end_is_now: bool) -> Migration:
        """The matrix of the `current` customers (id: lifecycle segment now; an erased
        customer's moves are gone). A period that ends after the last event ends now:
        its end column is the current segment, which a final scoring as of the data's
        end may have moved on from the last change."""
        counts: Counter[tuple[str, str]] = Counter()
        changes = 0
        ends = current if end_is_now else self._ends(current)
        for customer_id, last in ends.items():
            first = self._before_start.get(customer_id)
            counts[first.target if first else NEW_IN_PERIOD, last] += 1
            changes += self._changes[customer_id]
        rows = order({s for s, _ in counts}, (NEW_IN_PERIOD, *LIFECYCLE_ORDER))
        columns = order({t for _, t in counts}, LIFECYCLE_ORDER)
        return Migration(rows, columns, dict(counts), changes, end_is_now)

    def _ends(self, current: Mapping[str, str]) -> dict[str, str]:
        return {c: last.target for c, last in self._before_end.items() if c in current}
