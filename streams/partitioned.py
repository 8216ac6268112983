"""Offline scoring split into partitions, like the service (`clvstream score
--partitions N --jobs J`).

Each customer belongs to the partition the producers' partitioner gives their id
(`partition_of`, what `clvstream replay` produces to), and each partition has an
engine of its own, as in a worker: its own event-time clock, online models, value
model refits and programme book with 1/N of every budget. An N-partition offline run
therefore computes what the service computes with N partitions, and its partitions
can run in J processes, one per core (`streams.partitioned_jobs`). The output does
not depend on J: emitted events are merged in input line order (then by partition),
the scores by customer id.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from concurrent.futures import Executor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass, field
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import IO

import orjson

from models.config import ScoringConfig
from models.emitted import Output, Stream
from models.engine import ScoringEngine
from models.programmes.book import ProgrammeBook
from models.shared_fits import SharedFits
from models.timeline import day_of, end_of_day
from schemas.parsing import parse_event
from streams.holding import Held, HeldEvents, InputOrder, clock_time, must_wait
from streams.lines import json_lines
from streams.score_csv import write_rows
from streams.topics import Partitioner, partition_of, routing_fields

AFTER_LAST_LINE = 1 << 62  # the line number of the outputs of the end of the replay
LEADER = 0  # the partition that fits the value model for all (`models.shared_fits`)
HOLD_LIMIT = 50_000  # held events per process before it waits for the leader


@dataclass(frozen=True)
class Job:
    """The partitions one process scores, and how."""

    events_path: Path
    partitions: int  # in all
    owned: tuple[int, ...]
    config: ScoringConfig
    until: float | None  # event time after which events are skipped
    as_of_day: int | None  # None: the last event's day, over all partitions
    final_refit: bool
    future_limit: float | None = None  # events dated after it are dead-lettered
    fits_in_background: bool = True  # the leader's refits in a process of their own
    partitioner: Partitioner = "murmur2"  # how customers are spread over the partitions


@dataclass
class PartitionSummary:
    """What the run summary needs of one partition's engine."""

    scope: str
    as_of_day: int | None  # None: nothing was scored
    counters: dict
    model_version: str
    churn_version: str | None
    churn_health: dict[str, float] | None
    churn_by_version: list[tuple[str, dict[str, float]]]  # quality of each version's scores
    programmes: ProgrammeBook | None
    customers: int
    currency: str

    @classmethod
    def of(cls, engine: ScoringEngine, as_of_day: int | None) -> PartitionSummary:
        churn = engine.scorer.churn
        return cls(
            scope=engine.scope,
            as_of_day=as_of_day,
            currency=engine.config.base_currency,
            counters=engine.counters.as_dict(),
            model_version=engine.scorer.model_version,
            churn_version=churn.version if churn is not None else None,
            churn_health=churn.health() if churn is not None else None,
            churn_by_version=churn.by_version.all() if churn is not None else [],
            programmes=engine.scorer.programmes,
            customers=len(engine.states) if as_of_day is not None else 0,
        )


class Sinks:
    """Where emitted events go, each tagged with its input line and partition."""

    def __init__(self, emitted: IO[bytes] | None, dead_letter: IO[bytes] | None, tagged: bool):
        self.emitted, self.dead_letter, self.tagged = emitted, dead_letter, tagged

    def write(self, line: int, partition: int, outputs: list[Output]) -> None:
        tag = b"%d\t%d\t" % (line, partition) if self.tagged else b""
        for output in outputs:
            if self.emitted is not None:
                envelope = {"stream": output.stream.value, "key": output.key, "value": output.value}
                self.emitted.write(tag + orjson.dumps(envelope) + b"\n")
            if self.dead_letter is not None and output.stream is Stream.DEAD_LETTER:
                self.dead_letter.write(tag + orjson.dumps(output.value) + b"\n")


