"""Throughput of `clvstream score` next to a bare loop over the same file, same run.

    python -m bench.throughput [--customers 7000 --days 730 --repeats 3]

The bare loop is `json.loads` of each line plus a per-customer counter update, run
for as long as the scorer ran (sustained, like the scorer). The scorer is timed as
the real command (a subprocess: start-up, parsing, transition, due re-scores, refits,
CSV), wall clock from start to exit, and must have applied every event.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.events import events_file
from bench.scratch import work_dir


def bare_loop(path: Path, at_least_seconds: float = 0.0) -> tuple[int, float]:
    """Events and seconds of the bare loop, repeated over the file until it has run for
    `at_least_seconds`: a one-second burst runs at a higher CPU clock than a sustained
    run, which would flatter the bare loop against the longer scorer run."""
    events, started = 0, time.perf_counter()
    while True:
        counts: Counter = Counter()
        with open(path, "rb") as lines:
            for line in lines:
                counts[json.loads(line)["customer_id"]] += 1
        events += sum(counts.values())
        elapsed = time.perf_counter() - started
        if elapsed >= at_least_seconds:
            return events, elapsed


def clvstream_score(path: Path, out: Path, extra: list[str], events: int) -> float:
    started = time.perf_counter()
    command = [sys.executable, "-m", "streams.cli", "score", str(path), "--out", str(out), *extra]
    run = subprocess.run(command, check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    # A fast run that rejected its input would be a fake result: check it scored everything.
    if f"events read {events:,}  applied {events:,}" not in run.stdout:
        raise SystemExit(f"clvstream score did not apply every event:\n{run.stdout}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=7000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--events", type=Path, help="use this events file instead")
    parser.add_argument("scorer_options", nargs="*", help="extra options for clvstream score")
    args = parser.parse_args()
    work = work_dir("clv-throughput-")
    events = events_file(args.events, work, args.customers, args.days, args.seed)
    bare_rates, score_rates, ratios = [], [], []
    for repeat in range(args.repeats):
        n, _ = bare_loop(events)
        score_seconds = clvstream_score(events, work / "scores.csv", args.scorer_options, n)
        bare_events, bare_seconds = bare_loop(events, at_least_seconds=score_seconds)
        bare_rates.append(bare_events / bare_seconds)
        score_rates.append(n / score_seconds)
        ratios.append(score_rates[-1] / bare_rates[-1])
        print(
            f"run {repeat + 1}: {n:,} events  bare loop {bare_rates[-1]:,.0f}/s  "
            f"clvstream score {score_rates[-1]:,.0f}/s ({score_seconds:.1f} s)  "
            f"ratio {ratios[-1]:.3f}"
        )
    print(
        f"median: bare loop {statistics.median(bare_rates):,.0f}/s  clvstream score "
        f"{statistics.median(score_rates):,.0f}/s  ratio {statistics.median(ratios):.3f} "
        f"(required >= 0.10, goal 0.30)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
