from __future__ import annotations

import errno
import tracemalloc
from datetime import date, timedelta

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.parsing import Transaction, parse_event
from streams import importers
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


@pytest.mark.parametrize(
    "row",
    [
        "00001 19970101 1 nan",  # was written with "amount": null
        "00001 19970101 1 inf",
        "00001 19970101 1_0 5.00",  # int() reads "1_0" as 10
        "00001 +9970101 1 5.00",  # the year 997
        "00001 \u0661\u0669\u0669\u0667\u0660\u0661\u0660\u0661 1 5.00",  # Arabic-Indic digits
        "00001 19970101 1 -0.00",
        "00001 19970101 1 5.00 extra",
        "00001 19600101 1 5.00",  # before the contract's earliest time
        "00001 19970101 1 2000000000.00",  # over the contract's largest amount
        "00001 19970101 200000 5.00",  # over the contract's largest quantity
        "c" * 129 + " 19970101 1 5.00",  # not an id of the contract
        "00\u200b01 19970101 1 5.00",  # an invisible character in the id
    ],
)
def test_a_row_the_contract_would_refuse_is_reported_with_its_line_not_written(tmp_path, row):
    source, out = tmp_path / "cdnow.txt", tmp_path / "events.jsonl"
    source.write_text(f"00002 19970101 1 5.00\n{row}\n", encoding="utf-8")
    summary = import_cdnow(source, out)
    assert (summary.rows, summary.events) == (2, 1)
    assert len(summary.skipped) == 1 and summary.skipped[0].startswith("line 2: ")
    assert len(out.read_bytes().splitlines()) == 1


_TOKEN = st.one_of(
    st.from_regex(r"[0-9]{1,6}", fullmatch=True),
    st.from_regex(r"(19[0-9]{2}|2[0-9]{3})(0[0-9]|1[0-3])[0-3][0-9]", fullmatch=True),
    st.from_regex(r"[0-9]{1,4}(\.[0-9]{0,3})?", fullmatch=True),
    st.sampled_from(["nan", "-inf", "1e5", "0x1", "+1", "-1", "1_0", "\u0663", "\u00b2"]),
    st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=6),
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=st.lists(st.lists(_TOKEN, min_size=3, max_size=5), max_size=8))
def test_every_row_is_either_a_valid_event_or_reported(tmp_path, rows):
    source, out = tmp_path / "cdnow.txt", tmp_path / "events.jsonl"
    lines = ["00000 19970101 1 1.00", *(" ".join(fields) for fields in rows)]  # (no header)
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    summary = import_cdnow(source, out)
    written = out.read_bytes().splitlines()
    assert all(isinstance(parse_event(line), Transaction) for line in written)
    assert summary.rows == sum(1 for line in lines if line.split())
    assert summary.events == len(written) == summary.rows - summary.skipped_rows


def test_a_first_row_whose_id_is_not_all_digits_is_a_row_not_a_header(tmp_path):
    """Any line 1 whose id was not all digits was taken for a header and dropped
    without a word; a header is a line without any digit."""
    source, out = tmp_path / "cdnow.txt", tmp_path / "events.jsonl"
    source.write_text("A0001 19970101 1 5.00\nA0002 19970101 1 6.00\n")
    summary = import_cdnow(source, out)
    assert (summary.rows, summary.events, summary.skipped) == (2, 2, [])
    source.write_text("customer_id date number_of_cds dollar_value\nA0002 19970101 1 6.00\n")
    assert (import_cdnow(source, out).rows, len(out.read_bytes().splitlines())) == (1, 1)


class _DiskFull:
    """A file open for writing that takes one write, then fails as a full disk does."""

    def __init__(self, file) -> None:
        self.file, self.writes = file, 0

    def write(self, data: bytes) -> int:
        self.writes += 1
        if self.writes > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return self.file.write(data)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.file.close()


