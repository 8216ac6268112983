"""`clvstream report`: figures from synthetic scores and emitted events, and the page."""

from __future__ import annotations

import codecs
import csv
import math
import re
from collections import Counter
from datetime import UTC, date, datetime

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.config import ScoringConfig
from models.programmes.measurement import ArmStats, estimate
from streams.cli import main
from streams.offline import SCORE_COLUMNS, format_summary
from streams.report import build_report, write_report
from streams.report.aggregate import ReportBuilder
from streams.report.churn_quality import calibration_pairs
from streams.report.migration import NEW_IN_PERIOD as NEW
from streams.report.migration import MigrationCounts
from streams.report.options import ReportOptions, timestamp
from streams.report.programmes import effect_text
from streams.report.render import render_html
from streams.settings import load_settings

DAY = 86_400.0
START = timestamp("2024-01-01T00:00:00+00:00")
LIFECYCLES = ("new", "active", "at_risk", "lapsing", "lost")
SECTIONS = (
    "Customer equity by segment",
    "Segment migration",
    "Churn model quality",
    "Calibration",
    "Programmes",
)


# -- synthetic events --------------------------------------------------------------------


def iso(day: float) -> str:
    """Day offset from 2024-01-01 as an ISO time."""

    return datetime.fromtimestamp(
        timestamp("2024-01-01T00:00:00+00:00") + day * DAY, UTC
    ).isoformat()


def envelope(stream: str, value: dict | None, key: str | None = None) -> bytes:
    return orjson.dumps({"stream": stream, "key": key, "value": value}) + b"\n"


def score(customer: str, day: float, churn: float | None, frequency: int) -> bytes:
    value = {
        "event_type": "score",
        "event_id": f"s-{customer}-{day}",
        "customer_id": customer,
        "scored_at": iso(day),
        "frequency": frequency,
        "churn_probability": churn,
    }
    return envelope("scores", value, customer)


def change(
    event_id: str,
    day: float,
    source: str | None,
    target: str,
    dimension: str = "lifecycle",
    customer: str = "c1",
) -> bytes:
    value = {
        "event_type": "segment_change",
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": iso(day),
        "dimension": dimension,
        "from_segment": source,
        "to_segment": target,
    }
    return envelope("segment-changes", value, customer)


def trigger(event_id: str, day: float, programme: str, arm: str) -> bytes:
    value = {
        "event_type": "programme_trigger",
        "event_id": event_id,
        "customer_id": "c1",
        "occurred_at": iso(day),
        "programme_id": programme,
        "arm": arm,
    }
    return envelope("programme-triggers", value, "c1")


def arm(pairs: list[tuple[float, float]], cost: float) -> ArmStats:
    stats = ArmStats()
    for x, y in pairs:
        stats.add(x, y, stake=50.0, cost=cost)
    return stats


def result(
    programme: str, scope: str, day: float, treated: ArmStats, control: ArmStats, **extra
) -> bytes:
    value = {
        "event_type": "programme_result",
        "event_id": f"r-{programme}-{scope}-{day}",
        "occurred_at": iso(day),
        "programme_id": programme,
        "scope": scope,
        "status": "active",
        "detail": "",
        "treatment_stats": treated.as_dict(),
        "control_stats": control.as_dict(),
        **extra,
    }
    return envelope("programme-outcomes", value, programme)


def health(day: float, auc: float, labels: float, event_id: str | None = None) -> bytes:
    value = {
        "event_type": "model_health",
        "event_id": event_id or f"h-{day}-{auc}",
        "occurred_at": iso(day),
        "model": "churn",
        "model_version": "logreg",
        "status": "quality",
        "detail": "",
        "metrics": {
            "labels": labels,
            "rolling_auc": auc,
            "rolling_log_loss": 0.5,
            "rolling_brier": 0.2,
            "drifts_detected": 0.0,
        },
    }
    return envelope("model-health", value)


def scores_csv(path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=SCORE_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)


