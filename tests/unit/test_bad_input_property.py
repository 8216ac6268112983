"""Bad input never crashes the engine and never changes what good input does.

Valid events are interleaved with damaged copies of them (truncated, bytes flipped,
fields dropped or given wrong values, wrong document types, invalid UTF-8, deep
nesting, oversized) and with random bytes. The run over that mixture must give, for
every input the parser rejects, exactly one dead letter naming its line, and for
everything else exactly the outputs and the final states of a run over the accepted
inputs alone: rejected input is counted and set aside, and good data is not lost. The
same holds at the worker's edge (a partition with the input contract on), where a
record also has to be keyed by its customer and sit on its event type's topic.
"""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.partition import PartitionScorer
from models.config import ScoringConfig
from models.emitted import Stream
from models.engine import ScoringEngine
from schemas.common import MAX_PAYLOAD_BYTES
from schemas.parsing import Rejected, parse_event
from streams.topics import TopicNames
from tests.factories import customer_event, interaction, purchase, refund

CUSTOMERS = st.sampled_from(["a", "b", "c"])
DAYS = st.floats(0, 90, allow_nan=False)

IDS = st.integers(0, 60).map(lambda n: f"e{n}")  # repeats happen: duplicates too

# Baskets as the contract allows them: a unit price is optional (0 and tiny ones too).
ITEMS = st.lists(
    st.fixed_dictionaries(
        {"sku": st.just("s1"), "category": st.sampled_from(["tents", "boots"]),
         "quantity": st.integers(1, 5)},
        optional={"unit_price": st.one_of(st.just(5e-324), st.floats(0, 1e9))},
    ),
    max_size=3,
)  # fmt: skip

valid_events = st.one_of(
    st.builds(
        lambda c, d, a, i, items: purchase(c, d, a, event_id=i, items=items),
        CUSTOMERS,
        DAYS,
        st.floats(0.01, 900),
        IDS,
        ITEMS,
    ),
    st.builds(
        lambda c, d, a, i: refund(c, d, a, event_id=i), CUSTOMERS, DAYS, st.floats(0.01, 90), IDS
    ),
    st.builds(
        lambda c, d, k, i, category: interaction(
            c, d, k, event_id=i, attributes={"category": category}
        ),
        CUSTOMERS,
        DAYS,
        st.sampled_from(["login", "page_view", "email_open", "complaint", "unsubscribe"]),
        IDS,
        st.text(max_size=12),  # a browsing category is any text: odd ones are ignored
    ),
    st.builds(
        lambda c, d, flag, i: customer_event(
            c, d, "consent", consent={"marketing_email": flag}, event_id=i
        ),
        CUSTOMERS,
        DAYS,
        st.booleans(),
        IDS,
    ),
)

# Values a producer might put in any field by mistake.
odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
    st.sampled_from(["", " ", "NaN", "1e400", "2024-13-45T99:00:00", "2024-01-01T00:00:00"]),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
)


def _dumps(document: dict) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


@st.composite
def damaged(draw: st.DrawFn, event: dict) -> bytes:
    """One damaged copy of a valid event (it may, by chance, still be valid)."""
    body = orjson.dumps(event)
    how = draw(st.integers(0, 8))
    if how == 0:  # cut short
        return body[: draw(st.integers(0, len(body) - 1))]
    if how == 1:  # a byte replaced, possibly by one that is not UTF-8
        at = draw(st.integers(0, len(body) - 1))
        return body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :]
    if how == 2:  # a field dropped
        key = draw(st.sampled_from(sorted(event)))
        return orjson.dumps({k: v for k, v in event.items() if k != key})
    if how == 3:  # a field given a value of another kind
        key = draw(st.sampled_from(sorted(event)))
        return _dumps({**event, key: draw(odd_values)})  # ints beyond 64 bits too
    if how == 4:  # a literal orjson would never write
        number = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999"]))
        return orjson.dumps({**event, "amount": 0.5}).replace(
            b'"amount":0.5', b'"amount":' + number
        )
    if how == 5:  # not an object
        return draw(st.sampled_from([b"[]", b"null", b"42", b'"text"', b"", b"   ", b"{}"]))
    if how == 6:  # deeply nested
        depth = draw(st.integers(100, 3000))
        return b"[" * depth + b"]" * depth
    if how == 7:  # oversized
        return orjson.dumps({**event, "padding": "x" * (MAX_PAYLOAD_BYTES + 1)})
    return draw(st.binary(max_size=200))  # noise


