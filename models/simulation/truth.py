"""The latent truth per customer, for benchmarks to check models against.

Values are plain Python scalars (rates at full float precision), so a CSV of
them is byte-identical for the same config.

>>> TRUTH_COLUMNS[:3]
('customer_id', 'cluster', 'acquired_at')
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from models.simulation.catalog import CATEGORIES, CLUSTER_NAMES, World
from models.simulation.config import SimulationConfig
from models.simulation.population import Population
from models.simulation.serialize import customer_id_width
from models.simulation.stamps import StampTable
from models.simulation.timeline import INTERACTION_CODES, Code, Timeline, to_seconds

TRUTH_COLUMNS = (
    "customer_id",
    "cluster",
    "acquired_at",
    "purchase_rate_per_day",
    "dropout_rate_per_day",
    "dropout_at",
    "alive_at_end",
    "mean_spend",
    "top_categories",
    "n_purchases",
    "n_interactions",
    "erased",
)
TOP_CATEGORIES = 3


_N = len(CATEGORIES)
# Every ordered triple of categories, indexed by first * N^2 + second * N + third.
_TRIPLES = tuple(
    f"{CATEGORIES[first]}|{CATEGORIES[second]}|{CATEGORIES[third]}"
    for first in range(_N)
    for second in range(_N)
    for third in range(_N)
)


def top_categories(world: World, people: Population, rows: slice) -> list[str]:
    """The customer's three most frequent categories in the long run, '|'-joined."""
    preference = people.preference[rows]
    cluster = people.cluster[rows]
    shares = np.empty_like(preference)
    for index in range(len(CLUSTER_NAMES)):
        members = cluster == index
        shares[members] = world.stationary(index, preference[members])
    top = np.argsort(-shares, axis=1, kind="stable")[:, :TOP_CATEGORIES]
    code = (top[:, 0] * _N + top[:, 1]) * _N + top[:, 2]
    return [_TRIPLES[c] for c in code.tolist()]


class TruthTable:
    """Per-customer truth, produced in chunks of customers (cheap for millions).

    `n_purchases` counts the purchases in the events: with programme effects, give the
    purchases added per customer (`added_purchases`, by customer index) to count them.
    """

    def __init__(
        self,
        config: SimulationConfig,
        world: World,
        people: Population,
        timeline: Timeline,
        added_purchases: np.ndarray | None = None,
    ) -> None:
        n = people.size
        self._config, self._world, self._people = config, world, people
        self._purchases = np.bincount(
            timeline.customer[timeline.code == Code.PURCHASE], minlength=n
        )
        if added_purchases is not None:
            self._purchases = self._purchases + added_purchases
        is_interaction = np.isin(timeline.code, np.array(INTERACTION_CODES, dtype=np.int8))
        self._interactions = np.bincount(timeline.customer[is_interaction], minlength=n)
        self._erased = np.bincount(timeline.customer[timeline.code == Code.ERASURE], minlength=n)
        self._stamps = StampTable(config.start, config.days)
        self._width = customer_id_width(n)

    def rows(self, chunk: int = 65_536) -> Iterator[tuple[Any, ...]]:
        """One tuple per customer, in customer order, values in `TRUTH_COLUMNS` order."""
        customer = f"c%0{self._width}d"
        for number, *values in self._chunks(chunk):
            yield (customer % number, *values)

    def csv_text(self, chunk: int = 65_536) -> Iterator[str]:
        """The CSV (header, then a row per customer, `\\n` line ends) in pieces."""
        yield ",".join(TRUTH_COLUMNS) + "\n"
        row = f"c%0{self._width}d,%s,%s,%r,%r,%s,%d,%r,%s,%d,%d,%d\n"
        for begin in range(0, self._people.size, chunk):
            columns = self._columns(slice(begin, min(begin + chunk, self._people.size)))
            yield "".join([row % values for values in zip(*columns, strict=True)])

    def _chunks(self, chunk: int) -> Iterator[tuple[Any, ...]]:
        for begin in range(0, self._people.size, chunk):
            columns = self._columns(slice(begin, min(begin + chunk, self._people.size)))
            yield from zip(*columns, strict=True)

    def _columns(self, rows: slice) -> tuple[list[Any], ...]:
        config, people = self._config, self._people
        dropout = people.dropout[rows]
        within = dropout < config.days
        dropout_at = self._stamps.iso(to_seconds(np.where(within, dropout, 0.0)))
        return (
            list(range(rows.start + 1, rows.stop + 1)),
            [CLUSTER_NAMES[c] for c in people.cluster[rows].tolist()],
            self._stamps.iso(to_seconds(people.acquired[rows])),
            people.purchase_rate[rows].tolist(),
            people.dropout_rate[rows].tolist(),
            [
                stamp if inside else ""
                for stamp, inside in zip(dropout_at, within.tolist(), strict=True)
            ],
            (~within).astype(int).tolist(),
            np.round(config.p / people.spend_rate[rows], 2).tolist(),
            top_categories(self._world, people, rows),
            self._purchases[rows].tolist(),
            self._interactions[rows].tolist(),
            (self._erased[rows] > 0).astype(int).tolist(),
        )
