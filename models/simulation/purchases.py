"""Purchases (times, amounts, categories, baskets) and refunds, vectorised.

Each customer's first purchase is at acquisition; repeat purchases follow a
Poisson(lambda) process until dropout or the end of the period. The primary
category of each purchase follows the customer's category chain (see
:mod:`models.simulation.catalog`); further basket items follow their preference.

>>> from models.simulation.config import SimulationConfig
>>> from models.simulation.catalog import build_world
>>> from models.simulation.population import draw_population
>>> config = SimulationConfig(customers=300, days=365, seed=3)
>>> world = build_world(np.random.default_rng(0))
>>> people = draw_population(config, world, np.random.default_rng(1))
>>> bought = draw_purchases(config, people, world, *(np.random.default_rng(i) for i in (2, 3, 4)))
>>> totals = np.bincount(bought.item_owner, bought.item_quantity * bought.item_unit_cents)
>>> bool((totals == bought.cents).all() and (bought.margin_cents <= bought.cents).all())
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.simulation.catalog import (
    CATEGORY_MARGIN,
    FOLLOW_TRANSITION,
    SKUS_PER_CATEGORY,
    World,
)
from models.simulation.config import SimulationConfig
from models.simulation.population import Population
from models.simulation.sampling import categorical_rows, categorical_rows_chunked, poisson_segments

BASKET_SIZES, BASKET_SIZE_SHARE = np.array([1, 2, 3]), np.array([0.55, 0.30, 0.15])
QUANTITIES, QUANTITY_SHARE = np.array([1, 2, 3]), np.array([0.80, 0.15, 0.05])
MIN_AMOUNT_CENTS = 100
FULL_REFUND_SHARE = 0.6
REFUND_DELAY_DAYS = (1.0, 30.0)
_CHUNK = 1 << 18


@dataclass(frozen=True)
class Purchases:
    """One row per purchase, sorted by customer then time; items flattened."""

    customer: np.ndarray
    time: np.ndarray
    cents: np.ndarray
    margin_cents: np.ndarray
    category: np.ndarray
    item_start: np.ndarray
    item_count: np.ndarray
    item_owner: np.ndarray
    item_category: np.ndarray
    item_sku: np.ndarray
    item_quantity: np.ndarray
    item_unit_cents: np.ndarray

    @property
    def size(self) -> int:
        return self.customer.size


@dataclass(frozen=True)
class Refunds:
    """One row per refund: the purchase it refers to, when, and how much."""

    purchase: np.ndarray
    time: np.ndarray
    cents: np.ndarray


def draw_purchases(
    config: SimulationConfig,
    people: Population,
    world: World,
    timing_rng: np.random.Generator,
    category_rng: np.random.Generator,
    item_rng: np.random.Generator,
) -> Purchases:
    """Purchase times and spend (timing_rng), categories and baskets (the others)."""
    n = people.size
    alive_until = np.minimum(people.dropout, float(config.days))
    owner, repeat_times = poisson_segments(
        timing_rng, people.purchase_rate, people.acquired, alive_until
    )
    customer = np.concatenate([np.arange(n), owner])
    time = np.concatenate([people.acquired, repeat_times])
    order = np.lexsort((time, customer))
    customer, time = customer[order], time[order]
    spend = timing_rng.gamma(config.p, 1.0 / people.spend_rate[customer])
    cents = np.maximum(np.rint(spend * 100.0).astype(np.int64), MIN_AMOUNT_CENTS)

    counts = np.bincount(customer, minlength=n)
    rank = np.arange(customer.size) - (np.cumsum(counts) - counts)[customer]
    category = _category_chains(category_rng, world, people, customer, rank)
    return _with_baskets(item_rng, people, customer, time, cents, category)


def _category_chains(
    rng: np.random.Generator,
    world: World,
    people: Population,
    customer: np.ndarray,
    rank: np.ndarray,
) -> np.ndarray:
    """Primary categories, step by step along every customer's purchase sequence."""
    category = np.empty(customer.size, dtype=np.int8)
    last = np.zeros(people.size, dtype=np.int64)
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.concatenate([[0], np.cumsum(np.bincount(rank))])
    for step in range(bounds.size - 1):
        rows = by_rank[bounds[step] : bounds[step + 1]]
        for begin in range(0, rows.size, _CHUNK):
            chunk = rows[begin : begin + _CHUNK]
            who = customer[chunk]
            weights = people.preference[who]
            if step > 0:
                follow = world.transitions[people.cluster[who], last[who]]
                weights = FOLLOW_TRANSITION * follow + (1.0 - FOLLOW_TRANSITION) * weights
            picked = categorical_rows(rng, weights)
            category[chunk] = picked
            last[who] = picked
    return category


def _with_baskets(
    rng: np.random.Generator,
    people: Population,
    customer: np.ndarray,
    time: np.ndarray,
    cents: np.ndarray,
    category: np.ndarray,
) -> Purchases:
    """Split every amount into 1-3 items whose quantity x unit price sum to it exactly."""
    item_count = rng.choice(BASKET_SIZES, size=customer.size, p=BASKET_SIZE_SHARE).astype(np.int8)
    item_start = np.cumsum(item_count, dtype=np.int64) - item_count
    owner = np.repeat(np.arange(customer.size), item_count)
    position = np.arange(owner.size) - item_start[owner]
    is_first = position == 0
    is_last = position == item_count[owner] - 1

    item_category = np.empty(owner.size, dtype=np.int8)
    item_category[is_first] = category
    extra = np.flatnonzero(~is_first)
    item_category[extra] = categorical_rows_chunked(rng, people.preference, customer[owner[extra]])
    quantity = np.where(
        is_last, 1, rng.choice(QUANTITIES, size=owner.size, p=QUANTITY_SHARE)
    ).astype(np.int64)
    weight = 0.5 + rng.gamma(2.0, 1.0, owner.size)
    share = weight / np.bincount(owner, weight)[owner]
    unit = np.floor(share * cents[owner] / quantity).astype(np.int64)
    unit = np.where(is_last, 0, unit)
    # The last item (quantity 1) takes the remainder, so the basket sums to the cent.
    unit[is_last] = cents - np.bincount(owner, quantity * unit, minlength=customer.size).astype(
        np.int64
    )
    margin_per_item = np.rint(quantity * unit * CATEGORY_MARGIN[item_category])
    margin = np.rint(np.bincount(owner, margin_per_item, minlength=customer.size)).astype(np.int64)
    sku = np.floor(SKUS_PER_CATEGORY * rng.random(owner.size) ** 2).astype(np.int64)
    return Purchases(
        customer=customer,
        time=time,
        cents=cents,
        margin_cents=margin,
        category=category,
        item_start=item_start,
        item_count=item_count,
        item_owner=owner,
        item_category=item_category,
        item_sku=sku,
        item_quantity=quantity,
        item_unit_cents=unit,
    )


def draw_refunds(config: SimulationConfig, bought: Purchases, rng: np.random.Generator) -> Refunds:
    """A share of purchases refunded 1-30 days later, fully or in part."""
    refunded = np.flatnonzero(rng.random(bought.size) < config.refund_rate)
    low, high = REFUND_DELAY_DAYS
    time = bought.time[refunded] + low + rng.random(refunded.size) * (high - low)
    fraction = np.where(
        rng.random(refunded.size) < FULL_REFUND_SHARE, 1.0, rng.uniform(0.2, 0.8, refunded.size)
    )
    cents = np.maximum(np.rint(bought.cents[refunded] * fraction).astype(np.int64), 1)
    return Refunds(purchase=refunded, time=time, cents=cents)
