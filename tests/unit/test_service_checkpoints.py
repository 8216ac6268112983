"""The worker's checkpoints, with a stand-in producer (no broker: the broker path is
covered by the integration tests). Partition 0 is checkpointed only once the broker
has acknowledged its value-fits records, so a restart from a checkpoint never skips
records the other partitions did not get; partitions are checkpointed one per poll,
so no poll stalls for all of them."""

from __future__ import annotations

import asyncio
import time

from aiokafka import TopicPartition

from agents import partition_ownership
from agents.changelog import ChangelogFold, Restored
from agents.partition import CHECKPOINT_KEY, FENCE_PREFIX, NEW, OWNER_HEADER, PartitionScorer
from agents.scoring import ScoringService
from models.emitted import Output, Stream
from models.state import CustomerState
from streams.settings import load_settings


class HeldProducer:
    """Records every send; `flush` acknowledges them, except value-fits records while
    `hold_fits` is set (their delivery stays pending, or fails with `fail_fits`)."""

    def __init__(self, fits_topic: str) -> None:
        self.fits_topic = fits_topic
        self.hold_fits = True
        self.fail_fits = False
        self.refuse_keys: set[bytes] = set()  # other records the broker refuses
        self.sent: list[tuple[str, bytes | None, int | None]] = []
        self.written: list[tuple[str, bytes | None, bytes | None, int]] = []  # acknowledged
        self.owners: list[bytes | None] = []  # of the records written (their owner header)
        self._pending: list[tuple[str, bytes | None, bytes | None, int, asyncio.Future]] = []
        self._headers: dict[int, list | None] = {}  # by the id of a pending delivery

    async def send(self, topic, value=None, key=None, partition=None, headers=None):
        delivery = asyncio.get_running_loop().create_future()
        self.sent.append((topic, key, partition))
        self._headers[id(delivery)] = headers
        self._pending.append((topic, key, value, partition, delivery))
        if key is not None and key.startswith(FENCE_PREFIX):  # a restore waits for it
            await self.flush()
        return delivery

    async def flush(self) -> None:
        still = []
        for topic, key, value, partition, delivery in self._pending:
            if topic == self.fits_topic and self.hold_fits:
                if self.fail_fits:
                    delivery.set_exception(ConnectionError("broker went away"))
                else:
                    still.append((topic, key, value, partition, delivery))
                continue
            if key in self.refuse_keys:
                delivery.set_exception(ConnectionError("not enough replicas"))
                continue
            delivery.set_result(None)
            self.written.append((topic, key, value, partition))
            headers = self._headers.pop(id(delivery), None)
            self.owners.append(dict(headers)[OWNER_HEADER] if headers else None)
        self._pending = still

    def fold(self, changelog: str, partition: int | None = None) -> Restored:
        """What a restore folds from the changelog records the broker acknowledged."""
        fold = ChangelogFold()
        for (topic, key, value, written_to), owner in zip(self.written, self.owners, strict=True):
            if topic == changelog and partition in (None, written_to):
                fold.add(key, value, owner)
        return fold.result()

    def restored(self, changelog: str) -> dict:
        return dict(self.fold(changelog).states)


class NoCommits:
    async def commit(self, offsets) -> None:
        pass


def service_with_two_partitions() -> tuple[ScoringService, HeldProducer]:
    settings = load_settings(topic_prefix="t.", partitions=2, app_id="fits-test")
    service = ScoringService(settings)
    producer = HeldProducer(service.names.value_fits)
    service.producer, service.consumer = producer, NoCommits()
    config = settings.scoring.model_copy(update={"churn_model": False})
    for partition in (0, 1):
        service.partitions[partition] = PartitionScorer(
            partition, service.names.merge_order, config
        )
    return service, producer


def checkpointed(producer: HeldProducer, changelog: str) -> list[int | None]:
    return [p for topic, key, p in producer.sent if topic == changelog and key == CHECKPOINT_KEY]


