"""The benchmarks' input: a given events file, or a simulated one in a work folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def events_file(given: Path | None, work: Path, customers: int, days: int, seed: int) -> Path:
    """`given` if set, else `work/events.jsonl` simulated by `clvstream simulate`."""
    if given is not None:
        return given
    path = work / "events.jsonl"
    command = [
        sys.executable, "-m", "streams.cli", "simulate", "--customers", str(customers),
        "--days", str(days), "--seed", str(seed), "--out", str(path),
    ]  # fmt: skip
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return path
