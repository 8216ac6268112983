"""`clvstream score --jobs J`: the partitions of an offline run in J processes.

Each process replays the whole file for the partitions it owns (`streams.partitioned`);
the leader's value-fit records go through this parent to every other process; each
process writes its outputs to files of its own, merged at the end: emitted events in
input line order (then by partition), the scores by customer id, so the output does
not depend on J.
"""

from __future__ import annotations

import csv
import heapq
import multiprocessing
import os
import queue
import tempfile
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

from streams.orphan_guard import exit_with_parent, fit_executor
from streams.partitioned import LEADER, Job, PartitionSummary, Replay, Sinks
from streams.score_csv import scores_writer


def run_in_processes(
    jobs: list[Job],
    scores_path: Path,
    emitted_path: Path | None,
    dead_letter_path: Path | None,
    progress: Callable[[int, int], None] | None,
) -> list[PartitionSummary]:
    """Run each job in a process of its own and merge their outputs."""
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    done = context.Array("q", 2 * len(jobs), lock=False)
    with tempfile.TemporaryDirectory(prefix="clvstream-score-") as folder:
        parts = [
            _Parts.in_folder(
                Path(folder), index, emitted_path is not None, dead_letter_path is not None
            )
            for index in range(len(jobs))
        ]
        pipes, processes = [], []
        for index, job in enumerate(jobs):
            ours, theirs = context.Pipe()
            process = context.Process(
                target=_serve_job,
                args=(job, parts[index], theirs, done, index, os.getpid()),
                name=f"clvstream-score-{index}",
            )
            process.start()
            theirs.close()
            pipes.append(ours)
            processes.append(process)
        forwarder = _Forwarder(pipes)
        leader = next(i for i, job in enumerate(jobs) if LEADER in job.owned)
        try:
            last_days = _gather(pipes, processes, done, progress, forwarder, leader)
            given = jobs[0].as_of_day
            known = [day for day in last_days if day is not None]
            as_of_day = given if given is not None else max(known) if known else None
            for index in range(len(pipes)):
                forwarder.send(index, ("as_of", as_of_day))
            summaries = [
                s
                for batch in _gather(pipes, processes, None, None, forwarder, leader)
                for s in batch
            ]
        except BaseException:  # one failed (or Ctrl-C): the others may wait for the as-of
            for process in processes:
                process.kill()
            raise
        finally:
            forwarder.close()
            for process in processes:
                process.join(timeout=30)
                if process.is_alive():
                    process.kill()
        _merge_scores([part.scores for part in parts], scores_path)
        if emitted_path is not None:
            _merge_tagged([part.emitted for part in parts], emitted_path)  # type: ignore[misc]
        if dead_letter_path is not None:
            _merge_tagged([part.dead_letter for part in parts], dead_letter_path)  # type: ignore[misc]
    return sorted(summaries, key=lambda s: int(s.scope[1:]))


@dataclass(frozen=True)
class _Parts:
    """One process's output files."""

    scores: Path
    emitted: Path | None
    dead_letter: Path | None

    @classmethod
    def in_folder(cls, folder: Path, index: int, emitted: bool, dead_letter: bool) -> _Parts:
        return cls(
            folder / f"scores-{index}.csv",
            folder / f"emitted-{index}" if emitted else None,
            folder / f"dead-{index}" if dead_letter else None,
        )


def _serve_job(job: Job, parts: _Parts, pipe: Connection, done, index: int, parent: int) -> None:
    exit_with_parent(parent)

    def progress(bytes_done: int, read: int) -> None:
        done[2 * index], done[2 * index + 1] = bytes_done, read

    executor = None
    try:
        # The leader's refits run beside its replay, as in one process: run inline they
        # would stall it, and every other process waits for the leader's fits.
        if job.fits_in_background and LEADER in job.owned:
            executor = fit_executor("spawn")
        with (
            _open(parts.emitted) as emitted,
            _open(parts.dead_letter) as dead_letter,
            open(parts.scores, "w", newline="", encoding="utf-8") as scores,
        ):
            sinks = Sinks(emitted, dead_letter, tagged=True)
            replay = Replay(job, sinks, fit_executor=executor, relay=pipe)
            pipe.send(("day", replay.run(progress)))
            message = replay.receive(block=True)
            while message is None or message[0] != "as_of":
                message = replay.receive(block=True)
            summaries = replay.finish(message[1], scores)
        pipe.send(("done", summaries))
    except BaseException:
        pipe.send(("error", traceback.format_exc()))
    finally:
        if executor is not None:
            executor.shutdown(cancel_futures=True)


