"""How far a partition's merge by event time may run ahead of an input that has
nothing buffered. No I/O here.

An input whose last fetch reached its high-water mark has nothing more on the broker,
but a record may still be on its way there: in its producer's batch (linger), on the
network. Such a record, once it comes, must not be behind the partition's clock by
more than the allowed lateness, or it is dead-lettered as late although nothing is
wrong with it. Live, event time passes as fast as the wall clock and that never
happens; in a replay a day of event time can pass in milliseconds.

So a record is known complete ("confirmed") once every input with nothing buffered
has been fetched at least `in_flight_seconds` after the record was produced (its
Kafka timestamp): anything still to come on those inputs was produced after it. The
merge processes records beyond the confirmed event time only up to `slack_seconds`
ahead of it (half the allowed lateness by default), so a record on its way, dated at
or after the confirmed time, is never late; further ahead it waits for the next
fetch. Live, the confirmed time trails by a fraction of a second and nothing waits.

>>> gate = ArrivalGate(slack_seconds=3600.0, in_flight_seconds=0.1)
>>> complete = gate.complete_until({"interactions": 100.0}, tails={"interactions": None})
>>> complete
99.9
>>> gate.allows(at=5_000.0, produced_at=99.95, complete_until=complete)  # nothing confirmed yet
False
>>> gate.allows(at=5_000.0, produced_at=99.8, complete_until=complete)  # it is confirmed itself
True
>>> gate.processed(at=5_000.0, produced_at=99.8, complete_until=complete)
>>> gate.allows(at=8_000.0, produced_at=99.95, complete_until=complete)  # within the slack
True
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Mapping


def produced_at(timestamp_ms: int | None, fetched_at: float) -> float:
    """A record's Kafka timestamp in seconds, but no later than when it was fetched
    (wall seconds): a producer's clock ahead of the worker's, or a timestamp set by
    hand, would hold the merge until the worker's clock reached it. A record without
    one (-1) counts as produced when it was fetched.

    >>> produced_at(1_500, 10.0), produced_at(60_000, 10.0), produced_at(-1, 10.0)
    (1.5, 10.0, 10.0)
    """
    if timestamp_ms is None or timestamp_ms < 0:
        return fetched_at
    return min(timestamp_ms / 1000, fetched_at)


_KEPT = 100_000  # unconfirmed records remembered; beyond, the oldest are forgotten


class ArrivalGate:
    """The confirmed event time of a partition and the records not yet confirmed."""

    def __init__(self, slack_seconds: float, in_flight_seconds: float) -> None:
        self.slack_seconds = slack_seconds
        self.in_flight_seconds = in_flight_seconds
        self.confirmed_at = float("-inf")  # event time up to which nothing is on its way
        # (produced_at, at) of processed records not confirmed yet, in processing order.
        # Forgetting one only keeps the confirmed time lower: the merge waits, no harm.
        self._unconfirmed: deque[tuple[float, float]] = deque(maxlen=_KEPT)

    def complete_until(self, idle: Mapping[str, float], tails: Mapping[str, float | None]) -> float:
        """Wall time up to which every input that may bring records before the buffered
        ones has them all: the earliest last fetch (`idle`: input -> by when its last
        fetch was asked for, seconds) of the inputs with nothing buffered, less the time a record
        may take to reach the broker. Inputs with records buffered (`tails`: every
        input -> the Kafka timestamp of its last buffered record, None if it has none)
        keep their place by their own heads.

        Records processed ahead of that are confirmed once every input has all records
        produced before them, buffered inputs too: a record processed before another
        input's buffered ones arrived may be newer than what is still on its way
        behind them."""
        in_flight = self.in_flight_seconds
        until = confirmed = float("inf")
        for topic, tail in tails.items():
            polled = idle[topic] - in_flight if topic in idle else float("-inf")
            if tail is None:
                confirmed = min(confirmed, polled)
                if topic in idle:
                    until = min(until, polled)
            else:  # what comes after its tail was produced after it, and not yet sent if idle
                confirmed = min(confirmed, max(tail, polled))
        unconfirmed = self._unconfirmed
        while unconfirmed and unconfirmed[0][0] <= confirmed:
            _, at = unconfirmed.popleft()
            self.confirmed_at = max(self.confirmed_at, at)
        return until

    def allows(self, at: float, produced_at: float, complete_until: float) -> bool:
        """Whether a record (its event time, its Kafka timestamp) may be processed now."""
        return produced_at <= complete_until or at <= self.confirmed_at + self.slack_seconds

    def processed(self, at: float, produced_at: float, complete_until: float) -> None:
        if produced_at <= complete_until:
            self.confirmed_at = max(self.confirmed_at, at)
        else:
            self._unconfirmed.append((produced_at, at))

    def restart_from(self, at: float) -> None:
        """What a checkpoint restored was processed before: confirmed."""
        self.confirmed_at = max(self.confirmed_at, at)
        self._unconfirmed.clear()


class FetchStamps:
    """For each input, a time before the broker answered its last fetch. The client
    stamps an answer when it reads it (aiokafka's `last_poll_timestamp`), which on a
    busy event loop may be long after the broker looked; but the fetch was asked for
    only after the answer before it had been read, so that answer's stamp is a time
    before it.

    >>> stamps = FetchStamps()
    >>> stamps.asked_by("t", 1_000)  # one answer: nothing known before it
    -inf
    >>> stamps.asked_by("t", 1_000), stamps.asked_by("t", 1_250), stamps.asked_by("t", 1_250)
    (-inf, 1.0, 1.0)
    """

    def __init__(self) -> None:
        self._stamps: dict[Hashable, tuple[int, float]] = {}  # (latest ms, the one before s)

    def asked_by(self, key: Hashable, stamp_ms: int | None) -> float:
        """Wall seconds before the last answer for `key` whose stamp is `stamp_ms`."""
        latest, before = self._stamps.get(key, (None, float("-inf")))
        if stamp_ms is not None and stamp_ms != latest:
            if latest is not None:
                before = latest / 1000
            self._stamps[key] = (stamp_ms, before)
        return before
