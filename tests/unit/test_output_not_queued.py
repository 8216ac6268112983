"""An output batch the producer cannot even queue (the broker away for a whole request
timeout: `send_batch` raises KafkaTimeoutError) is a refused batch: its partition is
read again from its last checkpoint, and the worker goes on. It crashed the worker."""

from __future__ import annotations

import asyncio

from aiokafka.errors import KafkaTimeoutError

from agents.partition import PartitionScorer
from agents.scoring import ScoringService
from models.emitted import Output, Stream
from streams.settings import load_settings


class Batch:
    def __init__(self) -> None:
        self.records = 0

    def append(self, **record: object) -> object:
        self.records += 1
        return object()  # (room for every record)


class BrokerAway:
    """aiokafka's producer while the batch before is still unsent after its timeout."""

    def __init__(self) -> None:
        self.tried: list[tuple[str, int]] = []

    def create_batch(self) -> Batch:
        return Batch()

    async def send_batch(self, batch: Batch, topic: str, *, partition: int) -> asyncio.Future:
        self.tried.append((topic, partition))
        raise KafkaTimeoutError()


def test_a_batch_that_cannot_be_queued_has_its_partition_read_again():
    async def run() -> None:
        settings = load_settings(topic_prefix="t.", partitions=2, app_id="queue-test")
        service = ScoringService(settings)
        service.producer = producer = BrokerAway()
        config = settings.scoring.model_copy(update={"churn_model": False})
        for partition in (0, 1):
            service.partitions[partition] = PartitionScorer(
                partition, service.names.merge_order, config
            )
        changes = [Output(Stream.SEGMENT_CHANGES, f"c{i}", {"i": i}) for i in range(3)]
        triggers = [Output(Stream.PROGRAMME_TRIGGERS, "c1", {"t": 1})]
        await service._emit(1, changes + triggers)
        assert service._refused == {1}
        assert service.metrics.output_batches_failed == 1
        # the partition's other batches wait for its replay, which produces them again
        assert producer.tried == [(service.names.output(Stream.SEGMENT_CHANGES), 1)]
        assert not service._last_output  # nothing for a checkpoint to wait for

    asyncio.run(run())
