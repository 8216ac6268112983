"""Evaluation metrics shared by the benchmark scripts (numpy only)."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties averaged); label 1 = positive."""
    label = np.asarray(label, dtype=bool)
    positives, negatives = label.sum(), (~label).sum()
    ranks = rankdata(score)
    return float((ranks[label].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def top_share(ranking: np.ndarray, value: np.ndarray, share: float = 0.1) -> float:
    """Share of total `value` held by the `share` of items ranked highest (stable ties)."""
    order = np.argsort(-np.asarray(ranking), kind="stable")
    k = round(share * len(order))
    return float(np.asarray(value)[order[:k]].sum() / np.sum(value))


def brier(probability: np.ndarray, label: np.ndarray) -> float:
    return float(np.mean((np.asarray(probability) - np.asarray(label, dtype=float)) ** 2))


def expected_calibration_error(probability: np.ndarray, label: np.ndarray, bins: int = 10):
    """ECE over equal-width bins, and the reliability table (bin, n, mean p, observed)."""
    probability = np.asarray(probability)
    label = np.asarray(label, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    index = np.clip(np.digitize(probability, edges[1:-1]), 0, bins - 1)
    table, ece = [], 0.0
    for b in range(bins):
        members = index == b
        if not members.any():
            continue
        mean_p, observed = probability[members].mean(), label[members].mean()
        ece += members.mean() * abs(mean_p - observed)
        table.append((f"{edges[b]:.1f}-{edges[b + 1]:.1f}", int(members.sum()), mean_p, observed))
    return float(ece), table
