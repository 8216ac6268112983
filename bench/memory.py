"""Memory: bytes per serialized customer state, and the peak memory of `clvstream
score` on a population of 1M simulated customers.

    python -m bench.memory [--customers 1000000 --days 30]

`clvstream score` is more than one process: its refits run in a process pool of
their own (a forkserver and its worker, `streams.orphan_guard.fit_executor`), alive
beside the scorer until it exits. The peak reported is that of the whole process
tree: the memory of every process under the command, summed (proportional set
sizes, so pages the forkserver shares with its worker count once), sampled every
0.25 s; next to it the scorer process's own exact peak RSS. A child's `ru_maxrss`
alone (what `wait4` gives) is the largest single process's peak, not the sum.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Mapping
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


SAMPLE_SECONDS = 0.25


def descendants(parents: Mapping[int, int], root: int) -> set[int]:
    """`root` and every process below it (children, grandchildren, ...), from a map of
    process id -> parent process id.

    >>> sorted(descendants({10: 1, 11: 10, 12: 11, 13: 1}, 10))
    [10, 11, 12]
    """
    children: dict[int, list[int]] = defaultdict(list)
    for pid, parent in parents.items():
        children[parent].append(pid)
    found: set[int] = set()
    stack = [root]
    while stack:
        pid = stack.pop()
        if pid not in found:
            found.add(pid)
            stack.extend(children.get(pid, ()))
    return found


def proportional_kib(smaps_rollup: str) -> int | None:
    """The proportional set size (`Pss:`, KiB) in the text of /proc/PID/smaps_rollup."""
    for line in smaps_rollup.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1])
    return None


def process_parents() -> dict[int, int]:
    """Process id -> parent process id of every process (Linux /proc)."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_bytes()
            except OSError:  # gone meanwhile
                continue
            parents[int(entry)] = int(stat.rsplit(b")", 1)[1].split()[1])
    return parents


def memory_bytes(pid: int) -> int:
    """A process's proportional set size (its resident size where that is not
    readable); 0 once it has gone."""
    try:
        pss = proportional_kib(Path(f"/proc/{pid}/smaps_rollup").read_text())
        if pss is not None:
            return pss * 1024
    except OSError:
        pass
    try:
        resident_pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def peak_memory(command: list[str]) -> tuple[int, int]:
    """(peak of the summed memory of the command's whole process tree, sampled every
    SAMPLE_SECONDS; the command's own process's exact peak RSS), in bytes."""
    child = subprocess.Popen(command, stdout=subprocess.DEVNULL)
    tree_peak = 0
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        tree = descendants(process_parents(), child.pid)
        tree_peak = max(tree_peak, sum(memory_bytes(p) for p in tree))
        time.sleep(SAMPLE_SECONDS)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command} failed")
    own_peak = usage.ru_maxrss * 1024  # (Linux: KiB; the largest of it and its children)
    return max(tree_peak, own_peak), own_peak


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
    peak, own = peak_memory(score)
    print(
        f"clvstream score, {args.customers:,} customers ({lines:,} events): peak memory "
        f"of the command's processes (scorer and its refit processes) {peak / 2**30:.2f} "
        f"GiB = {peak / args.customers:,.0f} B per customer (all in memory); the scorer "
        f"process alone: peak RSS {own / 2**30:.2f} GiB = {own / args.customers:,.0f} B"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
