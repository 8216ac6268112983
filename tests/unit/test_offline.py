"""The offline scorer: file in, scores out; deterministic; robust to bad and repeated lines."""

from __future__ import annotations

import codecs
import csv
import statistics
from collections import Counter
from concurrent.futures import Executor, Future
from concurrent.futures.process import BrokenProcessPool
from datetime import date

import orjson
import pytest

from models.config import ScoringConfig
from models.engine import ScoringEngine
from models.segments import LIFECYCLE_SEGMENTS, RFM_SEGMENTS
from models.simulation import SimulationConfig, simulate
from streams.cli import main
from streams.offline import SCORE_COLUMNS, score_file
from tests.factories import interaction, jsonl, purchase, refund
from tests.unit.test_engine import random_history

CONFIG = ScoringConfig(
    min_customers_for_fit=100, min_fit_history_days=60, min_repeat_customers_for_spend_fit=20
)


@pytest.fixture(scope="module")
def history():
    return random_history(300, 200, seed=11)


def score(tmp_path, lines: bytes, name: str = "run", **options):
    events = tmp_path / f"{name}.jsonl"
    events.write_bytes(lines)
    out = tmp_path / f"{name}.csv"
    emitted = tmp_path / f"{name}.emitted.jsonl"
    options.setdefault("fit_in_background", False)
    result = score_file(events, out, CONFIG, emitted_path=emitted, show_progress=False, **options)
    return result, out, emitted


def rows(path):
    with open(path, encoding="utf-8") as source:
        return list(csv.DictReader(source))


def test_same_input_gives_byte_identical_outputs(tmp_path, history):
    _, out_a, emitted_a = score(tmp_path, jsonl(history), "a")
    _, out_b, emitted_b = score(tmp_path, jsonl(history), "b")
    assert out_a.read_bytes() == out_b.read_bytes()
    assert emitted_a.read_bytes() == emitted_b.read_bytes()
    header = out_a.read_text().splitlines()[0].split(",")
    assert header == list(SCORE_COLUMNS)


def test_background_refits_give_the_same_output_as_inline_refits(tmp_path, history):
    inline, out_inline, emitted_inline = score(
        tmp_path, jsonl(history), "in", fit_in_background=False
    )
    _, out_bg, emitted_bg = score(tmp_path, jsonl(history), "bg", fit_in_background=True)
    assert inline.counters["refits"] >= 3
    assert out_inline.read_bytes() == out_bg.read_bytes()
    assert emitted_inline.read_bytes() == emitted_bg.read_bytes()


class _DyingExecutor(Executor):
    """Every submitted fit fails the way a killed worker process does."""

    def submit(self, fn, /, *args, **kwargs):
        future: Future = Future()
        future.set_exception(BrokenProcessPool("worker killed"))
        return future


def test_a_dead_fit_worker_falls_back_to_the_same_fit_in_process(history):
    def replay(executor):
        engine = ScoringEngine(CONFIG, fit_executor=executor)
        outputs = []
        for number, event in enumerate(history):
            outputs += engine.process_raw(orjson.dumps(event), {"source": "file", "line": number})
        return engine, [(o.stream, o.key, o.value) for o in outputs]

    inline, inline_outputs = replay(None)
    dying, dying_outputs = replay(_DyingExecutor())
    assert inline.counters.refits >= 3
    assert dying.counters.as_dict() == inline.counters.as_dict()
    assert dying_outputs == inline_outputs


def test_duplicated_lines_change_nothing(tmp_path, history):
    doubled = []
    for number, event in enumerate(history):
        doubled.append(event)
        if number % 3 == 0:
            doubled.append(event)
    clean, out_clean, _ = score(tmp_path, jsonl(history), "clean")
    noisy, out_noisy, _ = score(tmp_path, jsonl(doubled), "noisy")
    assert out_clean.read_bytes() == out_noisy.read_bytes()
    assert noisy.counters["duplicates"] == len(doubled) - len(history)
    assert noisy.counters["applied"] == clean.counters["applied"]


