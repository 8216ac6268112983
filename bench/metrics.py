"""Evaluation metrics shared by the benchmark scripts (numpy and scipy), and a batch
logistic regression to compare online models with."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy.special import expit
from scipy.stats import rankdata


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties averaged); label 1 = positive."""
    label = np.asarray(label, dtype=bool)
    positives, negatives = label.sum(), (~label).sum()
    ranks = rankdata(score)
    return float((ranks[label].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def median_ratio(numerators: list[float], denominators: list[float]) -> float:
    """Median of the per-run ratios `numerators[i] / denominators[i]`: each run against
    the baseline measured in that same run. Not the ratio of the medians, which pairs
    one run's figure with another run's baseline (on a machine whose speed drifts
    between runs, that is no longer a same-run comparison).

    >>> round(median_ratio([3057, 3778, 3984], [7849, 8152, 12176]), 3)  # 0.39, 0.46, 0.33
    0.389
    """
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError("one baseline per run, and at least one run")
    ratios = [n / d for n, d in zip(numerators, denominators, strict=True)]
    return float(np.median(ratios))


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


class LogisticFit(NamedTuple):
    """A standardized logistic regression: column means and scales, then the intercept
    and one weight per column (on the standardized scale)."""

    means: np.ndarray
    scales: np.ndarray
    weights: np.ndarray


def fit_logistic(
    x: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 100
) -> LogisticFit:
    """L2-penalized logistic regression on standardized columns, by Newton's method
    (IRLS). `l2` multiplies half the squared weights (not the intercept) against the
    summed log-likelihood; constant columns get weight 0."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    means = x.mean(axis=0)
    scales = x.std(axis=0)
    scales[scales == 0] = 1.0
    design = np.column_stack([np.ones(len(x)), (x - means) / scales])
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0
    weights = np.zeros(design.shape[1])
    for _ in range(iterations):
        p = expit(design @ weights)
        gradient = design.T @ (p - y) + penalty * weights
        hessian = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hessian, gradient)
        weights -= step
        if np.max(np.abs(step)) < 1e-10:
            return LogisticFit(means, scales, weights)
    raise RuntimeError(f"logistic regression did not converge in {iterations} Newton steps")


def predict_logistic(fit: LogisticFit, x: np.ndarray) -> np.ndarray:
    z = (np.asarray(x, dtype=float) - fit.means) / fit.scales
    return expit(fit.weights[0] + z @ fit.weights[1:])


def fold_index(n: int, folds: int, seed: int) -> np.ndarray:
    """A deterministic random split of n items into `folds` near-equal folds."""
    index = np.empty(n, dtype=int)
    index[np.random.default_rng(seed).permutation(n)] = np.arange(n) % folds
    return index


def out_of_fold_logistic(
    x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0, l2: float = 1.0
) -> np.ndarray:
    """Each item's probability from a `fit_logistic` trained on the other folds."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=bool)
    index = fold_index(len(x), folds, seed)
    probability = np.empty(len(x))
    for fold in range(folds):
        held = index == fold
        probability[held] = predict_logistic(fit_logistic(x[~held], y[~held], l2), x[held])
    return probability
