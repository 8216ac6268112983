"""A worker asked to stop stops, even when its broker is gone."""

from __future__ import annotations

import os
import re
import signal
import time

from streams.devstack import DevStack
from tests.integration.worker_harness import (
    fresh_settings,
    replay,
    simulated_file,
    wait_until_scored,
    worker,
)


def test_a_worker_whose_broker_is_gone_stops_within_its_stop_timeout(tmp_path):
    # A broker of its own: this test kills it.
    with DevStack() as stack:
        settings = fresh_settings(stack.kafka_url, stack.redis_url, stop_timeout_seconds=2.0)
        process = worker(settings, tmp_path)
        events = replay(simulated_file(tmp_path, customers=60, days=60, seed=5), settings)
        wait_until_scored([process], events)
        _valkey, tansu = stack.pids  # (started in this order)
        os.killpg(tansu, signal.SIGKILL)
        started = time.monotonic()
        process.process.send_signal(signal.SIGTERM)  # the final checkpoint cannot be written
        process.process.wait(timeout=60)  # (it waited for the broker for ever before)
        stopped_after = time.monotonic() - started
    log = (tmp_path / "worker.log").read_text()
    assert re.search(r"stopping: the final checkpoint given up after \d+\.\d s", log)
    # Faust's own consumer thread hangs on the broker too: the watchdog ends the process
    assert stopped_after < 20, stopped_after
