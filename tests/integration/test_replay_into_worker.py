"""Events produced while the worker runs: the merge of the inputs by event time must
not make an event late because another input's record was still on its way."""

from __future__ import annotations

import asyncio

import pytest

from streams.offline import cell_text
from streams.replay import replay_file
from tests.integration.test_worker import assert_served_as_offline, offline_stream_scores
from tests.integration.worker_harness import (
    fresh_settings,
    metric,
    redis_scores,
    simulated_file,
    wait_until_scored,
    worker,
)


@pytest.mark.parametrize(("partitions", "rate", "seed"), [(1, 1000, 23), (2, 3000, 22)])
def test_a_paced_replay_into_a_running_worker_makes_no_event_late(
    kafka_url, redis_url, tmp_path, partitions, rate, seed
):
    """Replayed at a few thousand events/s, a day of events passes in about 30 ms: a
    record lingering in its producer's batch for one topic while the other topics'
    records reach the worker first was behind them by more than the allowed lateness
    (5 to 79 such events dead-lettered as late in these runs). The worker waits for
    it instead, and ends as the offline scorer."""
    settings = fresh_settings(kafka_url, redis_url, partitions=partitions)
    events = simulated_file(tmp_path, 300, 120, seed=seed)
    expected, offline_counts = offline_stream_scores(events, settings)
    process = worker(settings, tmp_path)
    try:
        wait_until_scored([process], 0, timeout=60)  # assigned and ready before the replay
        sent = asyncio.run(replay_file(events, settings, rate=rate, show_progress=False))
        wait_until_scored([process], sent.events)
        late = metric(process, 'clvstream_dead_lettered_total{reason="late"}')
        dead = metric(process, "clvstream_dead_lettered_total")
        waits = metric(process, "clvstream_merge_waits_total")
        served = redis_scores(settings)
    finally:
        assert process.stop() == 0
    assert late == offline_counts.get("late", 0) == 0
    assert dead == offline_counts["dead_lettered"]
    assert waits > 0  # the merge did wait: the records were on their way
    assert_served_as_offline(*_churn_aside(served, expected))


def _churn_aside(served: dict, expected: dict) -> tuple[dict, dict]:
    """Within the allowed lateness, records of different topics are taken in the order
    they arrive, so the churn model may learn a few labels in another order than
    offline: its probability may differ slightly, and with it the lifecycle and
    segment of a customer on a boundary (at most 1 in 100). Those checked here, the
    rest is left to compare exactly.

    Most customers' probabilities agree to the served six digits; those whose last
    score fell between two labels learned in the other order differ by about one
    learning step (2e-4). How many depends on when the two orders part (seen: none,
    1 and 6 of 300 in a loaded parallel suite), so the bound is that most agree (at
    most 1 in 10 beyond the rounding) and that none is off by more than a few steps."""
    served = {customer_id: dict(row) for customer_id, row in served.items()}
    expected = {customer_id: dict(row) for customer_id, row in expected.items()}
    moved = churn_differs = 0
    for customer_id, row in served.items():
        offline = expected[customer_id]
        difference = abs(float(row.pop("churn_probability")) - offline.pop("churn_probability"))
        assert difference < 0.01
        churn_differs += difference > 1e-5  # beyond the last of the six digits served
        moved += any(row[name] != cell_text(offline[name]) for name in ("lifecycle", "segment"))
        for name in ("lifecycle", "segment"):
            row[name] = cell_text(offline[name])
    assert moved <= len(served) / 100
    assert churn_differs <= len(served) / 10
    for row in expected.values():
        row["churn_probability"] = 0.0
    for row in served.values():
        row["churn_probability"] = cell_text(0.0)
    return served, expected
