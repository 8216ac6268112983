"""Offline partitions that share one value model: events a partition must hold back
(a follower until the leading partition has published its refits, the leader until
the followers' statistics for its refit are in), and outputs kept in input line
order meanwhile (`streams.partitioned`, `models.shared_fits`).

>>> held = HeldEvents()
>>> held.add(0, Held(7, b"{}", {}, None)); held.add(1, Held(9, b"{}", {}, None))
>>> held.first_line(), len(held)
(7, 2)
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from models.emitted import Output
from models.engine import ScoringEngine
from schemas.parsing import Event, Rejected


@dataclass(frozen=True, slots=True)
class Held:
    line: int
    raw: bytes
    origin: dict
    parsed: Event | Rejected | None


class HeldEvents:
    """Each partition's held-back events, in input order."""

    def __init__(self) -> None:
        self.queues: dict[int, deque[Held]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def holds(self, partition: int) -> bool:
        queue = self.queues.get(partition)
        return bool(queue)

    def add(self, partition: int, event: Held) -> None:
        self.queues.setdefault(partition, deque()).append(event)
        self._count += 1

    def first_line(self) -> int | None:
        """The earliest input line still held (None: nothing held)."""
        lines = [queue[0].line for queue in self.queues.values() if queue]
        return min(lines) if lines else None

    def drain(
        self,
        partition: int,
        ready: Callable[[Held], bool],
        process: Callable[[Held], None],
    ) -> None:
        """Process the partition's held events in order while the next one is ready."""
        queue = self.queues.get(partition)
        while queue and ready(queue[0]):
            process(queue.popleft())
            self._count -= 1


class InputOrder:
    """Writes outputs in (input line, partition) order although held events are
    processed late: outputs of lines after the earliest held one wait here."""

    def __init__(self, write: Callable[[int, int, list[Output]], None]) -> None:
        self._write = write
        self._later: list[tuple[int, int, int, list[Output]]] = []
        self._count = 0

    def write(self, line: int, partition: int, outputs: list[Output], first_held: int | None):
        if first_held is None and not self._later:
            self._write(line, partition, outputs)
            return
        self._count += 1
        heapq.heappush(self._later, (line, partition, self._count, outputs))
        self.release(first_held)

    def release(self, first_held: int | None) -> None:
        later = self._later
        while later and (first_held is None or later[0][0] < first_held):
            line, partition, _, outputs = heapq.heappop(later)
            self._write(line, partition, outputs)


def event_time(parsed: Event | Rejected | None) -> float | None:
    if parsed is None or isinstance(parsed, Rejected):
        return None
    return parsed.occurred_at.timestamp()


def clock_time(parsed, until: float | None, future_limit: float | None) -> float | None:
    """The event time that moves a clock, or None for an input that never does: one
    rejected, or skipped or dead-lettered for its date."""
    at = event_time(parsed)
    if at is None or (until is not None and at > until):
        return None
    return None if future_limit is not None and at > future_limit else at


def must_wait(engine: ScoringEngine, parsed, until: float | None) -> bool:
    """True when a partition must hold the event back (`waiting_for_fit`): a
    follower's clock would move past what the leading partition has published, or the
    leader's onto a refit whose followers' statistics are not all in."""
    at = clock_time(parsed, until, engine.future_limit)
    return at is not None and engine.waiting_for_fit(at)