def _open(path: Path | None):
    return open(path, "wb") if path is not None else nullcontext(None)


class _Forwarder:
    """Messages to the processes, each pipe fed by a thread of its own: the parent
    never blocks on a full pipe (a follower's statistics are large, and a process
    reads its pipe only now and then), so it always reads the others."""

    def __init__(self, pipes: list[Connection]) -> None:
        self._queues: list[queue.SimpleQueue] = [queue.SimpleQueue() for _ in pipes]
        self._threads = [
            threading.Thread(target=_feed, args=(pipe, q), daemon=True, name=f"relay-{i}")
            for i, (pipe, q) in enumerate(zip(pipes, self._queues, strict=True))
        ]
        for thread in self._threads:
            thread.start()

    def send(self, index: int, message: tuple) -> None:
        self._queues[index].put(message)

    def close(self) -> None:
        for q in self._queues:
            q.put(None)
        for thread in self._threads:
            thread.join(timeout=5)


def _feed(pipe: Connection, messages: queue.SimpleQueue) -> None:
    while (message := messages.get()) is not None:
        try:
            pipe.send(message)
        except (BrokenPipeError, OSError):  # the process ended (or failed: reported)
            return


def _gather(
    pipes: list[Connection], processes, done, progress, forwarder: _Forwarder, leader: int
) -> list:
    """One message from every process, in process order; raises on a failed one. The
    leader's records go to every other process, a follower's statistics to the
    leader's only (`leader`: its index)."""
    answers: dict[int, object] = {}
    while len(answers) < len(pipes):
        waiting = [pipe for index, pipe in enumerate(pipes) if index not in answers]
        for pipe in wait(waiting, timeout=0.5):
            index = pipes.index(pipe)  # type: ignore[arg-type]
            try:
                kind, value = pipe.recv()  # type: ignore[union-attr]
            except EOFError:
                kind, value = "error", f"exit code {processes[index].exitcode}"
            if kind == "error":
                raise RuntimeError(f"scoring process {index} failed:\n{value}")
            if kind in ("fit", "ran"):
                stats = kind == "fit" and value[0] == "stats"
                for other in [leader] if stats else range(len(pipes)):
                    if other != index:
                        forwarder.send(other, (kind, value))
                continue
            answers[index] = value
        if progress is not None and done is not None:
            progress(min(done[0::2]), sum(done[1::2]))  # each reads the whole file
    return [answers[index] for index in range(len(pipes))]


def _merge_scores(parts: list[Path], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handles = [open(part, newline="", encoding="utf-8") for part in parts]  # noqa: SIM115
    try:
        with open(path, "w", newline="", encoding="utf-8") as sink:
            writer = scores_writer(sink, header=True)
            readers = [csv.reader(handle) for handle in handles]
            writer.writerows(heapq.merge(*readers, key=lambda row: row[0]))
    finally:
        for handle in handles:
            handle.close()


def _merge_tagged(parts: list[Path], path: Path) -> None:
    """Merge the processes' tagged lines by (input line, partition), tags removed."""
    path.parent.mkdir(parents=True, exist_ok=True)

    def records(part: Path) -> Iterator[tuple[int, int, bytes]]:
        with open(part, "rb") as lines:
            for line in lines:
                number, partition, text = line.split(b"\t", 2)
                yield int(number), int(partition), text

    with open(path, "wb") as sink:
        merged = heapq.merge(*(records(part) for part in parts), key=lambda r: (r[0], r[1]))
        for _, _, text in merged:
            sink.write(text)