def build(tmp_path, lines: list[bytes], rows: list[dict] | None = None, **period):
    emitted, scores = tmp_path / "emitted.jsonl", tmp_path / "scores.csv"
    emitted.write_bytes(b"".join(lines))
    scores_csv(scores, rows or [])
    return build_report(load_settings(), scores=scores, emitted=emitted, **period)


# -- equity --------------------------------------------------------------------------------


def test_equity_sums_clv_by_lifecycle_and_tier(tmp_path):
    rows = [
        {"customer_id": "a", "clv": "100.5", "lifecycle": "active", "value_tier": "top_5"},
        {"customer_id": "b", "clv": "20", "lifecycle": "active", "value_tier": "rest"},
        {"customer_id": "c", "clv": "9.5", "lifecycle": "at_risk", "value_tier": "rest"},
        {"customer_id": "d", "clv": "", "lifecycle": "prospect", "value_tier": ""},
    ]
    report = build(tmp_path, [], rows)
    assert (report.customers, report.prospects) == (4, 1)
    assert "customers, 1 of them without a purchase yet" in render_html(report)
    assert report.equity == pytest.approx(130.0)
    lifecycle = {s.name: (s.customers, s.equity) for s in report.by_lifecycle}
    assert lifecycle == {"active": (2, 120.5), "at_risk": (1, 9.5), "prospect": (1, 0.0)}
    assert [s.name for s in report.by_lifecycle] == ["active", "at_risk", "prospect"]
    tiers = {s.name: (s.customers, s.equity) for s in report.by_tier}
    assert tiers == {"top_5": (1, 100.5), "rest": (2, 29.5), "(no tier)": (1, 0.0)}
    assert sum(s.share for s in report.by_tier) == pytest.approx(1.0)
    assert render_html(report).count("<th>CLV per customer (USD)</th>") == 2  # the unit


def test_the_scores_file_decides_who_is_a_customer_not_an_old_erasure(tmp_path):
    rows = [{"customer_id": "back", "clv": "5", "lifecycle": "new", "value_tier": "rest"}]
    report = build(tmp_path, [score("back", 1, 0.5, 0), envelope("scores", None, "back")], rows)
    assert report.customers == 1 and report.equity == 5.0


# -- migration -------------------------------------------------------------------------------


def rows_of(*customers: str, lifecycle: str = "active") -> list[dict]:
    return [
        {"customer_id": c, "clv": "1", "lifecycle": lifecycle, "value_tier": "rest"}
        for c in customers
    ]


