"""The embedded dev stack: real Kafka-protocol traffic, real Redis commands, clean stops."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient

from streams import devstack, kafka_admin
from streams.devstack import DevStack, DevStackError, redis_ready
from streams.kafka_admin import bootstrap_servers, kafka_ready

MESSAGES = 1000
PARTITIONS = 4


async def produce_keyed(servers: str, topic: str) -> dict[bytes, set[int]]:
    """Send MESSAGES keyed messages; the partitions the broker put each key on."""
    producer = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, key=f"customer-{i % 37}".encode(), value=str(i).encode())
            for i in range(MESSAGES)
        ]
        sent = await asyncio.gather(*futures)
    finally:
        await producer.stop()
    placed: dict[bytes, set[int]] = defaultdict(set)
    for i, metadata in enumerate(sent):
        placed[f"customer-{i % 37}".encode()].add(metadata.partition)
    return placed


async def consume_all(servers: str, topic: str) -> tuple[list, int]:
    """Read until MESSAGES arrived (or 20 s) in a fresh group; records and high-watermarks."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=servers,
        group_id=f"test-{uuid.uuid4().hex}",
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
    )
    await consumer.start()
    records = []
    try:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while len(records) < MESSAGES and loop.time() < deadline:
            batches = await consumer.getmany(timeout_ms=500)
            records.extend(record for batch in batches.values() for record in batch)
        # A little longer: anything delivered twice would show up now.
        batches = await consumer.getmany(timeout_ms=300)
        records.extend(record for batch in batches.values() for record in batch)
        highwater = sum(
            consumer.highwater(TopicPartition(topic, p)) or 0 for p in range(PARTITIONS)
        )
    finally:
        await consumer.stop()
    return records, highwater


def test_keyed_messages_round_trip_through_a_fresh_consumer_group(kafka_url, topic_names):
    (topic,) = topic_names("keyed")
    kafka_admin.create_topics(kafka_url, [topic], partitions=PARTITIONS)
    servers = bootstrap_servers(kafka_url)

    placed = asyncio.run(produce_keyed(servers, topic))
    records, highwater = asyncio.run(consume_all(servers, topic))

    values = Counter(int(record.value) for record in records)
    assert sorted(values) == list(range(MESSAGES))
    assert set(values.values()) == {1}
    assert highwater == MESSAGES  # the fetch high-watermark counts what was produced
    consumed_on: dict[bytes, set[int]] = defaultdict(set)
    for record in records:
        consumed_on[record.key].add(record.partition)
    assert consumed_on == placed
    assert all(len(partitions) == 1 for partitions in placed.values())
    assert {record.partition for record in records} == set(range(PARTITIONS))
    for key in placed:  # each key's messages arrive in the order they were sent
        sent = [int(r.value) for r in records if r.key == key]
        assert sent == sorted(sent)


def test_create_topics_sets_partitions_and_tolerates_existing_topics(kafka_url, topic_names):
    plain, compacted = topic_names("plain", "compacted")
    counts = kafka_admin.create_topics(
        kafka_url, [plain, compacted], partitions=3, compacted={compacted}
    )
    assert counts == {plain: 3, compacted: 3}
    again = kafka_admin.create_topics(kafka_url, [plain], partitions=5)  # there: no error
    assert again == {plain: 3}  # left as it was

    admin = KafkaAdminClient(bootstrap_servers=bootstrap_servers(kafka_url))
    try:
        described = {topic["name"]: topic for topic in admin.describe_topics([plain, compacted])}
    finally:
        admin.close()
    assert {name: len(topic["partitions"]) for name, topic in described.items()} == {
        plain: 3,
        compacted: 3,
    }


def test_a_worker_refuses_topics_whose_partition_counts_differ_from_its_setting(
    kafka_url, redis_url
):
    """Partition p of every input, output and changelog topic holds the same customers:
    a topic made earlier with another count is refused before any event is read."""
    from streams.topics import TopicNames
    from streams.up import UpError, ensure_topics
    from tests.integration.worker_harness import fresh_settings

    settings = fresh_settings(kafka_url, redis_url, partitions=2)  # creates them: 2 each
    ensure_topics(settings)  # the same count again: fine
    names = TopicNames(settings.topic_prefix)
    wider = settings.model_copy(update={"partitions": 3})
    with pytest.raises(UpError) as refused:
        ensure_topics(wider)
    message = str(refused.value)
    assert "partitions = 3" in message and f"{names.changelog} has 2" in message
    assert all(f"{name} has 2" in message for name in (*names.inputs, *names.outputs))
    assert names.value_fits not in message  # read on partition 0 only: any count will do


