"""The offline scorer: events file in, scores CSV (and emitted events) out.

It drives the same `ScoringEngine` and transition as the stream agents. Same input
file, same settings: byte-identical outputs.
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from models.churn_learning import version_quality_text
from models.config import ScoringConfig
from models.engine import ScoringEngine
from models.programmes.book import ProgrammeBook, pooled_summary
from models.timeline import date_of_day, day_of_date, end_of_day
from streams.orphan_guard import fit_executor
from streams.partitioned import Job, PartitionSummary, Replay, Sinks
from streams.partitioned_jobs import run_in_processes
from streams.progress import Progress
from streams.report.programmes import effect_text
from streams.score_csv import SCORE_COLUMNS, cell_text, scores_writer, write_rows
from streams.topics import Partitioner


@dataclass
class OfflineResult:
    partitions: list[PartitionSummary]
    as_of: str
    customers: int
    elapsed_seconds: float
    engines: list[ScoringEngine]  # when scored in this process

    @property
    def engine(self) -> ScoringEngine:
        """The engine of a one-partition run in this process."""
        if len(self.engines) != 1:
            raise ValueError("the run had several partitions or ran in other processes")
        return self.engines[0]

    @property
    def counters(self) -> dict:
        """The partitions' counters, added up."""
        total: dict = {}
        for summary in self.partitions:
            for name, value in summary.counters.items():
                if isinstance(value, dict):
                    into = total.setdefault(name, {})
                    for key, number in value.items():
                        into[key] = into.get(key, 0) + number
                else:
                    total[name] = total.get(name, 0) + value
        if "dead_lettered_by_reason" in total:
            total["dead_lettered_by_reason"] = dict(
                sorted(total["dead_lettered_by_reason"].items())
            )
        return total


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
    partitions: int = 1,
    jobs: int = 1,
    partitioner: Partitioner = "murmur2",
) -> OfflineResult:
    """Replay `events_path` in file order through the engine and write the scores.

    Events after the as-of date are ignored (the whole as-of date, UTC, counts).
    The clock is then advanced to the end of that date, silent customers due by
    then are re-scored, the value model is refitted on all customers (unless
    `final_refit` is off) and every customer is scored as of that date.
    With `partitions` > 1 customers are split as the service splits them, each
    partition scored on its own (`streams.partitioned`), in `jobs` processes; a
    customer's partition is the one `partitioner` gives their id (as the producers do).
    """
    if partitions < 1 or jobs < 1:
        raise ValueError("partitions and jobs must be at least 1")
    open(events_path, "rb").close()  # a missing file fails here, not in each process
    for output in (scores_path, emitted_path, dead_letter_path):
        if output is not None:  # an output that cannot be written fails now, not at the end
            writable_output(Path(output))
    started = time.perf_counter()
    jobs = min(jobs, partitions)
    as_of_day = day_of_date(as_of) if as_of is not None else None
    job_of = [
        Job(
            events_path=Path(events_path),
            partitions=partitions,
            partitioner=partitioner,
            owned=tuple(range(index, partitions, jobs)),
            config=config,
            until=end_of_day(as_of_day) if as_of_day is not None else None,
            as_of_day=as_of_day,
            final_refit=final_refit,
            # Events from the future (beyond the run's start, give or take the allowed
            # skew) are bad dates; with an as-of date, events after it are skipped anyway.
            future_limit=time.time() + config.max_future_seconds if as_of is None else None,
            fits_in_background=fit_in_background,
        )
        for index in range(jobs)
    ]
    progress = Progress(os.path.getsize(events_path), "scoring") if show_progress else None
    update = progress.update if progress is not None else (lambda done, read: None)
    engines: list[ScoringEngine] = []
    if jobs > 1:
        summaries = run_in_processes(job_of, scores_path, emitted_path, dead_letter_path, update)
    else:
        summaries, engines = _score_in_process(
            job_of[0], scores_path, emitted_path, dead_letter_path, update
        )
    if progress is not None:
        progress.close(os.path.getsize(events_path), sum(s.counters["read"] for s in summaries))
    last_days = [s.as_of_day for s in summaries if s.as_of_day is not None]
    as_of_text = date_of_day(max(last_days)) if last_days else ""
    return OfflineResult(
        summaries,
        as_of_text,
        sum(s.customers for s in summaries),
        time.perf_counter() - started,
        engines,
    )


def writable_output(path: Path) -> None:
    """Make `path`'s folder (as the run would) or raise the OSError, naming `path`, that
    writing it would raise: a directory, a folder that is a file, no permission.

    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as folder:
    ...     writable_output(Path(folder) / "new" / "scores.csv")
    ...     try:
    ...         writable_output(Path(folder))
    ...     except IsADirectoryError as error:
    ...         print(error.strerror)
    Is a directory
    """
    folder = next(p for p in (path.parent, *path.parent.parents) if p.exists())
    if not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not os.access(path if path.exists() else path.parent, os.W_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))


def _score_in_process(
    job: Job,
    scores_path: Path,
    emitted_path: Path | None,
    dead_letter_path: Path | None,
    progress: Callable[[int, int], None],
) -> tuple[list[PartitionSummary], list[ScoringEngine]]:
    executor = fit_executor() if job.fits_in_background else None
    emitted = open(emitted_path, "wb") if emitted_path else None  # noqa: SIM115
    dead_letter = open(dead_letter_path, "wb") if dead_letter_path else None  # noqa: SIM115
    try:
        replay = Replay(job, Sinks(emitted, dead_letter, tagged=False), executor)
        last_day = replay.run(progress)
        as_of_day = job.as_of_day if job.as_of_day is not None else last_day
        scores_path.parent.mkdir(parents=True, exist_ok=True)
        with open(scores_path, "w", newline="", encoding="utf-8") as scores:
            scores_writer(scores, header=True)
            summaries = replay.finish(as_of_day, scores)
    finally:
        for handle in (emitted, dead_letter):
            if handle is not None:
                handle.close()
        if executor is not None:
            executor.shutdown(cancel_futures=True)
    return summaries, list(replay.engines.values())


