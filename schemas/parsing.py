"""Parse one raw input into an event or a rejection with a precise reason.

Errors are values here: nothing raises on bad input.

>>> parse_event(b'{"event_type": "transaction"}').reason
<DeadLetterReason.MISSING_FIELD: 'missing_field'>
>>> r = parse_event(b'{"event_type":"transaction","event_id":"t1","customer_id":"c1",'
...                 b'"occurred_at":"2024-02-30T10:00:00+00:00","amount":5,"currency":"EUR"}')
>>> r.reason.value
'invalid_timestamp'
>>> r.detail
'occurred_at: Input should be a valid datetime or date, day value is outside expected range'
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from schemas.common import MAX_PAYLOAD_BYTES, is_identifier
from schemas.inputs import INPUT_EVENT, CustomerEvent, Interaction, Transaction
from schemas.outputs import DeadLetterReason as R

Event = Transaction | Interaction | CustomerEvent

_VALIDATE_JSON = INPUT_EVENT.validator.validate_json  # the core validator: no wrapper per call
_ID_FIELDS = frozenset({"event_id", "customer_id", "refund_of"})
_TIME_FIELDS = frozenset({"occurred_at", "signup_at"})


@dataclass(frozen=True, slots=True)
class Rejected:
    """An input that cannot be applied, with a reason code and a precise detail."""

    reason: R
    detail: str
    customer_id: str | None = None


def parse_event(raw: bytes | str, max_bytes: int = MAX_PAYLOAD_BYTES) -> Event | Rejected:
    """Validate one JSON document as an input event."""
    if len(raw) > max_bytes:
        return Rejected(R.OVERSIZED_PAYLOAD, f"{len(raw)} bytes > limit of {max_bytes}")
    try:
        return _VALIDATE_JSON(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        return Rejected(*_classify(errors[0]), customer_id=_customer_id_of(raw))


def _customer_id_of(raw: bytes | str) -> str | None:
    """Best effort: the customer id of a rejected document, to route its dead letter
    (only a valid one: an id that breaks the contract names no customer)."""
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    value = document.get("customer_id") if isinstance(document, dict) else None
    return value if is_identifier(value) else None


def _classify(error: ErrorDetails) -> tuple[R, str]:
    kind = error["type"]
    loc = [str(part) for part in error["loc"]]
    message = error["msg"]
    if kind == "json_invalid":
        return R.MALFORMED_JSON, message
    if kind in ("model_type", "model_attributes_type", "dict_type") and not loc:
        return R.MALFORMED_JSON, "the document is not a JSON object"
    if kind == "union_tag_not_found":
        return R.MISSING_FIELD, "event_type: field required"
    if kind == "union_tag_invalid":
        return R.UNKNOWN_EVENT_TYPE, message
    field_path = loc[1:]  # loc[0] is the event_type tag of the discriminated union
    field = field_path[0] if field_path else ""
    where = ".".join(field_path) or "(event)"
    detail = f"{where}: {message}"
    if kind == "missing":
        return R.MISSING_FIELD, f"{where}: field required"
    if field == "schema_version":
        return R.UNSUPPORTED_SCHEMA_VERSION, detail
    if kind == "string_pattern_mismatch":
        detail = (
            f"{where}: {error.get('input')!r} holds whitespace, a control character or "
            "an invisible (format or private-use) character"
        )
    elif kind == "value_error" and "invisible" in message:
        detail = f"{where}: {error.get('input')!r} {message.removeprefix('Value error, ')}"
    if field in _ID_FIELDS:
        return R.INVALID_ID, detail
    if field in _TIME_FIELDS or field_path[-1:] == ["signup_at"]:
        if kind == "timezone_aware":
            return R.NAIVE_TIMESTAMP, f"{where}: timestamp has no UTC offset"
        return R.INVALID_TIMESTAMP, f"{where}: {message.removeprefix('Value error, ')}"
    if field == "amount":
        return R.INVALID_AMOUNT, detail
    if field == "currency":
        if kind == "literal_error":
            detail = f"currency: {error.get('input')!r} is not an ISO 4217 currency code"
        return R.INVALID_CURRENCY, detail
    if field == "kind" and kind == "literal_error":
        return R.UNKNOWN_KIND, detail
    return R.INVALID_FIELD, detail
