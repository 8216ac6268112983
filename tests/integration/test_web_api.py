"""The worker's web API and metrics against a real broker, Redis and worker processes."""

from __future__ import annotations

import time

from tests.integration.worker_harness import (
    fresh_settings,
    metric,
    replay,
    simulated_file,
    wait_until_scored,
    worker,
)

# Counted by each partition's engine, whose counts are checkpointed with its state.
ENGINE_COUNTERS = (
    "clvstream_rescored_total",
    "clvstream_duplicates_total",
    "clvstream_value_fits_missing_statistics_total",
    "clvstream_value_fits_installed_late_total",
)


def _wait_for_shares(processes: list, partitions: int, timeout: float = 60.0) -> list[int]:
    deadline = time.monotonic() + timeout
    while True:
        shares = [len(p.get("/health")[1]["partitions"]) for p in processes]
        if all(shares) and sum(shares) == partitions:
            return shares
        assert time.monotonic() < deadline, f"partitions not split: {shares}"
        time.sleep(0.2)


def test_engine_counters_never_fall_when_partitions_move_between_workers(
    kafka_url, redis_url, tmp_path
):
    """`clvstream_rescored_total` and its kind summed the counts of the partitions held,
    which move with a partition: a worker that gave one up showed a counter falling
    (752 to 427 in a run), which Prometheus reads as a reset (`rate()` then takes the
    whole remainder as new), and one taking a partition over jumped by its history."""
    settings = fresh_settings(kafka_url, redis_url, partitions=2)
    sent = replay(simulated_file(tmp_path, 120, 200, seed=3), settings)
    first = worker(settings, tmp_path, "first")
    wait_until_scored([first], sent)
    before = {name: metric(first, name) for name in ENGINE_COUNTERS}
    second = worker(settings, tmp_path, "second")
    try:
        _wait_for_shares([first, second], 2)
        wait_until_scored([first, second], 0)
        shared = {name: metric(first, name) for name in ENGINE_COUNTERS}
        taken_over = {name: metric(second, name) for name in ENGINE_COUNTERS}
    finally:
        assert second.stop() == 0
    _wait_for_shares([first], 2)
    wait_until_scored([first], 0)
    again = {name: metric(first, name) for name in ENGINE_COUNTERS}
    assert first.stop() == 0
    assert before["clvstream_rescored_total"] > 0
    assert shared == before  # nothing new was scored: nothing more counted, nothing less
    assert taken_over == dict.fromkeys(ENGINE_COUNTERS, 0.0)  # not the partition's history
    assert again == before
