"""Memory: bytes per serialized customer state, and peak RSS of `clvstream score`
on a population of 1M simulated customers.

    python -m bench.memory [--customers 1000000 --days 30]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from bench.scratch import work_dir
from models.config import ScoringConfig
from models.engine import ScoringEngine


def state_sizes(events: Path) -> list[int]:
    engine = ScoringEngine(ScoringConfig())
    with open(events, "rb") as lines:
        for number, line in enumerate(lines, 1):
            engine.process_raw(line, {"source": "file", "file": events.name, "line": number})
    return sorted(len(state.to_bytes()) for state in engine.states.values())


def peak_rss(command: list[str]) -> int:
    """Peak resident set size in bytes of one child process (and only that one)."""
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command} failed")
    return usage.ru_maxrss * 1024


def simulate(customers: int, days: int, out: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "streams.cli", "simulate", "--customers", str(customers),
         "--days", str(days), "--seed", "9", "--out", str(out)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--sample-customers", type=int, default=20_000)
    parser.add_argument("--sample-days", type=int, default=730)
    args = parser.parse_args()
    work = work_dir("clv-memory-")

    sample = work / "sample.jsonl"
    simulate(args.sample_customers, args.sample_days, sample)
    sizes = state_sizes(sample)
    print(
        f"serialized state, {len(sizes):,} customers after {args.sample_days} days: "
        f"median {statistics.median(sizes):.0f} B, p95 {sizes[int(0.95 * len(sizes))]} B, "
        f"max {sizes[-1]} B"
    )

    big = work / "big.jsonl"
    simulate(args.customers, args.days, big)
    with open(big, "rb") as source:
        lines = sum(1 for _ in source)
    score = [sys.executable, "-m", "streams.cli", "score", str(big), "--out", str(work / "s.csv")]
    peak = peak_rss(score)
    print(
        f"clvstream score, {args.customers:,} customers ({lines:,} events): peak RSS "
        f"{peak / 2**30:.2f} GiB = {peak / args.customers:,.0f} B per customer (all in memory)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
