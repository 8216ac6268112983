"""Event-time invariants over random event sequences (out of order within and beyond
the allowed lateness, duplicates, erasures, opt-outs, refunds, gaps longer than a year):

- a run stopped at any point (states and checkpoint saved, restored into a new
  engine) continues exactly like one that never stopped, also between the bounded
  pieces of a clock catch-up;
- the clock work after a jump, in bounded pieces, gives the outputs of one call;
- the same instants written with other UTC offsets give the same outputs;
- the offline scorer's outputs do not depend on the hash seed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.checkpoint import checkpoint_bytes, restore_checkpoint
from models.config import ScoringConfig
from models.engine import ScoringEngine
from models.state import CustomerState
from models.timeline import SECONDS_PER_DAY
from schemas.parsing import Rejected, parse_event
from tests.factories import customer_event, interaction, purchase, refund

DAY = SECONDS_PER_DAY
CONFIG = ScoringConfig(
    allowed_lateness_seconds=2 * DAY,
    rescore_after_days=(3, 10, 40, 120),
    churn_window_days=20,
    churn_snapshot_interval_days=5,
    refit_interval_days=30,
    refit_install_delay_days=5,
    min_customers_for_fit=10,
    min_fit_history_days=20,
    min_repeat_customers_for_spend_fit=10,
    dedupe_window=4,
)
CUSTOMERS = [f"c{n}" for n in range(8)]

# One step: a gap after the previous event (days; now and then a long one), how far
# this event is dated before the clock (within the allowed lateness, or beyond it),
# its kind, customer and id (ids repeat: duplicates, some after the dedupe window).
STEP = st.tuples(
    st.one_of(st.floats(0, 3), st.floats(0, 3), st.floats(0, 3), st.floats(30, 400)),
    st.one_of(st.just(0.0), st.floats(0, 2), st.floats(2, 6)),
    st.sampled_from(
        ["buy", "buy", "buy", "refund", "login", "unsubscribe", "grant", "withdraw", "erase"]
    ),
    st.sampled_from(CUSTOMERS),
    st.integers(0, 80),
)


def build(steps: list[tuple]) -> list[dict]:
    events, clock = [], 0.0
    for gap, back, kind, customer, number in steps:
        clock += gap
        day, event_id = clock - back, f"e{number}"
        if kind == "buy":
            events.append(purchase(customer, day, 5.0 + number, event_id=event_id))
        elif kind == "refund":
            events.append(refund(customer, day, 3.0, event_id=event_id, refund_of=f"e{number - 1}"))
        elif kind in ("login", "unsubscribe"):
            events.append(interaction(customer, day, kind, event_id=event_id))
        elif kind == "erase":
            events.append(customer_event(customer, day, "erasure", event_id=event_id))
        else:
            flags = {"marketing_email": kind == "grant", "profiling": kind == "grant"}
            events.append(
                customer_event(customer, day, "consent", event_id=event_id, consent=flags)
            )
    return events


def rows(outputs) -> list[tuple]:
    return [(o.stream.value, o.key, orjson.dumps(o.value)) for o in outputs]


def feed(engine: ScoringEngine, lines: list[bytes], start: int, pieces: int | None) -> list:
    """Each event, then its clock work in pieces of at most `pieces` re-scores."""
    outputs = []
    for number, line in enumerate(lines, start):
        origin = {"source": "file", "file": "t", "line": number}
        if pieces is None:
            outputs += rows(engine.process_raw(line, origin))
            continue
        parsed = parse_event(line)
        if isinstance(parsed, Rejected):
            outputs += rows(engine.process_parsed(parsed, line, origin))
            continue
        engine.counters.read += 1  # (as the worker does)
        outputs += rows(engine.process_event(parsed, line, origin, clock_work=False))
        if engine.clock_work_due():
            outputs += catch_up(engine, pieces)
    return outputs


def catch_up(engine: ScoringEngine, pieces: int | None) -> list:
    outputs = rows(engine.on_clock(pieces))
    while pieces is not None and engine.clock_work_due():
        outputs += rows(engine.on_clock(pieces))
    return outputs


def restored(engine: ScoringEngine) -> ScoringEngine:
    states = {c: CustomerState.from_bytes(s.to_bytes()) for c, s in engine.states.items()}
    twin = ScoringEngine(CONFIG, states=states, derive_from_states=False)
    restore_checkpoint(twin, checkpoint_bytes(engine))
    return twin


def final(engine: ScoringEngine) -> tuple:
    states = {c: s.to_bytes() for c, s in sorted(engine.states.items())}
    return states, engine.counters.as_dict(), engine.clock.watermark


LINES = st.lists(STEP, min_size=1, max_size=60).map(lambda s: [orjson.dumps(e) for e in build(s)])


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LINES, st.data(), st.sampled_from([None, 1, 3]))
def test_a_run_stopped_and_restored_anywhere_continues_like_one_never_stopped(lines, data, pieces):
    cut = data.draw(st.integers(0, len(lines)))
    jump = data.draw(st.sampled_from([0, 7, 60, 500]))
    whole = ScoringEngine(CONFIG)
    expected = feed(whole, lines, 0, pieces)
    end = whole.clock.watermark + jump * DAY
    whole.advance_clock(end)
    expected += catch_up(whole, pieces)

    first = ScoringEngine(CONFIG)
    actual = feed(first, lines[:cut], 0, pieces)
    second = restored(first)
    for _ in second.rebuild_in_steps(states_per_step=3):
        pass
    actual += feed(second, lines[cut:], cut, pieces)
    second.advance_clock(end)
    actual += catch_up(second, pieces)
    assert actual == expected
    assert final(second) == final(whole)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(LINES, st.sampled_from([1, 2, 5]), st.sampled_from([30, 200, 900]))
def test_clock_work_in_bounded_pieces_gives_the_outputs_of_one_call(lines, pieces, jump):
    one, bounded = ScoringEngine(CONFIG), ScoringEngine(CONFIG)
    outputs = {}
    for engine, limit in ((one, None), (bounded, pieces)):
        outputs[limit] = feed(engine, lines, 0, limit)
        engine.advance_clock(engine.clock.watermark + jump * DAY)
        outputs[limit] += catch_up(engine, limit)
        assert not engine.clock_work_due()
    assert outputs[pieces] == outputs[None]
    assert final(bounded) == final(one)


OFFSETS = [timezone(timedelta(hours=h, minutes=m)) for h, m in ((14, 0), (-12, 0), (5, 45), (0, 0))]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(STEP, min_size=1, max_size=60), st.randoms(use_true_random=False))
def test_the_same_instants_in_other_utc_offsets_give_the_same_outputs(steps, rng):
    events = build(steps)
    shifted = []
    for event in events:
        when = datetime.fromisoformat(event["occurred_at"])
        shifted.append({**event, "occurred_at": when.astimezone(rng.choice(OFFSETS)).isoformat()})
    runs = []
    for batch in (events, shifted):
        engine = ScoringEngine(CONFIG)
        outputs = feed(engine, [orjson.dumps(e) for e in batch], 0, None)
        engine.advance_clock(engine.clock.watermark + 400 * DAY)
        runs.append(([echo_left_out(o) for o in outputs + catch_up(engine, None)], final(engine)))
    assert runs[0] == runs[1]


def echo_left_out(row: tuple) -> tuple:
    """A dead letter without the raw input it echoes (nor its id, derived from it)."""
    stream, key, value = row
    if stream != "dead-letter":
        return row
    fields = orjson.loads(value)
    del fields["raw"], fields["event_id"]
    return stream, key, fields


def test_the_offline_scorers_outputs_do_not_depend_on_the_hash_seed(tmp_path: Path):
    kinds = ["buy", "login", "buy", "refund", "buy", "unsubscribe", "erase"] * 30
    steps = [
        (0.5 + (n % 7) * 0.3, (n % 3) * 0.7, kind, CUSTOMERS[n % 8], n)
        for n, kind in enumerate(kinds)
    ]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in build(steps)))
    root = Path(__file__).resolve().parents[2]
    outputs = []
    for seed in ("0", "1"):
        out = tmp_path / seed
        out.mkdir()
        command = [sys.executable, "-m", "streams.cli", "score", str(events),
                   "--out", str(out / "scores.csv"), "--emitted", str(out / "emitted.jsonl"),
                   "--dead-letter", str(out / "dead.jsonl"), "--partitions", "2"]  # fmt: skip
        environment = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(root)}
        subprocess.run(command, cwd=root, env=environment, check=True, capture_output=True)
        outputs.append([(out / name).read_bytes() for name in sorted(os.listdir(out))])
    assert outputs[0] == outputs[1]
    assert len(outputs[0][1]) > 1000  # emitted events