def test_partition_0_waits_for_its_fit_records_and_the_others_do_not():
    async def scenario() -> None:
        service, producer = service_with_two_partitions()
        changelog = service.names.changelog
        service.fits.queue.append(("progress", 12))
        await service._checkpoint({0, 1})
        assert checkpointed(producer, changelog) == [1]  # partition 0 left out
        assert service.fits.queue == [("progress", 12)]  # queued to be sent again

        producer.sent.clear()
        producer.hold_fits = False  # the broker acknowledges from now on
        await service._checkpoint({0, 1})
        fits = [key for topic, key, _ in producer.sent if topic == service.names.value_fits]
        assert fits == [b"progress"]  # sent again, before the checkpoint
        assert checkpointed(producer, changelog) == [0, 1]
        assert service.fits.queue == [] and service.fits.in_flight == []

    asyncio.run(scenario())


def test_a_failed_fit_record_is_sent_again_and_holds_partition_0_back():
    async def scenario() -> None:
        service, producer = service_with_two_partitions()
        producer.fail_fits = True
        service.fits.queue.append(("start", 70))
        await service._checkpoint({0})
        assert checkpointed(producer, service.names.changelog) == []
        assert service.fits.queue == [("start", 70)]
        assert service.metrics.checkpoints == 0  # none counted that was not written

    asyncio.run(scenario())


def test_a_follower_waits_for_its_statistics_records_and_partition_0_does_not():
    async def scenario() -> None:
        service, producer = service_with_two_partitions()
        changelog = service.names.changelog
        record = ("stats", 0, 90, 1, "ab12", 0, 1, "")  # partition 1's, for partition 0's refits
        service.fits.queue.append(record)
        await service._checkpoint({0, 1})
        assert checkpointed(producer, changelog) == [0]
        assert service.fits.queue == [record] and service.fits.publishes(1)

        producer.sent.clear()
        producer.hold_fits = False
        await service._checkpoint_in_background(1)  # its record goes out again first
        fits = [key for topic, key, _ in producer.sent if topic == service.names.value_fits]
        assert fits == [b"stats:1:0:90:ab12:0"]
        await asyncio.sleep(0.01)
        assert checkpointed(producer, changelog) == []  # not before it is acknowledged
        await written(service, producer)
        assert checkpointed(producer, changelog) == [1]
        assert not service.fits.publishes(1)

    asyncio.run(scenario())


async def written(service: ScoringService, producer: HeldProducer) -> None:
    """Until the checkpoint in the background is done, the broker answering meanwhile."""
    writer = service._checkpointer
    while writer is not None and not writer.done():
        await producer.flush()
        await asyncio.sleep(0.001)
    await service._checkpoint_written()


def test_partition_0_in_the_background_is_written_only_once_its_fit_records_are_out():
    """A periodic checkpoint of partition 0 goes on in the background like any other,
    but its refit records sent before must be acknowledged first: one that failed goes
    out again, and the checkpoint is not written (it is due again shortly)."""

    async def scenario() -> None:
        service, producer = service_with_two_partitions()
        changelog = service.names.changelog
        service._checkpointed_at[0] = time.monotonic()
        producer.fail_fits = True
        service.fits.queue.append(("start", 70))
        service.partitions[0].states["c0"] = CustomerState()
        await service._checkpoint_in_background(0)
        assert service.fits.queue == [] and service.fits.publishes(0)  # sent, not yet out
        await written(service, producer)  # the broker refuses it
        assert checkpointed(producer, changelog) == []
        assert producer.restored(changelog) == {}  # its states written, not confirmed
        assert service.fits.queue == [("start", 70)]  # to be sent again
        assert service._checkpointed_at[0] < time.monotonic() - service._checkpoint_every + 1

        producer.fail_fits, producer.hold_fits = False, False
        await service._checkpoint_in_background(0)
        await written(service, producer)
        assert checkpointed(producer, changelog) == [0]
        assert service.fits.queue == [] and not service.fits.publishes(0)
        assert list(producer.restored(changelog)) == ["c0"]  # confirmed by the retry

    asyncio.run(scenario())


