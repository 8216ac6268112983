"""`clvstream`: the command line of the service and its offline tools."""

from __future__ import annotations

import argparse
import contextlib
import gc
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from models.errors import ClvError, ConfigError
from streams.cli_parser import build_parser
from streams.settings import Settings, load_settings

if TYPE_CHECKING:
    from models.simulation import SimulationConfig
    from models.simulation.effects import ProgrammeEffects

REPO_ROOT = Path(__file__).resolve().parents[1]
CDNOW_FILE = REPO_ROOT / "data" / "cdnow" / "CDNOW_master.txt"


def _settings(args: argparse.Namespace) -> Settings:
    changes = {
        "horizon_days": args.horizon_days,
        "churn_window_days": args.churn_window_days,
        "value_model": args.value_model,
        "allowed_lateness_seconds": (
            args.lateness_hours * 3600 if args.lateness_hours is not None else None
        ),
    }
    scoring = {key: value for key, value in changes.items() if value is not None}
    return load_settings(args.config, **({"scoring": scoring} if scoring else {}))


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
    except KeyboardInterrupt:  # (after a command's own handling, if any: no traceback)
        return 130
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
    skipped = summary.skipped_rows
    print(
        f"{summary.rows:,} rows -> {summary.events:,} events in {args.out}"
        + (f" ({skipped:,} skipped)" if skipped else "")
    )
    for problem in summary.skipped[:_PROBLEMS_SHOWN]:
        print(f"  skipped {problem}", file=sys.stderr)
    if skipped > _PROBLEMS_SHOWN:
        print(f"  ... and {skipped - _PROBLEMS_SHOWN:,} more skipped rows", file=sys.stderr)
    return 0 if not skipped else 1


_PROBLEMS_SHOWN = 20


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


def _writable(*outputs: Path | None) -> None:
    """Fail now, not after the work, on an output that cannot be written."""
    from streams.offline import writable_output

    for output in outputs:
        if output is not None:
            writable_output(Path(output))


def _run_simulate(args: argparse.Namespace) -> int:
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
    if args.config is not None and not effects:  # (it was read by nothing, silently)
        raise ConfigError(
            "--config is used only with --programme-effect: the scorer's settings "
            "decide who is treated; nothing else in a simulation reads them"
        )
    scoring = _settings_of_file(args.config).scoring if effects else None
    _writable(args.out, args.truth)
    summary = write_simulation(
        _simulation_config(**options), args.out, args.truth, effects=effects, scoring=scoring
    )
    print(f"wrote {args.out}: {summary}")
    return 0


def _simulation_config(**options: object) -> SimulationConfig:
    """The simulation the options ask for, or a ConfigError naming the bad options."""
    from pydantic import ValidationError

    from models.simulation import SimulationConfig

    try:
        return SimulationConfig(**options)  # type: ignore[arg-type]
    except ValidationError as error:
        problems = [
            f"--{'-'.join(map(str, problem['loc'])).replace('_', '-')}: {problem['msg']}"
            if problem["loc"]
            else problem["msg"]
            for problem in error.errors(include_url=False)
        ]
        raise ConfigError("; ".join(problems)) from None


def _programme_effects(pairs: list[str], seed: int) -> ProgrammeEffects | None:
    from pydantic import ValidationError

    from models.simulation.effects import ProgrammeEffects

    if not pairs:
        return None
    effects = {}
    for pair in pairs:
        programme_id, _, amount = pair.partition("=")
        programme_id = programme_id.strip()
        if programme_id in effects:
            raise ConfigError(f"--programme-effect: {programme_id} is given more than once")
        try:
            effects[programme_id] = float(amount)
        except ValueError:
            raise ConfigError(f"--programme-effect wants ID=AMOUNT, got {pair!r}") from None
    try:
        return ProgrammeEffects(effects=effects, seed=seed)
    except ValidationError as error:
        problems = "; ".join(
            f"{problem['loc'][-1]}: {problem['msg']}" for problem in error.errors()
        )
        raise ConfigError(f"--programme-effect: {problems}") from None


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

    from streams.replay import ReplaySummary, replay_file

    settings = load_settings(args.config)
    if not settings.kafka_url:
        raise ClvError("set CLVSTREAM_KAFKA_URL (or use `clvstream up --events FILE`)")
    summary = ReplaySummary()
    try:
        with _broker_errors(settings.kafka_url):
            asyncio.run(replay_file(args.events, settings, rate=args.rate, summary=summary))
    except KeyboardInterrupt:
        print(f"\ninterrupted: {summary.events:,} events sent (the broker may not have all)")
        return 130
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

    if args.events is None:  # the demo population: impossible numbers fail before the stack
        _simulation_config(customers=args.customers, days=args.days, seed=1)
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
    _writable(args.out)
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
