"""The streaming worker end to end: real broker, real Redis, real worker processes."""

from __future__ import annotations

import signal
import statistics
import time

import orjson
import pytest

from streams.offline import cell_text, score_file
from tests.integration.worker_harness import (
    changelog_states,
    fresh_settings,
    metric,
    redis_scores,
    replay,
    simulated_file,
    wait_until_scored,
    worker,
)

EXACT_FIELDS = ("frequency", "monetary_value", "total_spend", "refund_total")
SCORE_TOLERANCE = {"p_alive": 0.05, "churn_probability": 0.10}  # median absolute difference


def offline_last_scores(events, tmp_path, settings) -> tuple[dict[str, dict], dict]:
    emitted = tmp_path / "emitted.jsonl"
    result = score_file(
        events, tmp_path / "scores.csv", settings.scoring, emitted_path=emitted,
        show_progress=False, fit_in_background=False,
    )  # fmt: skip
    last: dict[str, dict] = {}
    with open(emitted, "rb") as lines:
        for line in lines:
            envelope = orjson.loads(line)
            if envelope["stream"] == "scores":
                if envelope["value"] is None:
                    last.pop(envelope["key"], None)
                else:
                    last[envelope["key"]] = envelope["value"]
    return last, result.counters


def test_replayed_events_reach_redis_with_the_offline_scorers_results(
    kafka_url, redis_url, tmp_path
):
    settings = fresh_settings(kafka_url, redis_url, partitions=2)
    events = simulated_file(tmp_path, 400, 300, seed=4, duplicate_rate=0.01, malformed_rate=0.005)
    expected, offline_counts = offline_last_scores(events, tmp_path, settings)
    sent = replay(events, settings)
    process = worker(settings, tmp_path)
    try:
        wait_until_scored([process], sent)
        served = redis_scores(settings)
        dead = metric(process, "clvstream_dead_lettered_total")
        _, api_row = process.get(f"/customers/{sorted(served)[0]}")
        status, missing = process.get("/customers/nobody-here")
        _, segments = process.get("/segments")
    finally:
        assert process.stop() == 0
    assert set(served) == set(expected)
    for customer_id, score in expected.items():
        row = served[customer_id]
        for name in EXACT_FIELDS:
            assert row[name] == cell_text(score[name]), (customer_id, name)
    assert dead == offline_counts["dead_lettered"] > 0
    for name, tolerance in SCORE_TOLERANCE.items():
        differences = [abs(float(served[c][name]) - score[name]) for c, score in expected.items()]
        assert statistics.median(differences) <= tolerance, (name, statistics.median(differences))
    assert api_row["customer_id"] == sorted(served)[0] and "clv" in api_row
    assert status == 404 and "nobody-here" in missing["error"]
    assert sum(s["customers"] for s in segments["lifecycle"].values()) == len(served)


def test_a_worker_killed_mid_replay_ends_with_the_state_of_an_uninterrupted_run(
    kafka_url, redis_url, tmp_path
):
    events = simulated_file(tmp_path, 900, 400, seed=9)
    states = []
    for crash in (False, True):
        settings = fresh_settings(kafka_url, redis_url, partitions=2, checkpoint_seconds=0.2)
        replay(events, settings)
        process = worker(settings, tmp_path, f"worker-crash-{crash}")
        if crash:
            deadline = time.monotonic() + 60
            while process.get("/health")[1]["customers"] < 200:
                assert time.monotonic() < deadline, "no customers scored"
                time.sleep(0.02)
            written = metric(process, "clvstream_checkpoints_total")
            while metric(process, "clvstream_checkpoints_total") <= written:  # one with states
                assert time.monotonic() < deadline, "no checkpoint written"
                time.sleep(0.02)
            assert not process.get("/health")[1]["caught_up"], "killed too late"
            process.process.send_signal(signal.SIGKILL)
            process.process.wait()
            process = worker(settings, tmp_path, "worker-restarted")
            assert metric(process, "clvstream_restored_customers_total") > 0
        wait_until_scored([process], 0)
        assert process.stop() == 0  # a clean stop writes a final checkpoint
        states.append(changelog_states(settings))
    uninterrupted, crashed = states
    assert len(uninterrupted) > 800
    assert crashed == uninterrupted


@pytest.mark.parametrize("partitions", [4])
def test_a_second_worker_takes_over_the_partitions_of_a_killed_one(
    kafka_url, redis_url, tmp_path, partitions
):
    settings = fresh_settings(kafka_url, redis_url, partitions=partitions)
    events = simulated_file(tmp_path, 500, 300, seed=12)
    expected, _ = offline_last_scores(events, tmp_path, settings)
    sent = replay(events, settings)
    first = worker(settings, tmp_path, "first")
    second = worker(settings, tmp_path, "second")
    try:
        deadline = time.monotonic() + 60
        while True:
            shares = [len(p.get("/health")[1]["partitions"]) for p in (first, second)]
            if all(shares) and sum(shares) == partitions:
                break
            assert time.monotonic() < deadline, f"partitions not split: {shares}"
            time.sleep(0.2)
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        deadline = time.monotonic() + 60
        while len(second.get("/health")[1]["partitions"]) < partitions:
            assert time.monotonic() < deadline, "the survivor did not take over"
            time.sleep(0.2)
        wait_until_scored([second], 0)
        served = redis_scores(settings)
    finally:
        second.stop()
        first.stop()
    assert set(served) == set(expected)
    for customer_id, score in expected.items():
        for name in EXACT_FIELDS:
            assert served[customer_id][name] == cell_text(score[name]), (customer_id, name)
    assert sent > 0
