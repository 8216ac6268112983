"""`clvstream worker` and `clvstream up` (the embedded stack with a worker and a demo).

`up` starts what is not configured: a Tansu broker and a Valkey server on free ports
(`DevStack`), creates the topics, starts one worker (a child process, as in
production), replays a demo population (or a given events file) and reports progress
until Ctrl-C, then stops everything it started.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr

from models.errors import ClvError
from streams.devstack import DevStack, die_with_parent, free_port
from streams.kafka_admin import create_topics
from streams.settings import STOP_GRACE_SECONDS, Settings, redacted_url
from streams.topics import TopicNames

if TYPE_CHECKING:
    from streams.up_follow import BackgroundReplay


_STOP_MARGIN_SECONDS = 5.0  # past the worker's own exit, for the interpreter's shutdown
_WEB_PORT_ATTEMPTS = 3


class UpError(ClvError):
    """The local service did not come up."""


def ensure_topics(settings: Settings) -> None:
    """Create the service's topics that do not exist, then check that the inputs, the
    outputs and the changelog have `settings.partitions` partitions each: partition p
    of each holds the same customers (their events, outputs and state), and budgets
    are split by that number. A topic made earlier with another count is an error to
    fix before any event is read, not a surprise later."""
    names = TopicNames(settings.topic_prefix)
    counts = create_topics(
        settings.kafka_url or "", names.all, settings.partitions, names.compacted,
        security=settings.kafka.admin_options(),
    )  # fmt: skip
    aligned = (*names.inputs, *names.outputs, names.changelog)  # value-fits: partition 0 only
    wrong = {n: counts[n] for n in aligned if n in counts and counts[n] != settings.partitions}
    if wrong:
        listed = ", ".join(f"{name} has {n}" for name, n in sorted(wrong.items()))
        raise UpError(
            f"topics with another partition count than partitions = {settings.partitions} "
            f"(CLVSTREAM_PARTITIONS): {listed}. Partition p of every input, output and "
            "changelog topic holds the same customers, so all need the same count: set "
            "CLVSTREAM_PARTITIONS to theirs, or use another CLVSTREAM_TOPIC_PREFIX."
        )


def run_worker(settings: Settings, loglevel: str = "info") -> int:
    """Run one Faust worker in this process until SIGINT / SIGTERM."""
    import faust

    from streams.app import create_app

    ensure_topics(settings)
    app = create_app(settings)
    # Faust's own clients can hang on a broker that is gone, after the service's bounded
    # steps: the process then ends, losing nothing (every state survives a hard exit,
    # as it survives SIGKILL; the next start replays from the last checkpoint).
    limit = settings.stop_timeout_seconds + STOP_GRACE_SECONDS
    app.scoring_service.on_stopping = lambda: _exit_if_still_running_after(limit)
    worker = faust.Worker(app, loglevel=loglevel, quiet=True)
    worker.execute_from_commandline()
    return 0


def _exit_if_still_running_after(seconds: float) -> None:
    def exit_now() -> None:
        logging.getLogger(__name__).error(
            "the worker had not stopped %.0f s after it was asked to: exiting now", seconds
        )
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, exit_now)
    timer.daemon = True  # a process that stops in time exits without waiting for it
    timer.start()


@dataclass
class WorkerProcess:
    """A worker started as a child process, with its API address, its log and how long
    its stop may take (the worker's own stop limit and a margin)."""

    process: subprocess.Popen
    api: str
    log_path: Path | None = None
    stop_seconds: float = 30.0

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, dict | str]:
        try:
            with urllib.request.urlopen(self.api + path, timeout=timeout) as response:
                body = response.read().decode()
                status = response.status
        except urllib.error.HTTPError as error:
            body, status = error.read().decode(), error.code
        try:
            return status, json.loads(body)
        except json.JSONDecodeError:
            return status, body

    def wait_ready(self, timeout: float = 60.0, partitions: int = 1) -> None:
        """Wait until the worker has restored and holds `partitions` partitions."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise UpError(
                    f"the worker exited with code {self.process.returncode}; "
                    f"from its log:\n{self.log_tail()}"
                )
            try:
                _, body = self.get("/health")
                if isinstance(body, dict) and len(body.get("partitions") or ()) >= partitions:
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise UpError(f"the worker did not report assigned partitions within {timeout:.0f} s")

    def log_tail(self, lines: int = 12) -> str:
        """The worker's last errors in its log, or else the log's last lines."""
        if self.log_path is None:
            return "(no log)"
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError as error:
            return f"(no log: {error})"
        errors = [line for line in text if "[ERROR]" in line or "[CRITICAL]" in line]
        return "\n".join(errors[-5:] or text[-lines:])

    def stop(self, timeout: float | None = None) -> int:
        """SIGTERM, then SIGKILL once `timeout` (default: `stop_seconds`) has passed: a
        worker's stop ends by itself within its stop timeout and grace, so a kill
        before then would cut short a final checkpoint that was still on time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(self.stop_seconds if timeout is None else timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return self.process.returncode

    def kill(self) -> None:
        """SIGKILL (every state survives it: the next start replays from the last
        checkpoint)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()


_NESTED_SETTINGS = ("scoring", "kafka")


@dataclass(frozen=True)
class WorkerLaunch:
    """How a worker child process is started: its command line, environment and the
    address of its API (the host and port it binds)."""

    argv: list[str]
    env: dict[str, str]
    api: str


def worker_launch(
    settings: Settings,
    web_port: int | None = None,
    extra_env: dict | None = None,
    config_file: Path | None = None,
) -> WorkerLaunch:
    """The child's command and environment: `clvstream worker --config FILE` (the file
    `settings` were loaded from, if any), the environment of this process, and every
    plain setting decided here (broker, Redis, topics, web address, ...) as a
    `CLVSTREAM_*` variable, which comes before the file. The nested `scoring` and
    `kafka` sections come from where this process read them: the file and the
    environment. The web port: `web_port`, else the configured one (file or
    environment), else a free one."""
    if web_port is None:
        configured = "web_port" in settings.model_fields_set and settings.web_port
        web_port = settings.web_port if configured else free_port()
    env = dict(os.environ)
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if name in _NESTED_SETTINGS or value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        env[f"CLVSTREAM_{name.upper()}"] = str(value)
    env["CLVSTREAM_WEB_PORT"] = str(web_port)
    env.update(extra_env or {})
    argv = [sys.executable, "-m", "streams.cli", "worker"]
    if config_file is not None:
        path = str(Path(config_file).resolve())
        argv += ["--config", path]
        env["CLVSTREAM_CONFIG_FILE"] = path  # the same file, should the child look there
    return WorkerLaunch(argv, env, f"http://{_connect_host(settings.web_host)}:{web_port}")


def _connect_host(bind_host: str) -> str:
    """Where to reach a server bound to `bind_host` from this machine.

    >>> _connect_host("0.0.0.0"), _connect_host("::"), _connect_host("::1")
    ('127.0.0.1', '[::1]', '[::1]')
    """
    if bind_host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if bind_host == "::":
        return "[::1]"
    return f"[{bind_host}]" if ":" in bind_host else bind_host


def start_worker(
    settings: Settings,
    log_path: Path,
    web_port: int | None = None,
    extra_env: dict | None = None,
    config_file: Path | None = None,
) -> WorkerProcess:
    """Start `clvstream worker` as a child process (see `worker_launch`)."""
    launch = worker_launch(settings, web_port, extra_env, config_file)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        process = subprocess.Popen(
            launch.argv,
            env=launch.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=die_with_parent(signal.SIGTERM),  # a clean stop if we die
        )
    stop_seconds = settings.stop_timeout_seconds + STOP_GRACE_SECONDS + _STOP_MARGIN_SECONDS
    return WorkerProcess(process, launch.api, log_path, stop_seconds)


def start_ready_worker(
    settings: Settings,
    log_path: Path,
    config_file: Path | None = None,
    started: Callable[[WorkerProcess], None] = lambda worker: None,
) -> WorkerProcess:
    """`start_worker`, then wait until it is ready; `started` is told of each worker
    process as it starts (to be stopped, or killed, should `up` be interrupted). A web
    port picked free here can be taken by another process before the worker binds it:
    then a new port is tried (a configured port is not: that is a mistake to report)."""
    chosen_here = not ("web_port" in settings.model_fields_set and settings.web_port)
    for attempt in range(1, _WEB_PORT_ATTEMPTS + 1):
        log_start = log_path.stat().st_size if log_path.exists() else 0
        worker = start_worker(settings, log_path, config_file=config_file)
        started(worker)
        try:
            worker.wait_ready()
            return worker
        except UpError:
            worker.stop()
            if not (
                chosen_here and attempt < _WEB_PORT_ATTEMPTS and _port_taken(log_path, log_start)
            ):
                raise
            print("the worker's web port was taken meanwhile: trying another ...", flush=True)
        except BaseException:  # Ctrl-C while it starts: it is not ours to leave running
            worker.stop()
            raise
    raise AssertionError("unreachable")  # the last attempt returns or raises


def _port_taken(log_path: Path, since: int) -> bool:
    """Whether the log written after byte `since` says the web port was in use."""
    with open(log_path, "rb") as log:
        log.seek(since)
        return b"address already in use" in log.read()


def run_up(
    settings: Settings,
    events: Path | None,
    out_dir: Path,
    *,
    rate: float | None = None,
    exit_when_done: bool = False,
    demo_customers: int = 3000,
    demo_days: int = 540,
    config_file: Path | None = None,
) -> int:
    """`config_file`: the TOML file `settings` were loaded from; the worker reads it too."""
    if events is not None and not events.is_file():
        raise UpError(f"no events file {events}")
    stack = None
    worker = None
    replay = None
    interrupts = _Interrupts()  # SIGTERM stops what we started, as Ctrl-C does
    interrupts.install()
    try:
        redis = bool(settings.redis_url and settings.redis_url.get_secret_value())
        if not settings.kafka_url or not redis:
            needed = {"broker (Tansu)": not settings.kafka_url, "Redis (Valkey)": not redis}
            names = " and ".join(name for name, need in needed.items() if need)
            print(f"starting the embedded {names} ...", flush=True)
            stack = DevStack()
            stack.start(kafka=not settings.kafka_url, redis=not redis)
            print(f"  embedded servers: pids {', '.join(map(str, stack.pids))}", flush=True)
            settings = settings.model_copy(
                update={
                    "kafka_url": settings.kafka_url or stack.kafka_url,
                    "redis_url": settings.redis_url if redis else _secret(stack.redis_url),
                }
            )
        ensure_topics(settings)
        if events is None:
            events = _demo_events(out_dir, demo_customers, demo_days)
        print("starting the worker ...", flush=True)
        worker = start_ready_worker(
            settings, out_dir / "worker.log", config_file, started=interrupts.watch
        )
        _print_where(settings, worker, out_dir)
        from streams.up_follow import BackgroundReplay, follow

        replay = BackgroundReplay(events, settings, rate)
        replay.start()
        exited = stack.exited if stack is not None else list
        return follow(worker, replay, out_dir, exit_when_done, servers_exited=exited)
    except KeyboardInterrupt:
        if replay is not None:
            replay.stop()
            state = "replayed" if replay.done else "the replay did not stop in time; so far"
            print(f"\n{state} {replay.summary}", flush=True)
        return 130  # the shell's code for an interrupted command
    finally:
        interrupts.stopping = True
        try:
            _stop_all(replay, worker, stack)
        finally:
            interrupts.restore()


class _Interrupts:
    """The handler of Ctrl-C and SIGTERM while `up` runs: the first raises
    KeyboardInterrupt (a clean stop of everything); one during the stop kills the
    worker instead of waiting for its clean stop (nothing is lost: the next start
    replays from its last checkpoint)."""

    def __init__(self) -> None:
        self.stopping = False
        self.worker: WorkerProcess | None = None
        self._previous: dict[int, object] = {}

    def __call__(self, signum: int, frame: object) -> None:
        if not self.stopping:
            self.stopping = True
            raise KeyboardInterrupt
        # Only signals here: the main thread may be inside the worker's `wait` or a
        # `print`, which a handler must not enter again (a deadlock, or an exception).
        if self.worker is not None and self.worker.process.poll() is None:
            os.write(sys.stdout.fileno(), b"\nstopping now: the worker is killed\n")
            self.worker.process.kill()  # reaped by the stop under way

    def watch(self, worker: WorkerProcess) -> None:
        self.worker = worker

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            self._previous[signum] = signal.signal(signum, self)

    def restore(self) -> None:
        """The handlers from before `install` (a Ctrl-C after the stop is the caller's:
        `clvstream` exits 130)."""
        for signum, handler in self._previous.items():
            if handler is not None:  # (None: a handler not set from Python, left as is)
                signal.signal(signum, handler)


def _stop_all(
    replay: BackgroundReplay | None, worker: WorkerProcess | None, stack: DevStack | None
) -> None:
    """Stop the replay (before its broker), the worker, then the embedded servers."""
    if replay is not None:
        replay.stop()
    if worker is not None:
        print("stopping the worker ...", flush=True)
        worker.stop()
    if stack is not None:
        stack.stop()


def _secret(url: str) -> SecretStr:
    return SecretStr(url)


def _demo_events(out_dir: Path, customers: int, days: int) -> Path:
    from models.simulation import SimulationConfig
    from streams.simulate import write_simulation

    path = out_dir / f"demo-{customers}x{days}.jsonl"
    if not path.exists():
        print(f"simulating {customers:,} customers over {days} days -> {path}", flush=True)
        config = SimulationConfig(customers=customers, days=days, seed=1)
        write_simulation(config, path, out_dir / f"demo-{customers}x{days}-truth.csv")
    return path


def _print_where(settings: Settings, worker: WorkerProcess, out_dir: Path) -> None:
    names = TopicNames(settings.topic_prefix)
    redis_url = redacted_url(settings.redis_url.get_secret_value() if settings.redis_url else "")
    prefix = settings.redis_prefix
    print(
        f"\nclvstream is running\n"
        f"  API      {worker.api}/customers/<id>  {worker.api}/segments  "
        f"{worker.api}/programmes  {worker.api}/health  {worker.api}/metrics\n"
        f"           {worker.api}/segments/lifecycle/at_risk?limit=10"
        f"&fields=churn_probability,top_needs\n"
        f"  Redis    {redis_url}  keys {prefix}customer:<id>, "
        f"{prefix}lifecycle:<segment>, {prefix}tier:<tier> (sorted by CLV), "
        f"{prefix}segment-clv\n"
        f"  Kafka    {settings.kafka_url}  in: {', '.join(names.inputs)}\n"
        f"           out: {', '.join(names.outputs)}\n"
        f"  worker   pid {worker.process.pid}, log {out_dir / 'worker.log'}\n",
        flush=True,
    )
