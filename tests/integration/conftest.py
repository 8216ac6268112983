"""Integration fixtures: a real Kafka-protocol broker and Redis-protocol server.

`CLVSTREAM_KAFKA_URL` / `CLVSTREAM_REDIS_URL` point the tests at servers that are
already running (e.g. docker-compose); whatever is not set comes from one embedded
`DevStack` (Tansu + Valkey) started for the session and stopped at its end. Every
test in this directory carries the `integration` marker.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from streams.devstack import DevStack, LocalStack

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test collected below this directory as `integration`."""
    for item in items:
        if item.path.is_relative_to(HERE):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    """The servers of the session: configured by the environment, else embedded."""
    kafka_url = os.environ.get("CLVSTREAM_KAFKA_URL")
    redis_url = os.environ.get("CLVSTREAM_REDIS_URL")
    if kafka_url and redis_url:
        yield LocalStack(kafka_url=kafka_url, redis_url=redis_url)
        return
    with DevStack() as stack:
        yield LocalStack(
            kafka_url=kafka_url or stack.kafka_url, redis_url=redis_url or stack.redis_url
        )


@pytest.fixture(scope="session")
def kafka_url(local_stack: LocalStack) -> str:
    return local_stack.kafka_url


@pytest.fixture(scope="session")
def redis_url(local_stack: LocalStack) -> str:
    return local_stack.redis_url


@pytest.fixture
def topic_names(request: pytest.FixtureRequest) -> Callable[..., list[str]]:
    """`topic_names("events", "scores")`: fresh topic names, unique to this test and call."""
    test = re.sub(r"[^a-zA-Z0-9_-]+", "-", request.node.name)[:80]

    def make(*bases: str) -> list[str]:
        suffix = uuid.uuid4().hex[:10]
        return [f"test.{test}.{base}.{suffix}" for base in bases or ("topic",)]

    return make


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test() -> Iterator[None]:
    """A failing test must not leave a worker process running."""
    from tests.integration.worker_harness import kill_leftover_workers

    yield
    kill_leftover_workers()
