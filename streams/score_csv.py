"""The scores CSV: its columns and how a value is written in a cell (also used for
the Redis hashes).

>>> cell_text(0.5), cell_text(None), cell_text(["a", "b"]), cell_text(3)
('0.500000', '', 'a; b', '3')
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import IO

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


def scores_writer(sink: IO[str], header: bool = False):
    """The CSV writer of the scores file (`\\n` line ends), the header written if asked."""
    writer = csv.writer(sink, lineterminator="\n")
    if header:
        writer.writerow(SCORE_COLUMNS)
    return writer


def write_rows(rows: Iterable[dict], sink: IO[str]) -> int:
    """Write one CSV row per score row (no header, fixed float format)."""
    writer = scores_writer(sink)
    count = 0
    for row in rows:
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
