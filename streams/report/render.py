"""The report as one self-contained HTML page: tables, and plots as inline SVG
(drawn by `plots`).

>>> from streams.report import ReportBuilder, ReportOptions
>>> page = render_html(ReportBuilder(ReportOptions()).build())
>>> page.startswith("<!DOCTYPE html>"), page.count("No data"), "<script" in page
(True, 4, False)
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from streams.report.aggregate import Report
from streams.report.churn_quality import Calibration, QualityPoint
from streams.report.equity import SegmentValue
from streams.report.migration import NEW_IN_PERIOD, Migration
from streams.report.pauses import Pause
from streams.report.plots import (
    auc_figure,
    calibration_figure,
    equity_figure,
    label,
    plot_style,
    programme_figure,
    svg,
)
from streams.report.programmes import MIN_WINDOWS, ProgrammeRow, effect_text, roi_text

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1100px; margin: 2em auto; padding: 0 1em; line-height: 1.4; }
h1 { margin-bottom: 0.1em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
h3 { margin-bottom: 0.3em; }
.sub, .how { color: #555; } .how { font-size: 0.92em; margin-top: 0.2em; }
.kpis { display: flex; gap: 1.5em; flex-wrap: wrap; margin: 1em 0; }
.kpi { border: 1px solid #ddd; border-radius: 6px; padding: 0.6em 1.2em; min-width: 12em; }
.kpi .value { font-size: 1.7em; font-weight: 600; } .kpi .label { color: #555; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #e5e5e5; text-align: right; }
th { background: #f4f5f7; } td:first-child, th:first-child { text-align: left; }
.pair { display: flex; gap: 2em; flex-wrap: wrap; align-items: flex-start; }
.nodata { color: #888; font-style: italic; } .stopped { color: #b23b3b; }
.range { white-space: nowrap; } .pauses td:last-child, .pauses th:last-child { text-align: left; }
svg { max-width: 100%; height: auto; }
"""


def render_html(report: Report) -> str:
    """The whole page."""
    with plot_style():
        sections = [
            _header(report),
            _equity(report),
            _migration(report),
            _quality(report),
            _programmes(report),
            _footer(report),
        ]
    title = "Customer value report"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title} {escape(_period(report))}</title><style>{STYLE}</style></head>"
        f"<body>\n{''.join(sections)}</body></html>\n"
    )


# -- sections ----------------------------------------------------------------------------


def _header(report: Report) -> str:
    as_of = f"scores as of {report.scores_as_of:%Y-%m-%d}" if report.scores_as_of else "current"
    kpis = [
        (_period(report), "period covered"),
        (f"{report.customers:,}", "customers" + _prospects(report.prospects)),
        (_money(report.equity, report.currency), f"total customer equity, {as_of}"),
    ]
    cards = "".join(
        f"<div class='kpi'><div class='value'>{escape(v)}</div>"
        f"<div class='label'>{escape(label)}</div></div>"
        for v, label in kpis
    )
    return (
        "<h1>Customer value report</h1>"
        "<p class='sub'>Customer value, segment movements, churn-model quality and "
        "programme results.</p>"
        f"<div class='kpis'>{cards}</div>"
        + _how(
            f"Customer equity is the sum of every customer's CLV: the revenue expected "
            f"over the next {report.horizon_days} days, discounted, in {report.currency}. "
            "It reflects the latest scores, whatever the period."
        )
    )


def _equity(report: Report) -> str:
    head = "<h2>Customer equity by segment</h2>"
    if not report.customers:
        return head + _no_data("no customer scores")
    chart = svg(equity_figure(report))
    tables = "".join(
        f"<div><h3>{title}</h3>{_segment_table(rows, report.currency)}</div>"
        for title, rows in (("Lifecycle", report.by_lifecycle), ("Value tier", report.by_tier))
    )
    return (
        head
        + chart
        + f"<div class='pair'>{tables}</div>"
        + _how(
            "Bars: the summed CLV of each segment's customers. Lifecycle says where the "
            "customer is in the relationship (at risk, lapsing, lost: churn risk rising); "
            "the value tier ranks customers by CLV (top 5 %, next 15 %, next 30 %, rest)."
        )
    )


def _segment_table(rows: Sequence[SegmentValue], currency: str) -> str:
    body = "".join(
        f"<tr><td>{escape(label(row.name))}</td><td>{row.customers:,}</td>"
        f"<td>{row.equity:,.0f}</td><td>{row.share:.1%}</td><td>{row.mean_clv:,.2f}</td></tr>"
        for row in rows
    )
    return (
        f"<table><tr><th>Segment</th><th>Customers</th><th>Equity ({escape(currency)})</th>"
        f"<th>Share</th><th>CLV per customer ({escape(currency)})</th></tr>{body}</table>"
    )