def test_states_the_broker_refused_are_written_again_before_a_checkpoint_confirms_them():
    """A checkpoint record is written only once every state record before it was
    acknowledged: one refused (a new state, an erasure's tombstone) is written again by
    the next checkpoint, so a restore never confirms the states with a gap."""

    async def scenario() -> None:
        service, producer = service_with_two_partitions()
        changelog, states = service.names.changelog, service.partitions[1].states
        states["c1"], states["c2"] = CustomerState(), CustomerState()
        producer.refuse_keys = {b"c1"}
        await service._checkpoint({1})
        assert checkpointed(producer, changelog) == [] and service.metrics.checkpoints == 0
        producer.refuse_keys = set()
        await service._checkpoint({1})
        assert checkpointed(producer, changelog) == [1]
        assert sorted(producer.restored(changelog)) == ["c1", "c2"]
        flags = [value[:1] for topic, key, value, _ in producer.written if key == b"c1"]
        assert flags == [NEW]  # still new: a restore before this checkpoint drops it

        del states["c2"]  # erased
        producer.refuse_keys = {b"c2"}
        await service._checkpoint({1})
        producer.refuse_keys = set()
        await service._checkpoint({1})
        assert checkpointed(producer, changelog) == [1, 1]
        assert sorted(producer.restored(changelog)) == ["c1"]

    asyncio.run(scenario())


def test_without_fit_records_partition_0_is_checkpointed_at_once():
    async def scenario() -> None:
        service, producer = service_with_two_partitions()
        await service._checkpoint({0, 1})
        assert checkpointed(producer, service.names.changelog) == [0, 1]

    asyncio.run(scenario())


def test_partitions_are_checkpointed_one_per_poll_each_within_the_interval():
    async def scenario() -> None:
        service, producer = service_with_two_partitions()
        every = service._checkpoint_every
        service._checkpointed_at = {0: 10.0, 1: 10.0 + every / 2}
        assert service._checkpoint_due(10.0 + every - 0.01) is None
        assert service._checkpoint_due(10.0 + every) == 0
        await service._checkpoint({0})
        assert checkpointed(producer, service.names.changelog) == [0]
        now = service._checkpointed_at[0]
        assert now > 10.0 + every  # marked when written (monotonic clock)
        assert service._checkpoint_due(now) == 1  # overdue since 10 + 1.5 intervals
        assert service._checkpoint_due(10.0 + every / 2 + every - 0.01) is None

    asyncio.run(scenario())


def test_partition_0_waiting_for_its_records_does_not_hold_the_others_checkpoints_back():
    async def scenario() -> None:
        service, producer = service_with_two_partitions()
        service.fits.queue.append(("progress", 12))  # never acknowledged (held)
        service._checkpointed_at = {0: 1.0, 1: 2.0}  # both overdue, partition 0 more
        for _ in range(2):  # two polls
            due = service._checkpoint_due(time.monotonic())
            if due is not None:
                await service._checkpoint({due})
        assert checkpointed(producer, service.names.changelog) == [1]

    asyncio.run(scenario())


def test_the_states_a_checkpoint_wrote_are_counted_apart_from_the_checkpoints():
    """`clvstream_checkpoints_total` also counts checkpoints with no state to write (a
    partition that has scored nobody yet); `clvstream_checkpointed_states_total` tells
    one that wrote states (what a restart can restore) from them."""

    async def scenario() -> None:
        service, _ = service_with_two_partitions()
        await service._checkpoint({1})  # nothing changed
        assert (service.metrics.checkpoints, service.metrics.checkpointed_states) == (1, 0)
        states = service.partitions[0].states
        states["c1"], states["c2"] = CustomerState(), CustomerState()
        await service._checkpoint({0, 1})
        assert (service.metrics.checkpoints, service.metrics.checkpointed_states) == (2, 2)
        text = service.metrics.render({})
        assert "clvstream_checkpointed_states_total 2\n" in text

    asyncio.run(scenario())


