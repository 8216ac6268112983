"""docker-compose.yml: valid Compose, and the production stack the service needs.

The file is validated against the Compose Specification JSON Schema vendored in
tests/data/compose-spec.json (Apache-2.0, from github.com/compose-spec/compose-spec;
provenance in tests/data/README.md), so no Docker engine or network is needed. The
behavioural checks cover what the schema cannot: a KRaft broker reachable by service
name, healthchecks, start order, and a worker that can be scaled out.
"""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import jsonschema
import pytest
import yaml

from models.emitted import Stream
from streams.topics import TopicNames

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SCHEMA_FILE = ROOT / "tests" / "data" / "compose-spec.json"


@pytest.fixture(scope="module")
def compose() -> dict:
    with COMPOSE_FILE.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema)


def _errors(validator, document) -> list[str]:
    return [
        f"{'/'.join(map(str, error.absolute_path)) or '<root>'}: {error.message}"
        for error in validator.iter_errors(document)
    ]


def _environment(service: dict) -> dict[str, str]:
    """A service's environment as a dict, whichever of the two Compose forms it uses."""
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def _listeners(value: str) -> dict[str, tuple[str, int]]:
    """`NAME://host:port,...` (Kafka listener syntax) as {NAME: (host, port)}."""
    listeners = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        name, address = item.split("://", 1)
        host, port = address.rsplit(":", 1)
        listeners[name] = (host, int(port))
    return listeners


def _published_ports(service: dict) -> list[str]:
    """Host ports a service publishes (a fixed one stops a second replica from starting)."""
    published = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            if port.get("published") not in (None, ""):
                published.append(str(port["published"]))
        elif ":" in str(port).split("/")[0]:  # HOST:CONTAINER or IP:HOST:CONTAINER
            published.append(str(port))
    return published


# --- the schema --------------------------------------------------------------


def test_compose_file_is_valid_against_the_compose_specification(compose, validator):
    assert _errors(validator, compose) == []