def test_migration_is_each_customers_segment_at_the_start_and_at_the_end(tmp_path):
    lines = [
        change("a0", 1, None, "new", customer="a"),
        change("a1", 5, "new", "active", customer="a"),
        change("a2", 10, "active", "at_risk", customer="a"),
        change("a2", 10, "active", "at_risk", customer="a"),  # the same event again
        change("a3", 20, "at_risk", "active", customer="a"),
        change("a4", 26, "rest", "top_5", dimension="value_tier", customer="a"),
        change("b0", 0, None, "new", customer="b"),
        change("b1", 1.5, "new", "active", customer="b"),  # stays active in the period
        change("c0", 12, None, "new", customer="c"),  # enters in the period
        change("c1", 40, "new", "lost", customer="c"),  # after the period
        change("d0", 40, None, "new", customer="d"),  # enters after the period
        change("e0", 1, None, "new", customer="e"),  # erased: not in the scores
        change("e1", 6, "new", "lost", customer="e"),
    ]
    rows = rows_of("a", "b") + rows_of("c", lifecycle="lost") + rows_of("d", lifecycle="new")
    report = build(tmp_path, lines, rows, first=date(2024, 1, 3), last=date(2024, 1, 31))
    matrix = report.migration
    assert dict(matrix.counts) == {("new", "active"): 1, ("active", "active"): 1, (NEW, "new"): 1}
    assert (matrix.customers, matrix.moved, matrix.entered) == (3, 1, 1)
    assert matrix.changes == 4  # a's three and c's entry; not e's, not the value tier
    assert matrix.rows == (NEW, "new", "active") and matrix.columns == ("new", "active")
    assert (report.period_first, report.period_last) == (date(2024, 1, 3), date(2024, 1, 31))

    # The whole history: all entered, and it ends with the current scores.
    rows[1]["lifecycle"] = "at_risk"  # scored as of the data's end after its last change
    everything = build(tmp_path, lines, rows).migration
    assert dict(everything.counts) == {
        (NEW, "active"): 1,
        (NEW, "at_risk"): 1,
        (NEW, "lost"): 1,
        (NEW, "new"): 1,
    }
    assert everything.changes == 9  # every lifecycle change but e's


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("xyz"), st.integers(0, 30), st.sampled_from(LIFECYCLES)),
        max_size=30,
    ),
    st.integers(0, 30),
    st.integers(0, 30),
    st.randoms(use_true_random=False),
)
def test_migration_does_not_depend_on_how_customers_events_interleave(moves, first, span, random):
    """Each customer's changes in emission order (time order, ties kept), customers
    interleaved at random: the matrix is the segments at the start and the end."""
    start, end = float(first), float(first + span)
    history: dict[str, list[tuple[int, str]]] = {}
    for customer, day, target in sorted(moves, key=lambda m: m[1]):
        history.setdefault(customer, []).append((day, target))
    queues = [[(c, i, d, t) for i, (d, t) in enumerate(h)] for c, h in history.items()]
    builder = MigrationCounts(start * DAY, end * DAY)
    while any(queues):
        queue = random.choice([q for q in queues if q])
        customer, index, day, target = queue.pop(0)
        source = history[customer][index - 1][1] if index else None
        value = {"dimension": "lifecycle", "from_segment": source, "to_segment": target}
        builder.add(day * DAY, customer, value)
    matrix = builder.matrix(dict.fromkeys(history, "now"), end_is_now=False)

    def segment_at(customer: str, moment: float) -> str | None:
        before = [t for d, t in history[customer] if d < moment]
        return before[-1] if before else None

    expected: Counter[tuple[str, str]] = Counter()
    for customer in history:
        last = segment_at(customer, end)
        if last is not None:
            expected[segment_at(customer, start) or NEW, last] += 1
    assert dict(matrix.counts) == dict(expected)
    assert matrix.changes == sum(start <= d < end for h in history.values() for d, _ in h)


# -- programmes ------------------------------------------------------------------------------


def test_results_of_partitions_are_pooled_from_each_scopes_latest(tmp_path):
    early_t, early_c = arm([(1, 5), (2, 6)], 2.0), arm([(1, 1), (2, 2)], 0.0)
    t0 = arm([(1, 12), (2, 15), (3, 19), (4, 21)], 2.0)
    c0 = arm([(1, 2), (2, 5), (3, 9), (4, 11)], 0.0)
    t1 = arm([(0, 8), (5, 30), (2, 11)], 2.0)
    c1 = arm([(1, 3), (3, 4), (6, 12)], 0.0)
    lines = [
        result("save_offer", "p1", 40, t1, c1),
        result("save_offer", "p0", 30, t0, c0),
        result("save_offer", "p0", 10, early_t, early_c),  # older: replaced by day 30
        trigger("t1", 5, "save_offer", "treatment"),
        trigger("t2", 6, "save_offer", "treatment"),
        trigger("t3", 6, "save_offer", "control"),
        trigger("t3", 6, "save_offer", "control"),  # a retried event
    ]
    report = build(tmp_path, lines)
    (row,) = report.programmes
    expected = estimate(t0.merged(t1), c0.merged(c1), margin=ScoringConfig().margin_rate)
    assert row.result == expected
    assert (row.windows_treated, row.windows_control) == (7, 7)
    assert (row.triggered_treatment, row.triggered_control) == (2, 1)
    assert row.cost == pytest.approx(14.0)
    assert row.cost_per_contact == 2.0 and row.status == "active"
    assert row.verdict == ("pays off" if expected.low >= 2.0 else "unclear yet")

    # Up to day 35, scope p1 has not reported yet: only p0's day-30 figures count.
    before = build(tmp_path, lines, last=date(2024, 2, 4))
    assert before.programmes[0].result == estimate(t0, c0)