def _migration(report: Report) -> str:
    head = "<h2>Segment migration</h2>"
    matrix = report.migration
    if not matrix.customers:
        return head + _no_data("no customers with a lifecycle segment in the period")
    return (
        head
        + _migration_table(matrix)
        + _how(
            f"Customers by lifecycle segment at the start of {_period(report)} (rows) and "
            + ("now, in the current scores" if matrix.end_is_now else "at its end")
            + f" (columns): {matrix.customers:,} customers, {matrix.moved:,} of them in "
            f"another segment at the end, after {matrix.changes:,} changes in the period (a "
            "customer may move more than once, and may come back). "
            + (
                f"'{NEW_IN_PERIOD}': {matrix.entered:,} customers first seen in the period. "
                if matrix.entered
                else ""
            )
            + "Shade: the share of the row's customers."
        )
    )


def _migration_table(matrix: Migration) -> str:
    header = "".join(f"<th>{escape(label(c))}</th>" for c in matrix.columns)
    rows = []
    for source in matrix.rows:
        total = sum(matrix.count(source, target) for target in matrix.columns)
        cells = []
        for target in matrix.columns:
            count = matrix.count(source, target)
            share = count / total
            colour = "#fff" if share > 0.55 else "#222"
            style = f"background: rgba(31, 95, 153, {share:.2f}); color: {colour}"
            title = f"{share:.1%} of the row"
            cells.append(
                f"<td style='{style}' title='{title}'>{count:,}</td>" if count else "<td></td>"
            )
        rows.append(f"<tr><th>{escape(label(source))}</th>{''.join(cells)}<td>{total:,}</td></tr>")
    totals = "".join(
        f"<td>{sum(matrix.count(source, c) for source in matrix.rows):,}</td>"
        for c in matrix.columns
    )
    rows.append(f"<tr><th>total</th>{totals}<td>{matrix.customers:,}</td></tr>")
    return (
        f"<table><tr><th>at the start \\ at the end</th>{header}<th>total</th></tr>"
        f"{''.join(rows)}</table>"
    )


def _quality(report: Report) -> str:
    parts = ["<h2>Churn model quality</h2><h3>Discrimination: rolling AUC</h3>"]
    points = report.quality
    if points:
        parts.append(svg(auc_figure(points, report.auc_floor)))
        parts.append(_how(_auc_text(points[-1], report.auc_floor)))
    else:
        parts.append(_no_data("no churn-model quality reports in the period"))
    if report.pauses:
        parts.append(_pauses_table(report.pauses))
    parts.append("<h3>Calibration: predicted vs observed churn</h3>")
    if report.calibration is None:
        parts.append(f"<p class='nodata'>{escape(report.calibration_note)}</p>")
    else:
        parts.append(svg(calibration_figure(report.calibration)))
        parts.append(_how(_calibration_text(report.calibration, report.churn_window_days)))
    return "".join(parts)


def _pauses_table(pauses: Sequence[Pause]) -> str:
    body = "".join(
        f"<tr><td>{'before the period' if p.start is None else f'{p.start:%Y-%m-%d}'}</td>"
        f"<td>{'still paused' if p.end is None else f'{p.end:%Y-%m-%d}'}</td>"
        f"<td>{'' if p.days is None else p.days}</td><td>{escape(p.reason)}"
        f"{f' ({p.scopes} partitions)' if p.scopes > 1 else ''}</td></tr>"
        for p in pauses
    )
    return (
        "<p>Programme triggers were paused by model health:</p><table class='pauses'>"
        f"<tr><th>Paused from</th><th>Until</th><th>Days</th><th>Why</th></tr>{body}</table>"
    )


def _auc_text(last: QualityPoint, floor: float | None) -> str:
    freeze = f"; below {floor:.2f} programme triggers freeze" if floor else ""
    return (
        "AUC: the chance that a customer who churned had been given a higher churn "
        "probability than one who did not (0.5 = guessing, 1 = perfect), measured online "
        f"on the latest labels as they become known{freeze}. Latest ({last.at:%Y-%m-%d}): "
        f"AUC {last.rolling_auc:.3f}, log loss {last.log_loss:.3f}, Brier {last.brier:.3f}, "
        f"{last.labels:,.0f} labels learned, {last.drifts:.0f} drift alarms."
    )


def _calibration_text(curve: Calibration, window: int) -> str:
    first, last = curve.cutoffs[0], curve.cutoffs[-1]
    return (
        f"How it was measured: on the first day of each month from {first:%Y-%m-%d} to "
        f"{last:%Y-%m-%d} ({len(curve.cutoffs)} dates), each customer's latest churn "
        f"probability is compared with what happened next: churned = no new purchase day "
        f"in the following {window} days (seen in the customer's later scores). "
        f"{curve.n:,} predictions of {curve.customers:,} customers, grouped by predicted "
        f"probability; bars are 95 % intervals. Points on the diagonal: the probabilities "
        f"can be taken at face value. Overall predicted {curve.predicted:.1%} vs observed "
        f"{curve.observed:.1%}; Brier score {curve.brier:.3f} (lower is better)."
    )


