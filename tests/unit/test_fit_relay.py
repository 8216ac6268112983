"""The idle watches (`agents.fit_relay`): the other partitions stop waiting for
partition 0's refits once it has had nothing to read for the release time, and wait
again as soon as it reads; a quiet follower publishes its statistics for every later
refit of partition 0. No broker: the records are only queued here."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

from agents.fit_relay import FitRelay
from streams.settings import load_settings


def relay(release: float | None) -> FitRelay:
    settings = load_settings(partitions=2, leader_idle_release_seconds=release)
    return FitRelay(settings, "t.value-fits")


def test_a_quiet_leader_is_released_once_and_taken_back_when_it_reads():
    fits = relay(30.0)
    fits.watch_leader(quiet=True, now=100.0)
    fits.watch_leader(quiet=True, now=129.9)
    assert fits.queue == []  # not yet: quiet for 29.9 s
    fits.watch_leader(quiet=True, now=130.0)
    fits.watch_leader(quiet=True, now=500.0)
    assert fits.queue == [("idle", 1)]  # once, however long it stays quiet
    fits.watch_leader(quiet=False, now=501.0)
    fits.watch_leader(quiet=False, now=502.0)
    assert fits.queue == [("idle", 1), ("idle", 0)]


def test_a_leader_that_reads_in_between_starts_its_quiet_time_again():
    fits = relay(30.0)
    fits.watch_leader(quiet=True, now=100.0)
    fits.watch_leader(quiet=False, now=120.0)  # read something: not released, no record
    fits.watch_leader(quiet=True, now=125.0)
    fits.watch_leader(quiet=True, now=150.0)
    assert fits.queue == []
    fits.watch_leader(quiet=True, now=155.0)
    assert fits.queue == [("idle", 1)]


def test_without_a_release_time_the_others_always_wait():
    fits = relay(None)
    fits.watch_leader(quiet=True, now=0.0)
    fits.watch_leader(quiet=True, now=10_000.0)
    assert fits.queue == []


def test_a_newly_assigned_leader_cancels_a_former_owners_release():
    fits = relay(30.0)
    fits.watch_leader(quiet=True, now=0.0)
    fits.watch_leader(quiet=True, now=40.0)
    fits.leader_assigned()
    assert fits.queue == [("idle", 1), ("idle", 0)]
    fits.watch_leader(quiet=True, now=41.0)  # its quiet time starts again
    assert fits.queue == [("idle", 1), ("idle", 0)]


class Follower:
    """Stands in for a follower's engine: counts its open snapshots."""

    def __init__(self) -> None:
        self.published = 0

    def publish_stats_end(self) -> None:
        self.published += 1


def test_a_quiet_follower_publishes_its_statistics_once_per_quiet_spell():
    fits, engine = relay(30.0), Follower()
    fits.watch_follower(1, quiet=True, now=100.0, engine=engine)
    fits.watch_follower(1, quiet=True, now=129.0, engine=engine)
    assert engine.published == 0
    fits.watch_follower(1, quiet=True, now=130.0, engine=engine)
    fits.watch_follower(1, quiet=True, now=900.0, engine=engine)
    assert engine.published == 1
    fits.watch_follower(1, quiet=False, now=901.0, engine=engine)  # reads again
    fits.watch_follower(1, quiet=True, now=902.0, engine=engine)
    fits.watch_follower(1, quiet=True, now=931.0, engine=engine)
    assert engine.published == 1
    fits.watch_follower(1, quiet=True, now=932.0, engine=engine)
    assert engine.published == 2


def test_without_a_release_time_a_quiet_follower_publishes_nothing():
    fits, engine = relay(None), Follower()
    fits.watch_follower(1, quiet=True, now=0.0, engine=engine)
    fits.watch_follower(1, quiet=True, now=10_000.0, engine=engine)
    assert engine.published == 0


def answered(value: object) -> Future:
    """A delivery the broker has answered: acknowledged, or refused (an exception)."""
    delivery: Future = Future()
    if isinstance(value, Exception):
        delivery.set_exception(value)
    else:
        delivery.set_result(value)
    return delivery


def test_a_refused_record_goes_back_unless_a_later_one_of_its_kind_supersedes_it():
    fits = relay(30.0)
    refused = ConnectionError("broker went away")
    sent = [
        (("idle", 1), answered(refused)),  # superseded: ("idle", 0) was sent after it
        (("start", 70), answered(refused)),  # one per install day: sent again
        (("idle", 0), answered(None)),
        (("progress", 40), answered(refused)),  # superseded by the queued one below
    ]
    fits.in_flight = list(sent)
    fits.queue = [("progress", 41)]
    assert not fits.settle(sent)
    assert fits.queue == [("start", 70), ("progress", 41)] and fits.in_flight == []