@dataclass
class Replay:
    """One process's partitions: replays the file into them, then scores them.

    With several partitions they share one value model (`models.shared_fits`):
    partition 0 leads and fits it on every partition's statistics, the others
    publish theirs and install its refits, each holding back an event that must wait
    (`streams.holding.must_wait`). `relay` (a process running some of the
    partitions): the pipe to the parent, which forwards the leader's records to the
    other processes and the followers' statistics to the leader's."""

    job: Job
    sinks: Sinks
    fit_executor: Executor | None = None
    relay: Connection | None = None
    engines: dict[int, ScoringEngine] = field(init=False)

    def __post_init__(self) -> None:
        job = self.job
        config = job.config.for_partition(job.partitions)
        shared = job.partitions > 1
        self.book = (
            SharedFits(
                config.refit_install_delay_days,
                partitions=job.partitions,
                interval_days=config.refit_interval_days,
            )
            if shared
            else None
        )
        self.engines = {
            p: ScoringEngine(
                config,
                fit_executor=self.fit_executor,
                scope="all" if job.partitions == 1 else f"p{p}",
                shared=self.book,
                publish=self._publish if shared else None,
                partition=p,
            )
            for p in job.owned
        }
        self._ended: set[int] = set()  # followers that published their end statistics
        for engine in self.engines.values():
            engine.future_limit = job.future_limit
        self.held = HeldEvents()
        self.order = InputOrder(self.sinks.write)
        self._seen_version = -1
        self._leader_ran = not shared or LEADER in self.engines  # in this process: no wait
        self._last_at: float | None = None  # the latest event time read (several partitions)

    # -- the shared value model ------------------------------------------------------
    def _publish(self, record: tuple) -> None:
        self.book.apply(record)  # type: ignore[union-attr]
        if self.relay is not None:
            self.relay.send(("fit", record))

    def receive(self, block: bool) -> tuple | None:
        """Take in the parent's messages: the leader's records (applied), or another
        message (returned as (kind, value)). `block`: wait for one message first."""
        relay = self.relay
        while relay is not None and (block or relay.poll()):
            block = False
            kind, value = relay.recv()
            if kind == "fit":
                self.book.apply(value)  # type: ignore[union-attr]
            elif kind == "ran":
                self._leader_ran = True
            else:
                return kind, value
        return None

    def _write(self, line: int, partition: int, outputs: list[Output]) -> None:
        if outputs:
            self.order.write(line, partition, outputs, self.held.first_line())

    def _drain(self, force: bool = False) -> None:
        """Process the held events that may go now, in order."""
        book = self.book
        if book is None or (book.version == self._seen_version and not force):
            return
        self._seen_version = book.version
        until = self.job.until
        for partition, engine in self.engines.items():
            self.held.drain(
                partition,
                lambda held, engine=engine: not must_wait(engine, held.parsed, until),
                lambda held, p=partition, engine=engine: self._write(
                    held.line, p, engine.process_parsed(held.parsed, held.raw, held.origin, until)
                ),
            )
        self.order.release(self.held.first_line())

    def _wait_for_leader(self, done: Callable[[], bool]) -> None:
        """Block on the parent's messages until `done` (the leader runs elsewhere)."""
        while not done():
            if self.relay is None:
                raise RuntimeError("the leading partition's records are missing")
            if self.receive(block=True) is not None:
                raise RuntimeError("unexpected message while waiting for the leader")
        self._drain()

    # -- the replay ------------------------------------------------------------------
    def run(self, progress: Callable[[int, int], None]) -> int | None:
        """Replay the file; the last day any of these partitions has seen (or None)."""
        job, engines = self.job, self.engines
        single = next(iter(engines.values())) if job.partitions == 1 else None
        leader = engines.get(LEADER) if job.partitions > 1 else None
        origin_file, done, read = job.events_path.name, 0, 0
        with open(job.events_path, "rb") as lines:
            for line_number, done, raw in json_lines(lines):
                if line_number % 4096 == 0:
                    progress(done, read)
                if not raw.strip():
                    continue
                origin = {"source": "file", "file": origin_file, "line": line_number}
                if single is not None:
                    read += 1
                    outputs = single.process_raw(raw, origin, job.until)
                    if outputs:
                        self.sinks.write(line_number, 0, outputs)
                    continue
                if line_number % 64 == 0:
                    self._now_and_then(leader, line_number)
                partition = route(raw, job.partitions, job.partitioner)
                engine = engines.get(partition)
                if engine is None:
                    continue
                read += 1
                self._replay_line(line_number, partition, engine, raw, origin)
        progress(done, read)
        if leader is not None:
            leader.poll_fits()
            if self.relay is not None:
                self.relay.send(("ran", None))
        self._drain()
        if single is not None:
            return single.current_day if single.clock.started else None
        # Several partitions: the latest date of an event read (not one skipped or
        # dead-lettered for its date), whether applied yet or still held, so the day does
        # not depend on how far the leader had got. (It can differ from the last day
        # applied: an event rejected when applied, e.g. for its currency, counts here.)
        return day_of(self._last_at) if self._last_at is not None else None

    def _replay_line(
        self, line: int, partition: int, engine: ScoringEngine, raw: bytes, origin: dict
    ) -> None:
        parsed = parse_event(raw)
        at = clock_time(parsed, self.job.until, engine.future_limit)
        if at is not None:
            self._last_at = at if self._last_at is None else max(self._last_at, at)
        # The leader too may hold events back: a refit due waits for its followers'
        # statistics (`models.shared_stats`), and a follower for the leader's refits.
        if self.held.holds(partition) or must_wait(engine, parsed, self.job.until):
            self.held.add(partition, Held(line, raw, origin, parsed))
        else:
            outputs = engine.process_parsed(parsed, raw, origin, self.job.until)
            self._write(line, partition, outputs)
        if len(self.held):
            self._drain()

    def _now_and_then(self, leader: ScoringEngine | None, line: int) -> None:
        if leader is not None:
            if self.relay is not None and line % 256 == 0:
                self.receive(block=False)  # the followers' statistics
            leader.poll_fits()  # start a fit whose statistics are in, publish one done
            self._drain()
        elif self.relay is not None and line % 256 == 0:
            self.receive(block=False)
            self._drain()
            # Ahead of the leader by many events: wait for it rather than hold them all
            # (never once its replay is over: it publishes the rest in `finish`).
            while len(self.held) > HOLD_LIMIT and not self._leader_ran:
                self._wait_for_leader(self._leader_moved(self.book.version))  # type: ignore[union-attr]

    def _leader_moved(self, version: int) -> Callable[[], bool]:
        return lambda: self.book.version != version or self._leader_ran  # type: ignore[union-attr]

    def _settle(self, done: Callable[[], bool]) -> None:
        """At the end of the input: apply held events as they may go, and let each
        follower whose events are all applied publish its end statistics, until
        `done`; waits for the leader's fits and for the other processes meanwhile."""
        leader = self.engines.get(LEADER)
        while True:
            self.receive(block=False)
            if leader is not None:
                leader.poll_fits()
            self._drain(force=True)
            for partition, engine in sorted(self.engines.items()):
                free = partition != LEADER and not self.held.holds(partition)
                if free and partition not in self._ended:
                    self._ended.add(partition)
                    engine.publish_stats_end()
            if done():
                return
            future = leader._refits.pending.future if leader is not None else None  # type: ignore[union-attr]
            if future is not None and not future.done():
                wait_for_futures([future], timeout=0.05)
            elif self.relay is not None:
                if self.receive(block=True) is not None:
                    raise RuntimeError("unexpected message while waiting for the leader")
            elif leader is None or not self._moved(leader):
                raise RuntimeError("the partitions wait for each other at the end")

    def _moved(self, leader: ScoringEngine) -> bool:
        """One process, nothing to wait for: True when a poll of the leader changed
        something (it started a fit, or published one)."""
        before = (self.book.version, leader._refits.pending)  # type: ignore[union-attr]
        leader.poll_fits()
        return (self.book.version, leader._refits.pending) != before  # type: ignore[union-attr]

    def _leader_may_end(self, leader: ScoringEngine, as_of_day: int) -> bool:
        """The leader's events are all applied, and a refit it installs by the end of
        the as-of day has its followers' statistics."""
        if self.held.holds(LEADER):
            return False
        refits = leader._refits
        pending = refits.pending
        return pending is None or pending.install_day > as_of_day or not refits.awaiting_stats()  # type: ignore[union-attr]

    def _leader_ended(self, as_of_day: int) -> Callable[[], bool]:
        """True once the leader has published its end (`ScoringEngine.publish_end`)."""
        book, final_refit = self.book, self.job.final_refit
        return lambda: not book.blocks(as_of_day) and (not final_refit or book.final is not None)  # type: ignore[union-attr]

    def finish(self, as_of_day: int | None, scores: IO[str]) -> list[PartitionSummary]:
        """Advance every partition to the end of the as-of day, refit, write the scores
        (one CSV row per customer, by id, no header). No as-of day: nothing was read
        before it, nothing to score. The leader goes first: the others install its
        refits and its final fit."""
        if as_of_day is None:
            return [PartitionSummary.of(e, None) for _, e in sorted(self.engines.items())]
        end = end_of_day(as_of_day)
        job, book = self.job, self.book
        for partition, engine in sorted(self.engines.items()):
            if partition == LEADER and book is not None:
                # Its held events first, and the followers' statistics for a refit
                # it installs on the way to the end; then its progress to the end (the
                # followers' last events wait for it), their end statistics, its final fit.
                self._settle(partial(self._leader_may_end, engine, as_of_day))
                outputs = engine.advance_watermark(end)
                pending = engine._refits.pending
                if pending is not None and pending.install_day <= as_of_day:
                    # (no install delay: the advance started a refit due at once)
                    self._settle(partial(_has_its_stats, engine))
                    outputs += engine.on_clock()
                engine.publish_end(as_of_day)
                self._write(AFTER_LAST_LINE, partition, outputs)
                if job.final_refit:
                    self._settle(book.has_final_stats)
                    self._write(AFTER_LAST_LINE, partition, engine.publish_final(as_of_day))
                continue
            if book is not None:
                self._settle(self._leader_ended(as_of_day))
                if len(self.held):
                    raise RuntimeError("held events left after the leader's end")
            outputs = engine.advance_watermark(end)
            if job.final_refit and engine.clock.started:
                outputs.append(engine.refit(as_of_day))
            self._write(AFTER_LAST_LINE, partition, outputs)
        self.order.release(None)
        rows = heapq.merge(
            *(engine.score_rows(end) for engine in self.engines.values()),
            key=lambda row: row["customer_id"],
        )
        write_rows(rows, scores)
        return [PartitionSummary.of(e, as_of_day) for _, e in sorted(self.engines.items())]


def _has_its_stats(leader: ScoringEngine) -> bool:
    return not leader._refits.awaiting_stats()  # type: ignore[union-attr]


def route(raw: bytes, partitions: int, partitioner: Partitioner) -> int:
    """The partition of a raw input line: its customer's, or 0 when it has none (the
    engine of partition 0 dead-letters what cannot be read)."""
    _, customer_id = routing_fields(raw)
    return partition_of(customer_id, partitions, partitioner) if customer_id is not None else 0
