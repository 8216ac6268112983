"""The offline scorer: events file in, scores CSV (and emitted events) out.

It drives the same `ScoringEngine` and transition as the stream agents. Same input
file, same settings: byte-identical outputs.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import IO

import orjson

from models.config import ScoringConfig
from models.engine import ScoringEngine
from models.timeline import date_of_day, day_of_date, end_of_day
from models.transition import Output, Stream
from streams.progress import Progress

SCORE_COLUMNS = (
    "customer_id",
    "frequency",
    "recency_days",
    "tenure_days",
    "monetary_value",
    "total_spend",
    "refund_total",
    "p_alive",
    "expected_purchases",
    "predicted_value",
    "clv",
    "churn_probability",
    "value_churn_probability",
    "churn_reasons",
    "segment",
    "lifecycle",
    "value_tier",
    "rfm_score",
    "rfm_segment",
    "top_needs",
    "model_version",
)


@dataclass
class OfflineResult:
    engine: ScoringEngine
    as_of: str
    customers: int
    elapsed_seconds: float

    @property
    def counters(self) -> dict:
        return self.engine.counters.as_dict()


class _Sinks:
    """Where emitted events go: all of them, and dead letters on their own if asked."""

    def __init__(self, emitted: IO[bytes] | None, dead_letter: IO[bytes] | None) -> None:
        self.emitted = emitted
        self.dead_letter = dead_letter

    def write(self, outputs: list[Output]) -> None:
        for output in outputs:
            if self.emitted is not None:
                envelope = {"stream": output.stream.value, "key": output.key, "value": output.value}
                self.emitted.write(orjson.dumps(envelope) + b"\n")
            if self.dead_letter is not None and output.stream is Stream.DEAD_LETTER:
                self.dead_letter.write(orjson.dumps(output.value) + b"\n")


def score_file(
    events_path: Path,
    scores_path: Path,
    config: ScoringConfig,
    *,
    as_of: date | None = None,
    emitted_path: Path | None = None,
    dead_letter_path: Path | None = None,
    final_refit: bool = True,
    show_progress: bool = True,
    fit_in_background: bool = True,
) -> OfflineResult:
    """Replay `events_path` in file order through the engine and write the scores.

    Events after the as-of date are ignored (the whole as-of date, UTC, counts).
    The clock is then advanced to the end of that date, silent customers due by
    then are re-scored, the value model is refitted on all customers (unless
    `final_refit` is off) and every customer is scored as of that date.
    """
    started = time.perf_counter()
    executor = fit_executor() if fit_in_background else None
    engine = ScoringEngine(config, fit_executor=executor)
    until = end_of_day(day_of_date(as_of)) if as_of is not None else None
    emitted = open(emitted_path, "wb") if emitted_path else None  # noqa: SIM115
    dead_letter = open(dead_letter_path, "wb") if dead_letter_path else None  # noqa: SIM115
    sinks = _Sinks(emitted, dead_letter)
    progress = Progress(os.path.getsize(events_path), "scoring") if show_progress else None
    origin_file = Path(events_path).name
    done = 0
    try:
        with open(events_path, "rb") as lines:
            for line_number, line in enumerate(lines, start=1):
                done += len(line)
                raw = line.rstrip(b"\r\n")
                if not raw.strip():
                    continue
                origin = {"source": "file", "file": origin_file, "line": line_number}
                outputs = engine.process_raw(raw, origin, until)
                if outputs:
                    sinks.write(outputs)
                if progress is not None and line_number % 4096 == 0:
                    progress.update(done, engine.counters.read)
        if progress is not None:
            progress.close(done, engine.counters.read)
        as_of_day = day_of_date(as_of) if as_of is not None else engine.current_day
        end = end_of_day(as_of_day)
        sinks.write(engine.advance_watermark(end))
        if final_refit and engine.clock.started:
            sinks.write([engine.refit(as_of_day)])
        customers = write_scores(engine, end, scores_path)
    finally:
        for handle in (emitted, dead_letter):
            if handle is not None:
                handle.close()
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    return OfflineResult(engine, date_of_day(as_of_day), customers, time.perf_counter() - started)


def fit_executor() -> ProcessPoolExecutor:
    """One worker process for population refits, so they run beside the replay. It is
    started (and imports the fitter) now, while the replay's first weeks are read."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["models.refit"])
    executor = ProcessPoolExecutor(max_workers=1, mp_context=context)
    executor.submit(abs, 0)
    return executor


