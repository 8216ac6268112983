"""`clvstream report --from-service`: the output topics of a real broker, read to their end."""

from __future__ import annotations

import asyncio
from datetime import date

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from models.emitted import Stream
from models.programmes.measurement import ArmStats, estimate
from streams.kafka_admin import bootstrap_servers, create_topics
from streams.report import build_report, write_report
from streams.report.aggregate import ReportBuilder
from streams.report.migration import NEW_IN_PERIOD
from streams.report.options import ReportOptions
from streams.report.sources import read_service
from streams.settings import load_settings
from streams.topics import TopicNames

PARTITIONS = 2


def score(customer: str, day: int, clv: float, lifecycle: str, tier: str) -> dict:
    return {
        "event_type": "score",
        "event_id": f"s-{customer}-{day}",
        "customer_id": customer,
        "scored_at": f"2024-01-{day:02d}T00:00:00+00:00",
        "frequency": day,
        "churn_probability": 0.5,
        "clv": clv,
        "lifecycle": lifecycle,
        "value_tier": tier,
    }


def change(event_id: str, customer: str, day: int, source: str | None, target: str) -> dict:
    return {
        "event_type": "segment_change",
        "event_id": event_id,
        "customer_id": customer,
        "occurred_at": f"2024-01-{day:02d}T00:00:00+00:00",
        "dimension": "lifecycle",
        "from_segment": source,
        "to_segment": target,
    }


def arm(pairs: list[tuple[float, float]], cost: float) -> ArmStats:
    stats = ArmStats()
    for x, y in pairs:
        stats.add(x, y, stake=10.0, cost=cost)
    return stats


def result(scope: str, day: int, treated: ArmStats, control: ArmStats) -> dict:
    return {
        "event_type": "programme_result",
        "event_id": f"r-{scope}-{day}",
        "occurred_at": f"2024-01-{day:02d}T00:00:00+00:00",
        "programme_id": "save_offer",
        "scope": scope,
        "status": "active",
        "detail": "",
        "treatment_stats": treated.as_dict(),
        "control_stats": control.as_dict(),
    }


T0, C0 = arm([(1, 12), (2, 15), (3, 19)], 2.0), arm([(1, 2), (2, 5), (3, 8)], 0.0)
T1, C1 = arm([(0, 8), (5, 30), (2, 11)], 2.0), arm([(1, 3), (3, 4), (6, 12)], 0.0)

# (stream, partition, key, value): scores are keyed and co-partitioned by customer.
RECORDS = [
    (Stream.SCORES, 0, "c1", score("c1", 1, 50.0, "new", "rest")),
    (Stream.SCORES, 0, "c1", score("c1", 9, 120.0, "active", "top_5")),  # c1's latest
    (Stream.SCORES, 1, "c2", score("c2", 2, 30.0, "at_risk", "rest")),
    (Stream.SCORES, 1, "c3", score("c3", 3, 999.0, "active", "top_5")),
    (Stream.SCORES, 1, "c3", None),  # c3 erased
    (Stream.SEGMENT_CHANGES, 0, "c1", change("m0", "c1", 1, None, "new")),
    (Stream.SEGMENT_CHANGES, 0, "c1", change("m1", "c1", 2, "new", "active")),
    (Stream.SEGMENT_CHANGES, 1, "c2", change("m2", "c2", 1, None, "active")),
    (Stream.SEGMENT_CHANGES, 1, "c2", change("m3", "c2", 3, "active", "at_risk")),
    (Stream.SEGMENT_CHANGES, 1, "c3", change("m4", "c3", 2, None, "active")),  # erased
    (Stream.PROGRAMME_OUTCOMES, 0, "save_offer", result("p0", 5, arm([(1, 1)], 2.0), C0)),
    (Stream.PROGRAMME_OUTCOMES, 0, "save_offer", result("p0", 8, T0, C0)),
    (Stream.PROGRAMME_OUTCOMES, 1, "save_offer", result("p1", 7, T1, C1)),
]


async def produce(servers: str, names: TopicNames) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=servers, linger_ms=5)
    await producer.start()
    try:
        for stream, partition, key, value in RECORDS:
            encoded = orjson.dumps(value) if value is not None else None
            await producer.send_and_wait(
                names.output(stream), encoded, key=key.encode(), partition=partition
            )
    finally:
        await producer.stop()


@pytest.fixture
def service(kafka_url, topic_names):
    """Output topics with a fresh prefix holding RECORDS; model-health is left uncreated."""
    (base,) = topic_names("report")
    names = TopicNames(base + ".")
    created = [t for t in names.outputs if t != names.output(Stream.MODEL_HEALTH)]
    create_topics(kafka_url, created, PARTITIONS, compacted=[names.output(Stream.SCORES)])
    asyncio.run(produce(bootstrap_servers(kafka_url), names))
    return load_settings(kafka_url=kafka_url, topic_prefix=names.prefix)


def test_the_service_topics_are_read_to_their_end(service):
    builder = ReportBuilder(ReportOptions.of(service.scoring))
    records = asyncio.run(read_service(service, builder, timeout=20))
    assert records == len(RECORDS)
    report = builder.build()

    # Current scores: the latest per customer, erased customers gone.
    assert report.customers == 2
    assert report.equity == pytest.approx(150.0)
    assert {s.name: s.equity for s in report.by_lifecycle} == {"active": 120.0, "at_risk": 30.0}
    assert {s.name: s.customers for s in report.by_tier} == {"top_5": 1, "rest": 1}

    # Everyone entered in the whole history; the erased customer is not counted.
    migration = report.migration
    assert (
        migration.count(NEW_IN_PERIOD, "active") == migration.count(NEW_IN_PERIOD, "at_risk") == 1
    )
    assert (migration.customers, migration.changes) == (2, 4)

    (row,) = report.programmes
    assert row.result == estimate(T0.merged(T1), C0.merged(C1))
    assert (row.windows_treated, row.windows_control) == (6, 6)
    assert report.quality == ()  # the model-health topic does not exist


def test_the_migration_from_the_service_is_over_the_period(service):
    builder = ReportBuilder(ReportOptions.of(service.scoring, first=date(2024, 1, 2)))
    asyncio.run(read_service(service, builder, timeout=20))
    migration = builder.build().migration
    assert migration.count("new", "active") == migration.count("active", "at_risk") == 1
    assert (migration.customers, migration.moved, migration.changes) == (2, 2, 2)


def test_the_report_from_the_service_is_written(service, tmp_path):
    out = tmp_path / "report.html"
    report = write_report(out, service, from_service=True)
    page = out.read_text(encoding="utf-8")
    assert report.customers == 2 and "150 USD" in page
    assert "Segment migration" in page and "<svg" in page
    # The same as a report built again: reading does not consume anything.
    assert build_report(service, from_service=True) == report


def test_no_broker_configured_is_an_error():
    from models.errors import ClvError

    settings = load_settings(kafka_url=None)
    with pytest.raises(ClvError, match="no broker"):
        build_report(settings, from_service=True)
