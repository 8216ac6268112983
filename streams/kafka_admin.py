"""Kafka admin calls with the service's security options: is a broker there, create
the service's topics, count their partitions (kafka-python's admin client, which works
against Tansu as against Apache Kafka; its consumer-group join does not, see
`streams.devstack`).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from models.errors import ClvError


class KafkaAdminError(ClvError):
    """The broker could not be reached or did not do what was asked."""


def bootstrap_servers(kafka_url: str) -> str:
    """The `host:port[,host:port]` list Kafka clients want, from a Faust-style broker URL.

    >>> bootstrap_servers("kafka://127.0.0.1:9092")
    '127.0.0.1:9092'
    >>> bootstrap_servers("kafka://a:1;kafka://b:2")
    'a:1,b:2'
    >>> bootstrap_servers("a:1,b:2")
    'a:1,b:2'
    """
    hosts = [part.strip() for part in kafka_url.replace(";", ",").split(",") if part.strip()]
    return ",".join(host.split("://", 1)[-1].rstrip("/") for host in hosts)


def _admin_client(
    kafka_url: str, timeout: float, security: Mapping[str, Any] | None = None
) -> KafkaAdminClient:
    """A kafka-python admin client whose requests and bootstrap give up after `timeout`;
    `security`: kafka-python's security options (`KafkaSecurity.admin_options()`)."""
    wanted = {
        **(security or {}),
        "bootstrap_servers": bootstrap_servers(kafka_url),
        "client_id": "clvstream-devstack",
        "request_timeout_ms": int(timeout * 1000),
        "bootstrap_timeout_ms": int(timeout * 1000),  # kafka-python >= 3 only
    }
    known = KafkaAdminClient.DEFAULT_CONFIG
    unknown = sorted(key for key in security or {} if key not in known)
    if unknown:  # never connect without the security asked for
        raise KafkaAdminError(f"kafka-python does not know the options {', '.join(unknown)}")
    return KafkaAdminClient(**{key: value for key, value in wanted.items() if key in known})


def kafka_ready(
    kafka_url: str, timeout: float = 2.0, security: Mapping[str, Any] | None = None
) -> bool:
    """True when the broker accepts a connection and answers a metadata request
    (`security`: as for `create_topics`)."""
    first = bootstrap_servers(kafka_url).split(",")[0]
    host, _, port = first.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
        admin = _admin_client(kafka_url, timeout, security)
    except (OSError, KafkaError):
        return False
    try:
        return bool(admin.describe_cluster().get("brokers"))
    except KafkaError:
        return False
    finally:
        admin.close()


def create_topics(
    kafka_url: str,
    names: Iterable[str],
    partitions: int = 1,
    compacted: Iterable[str] = frozenset(),
    timeout: float = 10.0,
    security: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Create topics (replication 1); those in `compacted` get `cleanup.policy=compact`.
    Returns the partition count of each topic, as the broker then describes it.

    Topics that already exist are left as they are (with the partitions they have).
    One request per topic, so an existing topic never hides the result of another.
    `security`: kafka-python's security options (SASL / SSL),
    `KafkaSecurity.admin_options()`.
    """
    names, compact = list(names), set(compacted)
    with _connected(kafka_url, timeout, security) as admin:
        for name in names:
            configs = {"cleanup.policy": "compact"} if name in compact else {}
            topic = NewTopic(name, partitions, 1, topic_configs=configs)
            try:
                admin.create_topics([topic], timeout_ms=int(timeout * 1000))
            except TopicAlreadyExistsError:
                pass
            except KafkaError as error:
                raise KafkaAdminError(f"could not create topic {name!r}: {error}") from error
        return _partition_counts(admin, names)


@contextmanager
def _connected(
    kafka_url: str, timeout: float, security: Mapping[str, Any] | None
) -> Iterator[KafkaAdminClient]:
    try:
        admin = _admin_client(kafka_url, timeout, security)
    except KafkaError as error:
        raise KafkaAdminError(f"no Kafka broker at {kafka_url}: {error}") from error
    try:
        yield admin
    finally:
        admin.close()


def _partition_counts(admin: KafkaAdminClient, names: list[str]) -> dict[str, int]:
    try:
        described = admin.describe_topics(names)
    except KafkaError as error:
        raise KafkaAdminError(f"could not describe the topics: {error}") from error
    return {t["name"]: len(t["partitions"]) for t in described if not t.get("error_code")}
