"""The simulated world: categories, taste clusters, their category transitions, countries.

A customer belongs to one taste cluster. What they buy next is a mixture: with
probability `FOLLOW_TRANSITION` the cluster's transition row from the category
bought last (shared by similar customers), otherwise their personal preference.

>>> world = build_world(np.random.default_rng(0))
>>> world.transitions.shape, len(CLUSTER_NAMES), len(CATEGORIES)
((4, 12, 12), 4, 12)
>>> bool(np.allclose(world.transitions.sum(axis=2), 1.0))
True
>>> stationary = world.stationary(0, world.cluster_mix[:1])
>>> bool(np.isclose(stationary.sum(), 1.0))
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CATEGORIES = (
    "books",
    "music",
    "electronics",
    "home",
    "garden",
    "toys",
    "fashion",
    "beauty",
    "sports",
    "grocery",
    "health",
    "outdoor",
)
CATEGORY_INDEX = {name: index for index, name in enumerate(CATEGORIES)}

# Gross margin as a share of revenue, per category.
CATEGORY_MARGIN = np.array([0.28, 0.25, 0.12, 0.35, 0.38, 0.32, 0.48, 0.52, 0.30, 0.15, 0.33, 0.36])

CLUSTER_NAMES = ("culture", "family", "active", "style")
CLUSTER_SHARE = np.array([0.30, 0.30, 0.20, 0.20])
_CLUSTER_FAVOURITES = {
    "culture": {"books": 6.0, "music": 5.0, "electronics": 2.0, "home": 1.0},
    "family": {"toys": 5.0, "grocery": 4.0, "home": 3.0, "health": 2.0, "garden": 1.0},
    "active": {"sports": 6.0, "outdoor": 5.0, "health": 2.0, "garden": 1.5, "fashion": 1.0},
    "style": {"fashion": 6.0, "beauty": 5.0, "electronics": 1.5, "music": 1.0, "home": 1.0},
}
_BACKGROUND_WEIGHT = 0.15

PREFERENCE_SPREAD = 0.6
"""Log-normal sigma of a customer's category preferences around their cluster's mix."""
FOLLOW_TRANSITION = 0.6
"""Probability that the next category follows the cluster's transition row."""
_FIRST_SUCCESSOR, _SECOND_SUCCESSOR = 0.55, 0.25

COUNTRIES = ("US", "GB", "DE", "FR", "NL", "ES", "IT", "PL", "SE")
LANGUAGES = ("en-US", "en-GB", "de", "fr", "nl", "es", "it", "pl", "sv")
COUNTRY_SHARE = np.array([0.35, 0.15, 0.14, 0.10, 0.06, 0.07, 0.06, 0.04, 0.03])

SKUS_PER_CATEGORY = 200


def _cluster_mix() -> np.ndarray:
    mix = np.full((len(CLUSTER_NAMES), len(CATEGORIES)), _BACKGROUND_WEIGHT)
    for row, name in enumerate(CLUSTER_NAMES):
        for category, weight in _CLUSTER_FAVOURITES[name].items():
            mix[row, CATEGORY_INDEX[category]] += weight
    return mix / mix.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class World:
    """Cluster category mixes and transition matrices (cluster, last, next)."""

    cluster_mix: np.ndarray
    transitions: np.ndarray

    def stationary(self, cluster: int, preference: np.ndarray) -> np.ndarray:
        """Long-run category shares of customers in `cluster` with these preferences (rows)."""
        n = len(CATEGORIES)
        rho = FOLLOW_TRANSITION
        # pi = rho pi T + (1 - rho) pref  =>  pi = (1 - rho) pref (I - rho T)^-1
        resolvent = np.linalg.inv(np.eye(n) - rho * self.transitions[cluster])
        return (1.0 - rho) * preference @ resolvent


def build_world(rng: np.random.Generator) -> World:
    """Each cluster's successors of each category: two likely next categories."""
    mix = _cluster_mix()
    n_clusters, n = mix.shape
    transitions = np.empty((n_clusters, n, n))
    for cluster in range(n_clusters):
        for last in range(n):
            weights = mix[cluster].copy()
            weights[last] = 0.0
            first, second = rng.choice(n, size=2, replace=False, p=weights / weights.sum())
            row = (1.0 - _FIRST_SUCCESSOR - _SECOND_SUCCESSOR) * mix[cluster]
            row[first] += _FIRST_SUCCESSOR
            row[second] += _SECOND_SUCCESSOR
            transitions[cluster, last] = row
    return World(cluster_mix=mix, transitions=transitions)
