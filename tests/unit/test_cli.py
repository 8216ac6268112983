"""The command line: how `up` starts its worker, how bad input files are reported."""

from __future__ import annotations

import asyncio
import codecs
import os
from pathlib import Path
from typing import ClassVar

import orjson
import pytest
from pydantic import SecretStr

from streams import cli as cli_module
from streams import replay as replay_module
from streams import up as up_module
from streams.cli import build_parser, main
from streams.settings import Settings, load_settings
from streams.up import worker_launch

CONFIG = """\
web_host = "{host}"
web_port = 7123
max_rescores_per_tick = 77
live_clock_idle_seconds = 30
topic_prefix = "shop."
[scoring]
churn_window_days = 45
horizon_days = 200
[kafka]
security_protocol = "SASL_PLAINTEXT"
sasl_mechanism = "PLAIN"
sasl_plain_username = "svc"
"""


def child_settings(argv: list[str], env: dict[str, str], monkeypatch) -> Settings:
    """The settings `clvstream worker` loads with this command line and environment."""
    for name in list(os.environ):
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert argv[1:4] == ["-m", "streams.cli", "worker"]
    args = build_parser().parse_args(argv[3:])
    return load_settings(args.config)


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_up_starts_its_worker_with_the_settings_of_its_config_file(tmp_path, monkeypatch, host):
    config = tmp_path / "clv.toml"
    config.write_text(CONFIG.format(host=host))
    monkeypatch.setenv("CLVSTREAM_SCORING__HORIZON_DAYS", "300")  # the environment wins
    monkeypatch.setenv("CLVSTREAM_KAFKA__SASL_PLAIN_PASSWORD", "pw")  # (SASL needs it)
    parent = load_settings(config).model_copy(  # as `up` has it with an embedded stack
        update={"kafka_url": "kafka://127.0.0.1:9", "redis_url": SecretStr("redis://h:1/0")}
    )
    launch = worker_launch(parent, config_file=config)
    child = child_settings(launch.argv, launch.env, monkeypatch)
    assert child.model_dump() == parent.model_dump()
    assert (child.scoring.churn_window_days, child.scoring.horizon_days) == (45, 300)
    assert child.kafka.sasl_plain_username == "svc" and child.max_rescores_per_tick == 77
    assert child.kafka.sasl_plain_password.get_secret_value() == "pw"
    assert child.kafka_url == "kafka://127.0.0.1:9"
    assert child.redis_url.get_secret_value() == "redis://h:1/0"
    # The API address printed and polled is where the child binds.
    assert (child.web_host, child.web_port) == (host, 7123)
    assert launch.api == "http://127.0.0.1:7123"


def test_up_without_a_configured_port_gives_its_worker_a_free_one(tmp_path, monkeypatch):
    monkeypatch.setattr(up_module, "free_port", lambda: 45678)
    parent = load_settings(topic_prefix="t.", partitions=3, checkpoint_interval_seconds=0.5)
    launch = worker_launch(parent, extra_env={"CLVSTREAM_MAX_BATCH": "10"})
    assert "--config" not in launch.argv
    child = child_settings(launch.argv, launch.env, monkeypatch)
    assert (child.topic_prefix, child.partitions, child.checkpoint_interval_seconds) == (
        "t.", 3, 0.5,
    )  # fmt: skip
    assert (child.web_port, child.max_batch) == (45678, 10)
    assert launch.api == f"http://{child.web_host}:45678"


def test_the_up_command_hands_its_config_file_to_the_worker(tmp_path, monkeypatch):
    config = tmp_path / "clv.toml"
    config.write_text("[scoring]\nchurn_window_days = 45\n")
    seen = {}

    def run_up(settings, events, out_dir, **options):
        seen.update(options, settings=settings)
        return 0

    monkeypatch.setattr(up_module, "run_up", run_up)
    assert main(["up", "--config", str(config), "--out-dir", str(tmp_path)]) == 0
    assert seen["config_file"] == config
    assert seen["settings"].scoring.churn_window_days == 45


def test_a_missing_input_file_is_one_line_and_exit_code_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["score", "MISSING.jsonl", "--out", "scores.csv"]) == 2
    err = capsys.readouterr().err
    assert err == "clvstream: MISSING.jsonl: No such file or directory\n"
    assert main(["import", "cdnow", "nothing.txt", "--out", "e.jsonl"]) == 2
    assert capsys.readouterr().err.startswith("clvstream: nothing.txt: ")


