"""The dead-letter output: a rejected input with the reason, its origin and its raw
text (truncated when oversized), under an id derived from all three."""

from __future__ import annotations

from models.emitted import Output, Stream
from models.ids import deterministic_id
from schemas.common import MAX_PAYLOAD_BYTES
from schemas.outputs import DeadLetterReason, Origin

OriginInfo = dict[str, str | int]
"""Where an input came from: {"source": "file", "file": ..., "line": ...} or
{"source": "kafka", "topic": ..., "partition": ..., "offset": ...}. Validated as an
`Origin` only when a dead letter needs it (the happy path stays cheap)."""


def dead_letter(
    raw: bytes | str,
    origin: OriginInfo,
    reason: DeadLetterReason,
    detail: str,
    customer_id: str | None,
) -> Output:
    """The dead-letter output of one rejected input."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    if len(text) > MAX_PAYLOAD_BYTES:
        text = text[:MAX_PAYLOAD_BYTES]
        detail += f" (raw input truncated to {MAX_PAYLOAD_BYTES} characters)"
    where = Origin.model_validate(origin)
    origin_fields = where.model_dump(exclude_none=True)
    value = {
        "event_type": "dead_letter",
        "schema_version": 1,
        "event_id": deterministic_id("dead-letter", repr(origin_fields), reason.value, text),
        "reason": reason.value,
        "detail": detail,
        "origin": origin_fields,
        "raw": text,
        "customer_id": customer_id,
    }
    return Output(Stream.DEAD_LETTER, customer_id, value)
