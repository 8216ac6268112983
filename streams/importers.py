"""Importers: external data sets -> clvstream input events (JSON Lines).

CDNOW rows are `customer_id date(YYYYMMDD) cds dollars`. The file is sorted by
customer; an event log must be in time order, so events are written sorted by
date (stable: same-day rows keep their file order), in runs on disk when there are
more than fit in memory.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import orjson

from schemas.parsing import Rejected, parse_event
from streams.sorted_lines import sorted_lines

RUN_LINES = 200_000  # events sorted in memory at once; more are sorted in runs on disk
_KEY_BYTES = 19  # a date's ordinal (7 digits) and a line number (12), in byte order
_KEPT_PROBLEMS = 100  # skipped rows whose problem a summary keeps (all are counted)
_DIGITS = frozenset("0123456789")
_DATE = re.compile(r"[0-9]{8}")
_COUNT = re.compile(r"0*[1-9][0-9]*")
_DOLLARS = re.compile(r"[0-9]+(\.[0-9]*)?|\.[0-9]+")


@dataclass
class ImportSummary:
    rows: int = 0
    events: int = 0
    skipped_rows: int = 0
    skipped: list[str] = field(default_factory=list)  # "line N: why", the first 100

    def skip(self, line_number: int, why: str) -> None:
        """Count a row that is not imported; keep what is wrong with the first few."""
        self.skipped_rows += 1
        if len(self.skipped) < _KEPT_PROBLEMS:
            self.skipped.append(f"line {line_number}: {why}")


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


def cdnow_row(fields: list[str]) -> tuple[str, date, int, float]:
    """(customer id, date, CDs, dollars) of a row's fields, or a ValueError saying what
    is wrong. Numbers are ASCII digits only: `int` and `float` also read "1_0", "+1",
    "nan", "inf" and other scripts' digits.

    >>> cdnow_row(["00001", "19970101", "2", "29.33"])
    ('00001', datetime.date(1997, 1, 1), 2, 29.33)
    >>> cdnow_row(["00001", "19970101", "1", "nan"])
    Traceback (most recent call last):
    ValueError: dollars 'nan' is not a decimal number >= 0
    """
    if len(fields) != 4:
        raise ValueError(f"needs 4 fields (customer id, date, CDs, dollars), not {len(fields)}")
    customer_id, raw_date, raw_cds, raw_dollars = fields
    if not _DATE.fullmatch(raw_date):
        raise ValueError(f"date {raw_date!r} is not YYYYMMDD")
    try:
        day = date(int(raw_date[:4]), int(raw_date[4:6]), int(raw_date[6:]))
    except ValueError as error:
        raise ValueError(f"date {raw_date!r}: {error}") from None
    if not _COUNT.fullmatch(raw_cds):
        raise ValueError(f"number of CDs {raw_cds!r} is not a whole number >= 1")
    if not _DOLLARS.fullmatch(raw_dollars):
        raise ValueError(f"dollars {raw_dollars!r} is not a decimal number >= 0")
    return customer_id, day, int(raw_cds), float(raw_dollars)


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


def import_cdnow(source: Path, out: Path, run_lines: int = RUN_LINES) -> ImportSummary:
    """Convert CDNOW_master.txt (header line optional: a first line without digits)
    into time-ordered events, holding at most `run_lines` of them in memory."""
    summary = ImportSummary()
    # Undecodable bytes stay apart (surrogates) so that the row is reported: replacing
    # them would make distinct ids one ("00\xe91" and "00\xe81" both "00\ufffd1").
    with open(source, encoding="utf-8-sig", errors="surrogateescape") as lines:  # BOM or not
        ordered = sorted_lines(_keyed_events(lines, summary), run_lines, out.parent)
        write_whole(out, (line[_KEY_BYTES:] for line in ordered))
    return summary


def _keyed_events(lines: Iterable[str], summary: ImportSummary) -> Iterator[bytes]:
    """Each valid row's event line behind its sort key (the date, then the line
    number: same-day rows keep their file order); problems go to `summary`."""
    for line_number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        if not _is_utf8(line):
            summary.rows += 1
            summary.skip(line_number, "not UTF-8 text")
            continue
        if line_number == 1 and not any(c in _DIGITS for c in line):
            continue  # a header (every row has a date)
        summary.rows += 1
        try:
            customer_id, day, cds, dollars = cdnow_row(fields)
        except ValueError as error:
            summary.skip(line_number, str(error))
            continue
        event = orjson.dumps(cdnow_event(line_number, customer_id, day, cds, dollars))
        checked = parse_event(event)
        if isinstance(checked, Rejected):  # what the scorer would dead-letter
            summary.skip(line_number, checked.detail)
            continue
        summary.events += 1
        yield b"%07d%012d%b\n" % (day.toordinal(), line_number, event)


def write_whole(out: Path, lines: Iterable[bytes]) -> None:
    """Write `lines` to `out` in full or not at all: into a file beside it, moved over
    it once complete (a failure half-way leaves the previous `out` as it was)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        with open(partial, "wb") as sink:
            for line in lines:
                sink.write(line)
        try:
            os.replace(partial, out)
        except OSError as error:  # about `out` (a directory, say), not the partial file
            raise type(error)(error.errno, error.strerror, str(out)) from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
