"""Importers: external data sets -> clvstream input events (JSON Lines).

CDNOW rows are `customer_id date(YYYYMMDD) cds dollars`. The file is sorted by
customer; an event log must be in time order, so events are written sorted by
date (stable: same-day rows keep their file order).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import orjson


@dataclass
class ImportSummary:
    rows: int = 0
    events: int = 0
    skipped: list[str] = field(default_factory=list)  # "line N: why"


def cdnow_event(line_number: int, customer_id: str, day: date, cds: int, dollars: float) -> dict:
    """One CDNOW row as a purchase event.

    >>> cdnow_event(2, "00001", date(1997, 1, 1), 1, 11.77)["occurred_at"]
    '1997-01-01T00:00:00+00:00'
    """
    return {
        "event_type": "transaction",
        "event_id": f"cdnow-{line_number}",
        "customer_id": customer_id,
        "occurred_at": f"{day.isoformat()}T00:00:00+00:00",
        "kind": "purchase",
        "amount": dollars,
        "currency": "USD",
        "items": [
            {
                "sku": "cd",
                "category": "music",
                "quantity": cds,
                "unit_price": round(dollars / cds, 4),
            }
        ],
    }


def _is_utf8(line: str) -> bool:
    r"""Whether a line read with `surrogateescape` was valid UTF-8.

    >>> _is_utf8("café"), _is_utf8("caf\udce9")  # (byte 0xE9 kept by surrogateescape)
    (True, False)
    """
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def import_cdnow(source: Path, out: Path) -> ImportSummary:
    """Convert CDNOW_master.txt (header line optional) into time-ordered events."""
    summary = ImportSummary()
    rows: list[tuple[date, int, dict]] = []
    # Undecodable bytes stay apart (surrogates) so that the row is reported: replacing
    # them would make distinct ids one ("00\xe91" and "00\xe81" both "00\ufffd1").
    with open(source, encoding="utf-8-sig", errors="surrogateescape") as lines:  # BOM or not
        for line_number, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            if not _is_utf8(line):
                summary.rows += 1
                summary.skipped.append(f"line {line_number}: not UTF-8 text")
                continue
            if line_number == 1 and not fields[0].isdigit():
                continue  # header
            summary.rows += 1
            try:
                customer_id, raw_date, raw_cds, raw_dollars = fields
                day = date(int(raw_date[:4]), int(raw_date[4:6]), int(raw_date[6:8]))
                cds, dollars = int(raw_cds), float(raw_dollars)
                if len(raw_date) != 8 or cds < 1 or dollars < 0:
                    raise ValueError("needs an 8-digit date, >= 1 CD and dollars >= 0")
            except ValueError as error:
                summary.skipped.append(f"line {line_number}: {error}")
                continue
            rows.append(
                (day, line_number, cdnow_event(line_number, customer_id, day, cds, dollars))
            )
    rows.sort(key=lambda row: (row[0], row[1]))
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "wb") as sink:
        for _, _, event in rows:
            sink.write(orjson.dumps(event) + b"\n")
    summary.events = len(rows)
    return summary
