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

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from models.config import ScoringConfig
from models.emitted import Stream
from models.engine import ScoringEngine
from models.errors import ConfigError
from models.simulation import Simulation, SimulationConfig, simulate
from models.simulation.effects import ProgrammeEffects, with_programme_effects

WRITE_BATCH_LINES = 2048


def write_simulation(
    config: SimulationConfig,
    events_path: Path,
    truth_path: Path | None = None,
    *,
    effects: ProgrammeEffects | None = None,
    scoring: ScoringConfig | None = None,
) -> dict[str, Any]:
    """Simulate, write the events (and the truth), return a small summary. With
    programme `effects`, the events run through a scorer with the `scoring` settings
    first (see `models.simulation.effects`) and the added purchases are written too."""
    simulation = simulate(config)
    added = None
    added_purchases = None
    if effects is not None and effects.effects:
        added_purchases = np.zeros(config.customers, dtype=np.int64)
        lines, added = write_events_with_effects(
            simulation, Path(events_path), effects, scoring or ScoringConfig(), added_purchases
        )
    else:
        lines = write_events(simulation, Path(events_path))
    if truth_path is not None:
        write_truth(simulation, Path(truth_path), added_purchases)
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
        **({"programme_effects": added} if added is not None else {}),
    }


def write_events(simulation: Simulation, path: Path) -> int:
    """One event per line, in arrival order; returns the number of lines."""
    return _write_lines((line for _, line in simulation.events()), path)


def write_events_with_effects(
    simulation: Simulation,
    path: Path,
    effects: ProgrammeEffects,
    scoring: ScoringConfig,
    added_purchases: np.ndarray | None = None,
) -> tuple[int, dict[str, Any]]:
    """The closed loop: lines as the scorer saw them; returns (lines, effect summary).
    `added_purchases` (one per customer, if given) counts the purchases added."""
    if not scoring.programmes.enabled:
        raise ConfigError(
            "programmes are switched off in the settings: nobody is treated, "
            "so no programme effect can be given"
        )
    known = {programme.id for programme in scoring.programmes.catalogue}
    unknown = sorted(set(effects.effects) - known)
    if unknown:
        raise ConfigError(f"no programme {', '.join(unknown)} in the catalogue")
    engine = ScoringEngine(scoring)
    counts = {"triggers": 0, "purchases_added": 0}

    def lines() -> Iterator[bytes]:
        for _, line, outputs in with_programme_effects(
            simulation.events(), engine, effects, path.name, until=simulation.end_epoch
        ):
            if b'"channel":"programme"' in line:
                counts["purchases_added"] += 1
                if added_purchases is not None:  # customer ids are c0000001, ...
                    added_purchases[int(orjson.loads(line)["customer_id"][1:]) - 1] += 1
            counts["triggers"] += sum(1 for o in outputs if o.stream is Stream.PROGRAMME_TRIGGERS)
            yield line

    written = _write_lines(lines(), path)
    summary = {"true_effects": dict(effects.effects), "response_rate": effects.response_rate}
    return written, summary | counts


def _write_lines(lines: Iterable[bytes], path: Path) -> int:
    """Write newline-terminated lines in batches; returns how many."""
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    batch: list[bytes] = []
    with open(path, "wb") as sink:
        for line in lines:
            batch.append(line)
            if len(batch) == WRITE_BATCH_LINES:
                sink.write(b"\n".join(batch) + b"\n")
                written += len(batch)
                batch.clear()
        if batch:
            sink.write(b"\n".join(batch) + b"\n")
            written += len(batch)
    return written


def write_truth(
    simulation: Simulation, path: Path, added_purchases: np.ndarray | None = None
) -> None:
    """Header plus one row per customer, sorted by customer id, `\\n` line ends;
    `added_purchases` (programme effects) count in `n_purchases`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as sink:
        sink.writelines(simulation.truth_table(added_purchases).csv_text())
