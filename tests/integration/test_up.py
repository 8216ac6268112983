"""The README's main job, `clvstream up`, on a machine with nothing configured."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import streams.up as up_module
from streams.devstack import free_port
from streams.settings import load_settings
from streams.up import UpError, WorkerProcess, start_ready_worker
from tests.integration.worker_harness import fresh_settings


def test_up_starts_its_own_stack_scores_a_demo_and_stops_everything(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLVSTREAM_")}
    port = free_port()
    config = tmp_path / "clv.toml"  # read by the worker `up` starts, too
    config.write_text(
        f"web_port = {port}\n[scoring.segments]\nmin_customers_for_tiers = 10\n"
        'value_tiers = [["vip", 0.1], ["gold", 0.3]]\n'
    )
    command = [
        sys.executable, "-m", "streams.cli", "up", "--customers", "150", "--days", "120",
        "--out-dir", str(tmp_path), "--exit-when-done", "--config", str(config),
    ]  # fmt: skip
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert "starting the embedded broker (Tansu) and Redis (Valkey)" in out
    assert "clvstream is running" in out and "/customers/<id>" in out
    assert f"API      http://127.0.0.1:{port}/customers/<id>" in out  # where it binds
    assert "replayed " in out and "customers scored " in out
    assert "\nlifecycle " in out and "\nprogramme " in out  # the summary's tables
    segments = json.loads((tmp_path / "segments.json").read_text())  # and as JSON
    programmes = json.loads((tmp_path / "programmes.json").read_text())
    assert {p["programme_id"] for p in programmes["programmes"]} >= {"win_back", "save_offer"}
    scored = sum(s["customers"] for s in segments["lifecycle"].values())
    assert 100 <= scored <= 150  # a few simulated customers are erased
    assert sum(s["customers"] for s in segments["value_tier"].values()) == scored
    assert set(segments["value_tier"]) >= {"vip", "gold", "rest"}  # the file's tiers
    assert segments["value_tier"]["vip"]["customers"] > 0
    assert "stopping the worker" in out
    servers = out.split("embedded servers: pids ", 1)[1].split("\n", 1)[0].split(", ")
    worker = out.split("worker   pid ", 1)[1].split(",", 1)[0]
    pids = [int(pid) for pid in (*servers, worker)]
    assert len(pids) == 3
    for pid in pids:  # nothing it started is left running
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid), pid


def test_up_refuses_a_missing_events_file_before_starting_anything(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLVSTREAM_")}
    command = [sys.executable, "-m", "streams.cli", "up", "--events", str(tmp_path / "no.jsonl")]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode != 0 and "no events file" in run.stderr
    assert "starting" not in run.stdout


def _is_zombie(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(") ", 1)[1].startswith("Z")


def test_ctrl_c_mid_replay_stops_the_replay_first_and_a_second_one_kills_the_worker(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CLVSTREAM_")}
    env["TMPDIR"] = str(tmp_path)  # what the killed worker leaves stays in the test's folder
    command = [
        sys.executable, "-m", "streams.cli", "up", "--customers", "150", "--days", "120",
        "--rate", "50", "--out-dir", str(tmp_path),
    ]  # fmt: skip
    up = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(up.stdout), daemon=True)
    reader.start()
    try:
        _wait_for(lines, "replaying: ", up)  # the replay runs (at 50 events/s: for minutes)
        up.send_signal(signal.SIGINT)
        _wait_for(lines, "stopping the worker", up)
        up.send_signal(signal.SIGINT)  # while the worker's clean stop is under way
        assert up.wait(60) == 130
    finally:
        if up.poll() is None:
            up.kill()
    reader.join(10)
    out, err = "".join(lines), up.stderr.read()
    assert "Traceback" not in err, err[-3000:]
    assert "stopped before the end of the file" in out  # the replay stopped, and said so
    assert "stopping now: the worker is killed" in out
    servers = out.split("embedded servers: pids ", 1)[1].split("\n", 1)[0].split(", ")
    worker = out.split("worker   pid ", 1)[1].split(",", 1)[0]
    for pid in [int(pid) for pid in (*servers, worker)]:
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid), pid


def test_a_web_port_taken_before_the_worker_binds_it_is_replaced(
    kafka_url, redis_url, tmp_path, monkeypatch
):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    ports = iter([taken.getsockname()[1]])
    monkeypatch.setattr(up_module, "free_port", lambda: next(ports, None) or free_port())
    settings = fresh_settings(kafka_url, redis_url, partitions=1)
    try:
        worker = start_ready_worker(settings, tmp_path / "worker.log")
        try:
            assert worker.process.poll() is None
            assert not worker.api.endswith(f":{taken.getsockname()[1]}")
            status, health = worker.get("/health")
            assert status == 200 and health["partitions"]
        finally:
            assert worker.stop() == 0
    finally:
        taken.close()
    assert "address already in use" in (tmp_path / "worker.log").read_text()  # the first try


def test_a_configured_web_port_that_is_taken_is_reported_not_replaced(
    kafka_url, redis_url, tmp_path
):
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    settings = fresh_settings(kafka_url, redis_url, partitions=1, web_port=taken.getsockname()[1])
    try:
        with pytest.raises(UpError, match="address already in use"):
            start_ready_worker(settings, tmp_path / "worker.log")
    finally:
        taken.close()


def test_a_worker_stop_waits_for_the_workers_own_stop_limit_before_killing(tmp_path):
    slow_stop = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(1.5), sys.exit(0)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )

    def started(stop_seconds: float) -> WorkerProcess:
        process = subprocess.Popen([sys.executable, "-c", slow_stop], stdout=subprocess.PIPE)
        assert process.stdout.readline() == b"ready\n"
        return WorkerProcess(process, "http://127.0.0.1:1", None, stop_seconds)

    assert started(stop_seconds=10.0).stop() == 0  # its clean stop, 1.5 s, is waited for
    assert started(stop_seconds=0.3).stop() == -signal.SIGKILL  # past its limit: killed


def _wait_for(lines: list[str], text: str, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not any(text in line for line in lines):
        assert process.poll() is None, "".join(lines)[-3000:]
        assert time.monotonic() < deadline, f"no {text!r} in:\n" + "".join(lines)[-3000:]
        time.sleep(0.1)


def test_a_second_ctrl_c_while_the_worker_starts_kills_it(tmp_path, monkeypatch):
    """(No broker: the worker is a stand-in that takes 12 s to stop, as one mid-restore.)"""
    slow_stop = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (time.sleep(12), exit(0)))\n"
        "print('ready', flush=True)\n"
        "time.sleep(300)\n"
    )
    workers: list[WorkerProcess] = []

    def start_slow_worker(settings, log_path, web_port=None, extra_env=None, config_file=None):
        process = subprocess.Popen([sys.executable, "-c", slow_stop], stdout=subprocess.PIPE)
        assert process.stdout.readline() == b"ready\n"
        workers.append(WorkerProcess(process, f"http://127.0.0.1:{free_port()}", log_path, 20.0))
        return workers[-1]

    monkeypatch.setattr(up_module, "start_worker", start_slow_worker)
    monkeypatch.setattr(up_module, "ensure_topics", lambda settings: None)
    settings = load_settings(kafka_url="kafka://127.0.0.1:1", redis_url="redis://127.0.0.1:1/0")
    events = tmp_path / "events.jsonl"
    events.write_text("{}\n")

    def ctrl_c_twice() -> None:
        time.sleep(1.5)  # waiting for the worker to be ready
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(1.5)  # waiting for its clean stop
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=ctrl_c_twice, daemon=True).start()
    started = time.monotonic()
    assert up_module.run_up(settings, events, tmp_path) == 130
    assert time.monotonic() - started < 8  # not the 12 s of its clean stop
    assert len(workers) == 1 and workers[0].process.returncode == -signal.SIGKILL
