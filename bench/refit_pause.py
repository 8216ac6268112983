"""How long a scheduled refit holds up a partition's processing: the time to gather
the value model's statistics of every customer, read from the states (as before the
value-statistics index) or from the index, on the memory and the RocksDB store.

    python -m bench.refit_pause [--customers 1000000 --repeats 3]

The worker gathers the statistics on its event loop (the fit itself runs in another
process), so this is also how long its heartbeats and other partitions wait.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from agents.disk_states import DiskStates
from models.refit import collect_statistics
from models.state import CustomerState
from models.value_stats import ValueStatsIndex


def population(customers: int, seed: int = 1):
    rng = random.Random(seed)
    for number in range(customers):
        state = CustomerState.new(0.0)
        first = rng.randrange(0, 700)
        for _ in range(rng.randrange(1, 6)):
            state.add_purchase(first + rng.randrange(0, 60), rng.uniform(5, 200))
        yield f"c{number:08d}", state


def timed(work: Callable[[], object], repeats: int) -> float:
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="clv-refit-pause-") as work:
        measure(args.customers, args.repeats, Path(work))
    return 0


def measure(customers: int, repeats: int, work: Path) -> None:
    memory: dict[str, CustomerState] = {}
    disk = DiskStates(work / "p0", 50_000)
    index = ValueStatsIndex()
    put_seconds = 0.0
    for customer_id, state in population(customers):
        memory[customer_id] = disk[customer_id] = state
        started = time.perf_counter()
        index.put(customer_id, state)
        put_seconds += time.perf_counter() - started
    disk.flush()
    day = 800
    rows = [
        ("read from the states, memory store", lambda: collect_statistics(memory.values(), day)),
        ("read from the states, RocksDB store", lambda: collect_statistics(disk.values(), day)),
        ("from the value-statistics index", lambda: index.collect(day)),
    ]
    print(f"{customers:,} customers; median of {repeats} runs")
    for name, gather in rows:
        print(f"  {name}: {timed(gather, repeats):.3f} s")
    print(f"  index upkeep: {put_seconds / customers * 1e6:.2f} us per stored state")
    disk.close()


if __name__ == "__main__":
    raise SystemExit(main())
