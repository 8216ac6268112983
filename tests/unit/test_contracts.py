"""Input validation gives precise reasons; outputs match their published contracts."""

from __future__ import annotations

import jsonschema
import orjson
import pytest

from models.config import ScoringConfig
from models.engine import ScoringEngine
from schemas.common import MAX_PAYLOAD_BYTES
from schemas.export import SCHEMA_DIR, schema_documents, stale_schemas
from schemas.inputs import CustomerEvent, Interaction, Transaction
from schemas.outputs import DeadLetter, DeadLetterReason, ModelHealth, ScoreUpdate, SegmentChange
from schemas.parsing import Rejected, parse_event
from tests.factories import customer_event, interaction, purchase, raw

R = DeadLetterReason


def _with(**changes) -> bytes:
    event = purchase("c1", 1.0, event_id="t1")
    event.update(changes)
    return raw({k: v for k, v in event.items() if v is not ...})


@pytest.mark.parametrize(
    ("document", "reason", "fragment"),
    [
        (b"{not json", R.MALFORMED_JSON, "Invalid JSON"),
        (b"[1, 2]", R.MALFORMED_JSON, "not a JSON object"),
        (b"", R.MALFORMED_JSON, ""),
        (b'{"event_type": "party"}', R.UNKNOWN_EVENT_TYPE, "party"),
        (b'{"customer_id": "c1"}', R.MISSING_FIELD, "event_type"),
        (_with(customer_id=...), R.MISSING_FIELD, "customer_id"),
        (_with(event_id=""), R.INVALID_ID, "event_id"),
        (_with(customer_id="x" * 129), R.INVALID_ID, "customer_id"),
        (_with(customer_id="has space"), R.INVALID_ID, "customer_id"),
        (_with(customer_id=17), R.INVALID_ID, "customer_id"),
        (_with(occurred_at="2024-02-10T10:00:00"), R.NAIVE_TIMESTAMP, "no UTC offset"),
        (_with(occurred_at="2023-02-30T10:00:00Z"), R.INVALID_TIMESTAMP, "day value"),
        (_with(occurred_at="1969-12-31T10:00:00Z"), R.INVALID_TIMESTAMP, "1970-01-01"),
        (_with(occurred_at="2201-01-01T00:00:00Z"), R.INVALID_TIMESTAMP, "2200-01-01"),
        (_with(occurred_at=1707559200), R.INVALID_TIMESTAMP, "got int"),
        (_with(occurred_at="1707559200"), R.INVALID_TIMESTAMP, "not an ISO 8601 date-time"),
        (_with(occurred_at="1707559200.5"), R.INVALID_TIMESTAMP, "not an ISO 8601"),
        (_with(occurred_at=None), R.INVALID_TIMESTAMP, "got NoneType"),
        (_with(amount=-5), R.INVALID_AMOUNT, "greater than or equal to 0"),
        (_with(amount="12.5"), R.INVALID_AMOUNT, "valid number"),
        (_with(amount=True), R.INVALID_AMOUNT, "valid number"),
        (_with(amount=1e300), R.INVALID_AMOUNT, "less than or equal"),
        (
            b'{"event_type":"transaction","event_id":"t","customer_id":"c","occurred_at":'
            b'"2024-01-01T00:00:00Z","amount":1e999,"currency":"USD"}',
            R.INVALID_AMOUNT,
            "finite",
        ),
        (_with(kind="refund", amount=0), R.INVALID_AMOUNT, "refund"),
        (_with(currency="usd"), R.INVALID_CURRENCY, "'usd' is not an ISO 4217"),
        (_with(currency="XYZ"), R.INVALID_CURRENCY, "ISO 4217"),
        (_with(kind="gift"), R.UNKNOWN_KIND, "purchase"),
        (_with(schema_version=2), R.UNSUPPORTED_SCHEMA_VERSION, "schema_version"),
        (_with(margin=50.0, amount=20.0), R.INVALID_FIELD, "margin exceeds amount"),
        (_with(items=[{"sku": "a", "category": "b", "quantity": 0}]), R.INVALID_FIELD, "items.0"),
        (raw(interaction("c1", 1, kind="dance")), R.UNKNOWN_KIND, "login"),
        (raw(interaction("c1", 1, kind="survey")), R.INVALID_FIELD, "survey"),
        (raw(interaction("c1", 1, kind="survey", value=11)), R.INVALID_FIELD, "survey"),
        (raw(customer_event("c1", 1, kind="consent")), R.INVALID_FIELD, "consent"),
        (raw(customer_event("c1", 1, kind="merge")), R.UNKNOWN_KIND, "erasure"),
    ],
)
def test_each_bad_input_gets_a_precise_reason(document, reason, fragment):
    result = parse_event(document)
    assert isinstance(result, Rejected)
    assert result.reason is reason
    assert fragment in result.detail


