"""`clvstream`: the command line of the service and its offline tools."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from collections.abc import Iterator, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import ClvError, ConfigError
from schemas.outputs import DeadLetterReason
from streams.settings import Settings, load_settings

if TYPE_CHECKING:
    from models.simulation.effects import ProgrammeEffects

REPO_ROOT = Path(__file__).resolve().parents[1]
CDNOW_FILE = REPO_ROOT / "data" / "cdnow" / "CDNOW_master.txt"

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


def _settings(args: argparse.Namespace) -> Settings:
    changes = {
        "horizon_days": args.horizon_days,
        "churn_window_days": args.churn_window_days,
        "value_model": args.value_model,
        "allowed_lateness_seconds": args.lateness_hours * 3600 if args.lateness_hours else None,
    }
    scoring = {key: value for key, value in changes.items() if value is not None}
    return load_settings(args.config, **({"scoring": scoring} if scoring else {}))


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


def _add_service(commands: argparse._SubParsersAction) -> None:
    worker = commands.add_parser("worker", help="run the streaming worker (Faust)")
    worker.add_argument("--loglevel", default="info", help="(info)")
    worker.add_argument("--config", type=Path, help="TOML settings file")

    replay = commands.add_parser("replay", help="produce an events file to the input topics")
    replay.add_argument("events", type=Path, help="events, one JSON object per line")
    replay.add_argument("--rate", type=float, help="events per second (as fast as possible)")
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
    up.add_argument("--rate", type=float, help="replay rate, events/s (as fast as possible)")
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
    simulate.add_argument("--config", type=Path, help="TOML settings file (with effects)")


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


_SINGLE_THREADED_MATH = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def main(argv: Sequence[str] | None = None) -> int:
    # Population fits are small vector operations: BLAS worker threads only spin and
    # take the core the scorer needs. Set before numpy loads (here and in fit workers).
    for name in _SINGLE_THREADED_MATH:
        os.environ.setdefault(name, "1")
    args = build_parser().parse_args(argv)
    # Scoring allocates many short-lived objects and keeps long-lived states: collect
    # the young generation less often and never scan what start-up loaded (GC was
    # about a tenth of the scorer's CPU time).
    gc.freeze()
    gc.set_threshold(20_000, 10, 10)
    try:
        return COMMANDS[args.command](args)
    except ClvError as error:
        print(f"clvstream: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        if error.filename is None:  # not a file named on the command line: a real fault
            raise
        print(f"clvstream: {error.filename}: {error.strerror or error}", file=sys.stderr)
        return 2


def score_jobs(partitions: int, jobs: int | None) -> int:
    """The processes of `clvstream score`: as asked, else one per core, at most one per
    partition.

    >>> score_jobs(4, 3), score_jobs(1, None), score_jobs(64, None) == (os.cpu_count() or 1)
    (3, 1, True)
    """
    return jobs if jobs is not None else min(partitions, os.cpu_count() or 1)


def _run_score(args: argparse.Namespace) -> int:
    from streams.offline import format_summary, score_file

    settings = _settings(args)
    result = score_file(
        args.events,
        args.out,
        settings.scoring,
        as_of=args.as_of,
        emitted_path=args.emitted,
        dead_letter_path=args.dead_letter,
        final_refit=not args.no_final_refit,
        partitions=args.partitions,
        jobs=score_jobs(args.partitions, args.jobs),
        partitioner=settings.partitioner,
    )
    print(format_summary(result))
    print(f"scores: {args.out}")
    return 0


def _run_import(args: argparse.Namespace) -> int:
    from streams.importers import import_cdnow

    summary = import_cdnow(args.source, args.out)
    print(f"{summary.rows:,} rows -> {summary.events:,} events in {args.out}")
    for problem in summary.skipped[:20]:
        print(f"  skipped {problem}", file=sys.stderr)
    return 0 if not summary.skipped else 1


def _run_schemas(args: argparse.Namespace) -> int:
    from schemas.export import SCHEMA_DIR, stale_schemas, write_schemas

    if args.check:
        stale = stale_schemas()
        for name in stale:
            print(f"stale: {SCHEMA_DIR / name}", file=sys.stderr)
        return 1 if stale else 0
    for path in write_schemas():
        print(path)
    return 0


def _run_simulate(args: argparse.Namespace) -> int:
    from models.simulation import SimulationConfig
    from streams.simulate import write_simulation

    options = {
        "customers": args.customers,
        "days": args.days,
        "seed": args.seed,
        "interactions": not args.no_interactions,
        "duplicate_rate": args.duplicate_rate,
        "malformed_rate": args.malformed_rate,
        "late_rate": args.late_rate,
    }
    if args.start:
        options["start"] = args.start
    effects = _programme_effects(args.programme_effect, args.seed)
    scoring = _settings_of_file(args.config).scoring if effects else None
    summary = write_simulation(
        SimulationConfig(**options), args.out, args.truth, effects=effects, scoring=scoring
    )
    print(f"wrote {args.out}: {summary}")
    return 0


def _programme_effects(pairs: list[str], seed: int) -> ProgrammeEffects | None:
    from models.simulation.effects import ProgrammeEffects

    if not pairs:
        return None
    effects = {}
    for pair in pairs:
        programme_id, _, amount = pair.partition("=")
        try:
            effects[programme_id.strip()] = float(amount)
        except ValueError:
            raise ConfigError(f"--programme-effect wants ID=AMOUNT, got {pair!r}") from None
    return ProgrammeEffects(effects=effects, seed=seed)


def _settings_of_file(path: Path | None) -> Settings:
    return load_settings(path)


def _run_demo(args: argparse.Namespace) -> int:
    from streams.demo import run_offline_demo

    return run_offline_demo(_settings(args), CDNOW_FILE, args.out_dir)


def _run_worker(args: argparse.Namespace) -> int:
    from streams.up import run_worker

    settings = load_settings(args.config)
    if not settings.kafka_url or settings.redis_url is None:
        raise ClvError(
            "set CLVSTREAM_KAFKA_URL and CLVSTREAM_REDIS_URL for a worker "
            "(or run `clvstream up`, which starts its own broker and Redis)"
        )
    return run_worker(settings, args.loglevel)


def _run_replay(args: argparse.Namespace) -> int:
    import asyncio

    from streams.replay import replay_file

    settings = load_settings(args.config)
    if not settings.kafka_url:
        raise ClvError("set CLVSTREAM_KAFKA_URL (or use `clvstream up --events FILE`)")
    with _broker_errors(settings.kafka_url):
        summary = asyncio.run(replay_file(args.events, settings, rate=args.rate))
    print(f"replayed {summary}")
    return 0


def _run_redrive(args: argparse.Namespace) -> int:
    import asyncio

    from streams.redrive import ROUTING_REASONS, redrive

    settings = load_settings(args.config)
    if not settings.kafka_url and not (args.file and args.dry_run):
        raise ClvError("set CLVSTREAM_KAFKA_URL: redrive produces to the service's topics")
    reasons = args.reason or [reason.value for reason in ROUTING_REASONS]
    with _broker_errors(settings.kafka_url):
        summary = asyncio.run(redrive(settings, reasons, args.file, args.dry_run))
    print(f"redrive: {summary}")
    return 0


def _run_settings(args: argparse.Namespace) -> int:
    """The settings a worker or `up` would run with, as JSON (secrets as ******)."""
    print(load_settings(args.config).model_dump_json(indent=1))
    return 0


@contextlib.contextmanager
def _broker_errors(kafka_url: str) -> Iterator[None]:
    """A broker that cannot be reached is a message, not a traceback."""
    from aiokafka.errors import KafkaError

    try:
        yield
    except KafkaError as error:
        raise ClvError(f"no Kafka broker answers at {kafka_url}: {error}") from error


def _run_up(args: argparse.Namespace) -> int:
    from streams.up import run_up

    return run_up(
        load_settings(args.config),
        args.events,
        args.out_dir,
        rate=args.rate,
        exit_when_done=args.exit_when_done,
        demo_customers=args.customers,
        demo_days=args.days,
        config_file=args.config,
    )


def _run_report(args: argparse.Namespace) -> int:
    from streams.report import write_report

    if args.from_service and (args.scores or args.emitted):
        raise ClvError("--from-service reads the topics: leave out --scores and --emitted")
    if not args.from_service and not args.scores:
        raise ClvError("give --scores (and --emitted) of an offline run, or --from-service")
    report = write_report(
        args.out,
        load_settings(args.config),
        scores=args.scores,
        emitted=args.emitted,
        from_service=args.from_service,
        first=args.first,
        last=args.last,
    )
    print(
        f"report: {args.out} ({report.customers:,} customers, customer equity "
        f"{report.equity:,.0f} {report.currency})"
    )
    return 0


COMMANDS = {
    "worker": _run_worker,
    "replay": _run_replay,
    "redrive": _run_redrive,
    "up": _run_up,
    "demo": _run_demo,
    "score": _run_score,
    "import": _run_import,
    "schemas": _run_schemas,
    "simulate": _run_simulate,
    "report": _run_report,
    "settings": _run_settings,
}

if __name__ == "__main__":
    sys.exit(main())