class _UniqueKeyLoader(yaml.SafeLoader):
    """Docker Compose's YAML parser (Go's yaml.v3) refuses a key repeated in one
    mapping ("mapping key ... already defined"); PyYAML keeps the last one silently."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"mapping key {key!r} already defined at line {seen[key]}",
                    key_node.start_mark,
                )  # fmt: skip
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def test_compose_file_repeats_no_key_in_a_mapping():
    """`docker compose up` fails on a repeated key before it starts anything."""
    with COMPOSE_FILE.open(encoding="utf-8") as handle:
        yaml.load(handle, Loader=_UniqueKeyLoader)


def test_the_unique_key_loader_finds_a_repeated_key():
    with pytest.raises(yaml.constructor.ConstructorError, match="already defined at line 1"):
        yaml.load("a: 1\nb: {c: 2}\na: 3\n", Loader=_UniqueKeyLoader)


# Each sets one value (by its path in the document) to something Compose rejects.
MUTATIONS = {
    "healthcheck-interval-not-a-string": (("services", "kafka", "healthcheck", "interval"), 10),
    "healthcheck-retries-a-list": (("services", "redis", "healthcheck", "retries"), ["ten"]),
    "healthcheck-unknown-key": (("services", "kafka", "healthcheck", "every"), "10s"),
    "depends-on-unknown-condition": (
        ("services", "worker", "depends_on", "kafka", "condition"),
        "service_ready",
    ),
    "misspelt-service-key": (("services", "worker", "enviroment"), {"CLVSTREAM_PARTITIONS": "8"}),
    "environment-a-string": (("services", "worker", "environment"), "CLVSTREAM_PARTITIONS=8"),
    "bad-service-name": (("services", "score worker"), {"image": "clvstream-worker"}),
    "unknown-top-level-key": (("service",), {}),
}


@pytest.mark.parametrize(("path", "value"), MUTATIONS.values(), ids=MUTATIONS.keys())
def test_schema_rejects_broken_copies(compose, validator, path, value):
    broken = copy.deepcopy(compose)
    parent = broken
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    assert _errors(validator, broken), f"the schema accepted {'.'.join(path)} = {value!r}"
    assert _errors(validator, compose) == []  # the original is untouched


# --- the stack ---------------------------------------------------------------


def test_services_are_kafka_redis_and_worker(compose):
    services = compose["services"]
    assert {"kafka", "redis", "worker"} <= set(services)
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", services["kafka"]["image"])
    assert services["redis"]["image"].startswith("redis:")
    assert not services["redis"]["image"].endswith(":latest")
    assert services["worker"]["build"]["context"] == "."


@pytest.mark.parametrize("name", ["kafka", "redis"])
def test_backing_services_have_healthchecks(compose, name):
    healthcheck = compose["services"][name].get("healthcheck")
    assert healthcheck, f"{name} has no healthcheck"
    assert not healthcheck.get("disable", False)
    assert healthcheck["test"] not in ("NONE", ["NONE"], [])


def test_worker_starts_after_kafka_and_redis_are_healthy(compose):
    depends_on = compose["services"]["worker"]["depends_on"]
    assert isinstance(depends_on, dict), "the short list form only waits for 'started'"
    for name in ("kafka", "redis"):
        assert depends_on[name]["condition"] == "service_healthy"


def test_worker_can_be_scaled_out(compose):
    worker = compose["services"]["worker"]
    assert "container_name" not in worker
    assert "hostname" not in worker
    assert _published_ports(worker) == []
    # A shared volume would make replicas fight over the same Faust table store.
    assert "volumes" not in worker


def test_kafka_is_a_single_kraft_node_reachable_by_service_name(compose):
    env = _environment(compose["services"]["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "KAFKA_ZOOKEEPER_CONNECT" not in env
    listeners = _listeners(env["KAFKA_LISTENERS"])
    advertised = _listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(listeners) <= set(protocols)
    assert set(advertised) <= set(listeners)
    # Controller quorum: this node, at the controller listener's port.
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in listeners and controller not in advertised
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == (
        f"{env['KAFKA_NODE_ID']}@kafka:{listeners[controller][1]}"
    )
    # Brokers talk to each other, and other containers to the broker, by service name.
    internal = env["KAFKA_INTER_BROKER_LISTENER_NAME"]
    assert advertised[internal] == ("kafka", listeners[internal][1])
    # One broker: internal topics must not ask for more replicas than there are.
    for key in (
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
    ):
        assert env[key] == "1", key


def test_worker_environment_points_at_the_services(compose):
    services = compose["services"]
    env = _environment(services["worker"])
    kafka_env = _environment(services["kafka"])

    kafka_url = urlsplit(env["CLVSTREAM_KAFKA_URL"])
    assert kafka_url.scheme == "kafka"
    assert kafka_url.hostname in services
    advertised = _listeners(kafka_env["KAFKA_ADVERTISED_LISTENERS"]).values()
    assert (kafka_url.hostname, kafka_url.port) in advertised
    assert env["CLVSTREAM_KAFKA_URL"] == "kafka://kafka:9092"

    redis_url = urlsplit(env["CLVSTREAM_REDIS_URL"])
    assert (redis_url.scheme, redis_url.hostname, redis_url.port) == ("redis", "redis", 6379)
    assert redis_url.hostname in services
    assert env["CLVSTREAM_REDIS_URL"] == "redis://redis:6379/0"

    assert env["CLVSTREAM_TOPIC_PREFIX"] == "clv."
    # A topic created without a partition count gets as many partitions as the
    # worker's, so co-partitioned topics (inputs, outputs, changelog) stay so.
    assert int(env["CLVSTREAM_PARTITIONS"]) >= 1
    assert kafka_env["KAFKA_NUM_PARTITIONS"] == env["CLVSTREAM_PARTITIONS"]


def test_only_the_worker_creates_the_topics(compose):
    """The worker creates its topics with their partitions and `cleanup.policy=compact`
    (`ensure_topics`) and checks only their partition counts afterwards. A broker that
    creates topics on a first metadata request (a consumer of the scores started before
    any worker) would make them with `delete`: old states and scores silently gone."""
    env = _environment(compose["services"]["kafka"])
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    names = TopicNames(_environment(compose["services"]["worker"])["CLVSTREAM_TOPIC_PREFIX"])
    assert set(names.compacted) == {
        names.output(Stream.SCORES), names.changelog, names.value_fits
    }  # fmt: skip


# --- the worker image --------------------------------------------------------


def test_worker_image_runs_the_clvstream_worker_command():
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    instructions = [
        line.strip()
        for line in dockerfile.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert any(re.fullmatch(r"ARG PYTHON_VERSION=3\.11", line) for line in instructions)
    assert any(line.startswith("FROM python:${PYTHON_VERSION}-slim") for line in instructions)
    assert "pip install ." in dockerfile
    [entrypoint] = [line for line in instructions if line.startswith("ENTRYPOINT ")]
    [command] = [line for line in instructions if line.startswith("CMD ")]
    assert json.loads(entrypoint.removeprefix("ENTRYPOINT ")) == ["clvstream"]
    assert json.loads(command.removeprefix("CMD ")) == ["worker"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "scripts"
    ]
    assert "clvstream" in scripts


def test_build_context_leaves_out_local_state():
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", "out", ".git"} <= ignored
    assert "README.md" not in ignored  # pyproject.toml's `readme`: `pip install .` needs it
