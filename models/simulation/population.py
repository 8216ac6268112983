"""Latent traits of every customer, drawn once, vectorised over customers.

Times are float days since the start of the period; "never" is `np.inf`.

>>> from models.simulation.config import SimulationConfig
>>> from models.simulation.catalog import build_world
>>> config = SimulationConfig(customers=1000, days=365, seed=3)
>>> world = build_world(np.random.default_rng(0))
>>> people = draw_population(config, world, np.random.default_rng(1))
>>> bool((people.acquired < 182).all() and (people.dropout > people.acquired).all())
True
>>> bool(0.7 < people.email_consent.mean() < 0.9)
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.simulation.catalog import (
    CLUSTER_SHARE,
    COUNTRY_SHARE,
    PREFERENCE_SPREAD,
    World,
)
from models.simulation.config import SimulationConfig

EMAIL_CONSENT_SHARE = 0.8
ERASURE_SHARE = 0.002
CONSENT_WITHDRAWAL_SHARE = 0.04
CONSENT_WITHDRAWAL_MEAN_DAYS = 365.0
UNSUBSCRIBE_BASE_PER_DAY = 0.03 / 365.0
UNSUBSCRIBE_AFTER_DROPOUT_SHARE = 0.3
UNSUBSCRIBE_AFTER_DROPOUT_DAYS = (7.0, 60.0)
LOGIN_RATE_PER_DAY = 0.025
LOGIN_RATE_SHAPE = 2.0
EMAIL_OPEN_PROPENSITY = (2.0, 8.0)  # Beta(a, b): mean 0.2


@dataclass(frozen=True)
class Population:
    """One entry per customer (index = customer number - 1)."""

    acquired: np.ndarray
    purchase_rate: np.ndarray
    dropout_rate: np.ndarray
    dropout: np.ndarray
    spend_rate: np.ndarray
    cluster: np.ndarray
    preference: np.ndarray
    login_rate: np.ndarray
    email_propensity: np.ndarray
    email_consent: np.ndarray
    country: np.ndarray
    birth_year: np.ndarray
    erasure: np.ndarray
    consent_withdrawal: np.ndarray
    unsubscribe: np.ndarray

    @property
    def size(self) -> int:
        return self.acquired.size

    @property
    def email_stop(self) -> np.ndarray:
        """When a customer stops receiving marketing e-mail (inf: never; 0 with no consent)."""
        stop = np.minimum(self.consent_withdrawal, self.unsubscribe)
        return np.where(self.email_consent, stop, 0.0)


def draw_population(config: SimulationConfig, world: World, rng: np.random.Generator) -> Population:
    """Draw the latent traits of `config.customers` customers."""
    n = config.customers
    acquired = rng.random(n) * config.acquisition_window
    purchase_rate = rng.gamma(config.r, 1.0 / config.alpha, n)
    dropout_rate = rng.gamma(config.s, 1.0 / config.beta, n)
    dropout = acquired + rng.exponential(1.0, n) / np.maximum(dropout_rate, 1e-300)
    spend_rate = rng.gamma(config.q, 1.0 / config.gamma, n)
    cluster = rng.choice(len(CLUSTER_SHARE), size=n, p=CLUSTER_SHARE).astype(np.int8)
    preference = _preferences(rng, world.cluster_mix, cluster)
    # Customers who buy more also tend to log in more.
    relative_frequency = purchase_rate / (config.r / config.alpha)
    login_rate = (
        rng.gamma(LOGIN_RATE_SHAPE, LOGIN_RATE_PER_DAY / LOGIN_RATE_SHAPE, n)
        * relative_frequency**0.3
    )
    email_propensity = rng.beta(*EMAIL_OPEN_PROPENSITY, n)
    email_consent = rng.random(n) < EMAIL_CONSENT_SHARE
    country = rng.choice(len(COUNTRY_SHARE), size=n, p=COUNTRY_SHARE).astype(np.int8)
    birth_year = rng.integers(1950, 2006, n).astype(np.int16)
    remaining = config.days - acquired
    erasure = np.where(
        rng.random(n) < ERASURE_SHARE, acquired + 1.0 + rng.random(n) * remaining, np.inf
    )
    withdrawal = np.where(
        email_consent & (rng.random(n) < CONSENT_WITHDRAWAL_SHARE),
        acquired + rng.exponential(CONSENT_WITHDRAWAL_MEAN_DAYS, n),
        np.inf,
    )
    unsubscribe = _unsubscribe_times(rng, acquired, dropout, email_consent, withdrawal)
    return Population(
        acquired=acquired,
        purchase_rate=purchase_rate,
        dropout_rate=dropout_rate,
        dropout=dropout,
        spend_rate=spend_rate,
        cluster=cluster,
        preference=preference,
        login_rate=login_rate,
        email_propensity=email_propensity,
        email_consent=email_consent,
        country=country,
        birth_year=birth_year,
        erasure=erasure,
        consent_withdrawal=withdrawal,
        unsubscribe=unsubscribe,
    )


def _preferences(rng: np.random.Generator, mix: np.ndarray, cluster: np.ndarray) -> np.ndarray:
    """The cluster's mix, each share scaled by a personal log-normal factor, normalised."""
    draws = rng.standard_normal((cluster.size, mix.shape[1]))
    draws *= PREFERENCE_SPREAD
    np.exp(draws, out=draws)
    draws *= mix[cluster]
    draws /= draws.sum(axis=1, keepdims=True)
    return draws


def _unsubscribe_times(
    rng: np.random.Generator,
    acquired: np.ndarray,
    dropout: np.ndarray,
    email_consent: np.ndarray,
    withdrawal: np.ndarray,
) -> np.ndarray:
    """A small base hazard while alive, and a burst in the weeks after dropout."""
    n = acquired.size
    base = acquired + rng.exponential(1.0 / UNSUBSCRIBE_BASE_PER_DAY, n)
    base = np.where(base < dropout, base, np.inf)
    low, high = UNSUBSCRIBE_AFTER_DROPOUT_DAYS
    after = np.where(
        rng.random(n) < UNSUBSCRIBE_AFTER_DROPOUT_SHARE,
        dropout + low + rng.random(n) * (high - low),
        np.inf,
    )
    first = np.minimum(base, after)
    # Customers who already withdrew consent get no more mail to unsubscribe from.
    return np.where(email_consent & (first < withdrawal), first, np.inf)
