"""A worker whose broker goes away mid-replay and comes back goes on by itself."""

from __future__ import annotations

import signal
import time

import pytest

from tests.integration.broker_proxy import ProxiedTansu
from tests.integration.test_worker import assert_served_as_offline, offline_stream_scores
from tests.integration.worker_harness import (
    fresh_settings,
    metric,
    redis_scores,
    replay,
    simulated_file,
    wait_until_scored,
    worker,
)


@pytest.mark.parametrize(
    ("sig", "outage_seconds"),
    [
        (signal.SIGTERM, 5.0),  # a quick restart
        # Past the producer's request timeout (40 s): an output batch could not even be
        # queued (the one before it still unsent) and the worker crashed.
        (signal.SIGKILL, 45.0),
    ],
    ids=["5s", "45s"],
)
def test_a_worker_goes_on_after_its_broker_was_away_mid_replay(
    redis_url, tmp_path, sig, outage_seconds
):
    broker = ProxiedTansu(tmp_path)
    try:
        settings = fresh_settings(broker.kafka_url, redis_url, partitions=2)
        events = simulated_file(tmp_path, 600, 400, seed=7)
        expected, offline_counts = offline_stream_scores(events, settings)
        sent = replay(events, settings)
        process = worker(settings, tmp_path)
        deadline = time.monotonic() + 60
        while process.get("/health")[1]["customers"] < 100:
            assert time.monotonic() < deadline, "no customers scored"
            time.sleep(0.02)
        broker.go_away(sig)
        time.sleep(outage_seconds)
        assert process.process.poll() is None, "the worker exited while the broker was away"
        broker.come_back()
        wait_until_scored([process], sent, timeout=240)
        served = redis_scores(settings)
        dead = metric(process, "clvstream_dead_lettered_total")
        assert process.stop() == 0
    finally:
        broker.stop()
    assert "Crashed" not in (tmp_path / "worker.log").read_text()
    assert_served_as_offline(served, expected)
    assert dead == offline_counts["dead_lettered"]