def test_the_effect_is_shown_with_both_ends_of_its_skewed_interval(tmp_path):
    """The interval moves its ends by the revenue's skewness: "± half width" would put
    them in the wrong place."""
    treated = arm([(1, 0), (2, 0), (1, 0), (3, 400), (2, 0), (1, 10), (2, 0), (1, 0)] * 2, 2.0)
    control = arm([(1, 5), (2, 6), (1, 4), (3, 8), (2, 5), (1, 6)], 0.0)  # unequal arms
    report = build(tmp_path, [result("win_back", "all", 30, treated, control)])
    (row,) = report.programmes
    effect = row.result
    assert effect.high - effect.per_customer != pytest.approx(effect.per_customer - effect.low)
    page = render_html(report)
    text = effect_text(effect.per_customer, effect.low, effect.high)
    point, interval = text.split(" ", 1)  # the interval stays on one line
    assert f"<td>{point} <span class='range'>{interval}</span>*</td>" in page  # *: indicative
    assert re.fullmatch(r"[+-][\d,]+\.\d\d \([+-][\d,]+\.\d\d to [+-][\d,]+\.\d\d\)", text)
    assert "±" not in page


def test_the_roi_is_shown_with_the_range_its_effects_interval_gives(tmp_path):
    """An effect whose interval spans break-even has an ROI that may be a loss or a
    gain: a bare point ROI ("+148%") would look precise."""
    treated = arm([(1, 0), (2, 30), (1, 0), (3, 45), (2, 0), (1, 12)] * 6, 2.0)
    control = arm([(1, 0), (2, 20), (1, 0), (3, 25), (2, 0), (1, 10)] * 6, 0.0)
    report = build(tmp_path, [result("save_offer", "all", 30, treated, control)])
    (row,) = report.programmes
    effect = row.result
    assert row.verdict == "unclear yet" and effect.low < row.break_even < effect.high

    def roi(per_customer: float) -> float:
        return (per_customer * effect.treated * report.margin - row.cost) / row.cost

    assert roi(effect.per_customer) == pytest.approx(effect.roi)
    interval = f"({roi(effect.low):+,.0%} to {roi(effect.high):+,.0%})"
    shown = f"{effect.roi:+,.0%} <span class='range'>{interval}</span>"
    assert roi(effect.low) < 0 < roi(effect.high)
    assert f"<td>{shown}</td>" in render_html(report)


def test_the_chart_gives_each_programme_its_own_row_also_at_the_same_cost(tmp_path):
    """Points placed at their cost per contact lay programmes of one cost on top of
    each other, and their name labels over each other: one row per programme."""
    treated = arm([(1, 10), (2, 25), (3, 31), (1, 12)] * 3, 2.0)  # 2.00 a contact, as
    control = arm([(1, 4), (2, 9), (3, 20), (1, 2)] * 3, 0.0)  # save_offer's
    lines = [result(p, "all", 30, treated, control) for p in ("save_offer", "custom_offer")]
    report = build(tmp_path, lines)
    assert [row.cost_per_contact for row in report.programmes] == [2.0, 2.0]
    chart = re.findall(r"<svg.*?</svg>", render_html(report), flags=re.S)[-1]
    ticks = re.findall(r'<g id="ytick_\d+">.*?<text[^>]*>([^<]*)</text>', chart, flags=re.S)
    assert ticks == ["save_offer", "custom_offer"]  # top to bottom, as in the table


