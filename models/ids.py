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


FINGERPRINT_BYTES = 8


def event_fingerprint(event_id: str) -> bytes:
    """A 64-bit fingerprint of an event id, kept for de-duplication."""
    return blake2b(event_id.encode(), digest_size=FINGERPRINT_BYTES).digest()