@st.composite
def mixed_inputs(draw: st.DrawFn) -> list[bytes]:
    events = draw(st.lists(valid_events, min_size=1, max_size=30))
    events.sort(key=lambda e: e["occurred_at"])  # mostly in order, as producers send
    lines: list[bytes] = []
    for event in events:
        if draw(st.integers(0, 2)) == 0:
            lines.append(draw(damaged(event)))
        lines.append(orjson.dumps(event))
    return lines


def _origin(line: int) -> dict:
    return {"source": "file", "file": "mixed.jsonl", "line": line}


def _run(lines: list[tuple[int, bytes]]) -> tuple[ScoringEngine, dict[int, list[dict]]]:
    engine = ScoringEngine(ScoringConfig(allowed_lateness_seconds=3 * 86_400))
    outputs = {}
    for number, raw in lines:
        outputs[number] = [(o.stream, o.value) for o in engine.process_raw(raw, _origin(number))]
    return engine, outputs


@given(mixed_inputs())
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_rejected_input_is_dead_lettered_and_changes_nothing_else(lines):
    numbered = list(enumerate(lines, 1))
    accepted = [(n, raw) for n, raw in numbered if not isinstance(parse_event(raw), Rejected)]
    rejected = {n for n, raw in numbered} - {n for n, _ in accepted}

    mixed, mixed_outputs = _run(numbered)
    clean, clean_outputs = _run(accepted)

    for number in rejected:
        [(stream, letter)] = mixed_outputs[number]
        assert stream is Stream.DEAD_LETTER
        assert letter["origin"]["line"] == number and letter["reason"] and letter["detail"]
    for number, _ in accepted:
        assert mixed_outputs[number] == clean_outputs[number]
    assert {c: s.to_bytes() for c, s in mixed.states.items()} == {
        c: s.to_bytes() for c, s in clean.states.items()
    }
    counted, baseline = mixed.counters.as_dict(), clean.counters.as_dict()
    assert counted["read"] == len(lines) == baseline["read"] + len(rejected)
    assert counted["dead_lettered"] == baseline["dead_lettered"] + len(rejected)
    assert counted["applied"] == baseline["applied"]
    # The engine turns an exception into a dead letter; none may come from valid input.
    assert "processing_error" not in counted["dead_lettered_by_reason"]


def test_every_kind_of_damage_is_rejected_with_a_precise_reason():
    """The damages above that can never be valid, one by one, with their reasons."""
    good = purchase("a", 1, 10.0, event_id="t1")
    body = orjson.dumps(good)
    cases = {
        b"": "malformed_json",
        body[:-1]: "malformed_json",
        b"[]": "malformed_json",
        b"null": "malformed_json",
        b"[" * 3000 + b"]" * 3000: "malformed_json",
        body.replace(b'"USD"', b'"\xff\xfe"'): "malformed_json",
        orjson.dumps({**good, "padding": "x" * MAX_PAYLOAD_BYTES}): "oversized_payload",
        orjson.dumps({k: v for k, v in good.items() if k != "customer_id"}): "missing_field",
        orjson.dumps({**good, "amount": -1}): "invalid_amount",
        orjson.dumps({**good, "occurred_at": "2024-01-01T00:00:00"}): "naive_timestamp",
        body.replace(b'"amount":10.0', b'"amount":NaN'): "invalid_amount",
    }
    for raw, reason in cases.items():
        result = parse_event(raw)
        assert isinstance(result, Rejected), raw[:80]
        assert result.reason.value == reason, (raw[:80], result)
        assert result.detail


NAMES = TopicNames("t.")
TYPES = NAMES.event_types  # input topic -> the event type it carries