class PausingProducer:
    """A producer whose first send waits until `go` is set (a full batch, a metadata
    refresh), as aiokafka's may, then succeeds or, with `fail_first`, raises."""

    def __init__(self, fail_first: bool = False) -> None:
        self.go = asyncio.Event()
        self.fail_first = fail_first
        self.sent: list[bytes] = []

    async def send(self, topic, value=None, key=None, partition=None):
        first = not self.sent
        self.sent.append(key)
        if first:
            await self.go.wait()
            if self.fail_first:
                raise ConnectionError("metadata for the topic not available")
        delivery = asyncio.get_running_loop().create_future()
        delivery.set_result(None)
        return delivery


def settle_while_the_first_send_waits(producer: PausingProducer, refused: list[tuple]):
    """The relay after publishing ("progress", 12) while a checkpoint writer settles
    the `refused` records, sent before it, during its send."""

    async def scenario() -> FitRelay:
        fits = relay(30.0)
        fits.queue = [("progress", 12)]
        publishing = asyncio.create_task(fits.publish(producer, None))
        await asyncio.sleep(0.01)  # the send of ("progress", 12) waits
        failed = [(record, answered(ConnectionError("refused"))) for record in refused]
        fits.in_flight = [*failed]
        assert not fits.settle(failed)
        producer.go.set()
        await publishing
        return fits

    return asyncio.run(scenario())


def test_a_record_put_back_while_a_send_waits_is_neither_lost_nor_sent_twice():
    producer = PausingProducer()
    fits = settle_while_the_first_send_waits(producer, [("progress", 11), ("start", 70)])
    # ("progress", 11) is superseded by the one being sent: not sent after it
    assert sorted(record for record, _ in fits.in_flight) == [("progress", 12), ("start", 70)]
    assert fits.queue == [] and producer.sent == [b"progress", b"start:70"]


def test_a_record_whose_send_failed_goes_back_behind_older_ones_put_back_meanwhile():
    producer = PausingProducer(fail_first=True)
    fits = settle_while_the_first_send_waits(producer, [("idle", 1), ("start", 70)])
    assert fits.queue == [("idle", 1), ("start", 70), ("progress", 12)]
    assert fits.in_flight == []


class SlowAcknowledgingProducer:
    """A producer that takes every record at once and acknowledges it later (after
    `delay` s); the records named in `refuse` are refused then."""

    def __init__(self, refuse: tuple[bytes, ...] = (), delay: float = 0.05) -> None:
        self.refuse, self.delay = refuse, delay
        self.sent: list[bytes] = []

    async def send(self, topic, value=None, key=None, partition=None):
        self.sent.append(key)
        delivery = asyncio.get_running_loop().create_future()
        error = ConnectionError("batch expired") if key in self.refuse else None

        def answer() -> None:
            if error is None:
                delivery.set_result(None)
            else:
                delivery.set_exception(error)

        asyncio.get_running_loop().call_later(self.delay, answer)
        return delivery


def test_nothing_goes_after_a_refit_start_until_the_broker_has_it():
    """A progress past a refit's install day delivered while its start was refused: a
    follower past that day would never install the refit (versions differ)."""

    async def scenario(producer: SlowAcknowledgingProducer) -> FitRelay:
        fits = relay(30.0)
        fits.queue = [("progress", 40), ("start", 70), ("progress", 75)]
        await fits.publish(producer, None)
        assert producer.sent == [b"progress", b"start:70"]  # the start not answered yet
        await asyncio.sleep(0.1)  # answered now
        await fits.publish(producer, None)
        return fits

    refusing = SlowAcknowledgingProducer(refuse=(b"start:70",))
    fits = asyncio.run(scenario(refusing))
    # refused: sent again first at the next publish, and still not the progress after it
    assert refusing.sent == [b"progress", b"start:70", b"start:70"]
    assert fits.queue == [("progress", 75)]
    taking = SlowAcknowledgingProducer()
    fits = asyncio.run(scenario(taking))
    assert taking.sent == [b"progress", b"start:70", b"progress"] and fits.queue == []


def test_a_refused_refit_start_goes_again_without_waiting_for_a_checkpoint():
    """In a broker outage the leader's start was refused, and so was an output batch
    of partition 0, which is then replayed from its checkpoint and takes none until
    that is done. The start was put back only by partition 0's next checkpoint, and
    until then nothing went out, a follower's statistics neither: the leader waited
    for them, the follower for the leader's refits (a worker stuck for good after a
    45 s outage). A refused record now goes back to the front at the next publish."""

    async def scenario() -> tuple[FitRelay, SlowAcknowledgingProducer]:
        fits = relay(30.0)
        down = SlowAcknowledgingProducer(refuse=(b"start:70",))
        fits.queue = [("start", 70)]
        await fits.publish(down, None)
        await asyncio.sleep(0.1)  # refused
        fits.queue.append(("stats", 0, 70, 1, "ab12", 1, 2, "..."))  # a follower's
        back = SlowAcknowledgingProducer()
        await fits.publish(back, None)  # no checkpoint in between
        await asyncio.sleep(0.1)
        await fits.publish(back, None)
        await asyncio.sleep(0.1)
        return fits, back

    fits, back = asyncio.run(scenario())
    assert back.sent == [b"start:70", b"stats:1:0:70:ab12:1"]
    assert fits.queue == [] and fits.undelivered() == set()