class GatedProducer:
    """Acknowledges what is sent once `open` is called (at once after that), as a
    broker that answers late; `flush` waits for that too."""

    def __init__(self) -> None:
        self.opened = False
        self.sent: list[tuple[str, bytes | None, int | None]] = []
        self._pending: list[asyncio.Future] = []

    async def send(self, topic, value=None, key=None, partition=None, headers=None):
        delivery = asyncio.get_running_loop().create_future()
        self.sent.append((topic, key, partition))
        if self.opened:
            delivery.set_result(None)
        else:
            self._pending.append(delivery)
        return delivery

    def open(self) -> None:
        self.opened = True
        for delivery in self._pending:
            delivery.set_result(None)

    async def flush(self) -> None:
        while not self.opened:
            await asyncio.sleep(0.001)


def test_a_checkpoint_in_the_background_holds_the_states_of_its_start_and_waits_for_outputs():
    """Scoring goes on while a periodic checkpoint is written: it holds the states and
    offsets of when it started, its records go out only once every output sent before
    is acknowledged (it never covers an unsent one), none other starts meanwhile, and
    a checkpoint asked for on a stop or rebalance waits for it."""

    async def scenario() -> None:
        service, _ = service_with_two_partitions()
        producer = service.producer = GatedProducer()
        changelog = service.names.changelog
        part = service.partitions[1]
        part.states["c1"] = CustomerState()
        service._last_output[("t.scores", 1)] = await producer.send("t.scores", b"output", b"c1")
        await service._checkpoint_in_background(1)
        part.states["c2"] = CustomerState()  # scored meanwhile: for the next checkpoint
        await asyncio.sleep(0.01)
        assert [t for t, _, _ in producer.sent] == ["t.scores"]  # waits for the output
        await service._checkpoint_in_background(1)  # due again: one at a time
        final = asyncio.create_task(service._checkpoint({1}))
        await asyncio.sleep(0.01)
        assert not final.done() and service.metrics.checkpoints == 0
        producer.open()
        await final
        keys = [key for topic, key, _ in producer.sent if topic == changelog]
        assert keys == [b"c1", CHECKPOINT_KEY, b"c2", CHECKPOINT_KEY]
        assert (service.metrics.checkpoints, service.metrics.checkpointed_states) == (2, 2)

    asyncio.run(scenario())


class Batch:
    def append(self, key, value, timestamp, headers=()):
        return self


class RefusingProducer(HeldProducer):
    """Output batches are refused while `refuse_outputs` is set."""

    refuse_outputs = True

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch, topic, partition):
        delivery = asyncio.get_running_loop().create_future()
        if self.refuse_outputs:
            delivery.set_exception(ConnectionError("not leader for partition"))
        else:
            delivery.set_result(None)
        return delivery


class Inputs(NoCommits):
    """The input consumer: where each input was sought to, which are paused."""

    def __init__(self) -> None:
        self.sought: dict = {}
        self.paused: set = set()

    def seek(self, tp, offset) -> None:
        self.sought[(tp.topic, tp.partition)] = offset

    def highwater(self, tp) -> None:
        return None

    def assignment(self) -> set:
        return {TopicPartition(t, p) for t in ("t.transactions", "t.interactions",
                                                 "t.customer-events") for p in (0, 1)}  # fmt: skip

    def pause(self, *tps) -> None:
        self.paused |= {(tp.topic, tp.partition) for tp in tps}

    def resume(self, *tps) -> None:
        self.paused -= {(tp.topic, tp.partition) for tp in tps}


