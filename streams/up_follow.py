"""What `clvstream up` shows while it runs: the replay going on in the background, the
worker's progress every 2 s, and, when everything is scored, a summary for people
(tables) with the same figures as JSON files for programs.
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from streams.replay import PRODUCER_STOP_SECONDS, ReplaySummary, replay_file
from streams.settings import Settings


class Worker(Protocol):
    process: object

    def get(self, path: str, timeout: float = 10.0) -> tuple[int, dict | str]: ...


class BackgroundReplay:
    """`replay_file` in a thread of its own, so progress shows while it produces; its
    summary counts the events produced so far."""

    def __init__(self, events: Path, settings: Settings, rate: float | None) -> None:
        self.summary = ReplaySummary()
        self.error: BaseException | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(events, settings, rate), name="clvstream-replay", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def stop(self, timeout: float = PRODUCER_STOP_SECONDS + 2.0) -> None:
        """Stop sending, deliver what was sent and close the producer: before its
        broker stops, where the producer would retry until its own timeouts."""
        if self._stopping.is_set():
            return  # asked before: waited for then
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self, events: Path, settings: Settings, rate: float | None) -> None:
        try:
            asyncio.run(
                replay_file(
                    events,
                    settings,
                    rate=rate,
                    show_progress=False,
                    summary=self.summary,
                    should_stop=self._stopping.is_set,
                )
            )
        except BaseException as error:  # reported by the follower, in the main thread
            self.error = error


def follow(
    worker: Worker,
    replay: BackgroundReplay,
    out_dir: Path,
    exit_when_done: bool,
    sleep: Callable[[float], None] = time.sleep,
    servers_exited: Callable[[], list[str]] = list,
) -> int:
    """Print progress every 2 s until Ctrl-C; with `exit_when_done`, print the summary
    and return once the replay is over and everything is scored. 1 once the worker,
    the replay or an embedded server (`servers_exited`) has failed."""
    quiet_rounds, replay_reported = 0, False
    while True:
        if worker.process.poll() is not None:
            print(f"the worker exited with code {worker.process.returncode}", file=sys.stderr)
            return 1
        gone = servers_exited()
        if gone:
            print("an embedded server stopped: " + "; ".join(gone), file=sys.stderr)
            return 1
        if replay.error is not None:
            print(f"the replay failed: {replay.error}", file=sys.stderr)
            return 1
        if replay.done and not replay_reported:
            print(f"replayed {replay.summary}", flush=True)
            replay_reported = True
        try:
            _, health = worker.get("/health")
        except OSError as error:  # slow to answer (busy, paused), or exiting: see above
            print(f"the worker's /health did not answer: {error}", file=sys.stderr, flush=True)
            sleep(2.0)
            continue
        if isinstance(health, dict):
            print(progress_line(health, replay), flush=True)
            done = (
                replay_reported
                and health.get("caught_up")
                and not health.get("redis_pending")
                and not health.get("redis_reading_back")
            )
            quiet_rounds = quiet_rounds + 1 if done else 0
            if exit_when_done and quiet_rounds >= 2:
                print_summary(worker, out_dir)
                return 0
        sleep(2.0)


def progress_line(health: dict, replay: BackgroundReplay) -> str:
    """One progress line: the replay (while it runs) and the worker's state.

    >>> replay = BackgroundReplay.__new__(BackgroundReplay)
    >>> replay.summary, replay._thread = ReplaySummary(events=1200), threading.Thread()
    >>> progress_line({"customers": 35, "lag": 10, "redis_pending": 2, "status": "ok"}, replay)
    'customers scored 35  lag 10  redis pending 2  (ok)'
    """
    produced = "" if replay.done else f"replaying: {replay.summary.events:,} events sent  "
    return (
        f"{produced}customers scored {health.get('customers', 0):,}  "
        f"lag {health.get('lag', 0):,}  redis pending {health.get('redis_pending', 0):,}  "
        f"({health.get('status')})"
    )


def print_summary(worker: Worker, out_dir: Path) -> None:
    """Segments and programmes as tables, and as JSON files in `out_dir`."""
    _, segments = worker.get("/segments")
    _, programmes = worker.get("/programmes")
    for name, body in (("segments", segments), ("programmes", programmes)):
        (out_dir / f"{name}.json").write_text(json.dumps(body, indent=1) + "\n")
    if isinstance(segments, dict):
        for group, rows in segments.items():
            print(segment_table(group, rows), flush=True)
    if isinstance(programmes, dict):
        print(programme_table(programmes.get("programmes", [])), flush=True)
    print(f"(as JSON: {out_dir / 'segments.json'}, {out_dir / 'programmes.json'})", flush=True)


def segment_table(group: str, rows: dict[str, dict]) -> str:
    """Customers and CLV per segment of one group, largest first.

    >>> print(segment_table("lifecycle", {"active": {"customers": 3, "clv": 120.0},
    ...                                   "lost": {"customers": 5, "clv": 2.5}}))
    <BLANKLINE>
    lifecycle          customers          CLV   CLV per customer
      lost                     5         2.50               0.50
      active                   3       120.00              40.00
    """
    lines = [f"\n{group:<16} {'customers':>11} {'CLV':>12} {'CLV per customer':>18}"]
    ordered = sorted(rows.items(), key=lambda item: (-item[1]["customers"], item[0]))
    for name, row in ordered:
        customers, clv = row["customers"], row["clv"]
        if not customers:
            continue
        total = "unknown" if clv is None else f"{clv:,.2f}"
        mean = "" if clv is None else f"{clv / customers:,.2f}"
        lines.append(f"  {name:<14} {customers:>11,} {total:>12} {mean:>18}")
    return "\n".join(lines)


def programme_table(rows: list[dict]) -> str:
    """Triggers and the measured incremental revenue per programme.

    >>> print(programme_table([{"programme_id": "win_back", "triggers": {"treatment": 40,
    ...     "control": 10}, "closed": {"treatment": 30, "control": 8}, "stopped_in": [],
    ...     "incremental_revenue_per_customer": 4.5, "ci_low": -1.0, "ci_high": 9.25}]))
    <BLANKLINE>
    programme              triggers treated / control   incremental revenue per treated (95% CI)
      win_back                                40 / 10     +4.50 (-1.00 to +9.25), 30 / 8 windows
    """
    lines = [
        f"\n{'programme':<20} {'triggers treated / control':>28}   "
        "incremental revenue per treated (95% CI)"
    ]
    for row in rows:
        triggers = f"{row['triggers']['treatment']:,} / {row['triggers']['control']:,}"
        closed = f"{row['closed']['treatment']:,} / {row['closed']['control']:,} windows"
        if "incremental_revenue_per_customer" in row:
            effect = (
                f"{row['incremental_revenue_per_customer']:+,.2f} "
                f"({row['ci_low']:+,.2f} to {row['ci_high']:+,.2f}), {closed}"
            )
        else:
            effect = f"not measured yet, {closed}"
        if row.get("stopped_in"):
            effect += f"; stopped in partitions {', '.join(map(str, row['stopped_in']))}"
        lines.append(f"  {row['programme_id']:<18} {triggers:>28}     {effect}")
    return "\n".join(lines)
