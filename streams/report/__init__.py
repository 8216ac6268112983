"""`clvstream report`: one self-contained HTML page for management, from an offline
run's files (scores CSV and emitted events) or from the live service's output topics.

`aggregate` folds the inputs into figures (no I/O), one concept a module: `equity`,
`migration`, `churn_quality` (with `pauses` of the triggers) and `programmes`, on the
settings of `options`.
`render` draws the page (its plots: `plots`), `sources` reads the inputs.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import ClvError
from streams.report.aggregate import Report, ReportBuilder
from streams.report.options import ReportOptions

if TYPE_CHECKING:
    from streams.settings import Settings

__all__ = ["Report", "ReportBuilder", "ReportOptions", "build_report", "write_report"]


def build_report(
    settings: Settings,
    *,
    scores: Path | None = None,
    emitted: Path | None = None,
    from_service: bool = False,
    first: date | None = None,
    last: date | None = None,
) -> Report:
    """The report's figures, from the files or (`from_service`) the broker."""
    from streams.report import sources

    if first and last and first > last:
        raise ClvError(f"the period is empty: --from {first} is after --to {last}")
    builder = ReportBuilder(ReportOptions.of(settings.scoring, first, last))
    if from_service:
        import asyncio

        asyncio.run(sources.read_service(settings, builder))
    else:
        # Events first: the scores file is the truth on who is a customer now.
        if emitted is not None:
            sources.read_emitted(emitted, builder)
        if scores is not None:
            sources.read_scores_csv(scores, builder)
    return builder.build()


def write_report(out: Path, settings: Settings, **inputs: Any) -> Report:
    """Build the report (`inputs` as for `build_report`) and write it to `out` (one
    HTML file); returns its figures."""
    from streams.report.render import render_html

    report = build_report(settings, **inputs)
    page = render_html(report)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as error:
        raise ClvError(f"cannot write the report: {error}") from error
    return report
