"""Write a simulation to files: events as JSON Lines, the latent truth as CSV.

>>> import tempfile
>>> from pathlib import Path
>>> from models.simulation import SimulationConfig
>>> with tempfile.TemporaryDirectory() as folder:
...     events, truth = Path(folder) / "events.jsonl", Path(folder) / "truth.csv"
...     summary = write_simulation(SimulationConfig(customers=3, days=30, seed=1), events, truth)
...     lines = events.read_bytes().count(b"\\n")
...     header = truth.read_text().splitlines()[0]
>>> summary["customers"], summary["lines"] == lines
(3, True)
>>> header.startswith("customer_id,cluster,acquired_at")
True
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.simulation import Simulation, SimulationConfig, simulate

WRITE_BATCH_LINES = 2048


def write_simulation(
    config: SimulationConfig, events_path: Path, truth_path: Path | None = None
) -> dict[str, Any]:
    """Simulate, write the events (and the truth), return a small summary."""
    simulation = simulate(config)
    lines = write_events(simulation, Path(events_path))
    if truth_path is not None:
        write_truth(simulation, Path(truth_path))
    counts = simulation.counts()
    interactions = sum(n for key, n in counts.items() if key.startswith("interaction."))
    return {
        "customers": config.customers,
        "days": config.days,
        "seed": config.seed,
        "lines": lines,
        "events": sum(counts.values()),
        "interaction_share": round(interactions / max(sum(counts.values()), 1), 4),
        "counts": counts,
        "noise": simulation.noise.summary(),
    }


def write_events(simulation: Simulation, path: Path) -> int:
    """One event per line, in arrival order; returns the number of lines."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    batch: list[bytes] = []
    with open(path, "wb") as sink:
        for _, line in simulation.events():
            batch.append(line)
            if len(batch) == WRITE_BATCH_LINES:
                sink.write(b"\n".join(batch) + b"\n")
                written += len(batch)
                batch.clear()
        if batch:
            sink.write(b"\n".join(batch) + b"\n")
            written += len(batch)
    return written


def write_truth(simulation: Simulation, path: Path) -> None:
    """Header plus one row per customer, sorted by customer id, `\\n` line ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as sink:
        sink.writelines(simulation.truth_table().csv_text())
