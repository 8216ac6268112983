"""The streaming service on this machine: end-to-end rate, latency, recovery.

    python -m bench.stream [--events FILE | --customers 7000 --days 730] [--repeats 3]
    python -m bench.stream --skip-throughput --latency-rate N [--refit-days D]
        # latency runs only, --repeats of them, at N events/s (half the worker's rate)
    python -m bench.stream --recovery --customers 100000 --days 60

End to end: one worker (`clvstream worker`, 4 partitions) is up and assigned; the
events file is replayed as fast as possible; the rate is events / (last score in
Redis - first event produced), polled every 0.1 s. In the same run, on fresh topics,
a pass-through Faust agent (no work, raw values) gets the same replay; its rate is
events / (its last event seen - first produced). Beside them, the ceiling: the same
file through `clvstream score --partitions N --jobs 1` (the worker's scoring with the same
partitions, no broker, no Redis, no outputs serialized), wall clock of the command.
Latency: a replay at a fraction of the measured rate; p50 / p99 of (input's broker
timestamp -> score written to Redis) from the worker's histogram (bucket upper
bounds). Recovery: a worker holding N customers is stopped (SIGTERM, or SIGKILL) and
started again; the time until it has restored them all and has its partitions is
reported.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

from agents.metrics import LATENCY_BUCKETS
from bench.events import events_file
from bench.memory import descendants, memory_bytes, process_parents
from bench.metrics import median_ratio
from bench.scratch import work_dir
from streams.devstack import DevStack, free_port
from streams.replay import replay_file
from streams.settings import Settings, load_settings
from streams.topics import TopicNames
from streams.up import WorkerProcess, ensure_topics, start_worker


def fresh(kafka_url: str, redis_url: str, partitions: int) -> Settings:
    run = uuid.uuid4().hex[:8]
    settings = load_settings(
        kafka_url=kafka_url, redis_url=redis_url, topic_prefix=f"b{run}.",
        app_id=f"bench-{run}", redis_prefix=f"b{run}:", partitions=partitions,
    )  # fmt: skip
    ensure_topics(settings)
    return settings


def metric(worker: WorkerProcess, name: str) -> float:
    _, text = worker.get("/metrics", timeout=60)
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in str(text).splitlines()
        if line.startswith((name + " ", name + "{"))
    )


def wait_done(worker: WorkerProcess, events: int, timeout: float = 3600) -> float:
    """Wall time at which every event is in and every score is in Redis."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _, health = worker.get("/health", timeout=60)
        if (
            isinstance(health, dict)
            and health["caught_up"]
            and not health["redis_pending"]
            and not health["redis_reading_back"]
            and metric(worker, "clvstream_events_in_total") >= events
        ):
            return time.time()
        time.sleep(0.1)
    raise SystemExit("the worker did not finish in time")


def dead_lettered(text: str) -> dict[str, int]:
    """Inputs the worker dead-lettered, by reason (from its /metrics `text`)."""
    prefix = 'clvstream_dead_lettered_total{reason="'
    counts = {}
    for line in str(text).splitlines():
        if line.startswith(prefix):
            reason, _, value = line[len(prefix) :].partition('"} ')
            counts[reason] = int(float(value))
    return {reason: n for reason, n in counts.items() if n}


def scored_everything(worker: WorkerProcess) -> None:
    """A run whose worker dead-lettered inputs (late, invalid) did less work than
    scoring every event, so its rate would flatter it: refuse it (the file is one that
    `clvstream score` applies in full, as `bench.throughput` checks)."""
    _, text = worker.get("/metrics", timeout=60)
    dead = dead_lettered(text)
    if dead:
        raise SystemExit(f"the worker dead-lettered inputs {dead}: not a measurement")


def scorer_rate(stack: tuple[str, str], events: Path, partitions: int, work: Path) -> float:
    settings = fresh(*stack, partitions)
    worker = start_worker(settings, work / "bench-worker.log")
    try:
        worker.wait_ready(120, partitions)
        summary = asyncio.run(replay_file(events, settings, show_progress=False))
        done = wait_done(worker, summary.events)
        scored_everything(worker)
        return summary.events / (done - summary.first_produced_at)
    finally:
        worker.stop()