def test_commands_without_what_they_need_say_so_in_one_line(tmp_path, monkeypatch, capsys):
    for name in list(os.environ):
        if name.startswith("CLVSTREAM_"):
            monkeypatch.delenv(name)
    assert main(["worker"]) == 2
    assert "set CLVSTREAM_KAFKA_URL and CLVSTREAM_REDIS_URL" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[scoring\n")
    assert main(["score", "x.jsonl", "--out", "s.csv", "--config", str(bad)]) == 2
    assert "is not valid TOML" in capsys.readouterr().err
    # a dry run of a dead-letter file needs no broker
    dead = tmp_path / "dead.jsonl"
    dead.write_bytes(b"")
    assert main(["redrive", "--file", str(dead), "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("redrive: ")


def test_settings_prints_what_is_in_effect_with_secrets_hidden(tmp_path, monkeypatch, capsys):
    for name in list(os.environ):
        if name.startswith("CLVSTREAM_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CLVSTREAM_REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0")
    config = tmp_path / "clv.toml"
    config.write_text("[scoring]\nhorizon_days = 200\n")
    assert main(["settings", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    shown = orjson.loads(out)
    assert shown["scoring"]["horizon_days"] == 200 and "hunter2" not in out
    assert shown["redis_url"] == "**********"


class _Producer:
    """Stands in for aiokafka's producer: keeps what is sent."""

    sent: ClassVar[list[tuple[str, bytes, bytes | None]]] = []

    def __init__(self, **config) -> None:
        pass

    async def start(self) -> None:
        pass

    async def send(self, topic: str, value: bytes, key: bytes | None = None) -> asyncio.Future:
        self.sent.append((topic, value, key))
        delivery = asyncio.get_running_loop().create_future()
        delivery.set_result(None)  # (what the broker answers: taken)
        return delivery

    async def flush(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def test_replay_strips_a_byte_order_mark_from_the_first_line(tmp_path, monkeypatch):
    first = {"event_type": "interaction", "customer_id": "c1", "event_id": "e1"}
    second = {"event_type": "transaction", "customer_id": "c2", "event_id": "e2"}
    events = tmp_path / "events.jsonl"
    events.write_bytes(codecs.BOM_UTF8 + orjson.dumps(first) + b"\n" + orjson.dumps(second))
    monkeypatch.setattr(replay_module, "AIOKafkaProducer", _Producer)
    _Producer.sent = []
    settings = load_settings(kafka_url="kafka://127.0.0.1:9", topic_prefix="x.")
    summary = asyncio.run(replay_module.replay_file(Path(events), settings, show_progress=False))
    assert summary.events == 2
    assert _Producer.sent[0] == ("x.interactions", orjson.dumps(first), b"c1")
    assert _Producer.sent[1] == ("x.transactions", orjson.dumps(second), b"c2")


def test_import_reads_a_cdnow_file_saved_with_a_byte_order_mark(tmp_path, capsys):
    source, out = tmp_path / "cdnow.txt", tmp_path / "events.jsonl"
    source.write_bytes(codecs.BOM_UTF8 + b"00001 19970101 1 11.77\n00002 19970102 2 20.00\n")
    assert main(["import", "cdnow", str(source), "--out", str(out)]) == 0
    assert "2 rows -> 2 events" in capsys.readouterr().out
    assert [orjson.loads(line)["customer_id"] for line in out.read_bytes().splitlines()] == [
        "00001", "00002",
    ]  # fmt: skip


def test_a_command_interrupted_by_ctrl_c_exits_130_without_a_traceback(monkeypatch, capsys):
    def interrupted(args) -> int:
        raise KeyboardInterrupt

    monkeypatch.setitem(cli_module.COMMANDS, "schemas", interrupted)
    assert main(["schemas"]) == 130
    assert "Traceback" not in capsys.readouterr().err


def test_up_shows_where_redis_is_without_its_password(tmp_path, capsys):
    """`clvstream up` with a configured Redis (CLVSTREAM_REDIS_URL with a password)
    printed the whole URL, password included, in its "clvstream is running" block."""
    settings = load_settings(
        kafka_url="kafka://b:9092", redis_url="redis://svc:hunter2@cache:6379/0"
    )
    worker = up_module.WorkerProcess(process=type("P", (), {"pid": 1})(), api="http://h:1")
    up_module._print_where(settings, worker, tmp_path)
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert "redis://svc:***@cache:6379/0" in out


def test_lateness_hours_zero_means_no_lateness_allowed(monkeypatch):
    """`--lateness-hours 0` (no event may arrive late) was taken as "not given": the run
    used the default 24 hours, or the file's / environment's value, silently."""
    monkeypatch.delenv("CLVSTREAM_SCORING__ALLOWED_LATENESS_SECONDS", raising=False)
    args = build_parser().parse_args(
        ["score", "e.jsonl", "--out", "s.csv", "--lateness-hours", "0"]
    )
    assert cli_module._settings(args).scoring.allowed_lateness_seconds == 0
    args = build_parser().parse_args(["demo", "--lateness-hours", "1.5"])
    assert cli_module._settings(args).scoring.allowed_lateness_seconds == 5400


def test_impossible_simulation_options_are_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    """`simulate --customers -5` or `--duplicate-rate 2` was a pydantic traceback (exit 1);
    `up --customers 0` was the same traceback, after the embedded broker and Redis had
    been started. Now: one line naming the option, exit 2, nothing started or written."""
    out = tmp_path / "events.jsonl"
    for bad, option in (
        (["--customers", "-5"], "--customers"),
        (["--days", "0"], "--days"),
        (["--duplicate-rate", "2"], "--duplicate-rate"),
    ):
        argv = ["simulate", "--customers", "5", "--days", "10", "--out", str(out), *bad]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("clvstream: ") and option in err and "Traceback" not in err
        assert not out.exists()

    def run_up(*args, **options):
        raise AssertionError("the stack must not start")

    monkeypatch.setattr(up_module, "run_up", run_up)
    assert main(["up", "--customers", "0", "--out-dir", str(tmp_path)]) == 2
    assert "--customers" in capsys.readouterr().err


def refused_before_the_work(monkeypatch, capsys, work: list, commands: list) -> None:
    """Each command exits 2 with one line, before any of `work` ((module, name)) runs."""

    def started(*args, **kwargs):
        raise AssertionError("the work started before the outputs were known to be writable")

    for module, name in work:
        monkeypatch.setattr(module, name, started)
    for command in commands:
        assert main(command) == 2, command
        err = capsys.readouterr().err
        assert err.startswith("clvstream: ") and "Traceback" not in err


def test_score_fails_fast_when_an_output_cannot_be_written(tmp_path, monkeypatch, capsys):
    """The scores file was opened only after every event had been replayed (minutes on
    a large file): an `--out` that is a directory, or under a file, failed at the very
    end and the work was lost. Now it is one line and exit 2 before any event is read;
    the same for `--emitted` and `--dead-letter` under a file."""
    from streams import offline

    events = tmp_path / "events.jsonl"
    events.write_bytes(b"{}\n")
    a_file = tmp_path / "a-file"
    a_file.write_bytes(b"")
    score = ["score", str(events)]
    refused_before_the_work(
        monkeypatch,
        capsys,
        [(offline, "Replay"), (offline, "run_in_processes")],
        [
            [*score, "--out", str(tmp_path)],
            [*score, "--out", str(a_file / "scores.csv")],
            [*score, "--out", str(tmp_path / "s.csv"), "--emitted", str(a_file / "e.jsonl")],
            [*score, "--out", str(tmp_path / "s.csv"), "--partitions", "2", "--jobs", "2",
             "--dead-letter", str(a_file / "d.jsonl")],
        ],
    )  # fmt: skip
    assert not (tmp_path / "s.csv").exists()


SIMULATE = ["simulate", "--customers", "5", "--days", "30"]


def test_simulate_and_report_fail_fast_when_an_output_cannot_be_written(
    tmp_path, monkeypatch, capsys
):
    """`simulate --truth` was written after the events (a large population takes
    minutes), `report --out` after reading every score: an unwritable one failed then."""
    from streams import report, simulate

    a_file = tmp_path / "a-file"
    a_file.write_bytes(b"")
    scores = tmp_path / "scores.csv"
    scores.write_bytes(b"customer_id\n")
    refused_before_the_work(
        monkeypatch,
        capsys,
        [(simulate, "write_simulation"), (report, "write_report")],
        [
            [*SIMULATE, "--out", str(tmp_path / "e.jsonl"), "--truth", str(a_file / "t.csv")],
            [*SIMULATE, "--out", str(tmp_path)],
            ["report", "--scores", str(scores), "--out", str(a_file / "r.html")],
        ],
    )
    assert not (tmp_path / "e.jsonl").exists()


def test_an_empty_redis_url_is_not_configured(monkeypatch, capsys):
    """`CLVSTREAM_REDIS_URL=` (empty, as `${REDIS_URL:-}` in a compose file gives) counts
    as not set for `up` (it starts the embedded Redis), but a worker took it for a
    configured URL, started, and failed in redis-py with a traceback."""
    for name in list(os.environ):
        if name.startswith("CLVSTREAM_"):
            monkeypatch.delenv(name)
    started = []
    monkeypatch.setattr(up_module, "run_worker", lambda *args: started.append(args) or 0)
    monkeypatch.setenv("CLVSTREAM_KAFKA_URL", "kafka://127.0.0.1:9")
    monkeypatch.setenv("CLVSTREAM_REDIS_URL", "")
    assert main(["worker"]) == 2
    assert "CLVSTREAM_REDIS_URL" in capsys.readouterr().err and not started
    assert load_settings().redis_url is None


def test_a_worker_log_level_that_does_not_exist_is_refused_by_the_parser(monkeypatch, capsys):
    """`worker --loglevel verbose` was accepted and passed to Faust, whose logging set-up
    raised ValueError("Unknown level") with a traceback when the worker started (after
    the topics had been created)."""
    started = []
    monkeypatch.setattr(up_module, "run_worker", lambda *args: started.append(args) or 0)
    with pytest.raises(SystemExit) as exit_:
        main(["worker", "--loglevel", "verbose"])
    assert exit_.value.code == 2 and "--loglevel" in capsys.readouterr().err and not started
    args = build_parser().parse_args(["worker", "--loglevel", "WARNING"])
    assert args.loglevel == "warning"
    assert build_parser().parse_args(["worker", "--loglevel", "warn"]).loglevel == "warning"
