"""Segment stability and customer needs on simulated data, through the real engine.

    python -m bench.segments [--customers 6000 --days 730 --seeds 3]

Flapping: customers whose lifecycle (or value tier) changed more than twice within
30 days without a purchase in those 30 days (a first assignment is not a change),
with the configured hysteresis and with it switched off (no margins, no minimum time
in a segment).

Needs: before each purchase with items (after a 180-day warm-up), the customer's
top-3 next-best categories as served at that moment; a hit when the purchase holds
one of them. Baseline: the 3 most popular categories at that moment.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections import defaultdict
from datetime import datetime
from pathlib import Path

from models.config import ScoringConfig, SegmentConfig
from models.emitted import Stream
from models.engine import ScoringEngine
from models.needs import popular_categories, top_needs
from models.simulation import SimulationConfig, simulate
from models.timeline import SECONDS_PER_DAY
from schemas.parsing import parse_event

WARM_UP_DAYS = 180
FLAP_DAYS = 30


def write_events(customers: int, days: int, seed: int, path: Path) -> None:
    simulation = simulate(SimulationConfig(customers=customers, days=days, seed=seed))
    with open(path, "wb") as out:
        for _, line in simulation.events():
            out.write(line + b"\n")


class Replay:
    """Segment changes and needs hits collected while the engine replays a file."""

    def __init__(self) -> None:
        self.changes: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        self.purchases: dict[str, list[float]] = defaultdict(list)
        self.needs_hits = self.popular_hits = self.needs_trials = 0

    def run(self, engine: ScoringEngine, path: Path) -> None:
        start = None
        with open(path, "rb") as lines:
            for number, raw in enumerate(lines, 1):
                event = parse_event(raw)
                at = getattr(event, "occurred_at", None)
                if at is not None and getattr(event, "kind", None) == "purchase":
                    start = start if start is not None else at.timestamp()
                    self.purchases[event.customer_id].append(at.timestamp())
                    if at.timestamp() - start > WARM_UP_DAYS * SECONDS_PER_DAY and event.items:
                        self._try_needs(engine, event)
                origin = {"source": "file", "file": path.name, "line": number}
                self._collect(engine.process_raw(raw, origin))

    def _try_needs(self, engine: ScoringEngine, event) -> None:
        state = engine.states.get(event.customer_id)
        if state is None or not state.affinity.basket:
            return  # needs are for customers who have bought with items before
        bought = {item.category for item in event.items}
        snapshot, cfg = engine.scorer.needs_snapshot, engine.config.needs
        self.needs_trials += 1
        self.needs_hits += bool(bought & set(top_needs(state.affinity, snapshot, cfg)))
        self.popular_hits += bool(bought & set(popular_categories(snapshot, cfg.top_needs)))

    def _collect(self, outputs) -> None:
        for output in outputs:
            if output.stream is Stream.SEGMENT_CHANGES:
                value = output.value
                if value["from_segment"] is None:
                    continue  # a first assignment, not a change
                moment = datetime.fromisoformat(value["occurred_at"]).timestamp()
                self.changes[value["dimension"]][output.key].append(moment)

    def flappers(self, dimension: str) -> tuple[int, int]:
        """(customers who flapped, customers who changed at least once) in one
        dimension; a customer's first segment is not a change."""
        flapped = 0
        window = FLAP_DAYS * SECONDS_PER_DAY
        for customer, times in self.changes[dimension].items():
            bought = self.purchases.get(customer, [])
            for index in range(len(times) - 2):
                low, high = times[index], times[index + 2]
                if high - low <= window and not any(low <= t <= high for t in bought):
                    flapped += 1
                    break
        return flapped, len(self.changes[dimension])


def run(events: Path, segments: SegmentConfig) -> Replay:
    engine = ScoringEngine(ScoringConfig(segments=segments))
    replay = Replay()
    replay.run(engine, events)
    return replay


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=6000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clv-segments-") as work:
        return measure(args, Path(work))


def measure(args: argparse.Namespace, work: Path) -> int:
    off = SegmentConfig(risk_margin=0.0, min_days_in_segment=0, tier_margin=0.0)
    figures: dict[str, list[float]] = defaultdict(list)
    for seed in range(1, args.seeds + 1):
        events = work / f"events-{seed}.jsonl"
        write_events(args.customers, args.days, seed, events)
        for label, config in (("hysteresis", SegmentConfig()), ("no hysteresis", off)):
            replay = run(events, config)
            for dimension in ("lifecycle", "value_tier"):
                flapped, changed = replay.flappers(dimension)
                figures[f"{label} {dimension}"].append(flapped / args.customers)
                print(f"seed {seed} {label:>13} {dimension:<10}: {flapped:,} of "
                      f"{args.customers:,} customers changed > 2 times in {FLAP_DAYS} days "
                      f"without buying ({changed:,} changed at least once)")  # fmt: skip
            if label == "hysteresis":
                trials = replay.needs_trials
                needs, popular = replay.needs_hits / trials, replay.popular_hits / trials
                figures["needs hit rate"].append(needs)
                figures["popular hit rate"].append(popular)
                print(f"seed {seed} needs: top-3 hit rate {needs:.4f} vs most popular "
                      f"{popular:.4f} over {trials:,} purchases")  # fmt: skip
    print("median over seeds:")
    for key, values in figures.items():
        print(f"  {key:<28} {statistics.median(values):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