def test_the_table_says_triggers_are_the_periods_and_windows_all_closed_by_its_end(tmp_path):
    """A period's report counts the triggers of the period but measures every window
    closed by its end: a row with no triggers and a thousand windows must say so."""
    treated, control = arm([(1, 10), (2, 20), (3, 9)], 2.0), arm([(1, 4), (2, 8)], 0.0)
    lines = [trigger("t1", 2, "save_offer", "treatment")]
    lines.append(result("save_offer", "all", 40, treated, control))
    report = build(tmp_path, lines, first=date(2024, 2, 1), last=date(2024, 2, 29))
    (row,) = report.programmes
    assert (row.triggered_treatment, row.windows_treated) == (0, 3)
    page = render_html(report)
    assert "<th>Triggers in the period, treated / control</th>" in page
    assert "<th>Measured windows to the period's end (first exposures)" in page


def test_a_programme_stopped_in_one_scope_shows_as_stopped_with_the_reason(tmp_path):
    t, c = arm([(1, 1), (2, 1), (3, 2)], 5.0), arm([(1, 1), (2, 2), (3, 2)], 0.0)
    reason = "stopped: incremental revenue per customer -0.33 is clearly below the cost"
    lines = [
        result("win_back", "p0", 30, t, c),
        result("win_back", "p1", 31, t, c, status="stopped", detail=reason),
    ]
    (row,) = build(tmp_path, lines).programmes
    assert row.status == "stopped"
    assert row.detail == reason + " (in 1 of 2 scopes)"
    assert row.indicative  # three windows per arm
    page = render_html(build(tmp_path, lines))
    assert "stopped" in page and "clearly below the cost" in page


def test_a_programme_with_too_few_windows_has_no_estimate(tmp_path):
    lines = [result("vip_upgrade", "all", 3, arm([(1, 1)], 10.0), arm([], 0.0))]
    lines.append(trigger("t", 1, "unknown_programme", "treatment"))
    report = build(tmp_path, lines)
    rows = {row.id: row for row in report.programmes}
    assert rows["vip_upgrade"].result is None and rows["vip_upgrade"].verdict == "not measured yet"
    assert rows["unknown_programme"].cost_per_contact is None
    assert [row.id for row in report.programmes] == ["vip_upgrade", "unknown_programme"]
    assert "too few windows" in render_html(report)


# -- model quality ---------------------------------------------------------------------------


def freeze(day: float, status: str, detail: str, scope: str) -> bytes:
    value = {
        "event_type": "model_health",
        "event_id": f"f-{day}-{status}-{scope}",
        "occurred_at": iso(day),
        "model": "programmes",
        "scope": scope,
        "model_version": "programmes",
        "status": status,
        "detail": detail,
    }
    return envelope("model-health", value)


def test_trigger_pauses_show_once_per_period_with_their_length(tmp_path):
    """Each partition reports its own freeze and its end: listed event by event, one
    two-week pause of four partitions read as eight lines."""
    drift = "churn drift alarm: triggers frozen until 2024-01-15"
    lines = [freeze(0, "frozen", drift, f"p{i}") for i in range(4)]
    lines += [
        freeze(14, "unfrozen", "model health recovered: triggers resume", f"p{i}") for i in range(4)
    ]
    lines.append(
        freeze(30, "frozen", "churn model rolling AUC 0.550 below 0.60: triggers frozen", "p0")
    )
    report = build(tmp_path, lines)
    page = render_html(report)
    assert (
        "<tr><td>2024-01-01</td><td>2024-01-15</td><td>14</td>"
        "<td>churn drift alarm (4 partitions)</td></tr>"
    ) in page
    assert "<tr><td>2024-01-31</td><td>still paused</td><td></td>" in page
    assert [(p.days, p.reason, p.scopes) for p in report.pauses] == [
        (14, "churn drift alarm", 4),
        (None, "churn model rolling AUC 0.550 below 0.60", 1),
    ]