def test_a_partition_whose_outputs_were_refused_reads_again_from_its_last_checkpoint(
    monkeypatch,
):
    """An output batch the broker refused is not lost: its partition writes no
    checkpoint record after it, and is restored from its last checkpoint and reads its
    inputs again from there (its outputs since are produced again, as after a crash)."""

    async def scenario() -> None:
        service, _ = service_with_two_partitions()
        producer = service.producer = RefusingProducer(service.names.value_fits)
        service.consumer = inputs = Inputs()
        changelog, part = service.names.changelog, service.partitions[1]
        part.states["c1"] = CustomerState()
        part.next_offsets = dict.fromkeys(part.next_offsets, 5)
        await service._checkpoint({1})  # the last good checkpoint: c1, inputs from 5

        part.states["c2"] = CustomerState()  # scored since, and its output refused
        part.next_offsets = dict.fromkeys(part.next_offsets, 9)
        change = Output(Stream.SEGMENT_CHANGES, "c2", {"event_type": "segment_change"})
        await service._emit(1, [change])
        await asyncio.sleep(0)  # the broker's answer
        assert service._refused == {1}
        assert "clvstream_output_batches_failed_total 1\n" in service.metrics.render({})
        await service._checkpoint({1})
        assert checkpointed(producer, changelog) == [1]  # none covers the refused outputs

        broker_away = [True]

        async def fold(reader, tp, into=None) -> Restored:
            if broker_away[0]:
                raise ConnectionError("no broker")
            return producer.fold(changelog, tp.partition)

        monkeypatch.setattr(partition_ownership, "AIOKafkaConsumer", lambda **_: NoReader())
        monkeypatch.setattr(partition_ownership, "read_changelog", fold)
        await service._replay_refused()  # the restore fails: tried again later, paused
        assert 1 not in service.partitions and service.status()["replaying"] == [1]
        assert all((topic, 1) in inputs.paused for topic in service.names.inputs)
        broker_away[0] = False
        await service._replay_refused()  # not before its backoff
        assert 1 not in service.partitions
        service._replay_at[1], service._replays_in_a_row[1] = 0.0, 5_000  # (capped, no overflow)
        producer.refuse_outputs = False
        await service._replay_refused()
        again = service.partitions[1]
        assert again is not part and sorted(again.states) == ["c1"]
        assert {tp: o for tp, o in inputs.sought.items() if tp[1] == 1} == {
            (topic, 1): 5 for topic in service.names.inputs
        }
        assert inputs.paused == set() and service.status()["replaying"] == []
        assert service.metrics.replays == 1
        await service._checkpoint({1})
        assert checkpointed(producer, changelog) == [1, 1]  # checkpointed again
        restored = producer.fold(changelog, 1)  # c2, written unconfirmed, is deleted
        assert sorted(restored.states) == ["c1"] and restored.rolled_back == 0

    asyncio.run(scenario())


class NoReader:
    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass


