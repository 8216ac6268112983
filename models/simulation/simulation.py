"""`simulate(config)`: draw everything columnar, sort once, format lazily.

>>> sim = simulate(SimulationConfig(customers=20, days=60, seed=7))
>>> first_time, first_line = next(iter(sim.events()))
>>> first_line[:60]
b'{"event_type":"customer","schema_version":1,"event_id":"c000'
>>> len(sim.truth()) == 20 and sim.truth()[0]["customer_id"]
'c0000001'
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time
from typing import Any

import numpy as np

from models.simulation import interactions as touch
from models.simulation.catalog import World, build_world
from models.simulation.config import SimulationConfig
from models.simulation.lifecycle import customer_event_batches, transaction_batches
from models.simulation.noise import NoisePlan, plan_noise
from models.simulation.population import Population, draw_population
from models.simulation.purchases import Purchases, Refunds, draw_purchases, draw_refunds
from models.simulation.sampling import substream
from models.simulation.serialize import EventSerializer
from models.simulation.stamps import StampTable
from models.simulation.timeline import (
    EVENT_TYPE_OF_CODE,
    KIND_OF_CODE,
    EventBatch,
    Timeline,
    assemble,
)
from models.simulation.truth import TRUTH_COLUMNS, TruthTable

CHUNK_EVENTS = 65_536


@dataclass(frozen=True)
class Simulation:
    """A drawn population and its events; `events()` formats them on demand."""

    config: SimulationConfig
    world: World
    people: Population
    purchases: Purchases
    refunds: Refunds
    timeline: Timeline
    noise: NoisePlan

    @property
    def end_epoch(self) -> float:
        """The end of the period (exclusive), as epoch seconds."""
        return datetime.combine(self.config.end, time(), UTC).timestamp()

    def events(self) -> Iterator[tuple[float, bytes]]:
        """(arrival as epoch seconds, JSON line without newline), ascending arrival.

        Arrival equals `occurred_at` except for late lines (noise), which arrive later.
        """
        start_epoch = datetime.combine(self.config.start, time(), UTC).timestamp()
        serializer = EventSerializer(
            StampTable(self.config.start, self.config.days),
            self.config.customers,
            self.config.currency,
            self.timeline,
            self.purchases,
        )
        source, arrival = self.noise.source, self.noise.arrival
        for begin in range(0, source.size, CHUNK_EVENTS):
            rows = source[begin : begin + CHUNK_EVENTS]
            lines = serializer.lines(rows, self.noise.malformed[rows])
            stamps = (arrival[begin : begin + CHUNK_EVENTS] + start_epoch).tolist()
            yield from zip(stamps, lines, strict=True)

    def truth_table(self, added_purchases: np.ndarray | None = None) -> TruthTable:
        """The truth in chunks: `.rows()` tuples or `.csv_text()` (for millions).
        `added_purchases`: programme-effect purchases per customer index, if any."""
        return TruthTable(self.config, self.world, self.people, self.timeline, added_purchases)

    def truth(self) -> list[dict[str, Any]]:
        """One dict per customer, sorted by customer id (see `TRUTH_COLUMNS`)."""
        return [dict(zip(TRUTH_COLUMNS, row, strict=True)) for row in self.truth_table().rows()]

    def counts(self) -> dict[str, int]:
        """Clean events per "event_type.kind" (noise not included)."""
        per_code = np.bincount(self.timeline.code, minlength=len(KIND_OF_CODE))
        counts: dict[str, int] = {}
        for code, count in enumerate(per_code.tolist()):
            key = f"{EVENT_TYPE_OF_CODE[code]}.{KIND_OF_CODE[code]}"
            counts[key] = counts.get(key, 0) + count
        return counts


def simulate(config: SimulationConfig) -> Simulation:
    """Draw a population, its purchases, interactions and noise from `config`."""
    seed = config.seed
    world = build_world(substream(seed, "world"))
    people = draw_population(config, world, substream(seed, "population"))
    bought = draw_purchases(
        config,
        people,
        world,
        substream(seed, "purchases"),
        substream(seed, "categories"),
        substream(seed, "items"),
    )
    refunds = draw_refunds(config, bought, substream(seed, "refunds"))
    batches = customer_event_batches(people) + transaction_batches(bought, refunds)
    if config.interactions:
        batches += _interaction_batches(config, people, bought)
    timeline = assemble(batches, config.days, people.erasure)
    noise = plan_noise(
        substream(seed, "noise"),
        timeline.second,
        config.duplicate_rate,
        config.malformed_rate,
        config.late_rate,
    )
    return Simulation(config, world, people, bought, refunds, timeline, noise)


def _interaction_batches(
    config: SimulationConfig, people: Population, bought: Purchases
) -> list[EventBatch]:
    seed, days = config.seed, config.days
    return [
        *touch.purchase_sessions(substream(seed, "sessions"), people, bought),
        *touch.browsing(substream(seed, "logins"), people, days),
        *touch.email_campaigns(substream(seed, "email"), people, days),
        *touch.service_contacts(substream(seed, "service"), people, days),
        *touch.feedback(substream(seed, "feedback"), people, bought),
        touch.unsubscribes(people),
    ]
