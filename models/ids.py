"""Deterministic identifiers: the same cause always yields the same id.

>>> deterministic_id("score", "c1", "t9") == deterministic_id("score", "c1", "t9")
True
>>> len(deterministic_id("x"))
32
>>> event_fingerprint("t9") == event_fingerprint("t9") != event_fingerprint("t8")
True
"""

from __future__ import annotations

from hashlib import blake2b

_SEPARATOR = "\x1f"


def deterministic_id(*parts: str) -> str:
    """A 128-bit hex id derived from the parts (unit-separator joined)."""
    return blake2b(_SEPARATOR.join(parts).encode(), digest_size=16).hexdigest()


def event_fingerprint(event_id: str) -> int:
    """A signed 64-bit fingerprint of an event id, kept for de-duplication."""
    return int.from_bytes(blake2b(event_id.encode(), digest_size=8).digest(), "big", signed=True)