def passthrough_rate(stack: tuple[str, str], events: Path, partitions: int, work: Path) -> float:
    settings = fresh(*stack, partitions)
    with open(events, "rb") as handle:
        lines = sum(1 for line in handle if line.strip())
    env = {
        **os.environ,
        "BENCH_BROKER": settings.kafka_url,
        "BENCH_TOPICS": ",".join(TopicNames(settings.topic_prefix).inputs),
        "BENCH_EXPECT": str(lines),
        "BENCH_APP": settings.app_id,
        "BENCH_DATADIR": str(work / "faust-data"),
        # it is SIGKILLed: what it makes in the temporary directory stays, so in `work`
        "TMPDIR": str(work),
    }
    log = work / "passthrough.out"
    with open(log, "w") as out:
        agent = subprocess.Popen(
            [sys.executable, "-m", "bench.passthrough"], env=env, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        _wait_line(log, "READY", 120)
        summary = asyncio.run(replay_file(events, settings, show_progress=False))
        done = float(_wait_line(log, "DONE", 3600))
        return summary.events / (done - summary.first_produced_at)
    finally:
        os.killpg(agent.pid, signal.SIGKILL)
        agent.wait()


def scoring_alone_rate(events: Path, partitions: int, work: Path) -> float:
    """Events/s of the offline scorer with the service's partitions: what the worker's
    scoring costs without the broker, Redis or serialized outputs."""
    command = [
        sys.executable, "-m", "streams.cli", "score", str(events), "--out",
        str(work / "ceiling.csv"), "--partitions", str(partitions), "--jobs", "1",
    ]  # fmt: skip
    started = time.perf_counter()
    run = subprocess.run(command, check=True, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    read = next(line for line in run.stdout.splitlines() if "events read" in line)
    return int(read.split("events read", 1)[1].split()[0].replace(",", "")) / elapsed


def _wait_line(path: Path, tag: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in path.read_text().splitlines():
            if f" {tag} " in f" {line} ":  # Faust may prefix printed lines with a log header
                return line.split(f"{tag} ", 1)[1].split()[0]
        time.sleep(0.05)
    raise SystemExit(f"no {tag} from the pass-through agent:\n{path.read_text()[-2000:]}")


def latency(
    stack: tuple[str, str],
    events: Path,
    partitions: int,
    rate: float,
    work: Path,
    refit_days: int | None = None,
):
    """p50, p99 (histogram bucket bounds), the replay's rate and the inputs the worker
    dead-lettered by reason (a paced replay can leave some behind: reported, not
    refused, as the latency of the rest is still measured); `refit_days` sets the
    value model's refit interval (the replay runs event time about a million times
    faster than live, so the default monthly refits come every few seconds)."""
    settings = fresh(*stack, partitions)
    env = {"CLVSTREAM_SCORING__REFIT_INTERVAL_DAYS": str(refit_days)} if refit_days else {}
    worker = start_worker(settings, work / "latency-worker.log", extra_env=env)
    try:
        worker.wait_ready(120, partitions)
        summary = asyncio.run(replay_file(events, settings, rate=rate, show_progress=False))
        wait_done(worker, summary.events)
        _, text = worker.get("/metrics")
        dead = dead_lettered(text)  # (reported with the figure, not refused)
    finally:
        worker.stop()
    counts = []
    for line in str(text).splitlines():
        if line.startswith("clvstream_processing_latency_seconds_bucket"):
            counts.append(float(line.rsplit(" ", 1)[1]))
    total = counts[-1]
    bounds = (*LATENCY_BUCKETS, float("inf"))

    def quantile(q: float) -> float:
        return next(b for b, c in zip(bounds, counts, strict=True) if c >= q * total)

    return quantile(0.5), quantile(0.99), summary.rate, dead


def recovery(stack: tuple[str, str], events: Path, partitions: int, work: Path) -> None:
    settings = fresh(*stack, partitions)
    worker = start_worker(settings, work / "recovery-worker.log")
    try:
        worker.wait_ready(120, partitions)
        summary = asyncio.run(replay_file(events, settings, show_progress=False))
        wait_done(worker, summary.events)
        customers = worker.get("/health")[1]["customers"]
        print(f"store {settings.store}: worker after the replay: {_memory(worker)}", flush=True)
        for how in (signal.SIGTERM, signal.SIGKILL):
            if how is signal.SIGTERM:
                worker.stop(120)
            else:
                worker.process.send_signal(how)
                worker.process.wait()
            started = time.monotonic()
            worker = start_worker(settings, work / "recovery-worker.log", web_port=free_port())
            seconds = _wait_restored(worker, customers, started)
            print(
                f"recovery after {how.name}: {customers:,} customers restored and assigned "
                f"{seconds:.1f} s after the process started; {_memory(worker)}",
                flush=True,
            )  # fmt: skip
    finally:
        worker.stop(120)


def _wait_restored(worker: WorkerProcess, customers: int, started: float) -> float:
    """Seconds from `started` (monotonic) until the worker holds `customers` again."""
    deadline = started + 600
    while time.monotonic() < deadline:
        if worker.process.poll() is not None:
            raise SystemExit(f"the restarted worker exited:\n{worker.log_tail()}")
        try:
            _, health = worker.get("/health")
            if isinstance(health, dict) and health.get("customers", 0) >= customers:
                return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the restarted worker did not restore {customers:,} customers in 600 s")


def _memory(worker: WorkerProcess) -> str:
    """The worker process's resident and peak resident memory, and the proportional
    memory of it with the processes it started (its value-model fit process) (Linux)."""
    pid = worker.process.pid
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    tree = descendants(process_parents(), pid)
    with_children = sum(memory_bytes(member) for member in tree) / 2**20
    return (
        f"RSS {fields.get('VmRSS', '?')}, peak {fields.get('VmHWM', '?')}; with its "
        f"{len(tree) - 1} child process(es) {with_children:,.0f} MiB (proportional)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=Path)
    parser.add_argument("--customers", type=int, default=7000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rate-fraction", type=float, default=0.5)
    parser.add_argument("--latency-rate", type=float, help="replay rate for the latency run")
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--recovery", action="store_true")
    parser.add_argument(
        "--refit-days", type=int, help="refit interval of the latency run (default: settings')"
    )
    args = parser.parse_args()
    if args.skip_throughput and not args.recovery and args.latency_rate is None:
        # Without the throughput runs there is no measured rate to take a fraction of
        # (it used 1,000 events/s whatever --rate-fraction said).
        parser.error("--skip-throughput needs --latency-rate: half the worker's measured rate")
    work = work_dir("clv-stream-bench-")
    events = events_file(args.events, work, args.customers, args.days, seed=3)
    with DevStack() as dev:
        stack = (
            os.environ.get("CLVSTREAM_KAFKA_URL") or dev.kafka_url,
            os.environ.get("CLVSTREAM_REDIS_URL") or dev.redis_url,
        )
        if args.recovery:
            recovery(stack, events, args.partitions, work)
            return 0
        scorer_rates, passthrough_rates, alone_rates = [], [], []
        if not args.skip_throughput:
            for repeat in range(args.repeats):
                passthrough_rates.append(passthrough_rate(stack, events, args.partitions, work))
                scorer_rates.append(scorer_rate(stack, events, args.partitions, work))
                alone_rates.append(scoring_alone_rate(events, args.partitions, work))
                print(
                    f"run {repeat + 1}: pass-through Faust agent {passthrough_rates[-1]:,.0f}/s  "
                    f"clvstream worker {scorer_rates[-1]:,.0f}/s  "
                    f"ratio {scorer_rates[-1] / passthrough_rates[-1]:.2f}  "
                    f"scoring alone {alone_rates[-1]:,.0f}/s", flush=True
                )  # fmt: skip
            scorer = statistics.median(scorer_rates)
            passthrough = statistics.median(passthrough_rates)
            alone = statistics.median(alone_rates)
            # each run against the pass-through of the same run, then the median
            ratio = median_ratio(scorer_rates, passthrough_rates)
            alone_ratio = median_ratio(alone_rates, passthrough_rates)
            print(f"median: worker {scorer:,.0f}/s, pass-through {passthrough:,.0f}/s, "
                  f"ratio {ratio:.2f} (median of the runs' ratios; required 1.0, goal 3.0); "
                  f"scoring alone {alone:,.0f}/s = {alone_ratio:.2f} of the pass-through "
                  "(median of the runs' ratios)")  # fmt: skip
        rate = args.latency_rate or statistics.median(scorer_rates) * args.rate_fraction
        for _repeat in range(args.repeats if args.skip_throughput else 1):
            p50, p99, achieved, dead = latency(
                stack, events, args.partitions, rate, work, args.refit_days
            )
            print(f"latency at {achieved:,.0f} events/s (asked {rate:,.0f}/s): p50 <= "
                  f"{p50 * 1000:.0f} ms, p99 <= {p99 * 1000:.0f} ms (goal p99 <= 250 ms)"
                  + (f"; NOTE the worker dead-lettered inputs {dead}" if dead else ""),
                  flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