def test_malformed_lines_never_stop_the_run(tmp_path, history):
    lines = jsonl(history[:50]) + b"{broken\n\n" + b'{"event_type":"x"}\n' + jsonl(history[50:])
    result, out, _ = score(tmp_path, lines, "bad", dead_letter_path=tmp_path / "dl.jsonl")
    _, clean_out, _ = score(tmp_path, jsonl(history), "good")
    assert out.read_bytes() == clean_out.read_bytes()
    letters = [orjson.loads(line) for line in (tmp_path / "dl.jsonl").read_bytes().splitlines()]
    assert [(d["reason"], d["origin"]["line"]) for d in letters] == [
        ("malformed_json", 51),
        ("unknown_event_type", 53),
    ]
    assert result.counters["dead_lettered"] == 2


def test_events_after_the_as_of_date_are_ignored(tmp_path):
    events = [
        purchase("a", 0, 10.0),
        purchase("a", 9.99, 10.0),  # 2024-01-10 23:58: on the as-of date, included
        purchase("a", 10.01, 99.0),  # 2024-01-11: after it
        interaction("b", 11),
    ]
    result, out, _ = score(tmp_path, jsonl(events), as_of=date(2024, 1, 10))
    [row] = rows(out)
    assert row["customer_id"] == "a" and row["frequency"] == "1"
    assert row["tenure_days"] == "9" and float(row["total_spend"]) == 20.0
    assert result.counters["ignored_after_as_of"] == 2 and result.as_of == "2024-01-10"


def test_rows_have_the_documented_columns_and_meanings(tmp_path):
    events = [
        purchase("a", 0, 30.0),
        purchase("a", 0.5, 10.0),  # same day: merged
        interaction("prospect", 3),
        purchase("a", 20, 50.0),
        refund("a", 21, 10.0),
    ]
    _, out, emitted = score(tmp_path, jsonl(events), as_of=date(2024, 2, 10))
    a, prospect = rows(out)
    assert (a["frequency"], a["recency_days"], a["tenure_days"]) == ("1", "20", "40")
    assert float(a["monetary_value"]) == pytest.approx(50.0 * 80 / 90)
    assert float(a["total_spend"]) == 80.0 and float(a["refund_total"]) == 10.0
    for column in ("p_alive", "expected_purchases", "predicted_value", "clv", "churn_probability"):
        assert float(a[column]) > 0
    assert prospect["segment"] == "prospect" and prospect["clv"] == ""
    envelopes = [orjson.loads(line) for line in emitted.read_bytes().splitlines()]
    assert {e["stream"] for e in envelopes} >= {"scores", "segment-changes"}


