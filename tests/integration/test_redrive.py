"""`clvstream redrive`: a valid event a producer misrouted is dead-lettered; once
redriven it reaches its customer's partition and score, and only once."""

from __future__ import annotations

import asyncio
import time

import orjson

from streams.redrive import redrive
from streams.topics import TopicNames, partition_of
from tests.integration.worker_harness import (
    fresh_settings,
    metric,
    produce,
    redis_scores,
    replay,
    simulated_file,
    wait_until_scored,
    worker,
)


def test_a_redriven_misrouted_purchase_reaches_its_customer_once(kafka_url, redis_url, tmp_path):
    settings = fresh_settings(kafka_url, redis_url, partitions=2)
    events = simulated_file(tmp_path, 80, 90, seed=5)
    valid = [orjson.loads(line) for line in events.read_bytes().splitlines()]
    buyer = next(e for e in valid if e["event_type"] == "transaction")["customer_id"]
    last = max(e["occurred_at"] for e in valid)  # not late once redriven
    purchase = {"event_type": "transaction", "event_id": "misrouted-1", "customer_id": buyer,
                "occurred_at": last, "amount": 5555.0, "currency": "USD"}  # fmt: skip
    elsewhere = (partition_of(buyer, 2, settings.partitioner) + 1) % 2
    topic = TopicNames(settings.topic_prefix).for_event_type("transaction")
    sent = replay(events, settings)
    produce(settings, [(topic, buyer.encode(), orjson.dumps(purchase), elsewhere)])
    process = worker(settings, tmp_path)
    try:
        wait_until_scored([process], sent + 1)
        before = float(redis_scores(settings)[buyer]["total_spend"])
        misrouted = metric(process, 'clvstream_dead_lettered_total{reason="wrong_partition"}')
        counted = asyncio.run(redrive(settings, dry_run=True))
        first = asyncio.run(redrive(settings))
        wait_until_scored([process], sent + 2)
        after = float(redis_scores(settings)[buyer]["total_spend"])
        again = asyncio.run(redrive(settings))  # the same dead letter: applied already
        wait_until_scored([process], sent + 3)
        time.sleep(0.5)
        after_again = float(redis_scores(settings)[buyer]["total_spend"])
        dead = metric(process, "clvstream_dead_lettered_total")
    finally:
        assert process.stop() == 0
    assert misrouted == 1
    assert (counted.produced, dict(counted.by_reason)) == (0, {"wrong_partition": 1})
    assert (first.produced, again.produced) == (1, 1)
    assert round(after - before, 2) == 5555.0
    assert after_again == after  # the worker dropped the repeated event id
    assert dead == 1  # the redriven copies were not dead-lettered again
