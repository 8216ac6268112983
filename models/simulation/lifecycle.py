"""Customer events (profile, consent, erasure) and transaction events as batches.

>>> from models.simulation.config import SimulationConfig
>>> from models.simulation.catalog import build_world
>>> from models.simulation.population import draw_population
>>> config = SimulationConfig(customers=50, days=90, seed=3)
>>> people = draw_population(config, build_world(np.random.default_rng(0)),
...                          np.random.default_rng(1))
>>> [batch.code.name for batch in customer_event_batches(people)]
['PROFILE', 'CONSENT_GRANT', 'CONSENT_WITHDRAWAL', 'ERASURE']
"""

from __future__ import annotations

import numpy as np

from models.simulation.population import Population
from models.simulation.purchases import Purchases, Refunds
from models.simulation.timeline import Code, EventBatch

# The consent record follows an unsubscribe click a minute later.
UNSUBSCRIBE_TO_CONSENT_DAYS = 1.0 / 1440.0


def customer_event_batches(people: Population) -> list[EventBatch]:
    """Profile and consent at acquisition, later withdrawals, rare erasures."""
    everyone = np.arange(people.size)
    withdrawn = np.flatnonzero(np.isfinite(people.consent_withdrawal))
    unsubscribed = np.flatnonzero(np.isfinite(people.unsubscribe))
    erased = np.flatnonzero(np.isfinite(people.erasure))
    return [
        # A profile carries its country in `ref` and the birth year in `value`.
        EventBatch(
            Code.PROFILE,
            everyone,
            people.acquired,
            ref=people.country.astype(np.int64),
            value=people.birth_year.astype(np.float64),
        ),
        EventBatch(
            Code.CONSENT_GRANT,
            everyone,
            people.acquired,
            value=people.email_consent.astype(np.float64),
        ),
        EventBatch(
            Code.CONSENT_WITHDRAWAL,
            np.concatenate([withdrawn, unsubscribed]),
            np.concatenate(
                [
                    people.consent_withdrawal[withdrawn],
                    people.unsubscribe[unsubscribed] + UNSUBSCRIBE_TO_CONSENT_DAYS,
                ]
            ),
        ),
        EventBatch(Code.ERASURE, erased, people.erasure[erased]),
    ]


def transaction_batches(bought: Purchases, refunds: Refunds) -> list[EventBatch]:
    """Purchases and refunds; `ref` is the purchase's row in `bought`."""
    return [
        EventBatch(
            Code.PURCHASE,
            bought.customer,
            bought.time,
            ref=np.arange(bought.size),
            category=bought.category,
        ),
        EventBatch(
            Code.REFUND,
            bought.customer[refunds.purchase],
            refunds.time,
            ref=refunds.purchase,
            value=refunds.cents.astype(np.float64),
        ),
    ]
