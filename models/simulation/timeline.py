"""All events of a simulation as sorted columns: time, customer, code, payload refs.

Generators produce `EventBatch`es in continuous time (float days since the start).
`assemble` keeps what falls inside the period and before a customer's erasure,
spreads times over the day with a diurnal profile, rounds to seconds, sorts once
(stable: second, customer, code, generation order) and numbers every customer's
events per id family.

>>> to_seconds(np.array([0.0, 0.5, 3.25, np.inf])).tolist()
[0, 54900, 297313, 9223372036854775807]
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from models.simulation.sampling import SECONDS_PER_DAY, rank_within_groups


class Code(IntEnum):
    """Internal event codes; the order breaks ties within one customer's second."""

    PROFILE = 0
    CONSENT_GRANT = 1
    CONSENT_WITHDRAWAL = 2
    ERASURE = 3
    PURCHASE = 4
    REFUND = 5
    LOGIN = 6
    PAGE_VIEW = 7
    CART_ABANDON = 8
    EMAIL_OPEN = 9
    EMAIL_CLICK = 10
    SUPPORT_TICKET = 11
    COMPLAINT = 12
    SURVEY = 13
    REVIEW = 14
    UNSUBSCRIBE = 15


EVENT_TYPE_OF_CODE = ("customer",) * 4 + ("transaction",) * 2 + ("interaction",) * 10
KIND_OF_CODE = (
    "profile",
    "consent",
    "consent",
    "erasure",
    "purchase",
    "refund",
    "login",
    "page_view",
    "cart_abandon",
    "email_open",
    "email_click",
    "support_ticket",
    "complaint",
    "survey",
    "review",
    "unsubscribe",
)
ID_PREFIX_OF_FAMILY = ("e", "t", "i", "r")
FAMILY_OF_CODE = (0, 0, 0, 0, 1, 3) + (2,) * 10
"""Id family per code: 0 customer event, 1 purchase, 2 interaction, 3 refund (refunds
are numbered apart, so purchases are t0001, t0002, ... without gaps)."""
_FAMILY_ARRAY = np.array(FAMILY_OF_CODE, dtype=np.int64)
INTERACTION_CODES = tuple(Code(code) for code in range(Code.LOGIN, Code.UNSUBSCRIBE + 1))

# Share of activity per UTC hour (quiet nights, lunch and evening peaks).
_HOURLY_WEIGHT = np.array(
    [
        *(0.35, 0.25, 0.2, 0.2, 0.25, 0.35, 0.55, 0.8, 1.0, 1.1, 1.15, 1.2),
        *(1.3, 1.25, 1.2, 1.2, 1.25, 1.35, 1.5, 1.65, 1.7, 1.5, 1.0, 0.6),
    ]
)
_DAY_FRACTION_AT_HOUR = np.concatenate([[0.0], np.cumsum(_HOURLY_WEIGHT) / _HOURLY_WEIGHT.sum()])
_HOUR_FRACTION = np.arange(25) / 24.0
# For each uniform second of a day, the second of the day it maps to (monotone).
_WARPED_SECOND = np.floor(
    np.interp(
        np.arange(SECONDS_PER_DAY) / SECONDS_PER_DAY,
        _DAY_FRACTION_AT_HOUR,
        _HOUR_FRACTION,
    )
    * SECONDS_PER_DAY
).astype(np.int64)
NEVER = np.iinfo(np.int64).max


def to_seconds(days: np.ndarray) -> np.ndarray:
    """Whole seconds since the start, each day's times spread on the diurnal profile.

    Monotone: the order of times is kept (ties may appear); `inf` becomes `NEVER`.
    Times must not be negative.
    """
    finite = np.isfinite(days)
    if not finite.all():
        return np.where(finite, to_seconds(np.where(finite, days, 0.0)), NEVER)
    uniform = (days * SECONDS_PER_DAY).astype(np.int64)  # truncation = floor here
    second_of_day = uniform % SECONDS_PER_DAY
    uniform -= second_of_day
    uniform += _WARPED_SECOND[second_of_day]
    return uniform


@dataclass(frozen=True)
class EventBatch:
    """Events of one code; `ref` is a purchase index or a campaign number."""

    code: Code
    customer: np.ndarray
    time: np.ndarray
    ref: np.ndarray | None = None
    value: np.ndarray | None = None
    category: np.ndarray | None = None


@dataclass(frozen=True)
class Timeline:
    """Sorted events; `seq` numbers each customer's events per id family from 1."""

    second: np.ndarray
    customer: np.ndarray
    code: np.ndarray
    ref: np.ndarray
    value: np.ndarray
    category: np.ndarray
    seq: np.ndarray

    @property
    def size(self) -> int:
        return self.second.size


def assemble(batches: list[EventBatch], days: int, erasure: np.ndarray) -> Timeline:
    """Filter, warp, round, sort and number the events of all batches."""
    total = sum(batch.customer.size for batch in batches)
    customer = np.empty(total, dtype=np.int64)
    time = np.empty(total)
    code = np.empty(total, dtype=np.int8)
    ref = np.full(total, -1, dtype=np.int64)
    value = np.full(total, np.nan)
    category = np.full(total, -1, dtype=np.int8)
    at = 0
    for batch in batches:
        rows = slice(at, at + batch.customer.size)
        customer[rows], time[rows], code[rows] = batch.customer, batch.time, batch.code
        for column, part in ((ref, batch.ref), (value, batch.value), (category, batch.category)):
            if part is not None:
                column[rows] = part
        at = rows.stop

    # Clipped first: times far beyond the period (long-lived customers) overflow int64.
    second = to_seconds(np.minimum(time, float(days)))
    keep = second < days * SECONDS_PER_DAY
    erased = np.flatnonzero(np.isfinite(erasure)[customer])
    after_erasure = second[erased] >= to_seconds(erasure)[customer[erased]]
    keep[erased[after_erasure & (code[erased] != Code.ERASURE)]] = False
    kept = np.flatnonzero(keep)
    # One int64 key (second, customer, code); the stable sort keeps generation order.
    key = (second[kept] * erasure.size + customer[kept]) * len(Code) + code[kept]
    order = kept[np.argsort(key, kind="stable")]
    customer, code = customer[order], code[order]
    seq = rank_within_groups(customer * 4 + _FAMILY_ARRAY[code]) + 1
    return Timeline(
        second=second[order],
        customer=customer,
        code=code,
        ref=ref[order],
        value=value[order],
        category=category[order],
        seq=seq,
    )
