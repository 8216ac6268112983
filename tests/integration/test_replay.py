"""`clvstream replay` puts every customer's events where the producers' partitioner
(`input_partitioner`) puts them, so the worker's partition check accepts them."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import AIOKafkaConsumer

from streams.kafka_admin import bootstrap_servers
from streams.replay import replay_file
from streams.topics import TopicNames, partition_of
from tests.integration.worker_harness import fresh_settings, replay, simulated_file


async def _placed(servers: str, topics: tuple[str, ...], expected: int) -> list[tuple]:
    """(topic, partition, key) of every record of `topics`."""
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=servers, auto_offset_reset="earliest")
    await consumer.start()
    placed: list[tuple] = []
    try:
        deadline = asyncio.get_running_loop().time() + 30
        while len(placed) < expected and asyncio.get_running_loop().time() < deadline:
            for tp, batch in (await consumer.getmany(timeout_ms=300)).items():
                placed.extend((tp.topic, tp.partition, record.key) for record in batch)
    finally:
        await consumer.stop()
    return placed


@pytest.mark.parametrize("partitioner", ["murmur2", "crc32"])
def test_replay_puts_each_customer_where_the_configured_partitioner_does(
    kafka_url, redis_url, tmp_path, partitioner
):
    settings = fresh_settings(kafka_url, redis_url, partitions=3, input_partitioner=partitioner)
    sent = replay(simulated_file(tmp_path, 60, 60, seed=2), settings)
    inputs = TopicNames(settings.topic_prefix).inputs
    placed = asyncio.run(_placed(bootstrap_servers(settings.kafka_url), inputs, sent))
    assert len(placed) == sent > 100
    wrong = [
        (topic, partition, key)
        for topic, partition, key in placed
        if partition != partition_of(key.decode(), 3, partitioner)
    ]
    assert wrong == []
    assert {partition for _, partition, _ in placed} == {0, 1, 2}


def test_replay_counts_lines_it_cannot_route_and_still_sends_them(kafka_url, redis_url, tmp_path):
    settings = fresh_settings(kafka_url, redis_url, partitions=1)
    lines = simulated_file(tmp_path, 5, 30, seed=2).read_bytes().splitlines()
    bad = [b"{broken", b"[1, 2]", b'{"event_type": "transaction", "customer_id": 7}']
    path = tmp_path / "with-bad-lines.jsonl"
    path.write_bytes(b"\n".join([*lines[:3], *bad, *lines[3:]]) + b"\n")
    summary = asyncio.run(replay_file(path, settings, show_progress=False))
    assert (summary.events, summary.unreadable) == (len(lines) + 3, 3)
    assert "3 of them not JSON objects with a customer id" in str(summary)
