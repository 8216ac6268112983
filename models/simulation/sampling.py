"""Vectorised sampling helpers shared by the simulation modules.

>>> concatenated_ranges(np.array([0, 10]), np.array([2, 3])).tolist()
[0, 1, 10, 11, 12]
>>> rank_within_groups(np.array([4, 4, 7, 4, 7])).tolist()
[0, 1, 0, 2, 1]
>>> rng = np.random.default_rng(0)
>>> owner, times = poisson_segments(rng, np.array([0.0, 50.0]), np.zeros(2), np.ones(2))
>>> bool((owner == 1).all() and (times < 1).all() and owner.size > 20)
True
"""

from __future__ import annotations

import numpy as np

SECONDS_PER_DAY = 86_400
SUBSTREAMS = {
    "world": 1,
    "population": 2,
    "purchases": 3,
    "categories": 4,
    "items": 5,
    "refunds": 6,
    "customer_events": 7,
    "sessions": 8,
    "logins": 9,
    "email": 10,
    "service": 11,
    "feedback": 12,
    "noise": 13,
}


def substream(seed: int, name: str) -> np.random.Generator:
    """An independent generator per concern: switching interactions off keeps purchases."""
    return np.random.default_rng([seed, SUBSTREAMS[name]])


def concatenated_ranges(starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """`concatenate([arange(s, s + c) for s, c in zip(starts, counts)])`, vectorised."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    offsets = np.cumsum(counts) - counts
    step = np.ones(total, dtype=np.int64)
    nonempty = counts > 0
    heads = offsets[nonempty]
    step[heads] = np.asarray(starts, dtype=np.int64)[nonempty]
    step[heads[1:]] -= (np.asarray(starts)[nonempty] + counts[nonempty])[:-1] - 1
    return np.cumsum(step)


def rank_within_groups(groups: np.ndarray) -> np.ndarray:
    """0-based position of each element among the earlier elements of its group."""
    order = np.argsort(groups, kind="stable")
    sorted_groups = groups[order]
    is_head = np.ones(order.size, dtype=bool)
    is_head[1:] = sorted_groups[1:] != sorted_groups[:-1]
    head_position = np.maximum.accumulate(np.where(is_head, np.arange(order.size), 0))
    ranks = np.empty(order.size, dtype=np.int64)
    ranks[order] = np.arange(order.size) - head_position
    return ranks


def poisson_segments(
    rng: np.random.Generator, rate: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Times of a homogeneous Poisson process on each segment [lo, hi): (segment, time)."""
    length = np.clip(hi - lo, 0.0, None)
    counts = rng.poisson(np.asarray(rate) * length)
    owner = np.repeat(np.arange(length.size), counts)
    times = lo[owner] + rng.random(owner.size) * length[owner]
    return owner, times


def categorical_rows(rng: np.random.Generator, weights: np.ndarray) -> np.ndarray:
    """One category index per row of non-negative `weights` (rows need not sum to 1)."""
    cumulative = np.cumsum(weights, axis=1)
    draws = rng.random(weights.shape[0]) * cumulative[:, -1]
    picked = (cumulative <= draws[:, None]).sum(axis=1)
    return np.minimum(picked, weights.shape[1] - 1)


def categorical_rows_chunked(
    rng: np.random.Generator, table: np.ndarray, rows: np.ndarray, chunk: int = 1 << 18
) -> np.ndarray:
    """`categorical_rows(rng, table[rows])` without materialising all gathered rows."""
    picked = np.empty(rows.size, dtype=np.int64)
    for begin in range(0, rows.size, chunk):
        picked[begin : begin + chunk] = categorical_rows(rng, table[rows[begin : begin + chunk]])
    return picked
