"""Field types shared by every contract: ids, timestamps, money, and the base model.

Every limit here is part of the public contract; the dead-letter reasons in
:mod:`schemas.parsing` name the rule an input broke.

>>> from pydantic import TypeAdapter
>>> TypeAdapter(Timestamp).validate_python("2024-05-01T10:00:00+02:00").isoformat()
'2024-05-01T10:00:00+02:00'
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field

from schemas.currencies import ISO_4217

SCHEMA_VERSION = 1
"""Version of the event contracts in this package; bumped on breaking changes."""

MAX_ID_LENGTH = 128
MAX_PAYLOAD_BYTES = 64 * 1024
MAX_AMOUNT = 1e9
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)

# Visible characters only, so that two ids that look the same are the same id: no
# whitespace, no control characters (C0, DEL, C1), no invisible format characters of
# the Basic Multilingual Plane (soft hyphen, Arabic letter mark, zero-width spaces
# and joiners, direction marks and overrides, word joiners, invisible operators,
# byte-order mark, interlinear annotation) and no private-use characters. Explicit
# ranges rather than Unicode classes, so that JSON Schema validators in any language
# read the same pattern. Safe as a Kafka key, a Redis key part and a CSV cell.
_ID_PATTERN = (
    r"^[^\s\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e"
    r"\u2060-\u206f\ufeff\ufff9-\ufffb\ue000-\uf8ff]+$"
)

Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, pattern=_ID_PATTERN)]
"""An event or customer id: 1-128 visible characters (no whitespace, control, format
or private-use characters)."""

RESERVED_EVENT_ID_PREFIX = "due:"
"""Causes of time-driven re-scores (`due:2024-02-01`): an input may not look like one,
or its outputs would share their ids."""


def _not_reserved(event_id: str) -> str:
    if event_id.startswith(RESERVED_EVENT_ID_PREFIX):
        raise ValueError(f"ids starting with {RESERVED_EVENT_ID_PREFIX!r} are reserved")
    return event_id


EventId = Annotated[Identifier, AfterValidator(_not_reserved)]
"""An input event's id: an `Identifier` not starting with the reserved `due:`."""

ShortText = Annotated[str, Field(min_length=1, max_length=64, pattern=_ID_PATTERN)]


Timestamp = Annotated[AwareDatetime, Field(ge=EARLIEST, lt=LATEST)]
"""ISO 8601 date-time with a UTC offset, 1970-01-01 .. 2200-01-01; naive ones are rejected."""

Currency = Literal[tuple(sorted(ISO_4217))]
"""An ISO 4217 alphabetic code (validated natively: it is on every transaction)."""

Money = Annotated[float, Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False)]
"""A non-negative, finite amount in the event's currency (refunds must be positive)."""

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]

AttributeValue = Annotated[str, Field(max_length=256)] | bool | int | FiniteFloat
Attributes = Annotated[dict[ShortText, AttributeValue], Field(max_length=32)]


class Contract(BaseModel):
    """Base of all contracts: immutable, unknown input fields ignored (forward compatible)."""

    model_config = ConfigDict(frozen=True, extra="ignore", strict=True)


class OutputContract(BaseModel):
    """Base of emitted events: immutable and closed (no extra fields)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
