"""Small builders of input events for tests (JSON bytes, as producers send them)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import orjson

_counter = itertools.count(1)
BASE = datetime(2024, 1, 1, tzinfo=UTC)


def at(days: float = 0.0, base: datetime = BASE) -> str:
    return (base + timedelta(days=days)).isoformat()


def purchase(customer: str, day: float, amount: float = 20.0, **extra) -> dict:
    return {
        "event_type": "transaction",
        "event_id": extra.pop("event_id", f"t{next(_counter)}"),
        "customer_id": customer,
        "occurred_at": at(day),
        "kind": "purchase",
        "amount": amount,
        "currency": extra.pop("currency", "USD"),
        **extra,
    }


def refund(customer: str, day: float, amount: float, **extra) -> dict:
    return purchase(customer, day, amount, kind="refund", **extra)


def interaction(customer: str, day: float, kind: str = "login", **extra) -> dict:
    return {
        "event_type": "interaction",
        "event_id": extra.pop("event_id", f"i{next(_counter)}"),
        "customer_id": customer,
        "occurred_at": at(day),
        "kind": kind,
        **extra,
    }


def customer_event(customer: str, day: float, kind: str, **extra) -> dict:
    return {
        "event_type": "customer",
        "event_id": extra.pop("event_id", f"k{next(_counter)}"),
        "customer_id": customer,
        "occurred_at": at(day),
        "kind": kind,
        **extra,
    }


def raw(event: dict) -> bytes:
    return orjson.dumps(event)


def jsonl(events: list[dict]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)