def test_what_a_former_owner_writes_after_the_partition_moved_is_left_out_of_restores(
    monkeypatch,
):
    """A worker whose session expired (it stalled, or lost the broker) no longer holds
    its partitions, but may write one more checkpoint before it learns so. Each restore
    fences the changelog first: the stale states and checkpoint written after the new
    owner's fence are left out of later restores (their customers written again), where
    they stood over what the new owner had applied since."""

    async def scenario() -> None:
        first, producer = service_with_two_partitions()
        second, _ = service_with_two_partitions()
        second.producer = producer
        first.consumer, second.consumer = Inputs(), Inputs()
        changelog = first.names.changelog

        async def fold(reader, tp, into=None) -> Restored:
            return producer.fold(changelog, tp.partition)

        monkeypatch.setattr(partition_ownership, "AIOKafkaConsumer", lambda **_: NoReader())
        monkeypatch.setattr(partition_ownership, "read_changelog", fold)
        del first.partitions[1], second.partitions[1]
        await first._restore({1})
        held = first.partitions[1]
        held.states["c1"] = CustomerState()
        held.next_offsets = dict.fromkeys(held.next_offsets, 5)
        await first._checkpoint({1})  # c1, inputs from 5

        await second._restore({1})  # the group gave partition 1 to the second worker
        assert sorted(second.partitions[1].states) == ["c1"]
        held.states["c1"] = CustomerState.new(1.0)  # the first one, not knowing yet,
        held.states["c2"] = CustomerState.new(2.0)  # scored on and checkpoints
        held.next_offsets = dict.fromkeys(held.next_offsets, 9)
        await first._checkpoint({1})
        assert checkpointed(producer, changelog) == [1, 1]

        restored = producer.fold(changelog, 1)  # as the second worker restored it
        assert restored.offsets == dict.fromkeys(held.next_offsets, 5)
        assert restored.states == {"c1": CustomerState()}
        assert restored.rolled_back_ids == {"c1", "c2"}  # (written again next time)

    asyncio.run(scenario())


class QuietFollower:
    """Stands in for a follower's engine: counts its open snapshots."""

    def __init__(self) -> None:
        self.published = 0

    def publish_stats_end(self) -> None:
        self.published += 1


def test_a_follower_back_from_another_worker_quiet_publishes_its_statistics_again():
    """Partition 1, quiet here, published its statistics for every later refit (an
    open snapshot), then moved to another worker, which read events and published
    statistics that close the open ones. Back here and quiet again, it publishes them
    again once quiet for the release time: left marked as published, partition 0
    waited for its statistics for the next refit, and the others for partition 0,
    until it read again."""

    async def scenario() -> None:
        service, _ = service_with_two_partitions()
        fits, before = service.fits, QuietFollower()
        fits.watch_follower(1, quiet=True, now=0.0, engine=before)
        fits.watch_follower(1, quiet=True, now=30.0, engine=before)
        assert before.published == 1
        await service.release({1})  # to the other worker

        back = QuietFollower()  # restored here again, nothing to read from the start
        fits.watch_follower(1, quiet=True, now=500.0, engine=back)
        fits.watch_follower(1, quiet=True, now=529.0, engine=back)
        assert back.published == 0  # its quiet time starts again
        fits.watch_follower(1, quiet=True, now=530.0, engine=back)
        assert back.published == 1

    asyncio.run(scenario())


def test_the_rebalance_callback_does_not_wait_for_the_restore_of_its_partitions(monkeypatch):
    """aiokafka sends no heartbeats while the assignment callback runs: a restore in it
    longer than the session timeout (a large partition) had the group take the
    partitions away again, at every rebalance. The callback pauses their inputs; the
    scoring loop restores them, then resumes them."""

    async def scenario() -> None:
        service, producer = service_with_two_partitions()
        service.consumer = inputs = Inputs()
        del service.partitions[1]
        changelog_read = asyncio.Event()

        async def slow_fold(reader, tp, into=None) -> Restored:
            await changelog_read.wait()  # a large changelog
            return producer.fold(service.names.changelog, tp.partition)

        monkeypatch.setattr(partition_ownership, "AIOKafkaConsumer", lambda **_: NoReader())
        monkeypatch.setattr(partition_ownership, "read_changelog", slow_fold)
        await asyncio.wait_for(service.acquire({0, 1}), 1.0)  # at once
        assert service.status()["restoring"] == [1]
        assert inputs.paused == {(topic, 1) for topic in service.names.inputs}

        restoring = asyncio.create_task(service.restore_assigned())  # the loop's next poll
        await asyncio.sleep(0.01)
        assert not restoring.done() and 1 not in service.partitions
        changelog_read.set()
        await restoring
        assert 1 in service.partitions and service.status()["restoring"] == []
        assert inputs.paused == set()

    asyncio.run(scenario())