def test_an_import_that_fails_while_writing_leaves_the_previous_output_whole(tmp_path, monkeypatch):
    """The output was opened in place: a failure half-way left it half-written, the
    previous events file already destroyed."""
    source, out = tmp_path / "cdnow.txt", tmp_path / "events.jsonl"
    source.write_text("".join(f"{c:05d} 19970101 1 5.00\n" for c in range(1, 50)))
    out.write_bytes(b"previous\n")

    def failing_open(path, mode="r", *args, **kwargs):
        file = open(path, mode, *args, **kwargs)  # noqa: SIM115 (closed by the caller)
        return _DiskFull(file) if "w" in mode else file

    monkeypatch.setattr(importers, "open", failing_open, raising=False)
    with pytest.raises(OSError):
        import_cdnow(source, out)
    assert out.read_bytes() == b"previous\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cdnow.txt", "events.jsonl"]
    monkeypatch.undo()
    assert import_cdnow(source, out).events == 49 == len(out.read_bytes().splitlines())


def _rows_file(path, count: int) -> None:
    """`count` rows sorted by customer, as CDNOW is, their dates spread over a year."""
    path.write_text(
        "".join(
            f"{c:05d} {date(1997, 1, 1) + timedelta(days=(c * 7919) % 365):%Y%m%d} 1 5.00\n"
            for c in range(count)
        )
    )


def test_a_large_file_is_sorted_without_holding_every_event_in_memory(tmp_path):
    """Every event was held in memory (as a dict) until the sort; now at most
    `run_lines` event lines are, the rest in sorted runs on disk."""
    source, out = tmp_path / "cdnow.txt", tmp_path / "events.jsonl"
    _rows_file(source, 20_000)
    tracemalloc.start()
    try:
        summary = import_cdnow(source, out, run_lines=500)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert summary.events == 20_000
    assert peak < 4_000_000  # (all 20,000 held as dicts: about 20 MB)
    days = [orjson.loads(line)["occurred_at"] for line in out.read_bytes().splitlines()]
    assert days == sorted(days)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cdnow.txt", "events.jsonl"]


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    days=st.lists(st.integers(0, 30), max_size=40),
    run_lines=st.integers(1, 12),
)
def test_the_output_does_not_depend_on_how_many_lines_are_sorted_at_once(tmp_path, days, run_lines):
    source = tmp_path / "cdnow.txt"
    source.write_text(
        "".join(
            f"{n % 7:05d} {date(1997, 1, 1) + timedelta(days=d):%Y%m%d} 1 5.00\n"
            for n, d in enumerate(days)
        )
    )
    in_memory, in_runs = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    import_cdnow(source, in_memory)
    assert import_cdnow(source, in_runs, run_lines=run_lines).events == len(days)
    assert in_runs.read_bytes() == in_memory.read_bytes()
    ids = [orjson.loads(line)["event_id"] for line in in_runs.read_bytes().splitlines()]
    lines = sorted(range(1, len(days) + 1), key=lambda line: (days[line - 1], line))
    assert ids == [f"cdnow-{line}" for line in lines]


def test_an_output_that_is_a_directory_is_named_as_such(tmp_path, capsys):
    source, out = tmp_path / "cdnow.txt", tmp_path / "events"
    source.write_text("00001 19970101 1 5.00\n")
    out.mkdir()
    assert main(["import", "cdnow", str(source), "--out", str(out)]) == 2
    assert capsys.readouterr().err == f"clvstream: {out}: Is a directory\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cdnow.txt", "events"]


def test_every_skipped_row_is_counted_and_the_report_says_how_many_it_leaves_out(tmp_path, capsys):
    """The command printed the first 20 problems and nothing of the rest; the summary
    kept every problem's text however many (a file of garbage: its size again)."""
    source, out = tmp_path / "cdnow.txt", tmp_path / "events.jsonl"
    source.write_text("00001 19970101 1 5.00\n" + "broken row\n" * 150)
    summary = import_cdnow(source, out)
    assert (summary.rows, summary.events, summary.skipped_rows) == (151, 1, 150)
    assert len(summary.skipped) == 100 and summary.skipped[-1].startswith("line 101: ")
    assert main(["import", "cdnow", str(source), "--out", str(out)]) == 1
    captured = capsys.readouterr()
    assert "151 rows -> 1 events" in captured.out and "150 skipped" in captured.out
    err = captured.err.splitlines()
    assert len(err) == 21 and err[-1] == "  ... and 130 more skipped rows"