def write_scores(engine: ScoringEngine, at: float, path: Path) -> int:
    """Write one CSV row per customer (sorted by id, fixed float format)."""
    count = 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as sink:
        writer = csv.writer(sink, lineterminator="\n")
        writer.writerow(SCORE_COLUMNS)
        for row in engine.score_rows(at):
            writer.writerow([cell_text(row[column]) for column in SCORE_COLUMNS])
            count += 1
    return count


def cell_text(value: object) -> str:
    """A CSV cell (and a Redis hash value): empty for null, 6 decimals, lists "; "-joined."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6f}"
    if isinstance(value, list):
        return "; ".join(value)
    return str(value)


def format_summary(result: OfflineResult) -> str:
    """A short human summary of a run (counts, model, segments)."""
    counts = result.counters
    engine = result.engine
    lines = [
        f"as of {result.as_of}: {result.customers:,} customers scored "
        f"in {result.elapsed_seconds:.1f} s",
        f"events read {counts['read']:,}  applied {counts['applied']:,}  "
        f"duplicates {counts['duplicates']:,}  late {counts['late']:,}  "
        f"dead-lettered {counts['dead_lettered']:,}  after as-of {counts['ignored_after_as_of']:,}",
    ]
    for reason, number in counts["dead_lettered_by_reason"].items():
        lines.append(f"  dead letter {reason}: {number:,}")
    lines.append(
        f"re-scored silent customers {counts['rescored']:,}  erased {counts['erased']:,}  "
        f"refits {counts['refits']} (failed {counts['failed_refits']})"
    )
    lines.append(f"value model {engine.scorer.model_version}")
    churn = engine.scorer.churn
    if churn is not None:
        health = churn.health()
        lines.append(
            f"churn model {churn.version}: {health['labels']:,.0f} labels learned "
            f"(churn rate {health['churn_rate']:.2f}, model weight {health['model_weight']:.2f}); "
            f"rolling AUC {health['rolling_auc']:.3f}, log loss {health['rolling_log_loss']:.3f}, "
            f"Brier {health['rolling_brier']:.3f}; drifts detected {health['drifts_detected']:.0f}"
        )
    lines.extend(programme_lines(engine))
    return "\n".join(lines)


def programme_lines(engine: ScoringEngine) -> list[str]:
    """Per programme: triggers by arm, closed windows, measured effect, status."""
    book = engine.scorer.programmes
    if book is None:
        return []
    currency = engine.config.base_currency
    lines = [f"programmes (incremental revenue per treated customer, {currency}, 95% CI):"]
    for programme in book.config.catalogue:
        treated, control = book.triggers[programme.id]
        line = f"  {programme.id}: triggers {treated:,} treatment / {control:,} control"
        result = book.estimate(programme.id)
        if result is None:
            line += "; too few closed windows to measure"
        else:
            roi = f"{result.roi:.2f}" if result.roi != float("inf") else "n/a"
            line += (
                f"; closed {result.treated:,}/{result.control:,}: "
                f"{result.per_customer:+.2f} ({result.low:+.2f} to {result.high:+.2f}), "
                f"total {result.total:+,.0f}, cost {result.cost:,.0f}, ROI {roi}"
            )
        stopped = book.stopped(programme.id)
        if stopped:
            line += f"; {stopped}"
        lines.append(line)
    return lines