@st.composite
def fetched_records(draw: st.DrawFn) -> list[tuple[str, bytes | None, bytes]]:
    """Records as a worker fetches them (topic, key, value): valid events mostly keyed
    by their customer and on their type's topic, now and then keyed otherwise, without
    a key, on another type's topic, or damaged."""
    events = draw(st.lists(valid_events, min_size=1, max_size=25))
    events.sort(key=lambda e: e["occurred_at"])
    records = []
    for event in events:
        topic, key = NAMES.for_event_type(event["event_type"]), event["customer_id"].encode()
        fault = draw(st.sampled_from(["none", "none", "none", "key", "no key", "topic", "damage"]))
        if fault == "key":
            key = draw(st.sampled_from([b"a", b"b", b"c", b"zz"]))
        elif fault == "no key":
            key = None
        elif fault == "topic":
            topic = draw(st.sampled_from(sorted(TYPES)))
        value = draw(damaged(event)) if fault == "damage" else orjson.dumps(event)
        records.append((topic, key, value))
    return records


def _elsewhere(customer_id: str) -> int:
    """A producers' partitioner that puts customer b on another partition than 0."""
    return 1 if customer_id == "b" else 0


def _belongs(topic: str, key: bytes | None, value: bytes, route) -> bool:
    """The input contract: a valid event, on its type's topic, keyed by its customer
    (and, with `route`, on its customer's partition, 0)."""
    event = parse_event(value)
    if isinstance(event, Rejected):
        return False
    if route is not None and route(event.customer_id) != 0:
        return False
    return event.event_type == TYPES[topic] and key == event.customer_id.encode()


def _fed(records: list[tuple[str, int, bytes | None, bytes]], route=None):
    config = ScoringConfig(allowed_lateness_seconds=3 * 86_400)
    part = PartitionScorer(0, NAMES.merge_order, config, event_types=TYPES, route=route)
    for topic, offset, key, value in records:
        part.add(topic, [(offset, key, value, 0.0)])
    return part, part.drain(idle=set(TYPES))


@pytest.mark.parametrize("route", [None, _elsewhere], ids=["any partition", "partition checked"])
@given(records=fetched_records())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_partition_sets_records_that_break_the_contract_aside_and_nothing_else(route, records):
    """The worker's partition with the input contract on: every record keyed otherwise,
    on another type's topic, damaged or (partition checked) of a customer the
    producers' partitioner puts elsewhere becomes one dead letter naming its topic and
    offset, and the states, counts and other outputs are those of the partition fed
    only the records that keep the contract (a set-aside record moves no clock)."""
    offsets: dict[str, int] = dict.fromkeys(TYPES, 0)
    placed = []
    for topic, key, value in records:
        placed.append((topic, offsets[topic], key, value))
        offsets[topic] += 1
    kept = [r for r in placed if _belongs(r[0], r[2], r[3], route)]
    set_aside = {(r[0], r[1]) for r in placed if not _belongs(r[0], r[2], r[3], route)}

    part, outputs = _fed(placed, route)
    alone, alone_outputs = _fed(kept, route)

    def letters(outs):
        return {
            (o.value["origin"]["topic"], o.value["origin"]["offset"]): o.value["reason"]
            for o in outs
            if o.stream is Stream.DEAD_LETTER
        }

    expected_letters = letters(alone_outputs)
    got = letters(outputs)
    assert set(got) == set(expected_letters) | set_aside
    assert {where: got[where] for where in expected_letters} == expected_letters
    assert [(o.stream, o.value) for o in outputs if o.stream is not Stream.DEAD_LETTER] == [
        (o.stream, o.value) for o in alone_outputs if o.stream is not Stream.DEAD_LETTER
    ]
    assert {c: s.to_bytes() for c, s in part.states.items()} == {
        c: s.to_bytes() for c, s in alone.states.items()
    }
    assert part.next_offsets == offsets  # every record taken, none held back
    counted = part.engine.counters.as_dict()
    assert counted["applied"] == alone.engine.counters.as_dict()["applied"]