def test_redis_set_get_and_pipeline_round_trip(redis_url):
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    prefix = f"test:{uuid.uuid4().hex}:"
    try:
        assert client.ping()
        assert client.set(prefix + "one", "1")
        assert client.get(prefix + "one") == b"1"

        with client.pipeline(transaction=True) as pipe:
            pipe.hset(prefix + "score", mapping={"clv": "12.5", "segment": "active/top_5"})
            pipe.incr(prefix + "counter")
            pipe.incr(prefix + "counter")
            pipe.hgetall(prefix + "score")
            results = pipe.execute()
        assert results == [2, 1, 2, {b"clv": b"12.5", b"segment": b"active/top_5"}]

        with client.pipeline(transaction=False) as pipe:
            for i in range(100):
                pipe.set(f"{prefix}bulk:{i}", i)
            pipe.execute()
        assert client.mget([f"{prefix}bulk:{i}" for i in range(100)]) == [
            str(i).encode() for i in range(100)
        ]
    finally:
        keys = list(client.scan_iter(match=prefix + "*", count=500))
        if keys:
            client.delete(*keys)
        client.close()


def _gone(pid: int) -> bool:
    """True when neither the process nor any member of its process group exists."""
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_stop_leaves_no_process_alive():
    # the directory of a stack whose process was SIGKILLed: swept by the next start
    stale = Path(tempfile.mkdtemp(prefix="clvstream-devstack-"))
    (stale / "owner.pid").write_text("999999999")
    stack = DevStack()
    stack.start()
    pids = stack.pids
    workdir = stack.workdir
    assert not stale.exists()
    assert len(pids) == 2 and not any(_gone(pid) for pid in pids)
    assert kafka_ready(stack.kafka_url) and redis_ready(stack.redis_url)

    stack.stop()
    assert all(_gone(pid) for pid in pids)
    assert stack.pids == () and workdir is not None and not workdir.exists()
    stack.stop()  # idempotent
    with pytest.raises(DevStackError):
        _ = stack.kafka_url


def test_a_second_stack_gets_different_ports(kafka_url, redis_url):
    with DevStack() as first, DevStack() as second:
        urls = [kafka_url, redis_url, first.kafka_url, first.redis_url]
        urls += [second.kafka_url, second.redis_url]
        ports = [urlsplit(url).port for url in urls]
        assert len(set(ports)) == len(ports)
        assert kafka_ready(second.kafka_url) and redis_ready(second.redis_url)
        pids = first.pids + second.pids
    assert all(_gone(pid) for pid in pids)


def test_a_failed_start_reports_the_log_tail_and_leaves_nothing_running(monkeypatch):
    spawned: list[int] = []
    real_spawn = devstack._spawn

    def recording_spawn(*args, **kwargs):
        child = real_spawn(*args, **kwargs)
        spawned.append(child.pid)
        return child

    def broken_valkey(binary, port, workdir, host):
        return [sys.executable, "-c", f"print('cannot bind port {port}'); raise SystemExit(3)"]

    monkeypatch.setattr(devstack, "_spawn", recording_spawn)
    monkeypatch.setattr(devstack, "valkey_command", broken_valkey)
    stack = DevStack()
    with pytest.raises(DevStackError, match=r"(?s)valkey.*code 3.*cannot bind port"):
        stack.start()
    assert len(spawned) == 3  # a new port per attempt
    assert all(_gone(pid) for pid in spawned)
    assert stack.pids == () and stack.workdir is None


def test_the_servers_die_with_a_killed_owner(tmp_path):
    script = (
        "from streams.devstack import DevStack\n"
        "import sys, time\n"
        "stack = DevStack(); stack.start()\n"
        "print(*stack.pids, flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "TMPDIR": str(tmp_path)}  # a killed owner's work dir stays there
    owner = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env
    )
    pids = [int(pid) for pid in owner.stdout.readline().split()]
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    owner.send_signal(signal.SIGKILL)  # no atexit, no finally
    owner.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in pids)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return not stat.read().split(") ", 1)[1].startswith("Z")
    except FileNotFoundError:
        return False
