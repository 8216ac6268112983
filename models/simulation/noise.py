"""Robustness noise: duplicated lines, malformed lines, late lines.

A plan says which clean event each output line carries and when the line
appears ("arrival", seconds since the start). Late lines keep their
`occurred_at` but arrive 3-10 days later; duplicates repeat the same bytes 1-300
seconds after the original; malformed lines replace an event by a broken one.

>>> plan = plan_noise(np.random.default_rng(0), np.arange(1000), 0.1, 0.05, 0.02)
>>> plan.source.size == 1000 + plan.duplicates, bool(np.all(np.diff(plan.arrival) >= 0))
(True, True)
>>> 60 < plan.duplicates < 140 and 25 < plan.malformed_count < 75 and 5 < plan.late < 40
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.simulation.sampling import SECONDS_PER_DAY

MALFORMED_VARIANTS = ("broken_json", "naive_timestamp", "unknown_kind", "negative_amount")
LATE_DELAY_SECONDS = (3 * SECONDS_PER_DAY, 10 * SECONDS_PER_DAY)
DUPLICATE_DELAY_SECONDS = (1, 300)


@dataclass(frozen=True)
class NoisePlan:
    """Output lines in order: the clean event each carries and its arrival second."""

    source: np.ndarray
    arrival: np.ndarray
    malformed: np.ndarray  # per clean event: index into MALFORMED_VARIANTS, or -1
    duplicates: int
    late: int

    @property
    def malformed_count(self) -> int:
        return int(np.count_nonzero(self.malformed >= 0))

    def summary(self) -> dict[str, int]:
        return {
            "duplicates": self.duplicates,
            "malformed": self.malformed_count,
            "late": self.late,
        }


def plan_noise(
    rng: np.random.Generator,
    second: np.ndarray,
    duplicate_rate: float,
    malformed_rate: float,
    late_rate: float,
) -> NoisePlan:
    """Draw the noise for clean events occurring at `second` (ascending)."""
    n = second.size
    arrival = second.astype(np.int64, copy=True)
    late = _chosen(rng, n, late_rate)
    arrival[late] += rng.integers(*LATE_DELAY_SECONDS, late.size, endpoint=True)
    malformed = np.full(n, -1, dtype=np.int8)
    corrupted = _chosen(rng, n, malformed_rate)
    malformed[corrupted] = rng.integers(0, len(MALFORMED_VARIANTS), corrupted.size)
    repeated = _chosen(rng, n, duplicate_rate)
    repeat_arrival = arrival[repeated] + rng.integers(
        *DUPLICATE_DELAY_SECONDS, repeated.size, endpoint=True
    )
    source = np.concatenate([np.arange(n), repeated])
    arrival = np.concatenate([arrival, repeat_arrival])
    if late.size or repeated.size:
        order = np.argsort(arrival, kind="stable")
        source, arrival = source[order], arrival[order]
    return NoisePlan(
        source=source,
        arrival=arrival,
        malformed=malformed,
        duplicates=int(repeated.size),
        late=int(late.size),
    )


def _chosen(rng: np.random.Generator, n: int, rate: float) -> np.ndarray:
    if rate <= 0.0:
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(rng.random(n) < rate)
