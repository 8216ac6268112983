"""Running real workers against the test broker and Redis (helpers for the tests)."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
import uuid
from pathlib import Path

import orjson
import redis
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from agents.changelog import read_changelog
from models.simulation import SimulationConfig
from streams.kafka_admin import bootstrap_servers
from streams.partitioned import Job, Replay, Sinks
from streams.replay import replay_file
from streams.report.sources import read_to_end
from streams.settings import Settings, load_settings
from streams.simulate import write_simulation
from streams.topics import TopicNames
from streams.up import WorkerProcess, ensure_topics, start_worker


def fresh_settings(
    kafka_url: str,
    redis_url: str,
    partitions: int = 2,
    checkpoint_seconds: float = 0.5,
    **overrides: object,
) -> Settings:
    """Settings with topic names, consumer group and Redis keys of their own."""
    run = uuid.uuid4().hex[:10]
    settings = load_settings(
        kafka_url=kafka_url,
        redis_url=redis_url,
        topic_prefix=f"t{run}.",
        app_id=f"clv-{run}",
        redis_prefix=f"t{run}:",
        partitions=partitions,
        checkpoint_interval_seconds=checkpoint_seconds,
        **overrides,
    )
    ensure_topics(settings)
    return settings


def simulated_file(tmp: Path, customers: int, days: int, seed: int, **rates: float) -> Path:
    path = tmp / f"events-{customers}-{days}-{seed}.jsonl"
    write_simulation(SimulationConfig(customers=customers, days=days, seed=seed, **rates), path)
    return path


def replay(path: Path, settings: Settings) -> int:
    return asyncio.run(replay_file(path, settings, show_progress=False)).events


def produce(settings: Settings, records: list[tuple]) -> None:
    """Produce (topic, key, value[, partition]) records as they are, as a producer of
    ours would not (no partition: the producer's default partitioner chooses)."""

    async def send() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap_servers(settings.kafka_url))
        await producer.start()
        try:
            for topic, key, value, *partition in records:
                await producer.send_and_wait(
                    topic, value, key=key, partition=next(iter(partition), None)
                )
        finally:
            await producer.stop()

    asyncio.run(send())


STARTED: list[WorkerProcess] = []
"""Workers started by the running test; `kill_leftover_workers` ends any still alive."""


def worker(settings: Settings, tmp: Path, name: str = "worker") -> WorkerProcess:
    # Its temporary files in the test's folder: a worker killed by a test leaves them.
    process = start_worker(settings, tmp / f"{name}.log", extra_env={"TMPDIR": str(tmp)})
    STARTED.append(process)
    process.wait_ready(timeout=90)
    return process


def kill_leftover_workers() -> None:
    while STARTED:
        process = STARTED.pop().process
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def metric(process: WorkerProcess, name: str) -> float:
    """Sum of a metric's samples on the worker's /metrics page."""
    _, text = process.get("/metrics")
    total = 0.0
    for line in str(text).splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def wait_until_scored(processes: list[WorkerProcess], events: int, timeout: float = 180.0) -> None:
    """Until the workers have taken every event in, lag is 0 and Redis is written."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        healths = [p.get("/health")[1] for p in processes if p.process.poll() is None]
        taken = sum(
            metric(p, "clvstream_events_in_total") for p in processes if p.process.poll() is None
        )
        if (
            healths
            and taken >= events
            and all(isinstance(h, dict) for h in healths)
            and all(
                h["caught_up"] and not h["redis_pending"] and not h["redis_reading_back"]
                for h in healths
            )
        ):
            return
        time.sleep(0.5)
    raise AssertionError(f"not all scored within {timeout} s: {healths}")


def redis_scores(settings: Settings) -> dict[str, dict[str, str]]:
    client = redis.Redis.from_url(settings.redis_url.get_secret_value(), decode_responses=True)
    try:
        prefix = f"{settings.redis_prefix}customer:"
        keys = list(client.scan_iter(match=prefix + "*", count=1000))
        return {key.removeprefix(prefix): client.hgetall(key) for key in keys}
    finally:
        client.close()


def changelog_states(settings: Settings) -> dict[str, bytes]:
    """Every partition's customer states as of its last checkpoint, serialized."""

    async def read() -> dict[str, bytes]:
        names = TopicNames(settings.topic_prefix)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(settings.kafka_url), enable_auto_commit=False
        )
        await consumer.start()
        states: dict[str, bytes] = {}
        try:
            for partition in range(settings.partitions):
                tp = TopicPartition(names.changelog, partition)
                restored = await read_changelog(consumer, tp)
                states.update({c: s.to_bytes() for c, s in restored.states.items()})
        finally:
            await consumer.stop()
        return states

    return asyncio.run(read())


def topic_values(settings: Settings, topic: str, timeout: float = 30.0) -> list[dict]:
    """Every value on `topic` (all partitions) from the beginning to its current end."""

    async def read() -> list[dict]:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap_servers(settings.kafka_url), enable_auto_commit=False
        )
        await consumer.start()
        values: list[dict] = []

        def keep(_topic: str, _key: bytes | None, value: bytes | None) -> None:
            if value is not None:
                values.append(orjson.loads(value))

        try:
            await read_to_end(consumer, [topic], keep, timeout)
        finally:
            await consumer.stop()
        return values

    return asyncio.run(read())


def offline_replay(events: Path, settings: Settings, emitted: io.BytesIO | None = None) -> Replay:
    """An offline run of `events` cut as the stream is: the worker's partitions, and the
    clock left at the last event's watermark (no `finish`: `clvstream score` then
    advances each partition to the end of the as-of day, a time the worker has not
    reached). Its outputs go to `emitted`, if given."""
    partitions = settings.partitions
    job = Job(
        events_path=events, partitions=partitions, owned=tuple(range(partitions)),
        config=settings.scoring, until=None, as_of_day=None, final_refit=False,
        future_limit=time.time() + settings.scoring.max_future_seconds,
        partitioner=settings.partitioner,
    )  # fmt: skip
    offline = Replay(job, Sinks(emitted or io.BytesIO(), None, tagged=False))
    offline.run(lambda done, read: None)
    return offline
