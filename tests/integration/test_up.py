"""The README's main job, `clvstream up`, on a machine with nothing configured."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from streams.devstack import free_port


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