def test_cli_score_and_help(tmp_path, capsys, history):
    events = tmp_path / "events.jsonl"
    events.write_bytes(jsonl(history))
    code = main(
        [
            "score",
            str(events),
            "--out",
            str(tmp_path / "s.csv"),
            "--churn-window-days",
            "60",
            "--horizon-days",
            "180",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "events read" in printed and "s.csv" in printed
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "demo" in capsys.readouterr().out


def test_simulated_population_gets_lifecycle_tiers_rfm_and_needs(tmp_path):
    simulation = simulate(SimulationConfig(customers=800, days=400, seed=5))
    lines = b"".join(line + b"\n" for _, line in simulation.events())
    _, out, emitted = score(tmp_path, lines, name="sim")
    scored = [row for row in rows(out) if row["lifecycle"] not in ("prospect", "not_profiled")]
    assert len(scored) > 600
    assert {row["lifecycle"] for row in scored} <= set(LIFECYCLE_SEGMENTS)
    assert {row["lifecycle"] for row in scored} >= {"active", "at_risk", "lapsing"}
    tiers = Counter(row["value_tier"] for row in scored)
    assert 0.03 < tiers["top_5"] / len(scored) < 0.08
    assert 0.40 < tiers["rest"] / len(scored) < 0.60
    for row in scored:
        assert row["segment"] == f"{row['lifecycle']}/{row['value_tier']}"
        assert row["rfm_segment"] in RFM_SEGMENTS and len(row["rfm_score"]) == 3
        assert len(row["top_needs"].split("; ")) == 3
    by_tier = {tier: [float(r["clv"]) for r in scored if r["value_tier"] == tier] for tier in tiers}
    assert min(by_tier["top_5"]) > statistics.median(by_tier["rest"])
    risk = {
        stage: statistics.mean(
            float(r["churn_probability"]) for r in scored if r["lifecycle"] == stage
        )
        for stage in ("active", "at_risk", "lapsing")
    }
    assert risk["active"] < risk["at_risk"] < risk["lapsing"]
    changes = [orjson.loads(line) for line in emitted.read_bytes().splitlines()]
    changes = [e["value"] for e in changes if e["stream"] == "segment-changes"]
    assert {c["dimension"] for c in changes} == {"lifecycle", "value_tier"}
    assert len({c["event_id"] for c in changes}) == len(changes)


def test_model_health_events_of_either_value_model_serialize(tmp_path):
    events = tmp_path / "events.jsonl"
    events.write_bytes(jsonl(random_history(150, 200, seed=8)))
    for model in ("bg_nbd", "pareto_nbd"):
        emitted = tmp_path / f"{model}.jsonl"
        config = ScoringConfig(value_model=model, min_customers_for_fit=50)
        score_file(events, tmp_path / f"{model}.csv", config, emitted_path=emitted,
                   show_progress=False, fit_in_background=False)  # fmt: skip
        health = [orjson.loads(line)["value"] for line in emitted.read_bytes().splitlines()]
        fitted = [h for h in health if h and h.get("event_type") == "model_health"]
        assert any(h["model"] == "value" and h["status"] == "fitted" for h in fitted), model
        assert all(isinstance(v, float) for h in fitted for v in h["parameters"].values())


def test_a_byte_order_mark_on_the_first_line_is_not_a_dead_letter(tmp_path, history):
    """Editors on Windows save UTF-8 with a BOM; the first event must still count."""
    dead = tmp_path / "dl.jsonl"
    for partitions in (1, 2):
        bom = score(tmp_path, codecs.BOM_UTF8 + jsonl(history), f"bom{partitions}",
                    dead_letter_path=dead, partitions=partitions)  # fmt: skip
        plain = score(tmp_path, jsonl(history), f"plain{partitions}", partitions=partitions)
        assert bom[0].counters["dead_lettered"] == 0 and dead.read_bytes() == b""
        assert bom[1].read_bytes() == plain[1].read_bytes()
        assert bom[2].read_bytes() == plain[2].read_bytes()


def test_the_summary_says_n_a_for_churn_quality_before_any_label(tmp_path, capsys):
    events = tmp_path / "few.jsonl"
    events.write_bytes(jsonl([purchase("a", 0, 10.0), purchase("b", 3, 20.0)]))
    assert main(["score", str(events), "--out", str(tmp_path / "few.csv")]) == 0
    [churn_line] = [line for line in capsys.readouterr().out.splitlines() if "churn model" in line]
    assert "0 labels learned (churn rate n/a" in churn_line
    assert "rolling AUC n/a, log loss n/a, Brier n/a" in churn_line
    assert "0.000" not in churn_line.split(": ", 1)[1]  # after the model's version


def test_the_summary_gives_churn_quality_once_labels_are_learned(tmp_path, capsys):
    simulation = simulate(SimulationConfig(customers=300, days=300, seed=3))
    events = tmp_path / "sim.jsonl"
    events.write_bytes(b"".join(line + b"\n" for _, line in simulation.events()))
    assert main(["score", str(events), "--out", str(tmp_path / "sim.csv")]) == 0
    [churn_line] = [line for line in capsys.readouterr().out.splitlines() if "churn model" in line]
    assert "n/a" not in churn_line and "rolling AUC 0." in churn_line
