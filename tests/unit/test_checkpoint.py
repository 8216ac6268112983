"""Engine checkpoints: states + checkpoint at any point continue exactly like no stop."""

from __future__ import annotations

import pytest

from models.checkpoint import CheckpointError, checkpoint_bytes, restore_checkpoint
from models.config import ScoringConfig
from models.engine import ScoringEngine
from models.simulation import SimulationConfig, simulate
from models.state import CustomerState


def _lines(customers: int = 300, days: int = 420, seed: int = 7) -> list[bytes]:
    return list(
        line
        for _, line in simulate(
            SimulationConfig(customers=customers, days=days, seed=seed)
        ).events()
    )


def _feed(engine: ScoringEngine, lines: list[bytes], start: int) -> list[dict | None]:
    values = []
    for number, line in enumerate(lines, start=start):
        for output in engine.process_raw(line, {"source": "file", "file": "t", "line": number}):
            values.append((output.stream.value, output.key, output.value))
    return values


@pytest.mark.parametrize("cut_fraction", [0.3, 0.71])
def test_a_restored_engine_continues_exactly_like_one_that_never_stopped(cut_fraction):
    lines = _lines()
    cut = int(len(lines) * cut_fraction)
    config = ScoringConfig()
    never_stopped = ScoringEngine(config)
    _feed(never_stopped, lines[:cut], 0)

    states = {cid: s.to_bytes() for cid, s in never_stopped.states.items()}
    blob = checkpoint_bytes(never_stopped)
    restored = ScoringEngine(
        config, states={cid: CustomerState.from_bytes(b) for cid, b in states.items()}
    )
    restore_checkpoint(restored, blob)

    expected = _feed(never_stopped, lines[cut:], cut)
    expected += [(o.stream.value, o.key, o.value) for o in never_stopped.advance_watermark(2e9)]
    actual = _feed(restored, lines[cut:], cut)
    actual += [(o.stream.value, o.key, o.value) for o in restored.advance_watermark(2e9)]
    assert len(actual) == len(expected) > 1000
    assert actual == expected
    assert {cid: s.to_bytes() for cid, s in restored.states.items()} == {
        cid: s.to_bytes() for cid, s in never_stopped.states.items()
    }
    assert restored.counters.as_dict() == never_stopped.counters.as_dict()


def test_a_corrupt_checkpoint_is_an_error_not_a_crash():
    engine = ScoringEngine(ScoringConfig())
    with pytest.raises(CheckpointError):
        restore_checkpoint(engine, b"not a checkpoint")


def test_partitions_with_the_same_value_parameters_share_one_value_model():
    config = ScoringConfig()
    first, second = ScoringEngine(config), ScoringEngine(config.for_partition(4))
    assert first.scorer.value_model is second.scorer.value_model  # one memo per process
    other_horizon = ScoringEngine(ScoringConfig(horizon_days=180))
    assert other_horizon.scorer.value_model is not first.scorer.value_model
    restored = ScoringEngine(config)
    restore_checkpoint(restored, checkpoint_bytes(first))
    assert restored.scorer.value_model is first.scorer.value_model


def test_a_checkpoint_taken_between_pieces_of_a_catch_up_continues_it_exactly():
    """The worker checkpoints between the bounded pieces of a catch-up: the restored
    engine re-scores the customers left due first, as the never-stopped one does."""
    lines = _lines(customers=150, days=200)
    config = ScoringConfig()

    def pieces(engine: ScoringEngine, limit: int = 30) -> list:
        outputs = []
        while engine.clock_work_due():
            outputs += [(o.stream.value, o.key, o.value) for o in engine.on_clock(limit)]
        return outputs

    never_stopped = ScoringEngine(config)
    _feed(never_stopped, lines, 0)
    never_stopped.advance_clock(never_stopped.clock.watermark + 400 * 86_400)
    first = [(o.stream.value, o.key, o.value) for o in never_stopped.on_clock(30)]
    assert never_stopped.clock_work_due()
    blob = checkpoint_bytes(never_stopped)
    restored = ScoringEngine(
        config,
        states={c: CustomerState.from_bytes(s.to_bytes()) for c, s in never_stopped.states.items()},
    )
    restore_checkpoint(restored, blob)
    expected, actual = pieces(never_stopped), pieces(restored)
    assert len(first) + len(expected) > 300
    assert actual == expected
    assert {c: s.to_bytes() for c, s in restored.states.items()} == {
        c: s.to_bytes() for c, s in never_stopped.states.items()
    }
