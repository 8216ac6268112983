"""Segment migration: how many customers moved from one lifecycle segment to another.

>>> moves = MigrationCounts()
>>> moves.add({"dimension": "lifecycle", "from_segment": None, "to_segment": "new"})
>>> moves.add({"dimension": "value_tier", "from_segment": "rest", "to_segment": "top_5"})
>>> matrix = moves.matrix()
>>> matrix.rows, matrix.columns, matrix.count(FIRST_SEEN, "new"), matrix.total
(('(first seen)',), ('new',), 1, 1)
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from streams.report.options import LIFECYCLE_ORDER, order

FIRST_SEEN = "(first seen)"


@dataclass(frozen=True)
class Migration:
    """Counts of lifecycle changes, rows = from, columns = to."""

    rows: tuple[str, ...]
    columns: tuple[str, ...]
    counts: Mapping[tuple[str, str], int]

    def count(self, source: str, target: str) -> int:
        return self.counts.get((source, target), 0)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class MigrationCounts:
    """Folds `segment_change` events (of the period) into a `Migration`."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, str]] = Counter()

    def add(self, value: Mapping[str, Any]) -> None:
        """One `segment_change`; only lifecycle changes count."""
        if value["dimension"] == "lifecycle":
            source = value.get("from_segment") or FIRST_SEEN
            self._counts[source, value["to_segment"]] += 1

    def matrix(self) -> Migration:
        counts = dict(self._counts)
        rows = order({s for s, _ in counts}, (FIRST_SEEN, *LIFECYCLE_ORDER))
        columns = order({t for _, t in counts}, LIFECYCLE_ORDER)
        return Migration(rows, columns, counts)