def _programmes(report: Report) -> str:
    head = "<h2>Programmes: measured incremental revenue</h2>"
    rows = report.programmes
    if not rows:
        return head + _no_data("no programme triggers or results")
    parts = [head, _programme_table(rows, report.currency, report.margin)]
    measured = [r for r in rows if r.result is not None and r.cost_per_contact is not None]
    if measured:
        parts.append("<h3>Incremental revenue per treated customer against break-even</h3>")
        parts.append(svg(programme_figure(measured, report.currency)))
    parts.append(
        _how(
            "Each programme holds out a random control group. Incremental revenue per "
            "treated customer = revenue of treated minus control customers in the "
            "attribution window, adjusted for their revenue before (CUPED), with its 95 % "
            "interval; measured on each customer's first exposure to the programme, "
            "windows closed up to the period's end (triggers: the period only; a "
            "customer stays in one arm, so repeat windows are not pooled). Total = per "
            "customer × treated first-exposure windows; cost = the cost of those "
            "windows' contacts (repeat contacts and windows still open cost more); ROI = "
            f"(total × margin rate {report.margin:.0%} − cost) / cost, its interval from the "
            "incremental revenue's. Break-even: the incremental "
            "revenue per treated customer that pays for one contact. Verdict: pays off or "
            "loses money when the whole interval lies above or below it, else unclear yet. "
            "In the chart, a programme whose point lies right of its red break-even mark "
            "earns more than a contact costs."
        )
    )
    return "".join(parts)


def _programme_table(rows: Sequence[ProgrammeRow], currency: str, margin: float) -> str:
    cur = escape(currency)
    body = []
    for row in rows:
        result = row.result
        if result is None:
            effect, total, roi = "too few windows", "", ""
        else:
            mark = "*" if row.indicative else ""
            effect = _interval(effect_text(result.per_customer, result.low, result.high)) + mark
            total = f"{result.total:,.0f}"
            roi = _interval(roi_text(result, margin))
        status = escape(row.status or "not measured yet")
        if row.status == "stopped":
            status = "<span class='stopped'>stopped</span>"
        body.append(
            f"<tr><td title='{escape(row.name)}'>{escape(row.id)}</td>"
            f"<td>{row.triggered_treatment:,} / {row.triggered_control:,}</td>"
            f"<td>{row.windows_treated:,} / {row.windows_control:,}</td>"
            f"<td>{effect}</td><td>{total}</td><td>{row.cost:,.0f}</td><td>{roi}</td>"
            f"<td>{_cost(row.break_even)}</td><td>{escape(row.verdict)}</td><td>{status}</td></tr>"
        )
    notes = [f"<li><b>{escape(r.id)}</b>: {escape(r.detail)}</li>" for r in rows if r.detail]
    if any(r.indicative and r.result is not None for r in rows):
        notes.append(
            f"<li>* fewer than {MIN_WINDOWS} closed windows in an arm: indicative only.</li>"
        )
    table = (
        "<table><tr><th>Programme</th><th>Triggers in the period, treated / control</th>"
        "<th>Measured windows to the period's end (first exposures), treated / control</th>"
        f"<th>Incremental revenue per treated ({cur}, 95 % interval)</th>"
        f"<th>Total incremental ({cur})</th><th>Cost of the measured contacts ({cur})</th>"
        "<th>ROI (95 % interval)</th>"
        f"<th>Break-even per treated ({cur})</th><th>Verdict</th><th>Status</th>"
        f"</tr>{''.join(body)}</table>"
    )
    return table + (f"<ul class='how'>{''.join(notes)}</ul>" if notes else "")


def _interval(text: str) -> str:
    """A figure with its interval, "point (low to high)": the interval kept on one line,
    so a narrow cell breaks between the two, not inside the interval.

    >>> _interval("+1.00 (-2.00 to +3.00)"), _interval("–")
    ("+1.00 <span class='range'>(-2.00 to +3.00)</span>", '–')
    """
    point, space, interval = escape(text).partition(" (")
    return f"{point} <span class='range'>({interval}</span>" if space else point


def _cost(value: float | None) -> str:
    return "" if value is None else f"{value:,.2f}"


def _footer(report: Report) -> str:
    notes = []
    if report.dead_letters:
        notes.append(f"{report.dead_letters:,} input events were rejected (dead letter).")
    if report.skipped:
        notes.append(f"{report.skipped:,} output events could not be read and were skipped.")
    return "".join(f"<p class='how'>{escape(n)}</p>" for n in notes)


# -- helpers -------------------------------------------------------------------------------


def _how(text: str) -> str:
    return f"<p class='how'>{escape(text)}</p>"


def _no_data(reason: str) -> str:
    return f"<p class='nodata'>No data: {escape(reason)}.</p>"


def _period(report: Report) -> str:
    first, last = report.period_first, report.period_last
    if first is None or last is None:
        return "no events"
    return f"{first:%Y-%m-%d} to {last:%Y-%m-%d}"


def _prospects(count: int) -> str:
    return f", {count:,} of them without a purchase yet" if count else ""


def _money(value: float, currency: str) -> str:
    return f"{value:,.0f} {currency}"
