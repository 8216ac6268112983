"""Timeline rows -> compact JSON lines matching :mod:`schemas.inputs`.

Ids: customers `c0000001` (7 digits or more), events `<customer>-e0001` (customer
events), `-t0001` (purchases), `-i0001` (interactions); a refund is
`<purchase id>-r` and names the purchase in `refund_of`.

Lines are byte-identical to `orjson.dumps` of the event (the tests check that
`orjson.dumps(orjson.loads(line)) == line`), but built from byte templates: with
millions of events a dict plus `orjson.dumps` per event costs several times more.
Every value filled in is ASCII without quotes or backslashes, so needs no escaping.

>>> login = event_templates(customers=10, currency="USD")[Code.LOGIN]
>>> login % (1, b"-i0001", 1, b"2024-01-01T", b"10:00:00+00:00")
b'{"event_type":"interaction","schema_version":1,"event_id":"c0000001-i0001","customer_id":"c0000001","occurred_at":"2024-01-01T10:00:00+00:00","kind":"login"}'
>>> corrupt({"event_type": "transaction", "amount": 5.0, "kind": "purchase"}, 3)
b'{"event_type":"transaction","amount":-5.0,"kind":"purchase"}'
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from models.simulation.catalog import CATEGORIES, COUNTRIES, LANGUAGES, SKUS_PER_CATEGORY
from models.simulation.noise import MALFORMED_VARIANTS
from models.simulation.purchases import Purchases
from models.simulation.sampling import concatenated_ranges
from models.simulation.stamps import UTC_OFFSET, StampTable
from models.simulation.timeline import (
    EVENT_TYPE_OF_CODE,
    FAMILY_OF_CODE,
    ID_PREFIX_OF_FAMILY,
    KIND_OF_CODE,
    Code,
    Timeline,
)

_CATEGORY_TAIL = ',"attributes":{"category":"%s"}'
_EMAIL_TAIL = ',"channel":"email","attributes":{"campaign":"weekly-%03d"}'
_TAILS = {
    Code.PROFILE: ',"profile":{%s,"signup_at":"%s%s","birth_year":%d}',
    Code.CONSENT_GRANT: ',"consent":{"marketing_email":%s,"profiling":true}',
    Code.CONSENT_WITHDRAWAL: ',"consent":{"marketing_email":false}',
    Code.ERASURE: "",
    Code.PURCHASE: ',"amount":%s,"currency":"{currency}","margin":%s,"items":[%s]',
    Code.REFUND: ',"amount":%s,"currency":"{currency}","refund_of":"{customer}%s"',
    Code.LOGIN: "",
    Code.PAGE_VIEW: _CATEGORY_TAIL,
    Code.CART_ABANDON: _CATEGORY_TAIL,
    Code.EMAIL_OPEN: _EMAIL_TAIL,
    Code.EMAIL_CLICK: _EMAIL_TAIL,
    Code.SUPPORT_TICKET: "",
    Code.COMPLAINT: "",
    Code.SURVEY: ',"value":%a',
    Code.REVIEW: ',"value":%a' + _CATEGORY_TAIL,
    Code.UNSUBSCRIBE: "",
}


def event_templates(customers: int, currency: str) -> tuple[bytes, ...]:
    """Per code, a `bytes %` template; the first five fields are always the customer
    number, the id suffix, the customer number again, the date and the time pieces."""
    customer = f"c%0{customer_id_width(customers)}d"
    templates = []
    for code in Code:
        tail = _TAILS[code].replace("{currency}", currency).replace("{customer}", customer)
        templates.append(
            f'{{"event_type":"{EVENT_TYPE_OF_CODE[code]}","schema_version":1,'
            f'"event_id":"{customer}%s","customer_id":"{customer}","occurred_at":"%s%s",'
            f'"kind":"{KIND_OF_CODE[code]}"{tail}}}'.encode()
        )
    return tuple(templates)


_ITEM_TEMPLATE = b'{"sku":"%s","category":"%s","quantity":%d,"unit_price":%s}'
_MONEY_TABLE_CENTS = 20_000  # most amounts and prices are below 200.00

_CATEGORY_CODES = frozenset({Code.PAGE_VIEW, Code.CART_ABANDON})
_EMAIL_CODES = frozenset({Code.EMAIL_OPEN, Code.EMAIL_CLICK})
_CATEGORY_BYTES = tuple(name.encode() for name in CATEGORIES)
_COUNTRY_BYTES = tuple(
    f'"country":"{country}","language":"{language}"'.encode()
    for country, language in zip(COUNTRIES, LANGUAGES, strict=True)
)
_SKU_BYTES = tuple(
    tuple(f"{category}-{number:04d}".encode() for number in range(SKUS_PER_CATEGORY))
    for category in CATEGORIES
)


def customer_id_width(customers: int) -> int:
    """Digits of the zero-padded customer number (at least 7, so ids sort)."""
    return max(7, len(str(customers)))


class MoneyText:
    """JSON text of amounts in cents, as `orjson` writes the float `cents / 100`.

    >>> MoneyText(size=1000)(np.array([4530, 5, 100, 123456]))
    [b'45.3', b'0.05', b'1.0', b'1234.56']
    """

    def __init__(self, size: int = _MONEY_TABLE_CENTS) -> None:
        # A table lookup is several times cheaper than formatting a float.
        self._table = [repr(cents / 100).encode() for cents in range(size)]

    def __call__(self, cents: np.ndarray) -> list[bytes]:
        table, size = self._table, len(self._table)
        return [
            table[amount] if amount < size else repr(amount / 100).encode()
            for amount in cents.tolist()
        ]


def corrupt(event: dict[str, Any], variant: int) -> bytes:
    """A line that `schemas.parsing.parse_event` must reject."""
    name = MALFORMED_VARIANTS[variant]
    if name == "broken_json":
        line = orjson.dumps(event)
        return line[: len(line) // 2]
    if name == "naive_timestamp":
        event["occurred_at"] = event["occurred_at"].removesuffix(UTC_OFFSET)
    elif name == "unknown_kind":
        event["kind"] = "teleport"
    elif event["event_type"] == "transaction":
        event["amount"] = -event["amount"]
    else:
        del event["event_id"]
    return orjson.dumps(event)


class EventSerializer:
    """Formats timeline rows; holds references to the columnar data and a few tables."""

    def __init__(
        self,
        stamps: StampTable,
        customers: int,
        currency: str,
        timeline: Timeline,
        bought: Purchases,
    ) -> None:
        self._stamps = stamps
        self._templates = event_templates(customers, currency)
        self._money = MoneyText()
        self._timeline = timeline
        self._bought = bought
        is_purchase = timeline.code == Code.PURCHASE
        self._purchase_seq = np.zeros(bought.size, dtype=np.int64)
        self._purchase_seq[timeline.ref[is_purchase]] = timeline.seq[is_purchase]
        longest = int(timeline.seq.max(initial=0)) + 1
        suffixes = [
            [f"-{ID_PREFIX_OF_FAMILY[family]}{seq:04d}".encode() for seq in range(longest)]
            for family in range(3)
        ]
        suffixes.append([suffix + b"-r" for suffix in suffixes[1]])
        self._suffixes = suffixes

    def lines(self, events: np.ndarray, malformed: np.ndarray) -> list[bytes]:
        """Serialized rows `events` of the timeline; `malformed[i] >= 0` corrupts row i.

        Rows are formatted code by code (one list comprehension each, no per-event
        branching), then put back in their order.
        """
        codes = self._timeline.code[events]
        by_code = np.argsort(codes, kind="stable")
        out = np.empty(events.size, dtype=object)
        start = 0
        for code, count in enumerate(np.bincount(codes, minlength=len(Code)).tolist()):
            if count:
                positions = by_code[start : start + count]
                out[positions] = self._format(Code(code), events[positions])
                start += count
        for position in np.flatnonzero(malformed >= 0).tolist():
            out[position] = corrupt(orjson.loads(out[position]), int(malformed[position]))
        return out.tolist()

    def _format(self, code: Code, rows: np.ndarray) -> list[bytes]:
        """Lines of `rows`, all of one code: the five head fields, then the code's own."""
        timeline = self._timeline
        template = self._templates[code]
        numbers = (timeline.customer[rows] + 1).tolist()
        family = FAMILY_OF_CODE[code]
        seqs = timeline.seq[rows] if family != 3 else self._purchase_seq[timeline.ref[rows]]
        suffix_of = self._suffixes[family]
        suffixes = [suffix_of[seq] for seq in seqs.tolist()]
        days, times = self._stamps.pieces(timeline.second[rows])
        head = (numbers, suffixes, numbers, days, times)
        own = self._own_fields(code, rows, numbers, seqs, days, times)
        return [template % fields for fields in zip(*head, *own, strict=True)]

    def _own_fields(
        self,
        code: Code,
        rows: np.ndarray,
        numbers: list[int],
        seqs: np.ndarray,
        days: list[bytes],
        times: list[bytes],
    ) -> tuple[list[Any], ...]:
        timeline = self._timeline
        if code in _CATEGORY_CODES:
            return ([_CATEGORY_BYTES[c] for c in timeline.category[rows].tolist()],)
        if code in _EMAIL_CODES:
            return (timeline.ref[rows].tolist(),)
        if code == Code.SURVEY:
            return (timeline.value[rows].tolist(),)
        if code == Code.REVIEW:
            names = [_CATEGORY_BYTES[c] for c in timeline.category[rows].tolist()]
            return timeline.value[rows].tolist(), names
        if code == Code.PURCHASE:
            purchases = timeline.ref[rows]
            return (
                self._money(self._bought.cents[purchases]),
                self._money(self._bought.margin_cents[purchases]),
                self._baskets(purchases),
            )
        if code == Code.REFUND:
            purchase_suffix = self._suffixes[1]
            refund_of = [purchase_suffix[seq] for seq in seqs.tolist()]
            return self._money(timeline.value[rows].astype(np.int64)), numbers, refund_of
        if code == Code.PROFILE:
            countries = [_COUNTRY_BYTES[c] for c in timeline.ref[rows].tolist()]
            return countries, days, times, timeline.value[rows].astype(np.int64).tolist()
        if code == Code.CONSENT_GRANT:
            return ([b"true" if v > 0 else b"false" for v in timeline.value[rows].tolist()],)
        return ()

    def _baskets(self, purchases: np.ndarray) -> list[bytes]:
        """The JSON items (without brackets) of each purchase, in order."""
        bought = self._bought
        items = concatenated_ranges(bought.item_start[purchases], bought.item_count[purchases])
        formatted = [
            _ITEM_TEMPLATE % (_SKU_BYTES[category][sku], _CATEGORY_BYTES[category], quantity, price)
            for category, sku, quantity, price in zip(
                bought.item_category[items].tolist(),
                bought.item_sku[items].tolist(),
                bought.item_quantity[items].tolist(),
                self._money(bought.item_unit_cents[items]),
                strict=True,
            )
        ]
        baskets, at = [], 0
        for count in bought.item_count[purchases].tolist():
            baskets.append(formatted[at] if count == 1 else b",".join(formatted[at : at + count]))
            at += count
        return baskets
