"""The worker's web API and metrics against a real broker, Redis and worker processes."""

from __future__ import annotations

import contextlib
import time

from streams.up import start_worker
from tests.integration.worker_harness import (
    STARTED,
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


def test_health_is_not_ready_until_the_worker_holds_its_partitions(kafka_url, redis_url, tmp_path):
    """`/health` said ready (200) from the service's start on: for seconds before the
    consumer group gave the worker its partitions (4 s in a run) and while they were
    restored, though `/live` says that a restoring worker is alive and not ready."""
    settings = fresh_settings(kafka_url, redis_url, partitions=2)
    replay(simulated_file(tmp_path, 40, 60, seed=4), settings)
    process = start_worker(settings, tmp_path / "worker.log", extra_env={"TMPDIR": str(tmp_path)})
    STARTED.append(process)
    seen, deadline = [], time.monotonic() + 90
    while not seen or seen[-1][0] != 200:
        assert time.monotonic() < deadline and process.process.poll() is None, seen[-3:]
        with contextlib.suppress(OSError):  # (the web server not up yet)
            status, health = process.get("/health", timeout=3)
            seen.append((status, health.get("partitions"), health.get("restoring")))
        time.sleep(0.05)
    assert process.stop() == 0
    assert seen[-1] == (200, [0, 1], [])
    assert all(status == 503 for status, _, _ in seen[:-1])


def test_the_redis_views_answer_503_not_500_while_the_worker_starts(kafka_url, redis_url, tmp_path):
    """Until the scoring service had started (5 s in a run, the web server up already)
    it had no Redis client: `/customers/{id}` and both segment views failed with 500
    Internal Server Error."""
    settings = fresh_settings(kafka_url, redis_url, partitions=1)
    process = start_worker(settings, tmp_path / "worker.log", extra_env={"TMPDIR": str(tmp_path)})
    STARTED.append(process)
    paths = ("/customers/nobody", "/segments", "/segments/lifecycle/active")
    seen: set[tuple[str, int]] = set()
    deadline = time.monotonic() + 90
    while (status := _status(process, "/health")) != 200:
        assert time.monotonic() < deadline and process.process.poll() is None, seen
        if status is not None:
            seen |= {(path, _status(process, path)) for path in paths}
        time.sleep(0.05)
    answered = {(path, _status(process, path)) for path in paths}
    assert process.stop() == 0
    assert seen and all(status in (503, 404, 200) for _, status in seen), seen
    assert answered == {(paths[0], 404), (paths[1], 200), (paths[2], 200)}


def _status(process, path: str) -> int | None:
    try:
        return process.get(path, timeout=3)[0]
    except OSError:  # (the web server not up yet)
        return None
