"""The report's plots, drawn with Matplotlib as inline SVG.

Matplotlib is imported only when a plot is drawn (the CLI starts fast without it);
SVG ids and metadata are fixed, so the same figures give the same file.

>>> from streams.report.churn_quality import calibrate
>>> with plot_style():
...     page = svg(calibration_figure(calibrate([(0.2, False), (0.8, True)], bins=2)))
>>> page.startswith("<div class='plot'><svg"), "<metadata>" in page
(True, False)
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from streams.report.churn_quality import Calibration, QualityPoint
from streams.report.programmes import ProgrammeRow

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from streams.report.aggregate import Report

BLUE, GREY, RED = "#1f5f99", "#8a8f98", "#b23b3b"


@contextmanager
def plot_style() -> Iterator[None]:
    """Text as text (small, searchable) and fixed ids: no date, no random salt."""
    import matplotlib

    with matplotlib.rc_context(
        {"svg.fonttype": "none", "svg.hashsalt": "clvstream-report", "font.size": 9}
    ):
        yield


def svg(figure: Figure) -> str:
    """The figure as an inline `<svg>` element, without metadata."""
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buffer = io.StringIO()
    FigureCanvasSVG(figure).print_svg(buffer, metadata={"Date": None})
    text = buffer.getvalue()
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text[text.index("<svg") :], flags=re.S)
    return f"<div class='plot'>{text}</div>"


# -- figures -----------------------------------------------------------------------------


def equity_figure(report: Report) -> Figure:
    from matplotlib.ticker import MaxNLocator

    figure = _figure(10, 3.6)
    axes = figure.subplots(1, 2)
    for ax, rows, title in (
        (axes[0], report.by_lifecycle, "By lifecycle"),
        (axes[1], report.by_tier, "By value tier"),
    ):
        names = [label(r.name) for r in rows][::-1]
        values = [r.equity for r in rows][::-1]
        bars = ax.barh(names, values, color=BLUE)
        ax.bar_label(bars, labels=[_short(v) for v in values], padding=3, fontsize=8)
        ax.set_title(title)
        ax.set_xlabel(f"customer equity ({report.currency})")
        ax.set_xlim(0, max(max(values, default=0) * 1.18, 1))
        ax.xaxis.set_major_locator(MaxNLocator(5))
        ax.xaxis.set_major_formatter(lambda value, _: _tick(value))
        _tidy(ax, grid="x")
    return figure


def auc_figure(points: Sequence[QualityPoint], floor: float | None) -> Figure:
    figure = _figure(10, 3.2)
    ax = figure.subplots()
    ax.plot([p.at for p in points], [p.rolling_auc for p in points], "o-", color=BLUE, ms=3)
    ax.axhline(0.5, color=GREY, ls=":", lw=1)
    _note(ax, "guessing", (points[0].at, 0.5), GREY)
    if floor:
        ax.axhline(floor, color=RED, ls="--", lw=1)
        _note(ax, "trigger freeze", (points[0].at, floor), RED)
    ax.set_ylim(0.4, 1.0)
    ax.set_ylabel("rolling AUC")
    figure.autofmt_xdate()
    _tidy(ax)
    return figure


def calibration_figure(curve: Calibration) -> Figure:
    figure = _figure(5.2, 4.4)
    ax = figure.subplots()
    ax.plot([0, 1], [0, 1], color=GREY, ls=":", lw=1, label="perfect calibration")
    ax.errorbar(
        [b.predicted for b in curve.bins],
        [b.observed for b in curve.bins],
        yerr=[1.96 * b.stderr for b in curve.bins],
        fmt="o-",
        color=BLUE,
        ms=4,
        capsize=3,
        label="churn model",
    )
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("predicted churn probability")
    ax.set_ylabel("observed churn rate")
    ax.legend(frameon=False, loc="upper left", fontsize=8)
    _tidy(ax)
    return figure


def programme_figure(rows: Sequence[ProgrammeRow], currency: str) -> Figure:
    """One line per programme, in the table's order: its incremental revenue per
    treated customer with the 95 % interval, and its break-even. Programmes are rows,
    not points at their cost per contact, so two of the same cost stay apart."""
    figure = _figure(7.5, 1.3 + 0.42 * len(rows))
    ax = figure.subplots()
    ax.axvline(0, color=GREY, lw=0.8)
    for y, row in enumerate(rows):
        result = row.result
        assert result is not None
        ax.errorbar(
            [result.per_customer],
            [y],
            xerr=[[result.per_customer - result.low], [result.high - result.per_customer]],
            fmt="o",
            color=GREY if row.status == "stopped" else BLUE,
            capsize=3,
            label="estimate, 95 % interval" if y == 0 else None,
        )
        ax.plot(
            [row.break_even],
            [y],
            "|",
            color=RED,
            ms=14,
            mew=2,
            label="break-even" if y == 0 else None,
        )
    ax.set_yticks(range(len(rows)), [row.id for row in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)  # the first row on top, as in the table
    ax.set_xlabel(f"incremental revenue per treated customer ({currency})")
    figure.legend(frameon=False, fontsize=8, loc="outside upper center", ncols=2)
    _tidy(ax, grid="x")
    return figure


# -- helpers -------------------------------------------------------------------------------


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _tidy(ax: Any, grid: str = "y") -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis=grid, color="#eee", lw=0.8)
    ax.set_axisbelow(True)


def _note(
    ax: Any,
    text: str,
    at: tuple[Any, float],
    colour: str,
    offset: tuple[int, int] = (0, 3),
    align: str = "left",
) -> None:
    ax.annotate(
        text, at, xytext=offset, textcoords="offset points", fontsize=8, color=colour, ha=align
    )


def label(name: str) -> str:
    """A segment's name as shown, in tables and plots.

    >>> label("at_risk"), label("top_5")
    ('at risk', 'top 5 %')
    """
    tiers = {"top_5": "top 5 %", "next_15": "next 15 %", "next_30": "next 30 %"}
    return tiers.get(name, name.replace("_", " "))


def _tick(value: float) -> str:
    """
    >>> _tick(150_000), _tick(2_500_000), _tick(0)
    ('150 k', '2.5 M', '0')
    """
    return _abbreviated(value, "g", "g", "g")


def _short(value: float) -> str:
    """
    >>> _short(1_234_567), _short(45_600), _short(12.5)
    ('1.23 M', '45.6 k', '12')
    """
    return _abbreviated(value, ".2f", ".1f", ".0f")


def _abbreviated(value: float, millions: str, thousands: str, units: str) -> str:
    """`value` in millions (M) or thousands (k) from a million or a thousand up, each
    with its format spec."""
    if abs(value) >= 1e6:
        return f"{value / 1e6:{millions}} M"
    if abs(value) >= 1e3:
        return f"{value / 1e3:{thousands}} k"
    return f"{value:{units}}"
