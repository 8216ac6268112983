"""Customer equity, the report's header figures: the summed CLV of the current
customers, in all and by lifecycle and value tier, and the period the report covers.

>>> values = CustomerValues()
>>> values.add({"customer_id": "a", "clv": "30", "lifecycle": "active", "value_tier": "rest"})
>>> values.add({"customer_id": "b", "clv": "", "lifecycle": None, "value_tier": None})
>>> figures = values.figures(("top_5", "rest"))
>>> figures["equity"], figures["prospects"], [(s.name, s.share) for s in figures["by_tier"]]
(30.0, 1, [('rest', 1.0), ('(no tier)', 0.0)])
"""

from __future__ import annotations

import math
import sys
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from streams.report.options import LIFECYCLE_ORDER, order, utc

NO_TIER = "(no tier)"


@dataclass(frozen=True)
class SegmentValue:
    name: str
    customers: int
    equity: float  # sum of CLV
    share: float  # of the total equity

    @property
    def mean_clv(self) -> float:
        return self.equity / self.customers if self.customers else 0.0


class CustomerValues:
    """The current CLV, lifecycle and value tier of every customer."""

    def __init__(self) -> None:
        self._customers: dict[str, tuple[float, str, str]] = {}  # clv, lifecycle, tier

    def __len__(self) -> int:
        return len(self._customers)

    def lifecycles(self) -> dict[str, str]:
        """Each current customer's lifecycle segment."""
        return {customer_id: c[1] for customer_id, c in self._customers.items()}

    def add(self, row: Mapping[str, Any]) -> None:
        """A customer's current score: customer_id, clv (None for prospects),
        lifecycle, value_tier."""
        self.put(*self.read(row))

    @staticmethod
    def read(row: Mapping[str, Any]) -> tuple[str, tuple[float, str, str]]:
        """The customer id and (clv, lifecycle, tier) of a score, not kept (segment
        names interned: one string per name, not one per customer)."""
        clv = row.get("clv")
        return str(row["customer_id"]), (
            float(clv) if clv not in (None, "") else 0.0,
            _name(row.get("lifecycle"), "prospect"),
            _name(row.get("value_tier"), NO_TIER),
        )

    def put(self, customer_id: str, current: tuple[float, str, str]) -> None:
        self._customers[customer_id] = current

    def remove(self, customer_id: str) -> None:
        self._customers.pop(customer_id, None)

    def figures(self, tiers: tuple[str, ...]) -> dict[str, Any]:
        """The `Report` fields customers, prospects, equity, by_lifecycle and by_tier;
        `tiers` are the configured value tiers in their order."""
        customers = self._customers.values()
        equity = sum(clv for clv, _, _ in customers)
        lifecycles = order({c[1] for c in customers}, LIFECYCLE_ORDER)
        tier_names = order({c[2] for c in customers}, (*tiers, NO_TIER))
        return {
            "customers": len(self._customers),
            "prospects": sum(1 for c in customers if c[1] == "prospect"),
            "equity": equity,
            "by_lifecycle": _segments(customers, 1, lifecycles, equity),
            "by_tier": _segments(customers, 2, tier_names, equity),
        }


def _name(value: Any, default: str) -> str:
    """A segment name (interned), `default` when empty; anything else is an error."""
    if not value:
        return default
    if not isinstance(value, str):
        raise TypeError(f"not a segment name: {value!r}")
    return sys.intern(value)


def _segments(
    customers: Iterable[tuple[float, str, str]], index: int, names: tuple[str, ...], total: float
) -> tuple[SegmentValue, ...]:
    count: Counter[str] = Counter()
    equity: Counter[str] = Counter()
    for customer in customers:
        count[customer[index]] += 1
        equity[customer[index]] += customer[0]
    return tuple(
        SegmentValue(name, count[name], equity[name], equity[name] / total if total else 0.0)
        for name in names
    )


def period_day(given: datetime | None, seen: float, last: bool = False) -> date | None:
    """The first (or `last`) day the report covers: from the period given (end
    exclusive), else from the earliest (latest) event time `seen`, if any.

    >>> from streams.report.options import midnight
    >>> period_day(midnight(date(2024, 2, 1)), math.inf, last=True), period_day(None, math.inf)
    (datetime.date(2024, 1, 31), None)
    """
    if given is not None:
        return (given - timedelta(days=1) if last else given).date()
    return utc(seen).date() if math.isfinite(seen) else None