def test_oversized_payload_is_rejected_before_parsing():
    document = _with(channel="x" * MAX_PAYLOAD_BYTES)
    result = parse_event(document)
    assert isinstance(result, Rejected) and result.reason is R.OVERSIZED_PAYLOAD


def test_rejected_input_keeps_the_customer_id_when_readable():
    assert parse_event(_with(amount=-1)).customer_id == "c1"
    assert parse_event(b"{broken").customer_id is None
    # an id that breaks the contract is no customer's: its dead letter names none
    assert parse_event(_with(customer_id="has space")).customer_id is None
    assert parse_event(_with(customer_id="c\x001", amount=-1)).customer_id is None


@pytest.mark.parametrize(
    ("event", "model"),
    [
        (
            purchase(
                "c1", 1, items=[{"sku": "a", "category": "b", "quantity": 2, "unit_price": 5}]
            ),
            Transaction,
        ),
        (purchase("c1", 1, amount=0.0), Transaction),
        (interaction("c1", 1, kind="survey", value=7), Interaction),
        (customer_event("c1", 1, "consent", consent={"marketing_email": False}), CustomerEvent),
        (customer_event("c1", 1, "profile", profile={"country": "DE"}), CustomerEvent),
        (customer_event("c1", 1, "erasure"), CustomerEvent),
    ],
)
def test_valid_events_parse_into_their_contract(event, model):
    parsed = parse_event(raw(event))
    assert isinstance(parsed, model)
    assert parsed.customer_id == "c1"


def test_timestamps_keep_their_offset_and_unknown_fields_are_ignored():
    event = purchase("c1", 0)
    event["occurred_at"] = "2024-05-01T10:00:00+02:00"
    event["future_field"] = {"nested": True}
    parsed = parse_event(raw(event))
    assert parsed.occurred_at.timestamp() == 1714550400.0  # 08:00 UTC


@pytest.mark.parametrize(
    "text", ["2024-05-01T10:00:00Z", "2024-05-01 10:00:00+00:00", "2024-05-01T12:00:00.250+02:00"]
)
def test_iso_8601_date_times_in_their_usual_spellings_are_accepted(text):
    event = purchase("c1", 0)
    event["occurred_at"] = text
    parsed = parse_event(raw(event))
    assert not isinstance(parsed, Rejected)
    assert parsed.occurred_at.timestamp() in (1714557600.0, 1714557600.25)


def test_checked_in_json_schemas_are_current():
    assert stale_schemas() == [], "run `clvstream schemas` and commit schemas/json"
    assert sorted(p.name for p in SCHEMA_DIR.glob("*.json")) == sorted(schema_documents())


def test_input_json_schema_agrees_with_the_validator():
    schema = orjson.loads(schema_documents()["transaction.schema.json"])
    good = purchase("c1", 1)
    jsonschema.validate(good, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**good, "amount": -1}, schema)


def test_emitted_events_satisfy_the_output_contracts():
    """Outputs are built as plain dicts on the hot path: check them against the models."""
    engine = ScoringEngine(ScoringConfig(min_customers_for_fit=10, min_fit_history_days=1))
    origin = {"source": "file", "file": "t.jsonl", "line": 1}
    outputs = []
    for day in range(0, 60, 3):
        outputs += engine.process_raw(raw(purchase(f"c{day % 7}", day)), origin)
    outputs += engine.process_raw(b"{oops", origin)
    outputs += engine.advance_watermark(200 * 86_400 + 1.7e9)
    outputs.append(engine.refit(engine.current_day))
    contracts = {
        "score": ScoreUpdate,
        "segment_change": SegmentChange,
        "dead_letter": DeadLetter,
        "model_health": ModelHealth,
    }
    seen = set()
    for output in outputs:
        kind = output.value["event_type"]
        contracts[kind].model_validate_json(orjson.dumps(output.value))
        seen.add(kind)
    assert seen == set(contracts)
