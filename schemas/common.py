"""Field types shared by every contract: ids, timestamps, money, and the base model.

Every limit here is part of the public contract; the dead-letter reasons in
:mod:`schemas.parsing` name the rule an input broke.

>>> from pydantic import TypeAdapter
>>> TypeAdapter(Timestamp).validate_python("2024-05-01T10:00:00+02:00").isoformat()
'2024-05-01T10:00:00+02:00'
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
)

from schemas.currencies import ISO_4217

SCHEMA_VERSION = 1
"""Version of the event contracts in this package; bumped on breaking changes."""

MAX_ID_LENGTH = 128
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_AMOUNT = 1e9
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

# Visible characters only, so that two ids that look the same are the same id. The
# pattern (explicit ranges of the Basic Multilingual Plane, so that JSON Schema
# validators in any language read it alike) excludes whitespace, control characters
# (C0, DEL, C1), invisible format characters (soft hyphen, Arabic letter mark,
# zero-width spaces and joiners, direction marks and overrides, word joiners,
# invisible operators, byte-order mark, interlinear annotation) and private use;
# `_visible` then rejects what a BMP pattern cannot name or what is invisible without
# being a format character (other planes' format and private-use characters, tags,
# variation selectors, Hangul fillers, noncharacters). Safe
# as a Kafka key, a Redis key part and a CSV cell.
_INVISIBLE_BEFORE = r"\s\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b"
_INVISIBLE_AFTER = r"\u200e\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb\ue000-\uf8ff"
_ID_PATTERN = rf"^[^{_INVISIBLE_BEFORE}\u200c\u200d{_INVISIBLE_AFTER}]+$"
# Short texts (categories, SKUs, channels, attribute keys) are words: they keep the
# zero-width non-joiner and joiner (U+200C, U+200D) that Persian and Indic spelling
# need.
_TEXT_PATTERN = rf"^[^{_INVISIBLE_BEFORE}{_INVISIBLE_AFTER}]+$"
# Not "Cn" (unassigned): a character newer than this Python's Unicode tables (a new
# emoji) would be refused. Noncharacters are named instead.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Co", "Cs", "Zl", "Zp", "Zs"})
_INVISIBLE = frozenset(
    [
        *(0x034F, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x3164, 0xFFA0),  # joiner, fillers
        *range(0xFE00, 0xFE10),  # variation selectors
        *range(0xE0100, 0xE01F0),  # variation selectors supplement
        *range(0xFDD0, 0xFDF0),  # noncharacters (and U+xxFFFE, U+xxFFFF below)
    ]
)
_WORD_JOINERS = frozenset({0x200C, 0x200D})


def _visible(text: str, allow_joiners: bool = False) -> str:
    """`text` if every character is visible (see `_ID_PATTERN`), else a ValueError.

    >>> _visible("Ünïcødé-客户-😀")
    'Ünïcødé-客户-😀'
    >>> _visible("c1\U000e0041")
    Traceback (most recent call last):
    ...
    ValueError: holds an invisible character (U+E0041)
    """
    if text.isascii():  # the pattern has excluded every invisible ASCII character
        return text
    for char in text:
        code = ord(char)
        if code < 0x80 or (allow_joiners and code in _WORD_JOINERS):
            continue
        if (
            code in _INVISIBLE
            or code & 0xFFFE == 0xFFFE
            or unicodedata.category(char) in _INVISIBLE_CATEGORIES
        ):
            raise ValueError(f"holds an invisible character (U+{code:04X})")
    return text


def _visible_text(text: str) -> str:
    return _visible(text, allow_joiners=True)


Identifier = Annotated[
    str,
    Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=_ID_PATTERN),
    AfterValidator(_visible),
]
"""An event or customer id: 1-128 visible characters (no whitespace, control, format,
private-use or otherwise invisible characters)."""

RESERVED_EVENT_ID_PREFIX = "due:"
"""Causes of time-driven re-scores (`due:2024-02-01`): an input may not look like one,
or its outputs would share their ids."""


def _not_reserved(event_id: str) -> str:
    if event_id.startswith(RESERVED_EVENT_ID_PREFIX):
        raise ValueError(f"ids starting with {RESERVED_EVENT_ID_PREFIX!r} are reserved")
    return event_id


EventId = Annotated[Identifier, AfterValidator(_not_reserved)]
"""An input event's id: an `Identifier` not starting with the reserved `due:`."""

ShortText = Annotated[
    str, Field(min_length=1, max_length=64, pattern=_TEXT_PATTERN), AfterValidator(_visible_text)
]
"""A word-like text (category, SKU, channel, attribute key): visible characters, the
zero-width non-joiner and joiner allowed."""


def _iso_text(value: object) -> object:
    """An ISO 8601 text (or a datetime, in Python). Pydantic reads a number in a string
    ("1700000000") as a Unix time even in strict mode; the contract's date-time starts
    YYYY-. (The field is lax after this check: strict, pydantic would refuse the text.)"""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected an ISO 8601 date-time text, got {type(value).__name__}")
    if len(value) < 10 or value[4] != "-":
        raise ValueError(f"{value!r} is not an ISO 8601 date-time (YYYY-MM-DDThh:mm:ss+hh:mm)")
    return value


Timestamp = Annotated[
    AwareDatetime, Field(ge=EARLIEST, lt=LATEST, strict=False), BeforeValidator(_iso_text)
]
"""ISO 8601 date-time with a UTC offset, 1970-01-01 .. 2200-01-01; naive ones are rejected,
and so is a Unix time, even as a string."""

Currency = Literal[tuple(sorted(ISO_4217))]
"""An ISO 4217 alphabetic code (validated natively: it is on every transaction)."""

Money = Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
"""A non-negative, finite amount in the event's currency (refunds must be positive)."""

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

_SHORT_TEXT = TypeAdapter(ShortText)
_IDENTIFIER = TypeAdapter(Identifier)


def is_identifier(value: object) -> bool:
    """Whether `value` is a valid `Identifier` (e.g. a rejected input's customer id).

    >>> is_identifier("c-17"), is_identifier("has space"), is_identifier(""), is_identifier(7)
    (True, False, False, False)
    """
    return _valid(_IDENTIFIER, value)


def is_short_text(value: object) -> bool:
    """Whether `value` is a valid `ShortText` (e.g. a category given as an attribute).

    >>> is_short_text("books"), is_short_text("a; b"), is_short_text("a b"), is_short_text(7)
    (True, False, False, False)
    """
    return _valid(_SHORT_TEXT, value)


def _valid(adapter: TypeAdapter, value: object) -> bool:
    if not isinstance(value, str):
        return False
    try:
        adapter.validate_python(value)
    except ValidationError:
        return False
    return True


AttributeValue = Annotated[str, Field(max_length=256)] | bool | int | FiniteFloat
Attributes = Annotated[dict[ShortText, AttributeValue], Field(max_length=32)]


class Contract(BaseModel):
    """Base of all contracts: immutable, unknown input fields ignored (forward compatible)."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)


class OutputContract(BaseModel):
    """Base of emitted events: immutable and closed (no extra fields)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
