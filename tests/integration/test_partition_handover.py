"""Partitions handed over between two workers of the group: a worker that lost its
membership (its session expired: it stalled, or was cut off from the broker) and
comes back must not write over what the partitions' new owner has done since."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from streams.settings import Settings
from tests.integration.worker_harness import (
    changelog_states,
    fresh_settings,
    offline_replay,
    replay,
    simulated_file,
    wait_until_scored,
    worker,
)


def offline_states(events: Path, settings: Settings) -> dict[str, bytes]:
    """Every customer's state at the end of an offline run cut as the stream is."""
    offline = offline_replay(events, settings)
    return {
        customer_id: state.to_bytes()
        for engine in offline.engines.values()
        for customer_id, state in engine.states.items()
    }


def _until(condition, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_worker_that_lost_its_partitions_while_stalled_does_not_overwrite_their_states(
    kafka_url, redis_url, tmp_path
):
    """Worker B stalls mid-replay (SIGSTOP) past its session timeout: the group gives
    its partitions to A, which restores them from B's last checkpoints and scores to
    the end. B then comes back: before it learns that it lost them, it must not write
    its stale states and checkpoints to their changelogs (a later restore would take
    them and lose what A applied since)."""
    settings = fresh_settings(kafka_url, redis_url, partitions=4, checkpoint_seconds=0.5)
    events = simulated_file(tmp_path, 2000, 400, seed=7)
    expected = offline_states(events, settings)
    replay(events, settings)
    a = worker(settings, tmp_path, "a")
    b = worker(settings, tmp_path, "b")
    try:
        _until(lambda: len(b.get("/health")[1]["partitions"]) == 2, "no partitions for b")
        _until(lambda: b.get("/health")[1]["customers"] >= 100, "b scored nothing")
        b.process.send_signal(signal.SIGSTOP)
        try:
            _until(lambda: len(a.get("/health")[1]["partitions"]) == 4, "a took nothing over")
            wait_until_scored([a], 0, timeout=120)
        finally:
            b.process.send_signal(signal.SIGCONT)
        _until(lambda: all(p.get("/health")[1]["partitions"] for p in (a, b)), "b did not rejoin")
        wait_until_scored([a, b], 0, timeout=120)
    finally:
        assert a.stop() == 0
        assert b.stop() == 0
    states = changelog_states(settings)
    assert len(expected) > 1500
    differ = sorted(c for c in expected if states.get(c) != expected[c])
    assert not differ and states.keys() == expected.keys(), f"{len(differ)} differ: {differ[:5]}"