def format_summary(result: OfflineResult) -> str:
    """A short human summary of a run (counts, model, segments)."""
    counts = result.counters
    parts = result.partitions
    where = f" in {len(parts)} partitions" if len(parts) > 1 else ""
    lines = [
        f"as of {result.as_of}: {result.customers:,} customers scored{where} "
        f"in {result.elapsed_seconds:.1f} s",
        f"events read {counts['read']:,}  applied {counts['applied']:,}  "
        f"duplicates {counts['duplicates']:,}  late {counts['late']:,}  "
        f"dead-lettered {counts['dead_lettered']:,}  after as-of {counts['ignored_after_as_of']:,}",
    ]
    for reason, number in counts["dead_lettered_by_reason"].items():
        lines.append(f"  dead letter {reason}: {number:,}")
    lines.append(
        f"re-scored silent customers {counts['rescored']:,}  erased {counts['erased']:,}  "
        f"refits {counts['refits']} (failed {counts['failed_refits']}, "
        f"skipped for too little data {counts['skipped_refits']})"
    )
    if counts.get("refits_missing_statistics"):
        lines.append(
            f"refits fitted without some partitions' statistics (not as a replay fits): "
            f"{counts['refits_missing_statistics']}"
        )
    if counts.get("dropped_after_erasure"):
        lines.append(
            f"events of erased customers dated before their erasure, dropped: "
            f"{counts['dropped_after_erasure']:,}"
        )
    if counts.get("erasures_predating_customer"):
        lines.append(
            f"erasures dated before all that is kept of their customer (who came back "
            f"after them), not applied: {counts['erasures_predating_customer']:,}"
        )
    if counts.get("dedupe_overflows"):
        lines.append(
            f"ids forgotten before the watermark passed them (dedupe_window full): "
            f"{counts['dedupe_overflows']:,}"
        )
    for part in parts:
        name = f" ({part.scope})" if len(parts) > 1 else ""
        lines.append(f"value model{name} {part.model_version}")
        health = part.churn_health
        if health is not None:
            lines.append(f"churn model{name} {part.churn_version}: {_churn_health_text(health)}")
        for version, quality in part.churn_by_version:
            lines.append(f"  scores served under {version}: {version_quality_text(quality)}")
    books = [part.programmes for part in parts if part.programmes is not None]
    lines.extend(programme_lines(books, parts[0].currency if parts else ""))
    return "\n".join(lines)


def _churn_health_text(health: dict[str, float]) -> str:
    """The churn model's learning and rolling quality; "n/a" for what no label measured
    yet (and for the AUC while the labels are all of one class).

    >>> _churn_health_text({"labels": 0.0, "churn_rate": 0.0, "model_weight": 0.0,
    ...     "rolling_auc": 0.0, "rolling_log_loss": 0.0, "rolling_brier": 0.0,
    ...     "drifts_detected": 0.0})
    '0 labels learned (churn rate n/a, model weight 0.00); rolling AUC n/a, log loss n/a, \
Brier n/a; drifts detected 0'
    """
    labelled = health["labels"] > 0
    both_classes = labelled and 0.0 < health["churn_rate"] < 1.0

    def value(key: str, digits: int, known: bool = labelled) -> str:
        return f"{health[key]:.{digits}f}" if known else "n/a"

    return (
        f"{health['labels']:,.0f} labels learned "
        f"(churn rate {value('churn_rate', 2)}, model weight {health['model_weight']:.2f}); "
        f"rolling AUC {value('rolling_auc', 3, both_classes)}, "
        f"log loss {value('rolling_log_loss', 3)}, Brier {value('rolling_brier', 3)}; "
        f"drifts detected {health['drifts_detected']:.0f}"
    )


def programme_lines(books: list[ProgrammeBook], currency: str) -> list[str]:
    """Per programme, over all partitions: triggers by arm, closed windows, measured
    effect, status."""
    if not books:
        return []
    lines = [f"programmes (incremental revenue per treated customer, {currency}, 95% CI):"]
    for row in pooled_summary(books):
        programme_id = row["programme_id"]
        triggers, closed = row["triggers"], row["closed"]
        line = (
            f"  {programme_id}: triggers {triggers['treatment']:,} treatment / "
            f"{triggers['control']:,} control"
        )
        if "ci_low" not in row:
            line += "; too few closed windows to measure"
        else:
            roi = f"{row['roi']:.2f}" if row["roi"] is not None else "n/a"
            effect = row["incremental_revenue_per_customer"]
            line += (
                f"; closed {closed['treatment']:,}/{closed['control']:,}: "
                f"{effect_text(effect, row['ci_low'], row['ci_high'])}, "
                f"total {row['total_incremental_revenue']:+,.0f}, cost {row['cost']:,.0f}, "
                f"ROI {roi}"
            )
        if len(books) == 1:
            stopped = books[0].stopped(programme_id)
            line += f"; {stopped}" if stopped else ""
        elif row["stopped_in"]:
            line += f"; stopped in {', '.join(row['stopped_in'])}"
        lines.append(line)
    return lines


__all__ = ["SCORE_COLUMNS", "cell_text", "format_summary", "score_file", "write_rows"]