def test_quality_points_skip_empty_reports_and_average_partitions_by_labels(tmp_path):
    lines = [
        health(10, 0.0, 0.0),  # nothing learned yet: no point
        health(40, 0.6, 100.0, "a"),
        health(40, 0.9, 300.0, "b"),  # another partition, same day
        health(70, 0.7, 500.0),
    ]
    report = build(tmp_path, lines)
    assert [p.at.date() for p in report.quality] == [date(2024, 2, 10), date(2024, 3, 11)]
    first = report.quality[0]
    assert first.rolling_auc == pytest.approx((0.6 * 100 + 0.9 * 300) / 400)
    assert (first.labels, first.reports) == (400.0, 2)


def test_calibration_compares_each_month_starts_prediction_with_the_next_window():
    # "buyer" buys every 20 days and is predicted 0.1; "sleeper" never buys again (0.9).
    history = {
        "buyer": [(day * DAY, 0.1, day // 20) for day in range(0, 400, 20)],
        "sleeper": [(0.0, 0.9, 0), (200 * DAY, 0.95, 0)],
        "prospect": [(0.0, None, 0)],
    }
    pairs, cutoffs, customers = calibration_pairs(
        history, window_days=90, start=-math.inf, end=math.inf, observed_until=400 * DAY
    )
    # Month starts (1970) from day 0 to day 310 = 400 - 90: 11 of them.
    assert len(cutoffs) == 11 and customers == 2
    assert sorted(set(pairs)) == [(0.1, False), (0.9, True), (0.95, True)]
    assert len(pairs) == 22
    assert sum(1 for p, _ in pairs if p == 0.95) == 4  # August to November: after day 200


def test_calibration_curve_from_emitted_scores(tmp_path):
    lines = []
    for i in range(200):
        churn = 0.2 if i % 2 else 0.8
        lines.append(score(f"c{i}", 0.5, churn, 0))
        if i % 2 and i % 10 != 1:  # 4 in 5 of the low-risk customers buy on day 45
            lines.append(score(f"c{i}", 45, churn, 1))
        lines.append(score(f"c{i}", 200, churn, 1 if i % 2 and i % 10 != 1 else 0))
    report = build(tmp_path, lines)
    curve = report.calibration
    assert curve is not None, report.calibration_note
    # Month starts 2024-02-01 .. 2024-04-01 (day 200 - 90 = day 110): 3 dates x 200.
    assert len(curve.cutoffs) == 3 and curve.n == 600 and curve.customers == 200
    bins = {round(b.predicted, 2): (b.n, b.observed) for b in curve.bins}
    # Feb 1: the buyers' purchase on day 45 is in the window; Mar 1 and Apr 1: it is not.
    assert bins[0.2] == (300, pytest.approx(1 - 0.8 / 3))
    assert bins[0.8] == (300, 1.0)


def test_too_few_labelled_predictions_give_a_note_instead_of_a_curve(tmp_path):
    report = build(tmp_path, [score("a", 0.5, 0.5, 0), score("a", 100, 0.4, 1)])
    assert report.calibration is None
    assert "Not enough data" in report.calibration_note
    assert "Not enough data" in render_html(report)


# -- the page --------------------------------------------------------------------------------


def full_input() -> list[bytes]:
    lines = [
        change("m0", 0, None, "new", customer="a"),
        change("m1", 1, "new", "active", customer="a"),
        change("m2", 0, None, "active", customer="b"),
        change("m3", 2, "active", "at_risk", customer="b"),
    ]
    lines += [health(30 * i, 0.6 + i / 100, 100.0 * i) for i in range(1, 6)]
    for i in range(300):
        lines.append(score(f"c{i}", 0.5, (i % 10) / 10, 0))
        lines.append(score(f"c{i}", 150, (i % 10) / 10, int(i % 3 == 0)))
    treated = arm([(i % 7, 10 + i % 5) for i in range(40)], 2.0)
    control = arm([(i % 7, 3 + i % 4) for i in range(40)], 0.0)
    lines.append(result("save_offer", "all", 90, treated, control))
    lines.append(trigger("t", 1, "save_offer", "treatment"))
    return lines


ROWS = [
    {"customer_id": "a", "clv": "250", "lifecycle": "active", "value_tier": "top_5"},
    {"customer_id": "b", "clv": "50", "lifecycle": "at_risk", "value_tier": "rest"},
]


def test_the_page_is_self_contained_with_every_section_and_plots(tmp_path):
    emitted, scores, out = tmp_path / "e.jsonl", tmp_path / "s.csv", tmp_path / "r" / "x.html"
    emitted.write_bytes(b"".join(full_input()))
    scores_csv(scores, ROWS)
    report = write_report(out, load_settings(), scores=scores, emitted=emitted)
    page = out.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert section in page
    assert page.count("<svg") == 4  # equity, AUC, calibration, programmes
    assert "No data" not in page
    assert not re.search(r"<script|<link|src=|https?://(?!www\.w3\.org)", page)
    assert "300 USD" in page  # the equity in the header
    assert report.equity == 300.0
    # Same input, same file.
    again = tmp_path / "again.html"
    write_report(again, load_settings(), scores=scores, emitted=emitted)
    assert again.read_bytes() == out.read_bytes()


def test_empty_inputs_give_a_page_that_says_no_data(tmp_path):
    emitted, scores, out = tmp_path / "e.jsonl", tmp_path / "s.csv", tmp_path / "r.html"
    emitted.write_bytes(b"")
    scores.write_text("")
    report = write_report(out, load_settings(), scores=scores, emitted=emitted)
    page = out.read_text(encoding="utf-8")
    assert report.customers == 0 and report.period_first is None
    assert page.count("No data") == 4 and "Not enough data" in page
    assert "<svg" not in page
    for section in SECTIONS:
        assert section in page


def test_unreadable_lines_are_skipped_and_counted(tmp_path):
    lines = [b"not json\n", b'{"stream": "scores"}\n', envelope("segment-changes", {"x": 1})]
    lines.append(change("ok", 1, "new", "active"))
    report = build(tmp_path, lines, rows_of("c1"))
    assert report.skipped == 3 and report.migration.changes == 1
    assert "3 output events could not be read" in render_html(report)


# -- the command -----------------------------------------------------------------------------


def test_the_report_command_writes_the_page(tmp_path, capsys):
    emitted, scores, out = tmp_path / "e.jsonl", tmp_path / "s.csv", tmp_path / "r.html"
    emitted.write_bytes(b"".join(full_input()))
    scores_csv(scores, ROWS)
    argv = ["report", "--scores", str(scores), "--emitted", str(emitted), "--out", str(out)]
    assert main([*argv, "--from", "2024-01-02", "--to", "2024-01-03"]) == 0
    assert "2 customers, customer equity 300 USD" in capsys.readouterr().out
    page = out.read_text(encoding="utf-8")
    assert "2024-01-02 to 2024-01-03" in page
    assert "2 customers, 2 of them in another segment at the end, after 2 changes" in page
    assert "<tr><th>total</th><td>1</td><td>1</td><td>2</td></tr>" in page  # by column


@pytest.mark.parametrize(
    "argv",
    [
        ["--from-service", "--scores", "s.csv"],
        [],
        ["--scores", "s.csv", "--from", "2024-02-01", "--to", "2024-01-01"],
        ["--scores", "missing.csv"],
    ],
)
def test_the_report_command_refuses_bad_options(tmp_path, monkeypatch, capsys, argv):
    monkeypatch.chdir(tmp_path)
    scores_csv(tmp_path / "s.csv", ROWS)
    assert main(["report", "--out", "r.html", *argv]) == 2
    assert capsys.readouterr().err.startswith("clvstream: ")
    assert not (tmp_path / "r.html").exists()


def test_options_follow_the_settings():
    scoring = ScoringConfig(margin_rate=0.4, base_currency="EUR", churn_window_days=60)
    options = ReportOptions.of(scoring, date(2024, 1, 1), date(2024, 1, 31))
    assert (options.margin, options.currency, options.churn_window_days) == (0.4, "EUR", 60)
    assert options.programmes["save_offer"] == ("Save offer for customers at risk", 2.0)
    builder = ReportBuilder(options)
    treated, control = arm([(1, 9), (2, 12), (1, 10)], 2.0), arm([(1, 2), (2, 3)], 0.0)
    event = orjson.loads(result("save_offer", "all", 5, treated, control))["value"]
    builder.add_event("programme-outcomes", event)
    (row,) = builder.build().programmes
    assert row.break_even == pytest.approx(2.0 / 0.4)
    assert row.result.roi == pytest.approx((row.result.total * 0.4 - 6.0) / 6.0)


# -- on a real offline run -------------------------------------------------------------------


def test_figures_agree_with_a_real_offline_run(tmp_path):
    from models.simulation import SimulationConfig, simulate
    from streams.offline import score_file

    simulation = simulate(SimulationConfig(customers=400, days=300, seed=3))
    events, scores, emitted = tmp_path / "e.jsonl", tmp_path / "s.csv", tmp_path / "o.jsonl"
    events.write_bytes(b"".join(line + b"\n" for _, line in simulation.events()))
    run = score_file(events, scores, ScoringConfig(), emitted_path=emitted, show_progress=False)
    report = build_report(load_settings(), scores=scores, emitted=emitted)

    with open(scores, encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert report.customers == len(rows)
    assert report.equity == pytest.approx(sum(float(r["clv"] or 0) for r in rows))
    values = [orjson.loads(line)["value"] for line in emitted.read_bytes().splitlines()]
    values = [v for v in values if v is not None]
    changes = [v for v in values if v.get("dimension") == "lifecycle"]
    assert report.migration.changes == len(changes)
    final = Counter(r["lifecycle"] for r in rows)  # the whole history: everyone entered
    assert dict(report.migration.counts) == {(NEW, seg): n for seg, n in final.items()}
    latest = {v["programme_id"]: v for v in values if v["event_type"] == "programme_result"}
    triggers = [v for v in values if v["event_type"] == "programme_trigger"]
    assert latest and triggers
    for row in report.programmes:
        assert row.triggered_treatment + row.triggered_control == sum(
            1 for t in triggers if t["programme_id"] == row.id
        )
        if row.result is not None:  # the scorer's own figures (one scope: "all")
            event = latest[row.id]
            assert row.result.per_customer == pytest.approx(
                event["incremental_revenue_per_customer"]
            )
            assert row.result.low == pytest.approx(event["ci_low"])
            assert row.windows_treated == event["treated"]
    assert report.quality and report.quality[-1].labels > 0
    # The page and the command's summary print a measured effect the same way.
    page, summary = re.sub(r"<[^>]+>", "", render_html(report)), format_summary(run)
    measured = [row for row in report.programmes if row.result is not None]
    assert measured
    for row in measured:
        text = effect_text(row.result.per_customer, row.result.low, row.result.high)
        assert text in page
        [line] = [line for line in summary.splitlines() if line.startswith(f"  {row.id}:")]
        assert f": {text}, total" in line


def test_files_saved_with_a_byte_order_mark_read_as_without(tmp_path):
    emitted, scores = tmp_path / "e.jsonl", tmp_path / "s.csv"
    emitted.write_bytes(b"".join(full_input()))
    scores_csv(scores, ROWS)
    plain = build_report(load_settings(), scores=scores, emitted=emitted)
    for path in (emitted, scores):
        path.write_bytes(codecs.BOM_UTF8 + path.read_bytes())
    marked = build_report(load_settings(), scores=scores, emitted=emitted)
    assert (marked.customers, marked.equity, marked.skipped) == (2, 300.0, 0)
    assert render_html(marked) == render_html(plain)
