"""The command line's grammar: every `clvstream` subcommand, its options and help."""

from __future__ import annotations

import argparse
import math
from datetime import date
from pathlib import Path

from schemas.outputs import DeadLetterReason

DESCRIPTION = """\
clvstream keeps every customer's value (CLV), churn risk and segment up to date
from transaction and interaction events.

Start here:
  clvstream up                           embedded broker + Redis, a worker, a demo replay
  clvstream demo                         score the bundled CDNOW data offline, print a summary
  clvstream simulate --customers 1000 --days 365 --out events.jsonl
  clvstream score events.jsonl --out scores.csv
  clvstream worker                       the streaming worker (CLVSTREAM_KAFKA_URL, _REDIS_URL)
  clvstream replay events.jsonl          produce an events file to the input topics
  clvstream redrive                      send misrouted dead letters back, once fixed
"""


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from error


def _positive(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"not a whole number of at least 1: {text!r}")
    return number


def _scoring_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--horizon-days", type=int, help="CLV / expected-purchase horizon (365)")
    parser.add_argument("--churn-window-days", type=int, help="churn = no purchase within W (90)")
    parser.add_argument("--value-model", choices=("pareto_nbd", "bg_nbd"), help="(pareto_nbd)")
    parser.add_argument("--lateness-hours", type=float, help="allowed lateness of events (24)")
    parser.add_argument("--config", type=Path, help="TOML settings file")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clvstream", description=DESCRIPTION, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="score the bundled CDNOW data and print a summary")
    demo.add_argument("--out-dir", type=Path, default=Path("out"), help="where files go (out/)")
    _scoring_options(demo)

    score = commands.add_parser("score", help="score an events file (JSON Lines) into a CSV")
    score.add_argument("events", type=Path, help="input events, one JSON object per line")
    score.add_argument("--out", type=Path, required=True, help="scores CSV, one row per customer")
    score.add_argument("--as-of", type=_date, help="score as of this UTC date (last event's date)")
    score.add_argument("--emitted", type=Path, help="also write every emitted event (JSON Lines)")
    score.add_argument("--dead-letter", type=Path, help="also write rejected inputs (JSON Lines)")
    score.add_argument(
        "--no-final-refit", action="store_true", help="keep the scheduled fit at the as-of date"
    )
    score.add_argument(
        "--partitions",
        type=_positive,
        default=1,
        help="split customers as the service's N partitions do, each scored on its own (1)",
    )
    score.add_argument(
        "--jobs",
        type=_positive,
        help="processes for the partitions (default: one per core, at most one per "
        "partition; the output is the same for any number)",
    )
    _scoring_options(score)

    importer = commands.add_parser("import", help="convert an external data set into events")
    importer.add_argument("format", choices=("cdnow",), help="source format")
    importer.add_argument("source", type=Path, help="source file, e.g. CDNOW_master.txt")
    importer.add_argument("--out", type=Path, required=True, help="events file to write")

    schemas = commands.add_parser("schemas", help="write (or check) the JSON Schema files")
    schemas.add_argument("--check", action="store_true", help="fail if the files are stale")

    settings = commands.add_parser(
        "settings", help="print the settings in effect (file < environment), secrets hidden"
    )
    settings.add_argument("--config", type=Path, help="TOML settings file")

    _add_simulate(commands)
    _add_service(commands)
    _add_report(commands)
    return parser


def _log_level(text: str) -> str:
    """A log level's name in lower case, `warn` (as Python's logging takes it) for warning.

    >>> _log_level("WARN"), _log_level("Debug")
    ('warning', 'debug')
    """
    level = text.lower()
    return "warning" if level == "warn" else level


