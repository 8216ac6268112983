"""docker-compose.yml and Dockerfile against what runs in the containers: the settings
the worker reads, the programs the healthchecks call, the worker's stop deadline, the
Redis persistence the README relies on. Static: no Docker engine is needed."""

from __future__ import annotations

import base64
import os
import re
import shlex
from pathlib import Path

import pytest
import yaml

from streams.settings import STOP_GRACE_SECONDS, Settings, load_settings, unknown_variables
from streams.up import _STOP_MARGIN_SECONDS

ROOT = Path(__file__).resolve().parents[2]
DEPLOY_FILES = ("docker-compose.yml", "Dockerfile")

# Programs each image provides, from the images' own build files and documentation:
# apache/kafka unpacks the Kafka distribution into /opt/kafka on an Alpine JRE base
# (busybox sh) (github.com/apache/kafka, docker/jvm/Dockerfile); the official redis
# image installs redis-server and redis-cli, its Alpine and Debian variants have sh
# and grep; our image puts its virtualenv (python, the clvstream script) on PATH.
IMAGE_PROGRAMS = {
    "apache/kafka": {
        "sh",
        "/opt/kafka/bin/kafka-topics.sh",
        "/opt/kafka/bin/kafka-broker-api-versions.sh",
        "/opt/kafka/bin/kafka-metadata-quorum.sh",
    },
    "redis": {"sh", "grep", "redis-cli", "redis-server"},
    "clvstream-worker": {"sh", "python", "clvstream"},
}


@pytest.fixture(scope="module")
def services() -> dict:
    with (ROOT / "docker-compose.yml").open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)["services"]


def _environment(service: dict) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {key: "" if value is None else str(value) for key, value in environment.items()}


def _seconds(duration: str) -> float:
    """A Compose duration (`1m30s`, `30s`, `500ms`) in seconds."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(number) * units[unit] for number, unit in parts)


def _programs(test: list[str] | str) -> list[str]:
    """The programs a healthcheck runs: CMD's first word, or each command of a
    CMD-SHELL pipeline or list."""
    if isinstance(test, str):
        test = ["CMD-SHELL", test]
    kind, *rest = test
    if kind == "CMD":
        return [rest[0]]
    assert kind == "CMD-SHELL", kind
    commands = re.split(r"\|\||&&|[|;]", " ".join(rest))
    return ["sh", *(shlex.split(command)[0] for command in commands if command.strip())]


def test_every_clvstream_variable_the_deploy_files_name_is_a_setting():
    """A misspelt variable would be refused at start; one only in a comment misleads."""
    named = {
        name
        for file in DEPLOY_FILES
        for name in re.findall(r"CLVSTREAM_[A-Z0-9_]*[A-Z0-9]", (ROOT / file).read_text())
    }
    assert "CLVSTREAM_KAFKA_URL" in named
    assert unknown_variables(dict.fromkeys(named, "")) == []


def test_the_worker_environment_is_valid_settings(services, monkeypatch):
    for name in [name for name in os.environ if name.startswith("CLVSTREAM_")]:
        monkeypatch.delenv(name)
    for name, value in _environment(services["worker"]).items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.kafka_url and settings.redis_url is not None
    # reachable from other containers, and by the healthcheck on the loopback
    assert settings.web_host == "0.0.0.0"


@pytest.mark.parametrize("name", ["kafka", "redis", "worker"])
def test_healthchecks_run_programs_their_image_has(services, name):
    service = services[name]
    image = service["image"].rsplit(":", 1)[0]
    for program in _programs(service["healthcheck"]["test"]):
        assert program in IMAGE_PROGRAMS[image], f"{name}: {program} is not in {image}"


def test_the_worker_healthcheck_asks_its_own_api(services, monkeypatch):
    """Each replica's API is on the same port of its own network namespace (no port
    is published, so `--scale worker=N` binds no host port twice)."""
    worker = services["worker"]
    env = _environment(worker)
    [url] = re.findall(r"https?://[^'\"\s]+", " ".join(worker["healthcheck"]["test"]))
    assert url == f"http://127.0.0.1:{env['CLVSTREAM_WEB_PORT']}/health"
    assert '@app.page("/health")' in (ROOT / "agents" / "web.py").read_text()


def test_stop_grace_period_outlasts_the_worker_stop_deadline(services):
    """Docker SIGKILLs after `stop_grace_period`; the worker ends itself at its stop
    timeout plus STOP_GRACE_SECONDS, then the interpreter exits (the margin `clvstream
    up` also gives its worker)."""
    worker = services["worker"]
    timeout = float(
        _environment(worker).get(
            "CLVSTREAM_STOP_TIMEOUT_SECONDS", Settings.model_fields["stop_timeout_seconds"].default
        )
    )
    needed = timeout + STOP_GRACE_SECONDS + _STOP_MARGIN_SECONDS
    assert _seconds(worker["stop_grace_period"]) >= needed
    # and SIGTERM reaches it at once: Python as PID 1 ignores it until Faust's
    # handlers are installed; an init process passes it on and reaps the fit process
    assert worker.get("init") is True


def test_kafka_cluster_id_is_a_kafka_uuid(services):
    """`kafka-storage format` takes a base64url-encoded 16-byte id, without padding."""
    cluster_id = _environment(services["kafka"])["CLUSTER_ID"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{22}", cluster_id)
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_redis_keeps_its_writes_as_the_readme_says(services):
    """The worker's lost-write checks rely on Redis keeping a prefix of its writes
    (AOF), and writes refused when full rather than rows evicted (noeviction)."""
    redis = services["redis"]
    command = redis["command"]
    options = dict(zip(command[1::2], command[2::2], strict=True))
    assert command[0] == "redis-server"
    assert options["--appendonly"] == "yes"
    assert options.get("--appendfsync", "everysec") in ("always", "everysec")
    assert options["--maxmemory-policy"] == "noeviction"
    assert any(str(volume).endswith(":/data") for volume in redis["volumes"])


def test_worker_image_installs_no_extras_and_runs_unprivileged():
    lines = [
        line.strip()
        for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    final_stage = lines[max(i for i, line in enumerate(lines) if line.startswith("FROM ")) :]
    [user] = [line.split()[1] for line in final_stage if line.startswith("USER ")]
    assert user not in ("root", "0")
    installs = [line for line in lines if "pip install" in line and "--upgrade pip" not in line]
    assert installs and all(re.search(r"pip install \.$", line) for line in installs), installs
