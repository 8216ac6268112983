"""`clvstream redrive`: a valid event a producer misrouted is dead-lettered; once
redriven it reaches its customer's partition and score, and only once."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

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


def test_an_event_that_fails_again_is_redriven_once_per_run_not_once_per_dead_letter(
    kafka_url, redis_url, tmp_path
):
    """A redriven event whose cause is not fixed yet is dead-lettered again (another
    origin, so another dead-letter id): the next redrive must still send it once, not
    once per dead letter of it (1, 2, 4, ... copies per run)."""
    settings = fresh_settings(kafka_url, redis_url, partitions=1)
    now = datetime.now(UTC).replace(microsecond=0).isoformat()
    in_sek = {
        "event_type": "transaction",
        "event_id": "sek-1",
        "customer_id": "c1",
        "occurred_at": now,
        "amount": 10.0,
        "currency": "SEK",
    }  # fmt: skip  (no exchange rate configured)
    topic = TopicNames(settings.topic_prefix).for_event_type("transaction")
    in_usd = {**in_sek, "event_id": "usd-1", "currency": "USD"}  # (starts the clock)
    produce(settings, [(topic, b"c1", orjson.dumps(e)) for e in (in_usd, in_sek)])
    process = worker(settings, tmp_path)
    reasons = ["unsupported_currency"]
    try:
        wait_until_scored([process], 2)
        runs = []
        for taken in (3, 4, 5):
            runs.append(asyncio.run(redrive(settings, reasons)))
            wait_until_scored([process], taken)
        dead = metric(process, "clvstream_dead_lettered_total")
    finally:
        assert process.stop() == 0
    assert [run.produced for run in runs] == [1, 1, 1]
    assert [run.repeated for run in runs] == [0, 1, 2]
    assert dead == 4  # the event, then once per redrive


def test_dead_letters_the_broker_did_not_take_are_not_counted_as_produced(tmp_path):
    """The broker goes away during a redrive: what it did not take is reported (an
    error naming the count), not counted as produced (it said "2 produced")."""
    import os
    import threading

    from models.errors import ClvError
    from streams.devstack import DevStack
    from streams.settings import load_settings
    from streams.up import ensure_topics

    stack = DevStack()
    stack.start(kafka=True, redis=False)
    try:
        settings = load_settings(kafka_url=stack.kafka_url, topic_prefix="gone.", partitions=1)
        ensure_topics(settings)
        letters = tmp_path / "dead.fifo"
        os.mkfifo(letters)
        outcome: list[object] = []

        def run() -> None:
            try:
                outcome.append(asyncio.run(redrive(settings, ["late"], letters)))
            except ClvError as error:
                outcome.append(error)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        with open(letters, "wb") as fifo:  # (read once closed: the producer has started)
            for n in (1, 2):
                event = {"event_type": "transaction", "event_id": f"e{n}", "customer_id": "c1"}
                letter = {"event_type": "dead_letter", "event_id": f"d{n}", "reason": "late",
                          "raw": orjson.dumps(event).decode()}  # fmt: skip
                fifo.write(orjson.dumps(letter) + b"\n")
            time.sleep(3)
            stack.stop()  # the broker is gone before the redrive sends
    finally:
        stack.stop()
    thread.join(timeout=120)
    assert not thread.is_alive()
    (result,) = outcome
    assert isinstance(result, ClvError), f"claims success: {result}"
    assert "0 produced" in str(result) and "2 NOT taken by the broker" in str(result)
