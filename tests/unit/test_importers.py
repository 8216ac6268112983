from __future__ import annotations

import orjson

from schemas.parsing import Transaction, parse_event
from streams.cli import main
from streams.importers import import_cdnow


def test_cdnow_rows_become_time_ordered_purchase_events(tmp_path):
    source = tmp_path / "cdnow.txt"
    source.write_text(
        " customer_id  date number_of_cds  dollar_value\n"
        " 00001 19970102  2   29.33\n"
        " 00001 19970101  1   11.77\n"
        " 00002 19970101  1    0.00\n"
        " 00003 1997013X  1    5.00\n"
    )
    out = tmp_path / "events.jsonl"
    summary = import_cdnow(source, out)
    assert (summary.rows, summary.events) == (4, 3)
    assert summary.skipped and "line 5" in summary.skipped[0]
    events = [parse_event(line) for line in out.read_bytes().splitlines()]
    assert all(isinstance(e, Transaction) for e in events)
    assert [(e.customer_id, e.occurred_at.date().isoformat(), e.amount) for e in events] == [
        ("00001", "1997-01-01", 11.77),
        ("00002", "1997-01-01", 0.0),
        ("00001", "1997-01-02", 29.33),
    ]
    first = orjson.loads(out.read_bytes().splitlines()[0])
    assert first["event_id"] == "cdnow-3" and first["currency"] == "USD"
    assert first["items"][0]["quantity"] == 1


def test_cli_import_reports_skipped_rows(tmp_path, capsys):
    source = tmp_path / "c.txt"
    source.write_text("00001 19970101 1 5.0\nbroken row\n")
    assert main(["import", "cdnow", str(source), "--out", str(tmp_path / "e.jsonl")]) == 1
    assert "line 2" in capsys.readouterr().err


def test_a_row_that_is_not_utf8_is_reported_not_merged_into_another_customer(tmp_path):
    """Latin-1 ids "00é1" and "00è1" both decoded to "00\ufffd1" (errors="replace"):
    two customers silently became one."""
    source, out = tmp_path / "cdnow.txt", tmp_path / "events.jsonl"
    source.write_bytes(b"00\xe91 19970101 1 5.00\n00\xe81 19970102 1 6.00\n00002 19970103 1 7.00\n")
    summary = import_cdnow(source, out)
    assert (summary.rows, summary.events) == (3, 1)
    assert [problem.split(":")[0] for problem in summary.skipped] == ["line 1", "line 2"]
    assert "UTF-8" in summary.skipped[0]
    assert [orjson.loads(line)["customer_id"] for line in out.read_bytes().splitlines()] == [
        "00002"
    ]