def _add_service(commands: argparse._SubParsersAction) -> None:
    worker = commands.add_parser("worker", help="run the streaming worker (Faust)")
    worker.add_argument(
        "--loglevel",
        type=_log_level,
        choices=("critical", "error", "warning", "info", "debug"),
        default="info",
        help="(info)",
    )
    worker.add_argument("--config", type=Path, help="TOML settings file")

    replay = commands.add_parser("replay", help="produce an events file to the input topics")
    replay.add_argument("events", type=Path, help="events, one JSON object per line")
    replay.add_argument(
        "--rate", type=positive_rate, help="events per second (as fast as possible)"
    )
    replay.add_argument("--config", type=Path, help="TOML settings file")

    redrive = commands.add_parser(
        "redrive", help="send dead-lettered inputs back to the input topics, once fixed"
    )
    redrive.add_argument(
        "--reason",
        action="append",
        choices=[reason.value for reason in DeadLetterReason],
        metavar="REASON",
        help="dead letters of this reason (repeatable; default: the misrouted ones, "
        "key_mismatch, wrong_topic and wrong_partition)",
    )
    redrive.add_argument(
        "--file", type=Path, help="dead letters of `clvstream score --dead-letter` (the topic)"
    )
    redrive.add_argument("--dry-run", action="store_true", help="count, produce nothing")
    redrive.add_argument("--config", type=Path, help="TOML settings file")

    up = commands.add_parser(
        "up", help="start the embedded stack and a worker, replay a demo population"
    )
    up.add_argument("--events", type=Path, help="replay this file instead of the demo")
    up.add_argument("--customers", type=int, default=3000, help="demo customers (3000)")
    up.add_argument("--days", type=int, default=540, help="demo days of history (540)")
    up.add_argument(
        "--rate", type=positive_rate, help="replay rate, events/s (as fast as possible)"
    )
    up.add_argument("--out-dir", type=Path, default=Path("out"), help="demo files, log (out/)")
    up.add_argument("--exit-when-done", action="store_true", help="stop once all is scored")
    up.add_argument("--config", type=Path, help="TOML settings file")


def _add_simulate(commands: argparse._SubParsersAction) -> None:
    simulate = commands.add_parser("simulate", help="generate a synthetic population's events")
    simulate.add_argument(
        "--customers", type=int, required=True, help="customers (ids c0000001, ...)"
    )
    simulate.add_argument("--days", type=int, required=True, help="days of history")
    simulate.add_argument(
        "--seed", type=int, default=0, help="random seed: the same seed, the same file (0)"
    )
    simulate.add_argument("--start", type=_date, help="first day (2024-01-01)")
    simulate.add_argument("--out", type=Path, required=True, help="events file (JSON Lines)")
    simulate.add_argument("--truth", type=Path, help="latent truth per customer (CSV)")
    simulate.add_argument(
        "--no-interactions", action="store_true", help="transactions and customer events only"
    )
    simulate.add_argument(
        "--duplicate-rate", type=float, default=0.0, help="share of events sent twice (0)"
    )
    simulate.add_argument(
        "--malformed-rate",
        type=float,
        default=0.0,
        help="share of events replaced by broken lines (0)",
    )
    simulate.add_argument(
        "--late-rate", type=float, default=0.0, help="share of events arriving 3-10 days late (0)"
    )
    simulate.add_argument(
        "--programme-effect",
        action="append",
        default=[],
        metavar="ID=AMOUNT",
        help="true additional revenue per treated customer of a programme (repeatable); "
        "the events are then run through the scorer to know who is treated",
    )
    simulate.add_argument(
        "--config",
        type=Path,
        help="TOML settings file of the scorer that decides who is treated "
        "(only with --programme-effect)",
    )


def _add_report(commands: argparse._SubParsersAction) -> None:
    report = commands.add_parser("report", help="write an HTML management report")
    report.add_argument("--out", type=Path, required=True, help="HTML file to write")
    report.add_argument("--scores", type=Path, help="scores CSV (`clvstream score --out`)")
    report.add_argument("--emitted", type=Path, help="events (`clvstream score --emitted`)")
    report.add_argument(
        "--from-service", action="store_true", help="read the live service's output topics"
    )
    report.add_argument(
        "--from", dest="first", type=_date, metavar="DATE", help="first day (first event's)"
    )
    report.add_argument(
        "--to", dest="last", type=_date, metavar="DATE", help="last day (last event's)"
    )
    report.add_argument("--config", type=Path, help="TOML settings file")


def positive_rate(text: str) -> float:
    """A replay rate: events per second, above 0.

    >>> positive_rate("250"), positive_rate("0.5")
    (250.0, 0.5)
    >>> positive_rate("0")
    Traceback (most recent call last):
    argparse.ArgumentTypeError: a rate must be a number of events per second above 0, not '0'
    """
    try:
        rate = float(text)
    except ValueError:
        rate = math.nan
    if not rate > 0 or math.isinf(rate):
        raise argparse.ArgumentTypeError(
            f"a rate must be a number of events per second above 0, not {text!r}"
        )
    return rate
