"""The offline demo: import the bundled CDNOW data, score it, summarise for a manager."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

from streams.importers import import_cdnow
from streams.offline import format_summary, score_file
from streams.settings import Settings


def segment_table(
    scores_csv: Path, column: str = "segment"
) -> list[tuple[str, int, float, float, float]]:
    """(segment, customers, total CLV, mean CLV, mean churn probability) per value of
    `column` (segment, lifecycle, value_tier, rfm_segment)."""
    groups: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with open(scores_csv, encoding="utf-8") as source:
        for row in csv.DictReader(source):
            clv = float(row["clv"] or 0.0)
            churn = float(row["churn_probability"] or 0.0)
            groups[row[column] or "-"].append((clv, churn))
    table = []
    for segment, members in sorted(groups.items(), key=lambda item: -len(item[1])):
        total = sum(clv for clv, _ in members)
        churn = sum(c for _, c in members) / len(members)
        table.append((segment, len(members), total, total / len(members), churn))
    return table


def run_offline_demo(settings: Settings, cdnow_file: Path, out_dir: Path) -> int:
    events = out_dir / "cdnow_events.jsonl"
    scores = out_dir / "cdnow_scores.csv"
    emitted = out_dir / "cdnow_emitted.jsonl"
    summary = import_cdnow(cdnow_file, events)
    print(f"imported {summary.events:,} CDNOW purchases -> {events}")
    result = score_file(events, scores, settings.scoring, emitted_path=emitted)
    print(format_summary(result))
    currency = settings.scoring.base_currency
    for column in ("lifecycle", "value_tier", "rfm_segment"):
        print(
            f"\n{column:<19}customers    CLV total ({currency})   CLV mean   churn prob "
            f"({settings.scoring.churn_window_days} d)"
        )
        for segment, count, total, mean, churn in segment_table(scores, column):
            print(f"{segment:<19}{count:>10,}{total:>20,.0f}{mean:>11,.2f}{churn:>12.2f}")
    print(f"\nscores:  {scores}\nemitted: {emitted} (score updates, segment changes, model fits)")
    return 0
