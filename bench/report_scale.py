"""`clvstream report --from-service` at scale: peak RSS and wall time of reading the
output topics of a real (embedded Tansu) broker holding months of output.

    python -m bench.report_scale [--customers 100000 --scores 1500000 --partitions 4]

Tansu does not compact, so the `scores` topic holds every score ever written. The
records are synthetic but shaped like the service's (`schemas/outputs.py`): each
customer's scores over `--days` days (purchase count rising), a lifecycle change
every few scores, programme triggers, outcomes and results, and a churn quality
report per partition and day. The report is built in a child process (`--read`),
whose own peak RSS (`ru_maxrss`) and wall time are printed; its RSS after the imports
alone is printed beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import orjson

from models.emitted import Stream

LIFECYCLES = ("new", "active", "at_risk", "lapsing", "lost", "reactivated")
TIERS = ("top_5", "next_15", "next_30", "rest")
START = datetime(2024, 1, 1, tzinfo=UTC)


def _iso(moment: datetime) -> str:
    return moment.isoformat()


def score(customer: str, at: datetime, n: int, frequency: int, rng: random.Random) -> dict:
    clv = round(rng.lognormvariate(4, 1), 2)
    return {
        "event_type": "score",
        "schema_version": 1,
        "event_id": f"s-{customer}-{n}",
        "customer_id": customer,
        "scored_at": _iso(at),
        "cause": f"t-{customer}-{n}",
        "frequency": frequency,
        "recency_days": frequency * 7,
        "tenure_days": n * 9,
        "monetary_value": 42.5,
        "total_spend": 42.5 * (frequency + 1),
        "refund_total": 0.0,
        "p_alive": round(rng.random(), 4),
        "expected_purchases": 1.3,
        "predicted_value": clv,
        "clv": clv,
        "churn_probability": round(rng.random(), 4),
        "value_churn_probability": 0.3,
        "churn_reasons": ["recency", "frequency_drop"],
        "segment": "loyal",
        "lifecycle": LIFECYCLES[n % len(LIFECYCLES)],
        "value_tier": TIERS[n % len(TIERS)],
        "rfm_score": "455",
        "rfm_segment": "champions",
        "top_needs": ["boots", "socks", "jackets"],
        "model_version": "v12",
        "currency": "USD",
        "horizon_days": 365,
        "churn_window_days": 90,
    }


def change(customer: str, at: datetime, n: int, source: str | None, target: str) -> dict:
    return {
        "event_type": "segment_change",
        "schema_version": 1,
        "event_id": f"m-{customer}-{n}",
        "customer_id": customer,
        "occurred_at": _iso(at),
        "dimension": "lifecycle",
        "from_segment": source,
        "to_segment": target,
        "reason": "churn_probability crossed 0.6",
        "cause": f"t-{customer}-{n}",
    }


def trigger(customer: str, at: datetime, n: int, arm: str) -> dict:
    return {
        "event_type": "programme_trigger",
        "schema_version": 1,
        "event_id": f"p-{customer}-{n}",
        "customer_id": customer,
        "occurred_at": _iso(at),
        "programme_id": "save_offer",
        "arm": arm,
        "expected_incremental_value": 3.2,
        "cost": 2.0 if arm == "treatment" else 0.0,
        "value_at_stake": 40.0,
        "uplift": 0.08,
        "reasons": ["at_risk", "high_value"],
        "offer": ["boots"],
        "expires_at": _iso(at + timedelta(days=7)),
        "attribution_ends_at": _iso(at + timedelta(days=30)),
        "runner_up": None,
        "cause": f"t-{customer}-{n}",
        "model_version": "v12",
    }


def outcome(customer: str, at: datetime, n: int, arm: str) -> dict:
    return {
        "event_type": "programme_outcome",
        "schema_version": 1,
        "event_id": f"o-{customer}-{n}",
        "customer_id": customer,
        "occurred_at": _iso(at + timedelta(days=30)),
        "programme_id": "save_offer",
        "arm": arm,
        "trigger_id": f"p-{customer}-{n}",
        "triggered_at": _iso(at),
        "revenue": 12.0,
        "pre_period_value": 8.0,
        "value_at_stake": 40.0,
        "cost": 2.0 if arm == "treatment" else 0.0,
        "first_exposure": True,
    }


STATS = {"n": 40, "sx": 80, "sy": 400, "sxx": 300, "syy": 5000, "sxy": 900, "stake": 0, "cost": 80}


def result(scope: str, at: datetime) -> dict:
    return {
        "event_type": "programme_result",
        "schema_version": 1,
        "event_id": f"r-{scope}-{at.date()}",
        "occurred_at": _iso(at),
        "programme_id": "save_offer",
        "scope": scope,
        "status": "active",
        "detail": "",
        "treated": 40,
        "control": 40,
        "cost": 80.0,
        "uplift_prior": 0.05,
        "uplift": 0.07,
        "treatment_stats": STATS,
        "control_stats": {**STATS, "cost": 0},
    }


def health(scope: str, at: datetime) -> dict:
    return {
        "event_type": "model_health",
        "schema_version": 1,
        "event_id": f"h-{scope}-{at.date()}",
        "occurred_at": _iso(at),
        "model": "churn",
        "scope": scope,
        "model_version": "v12",
        "status": "quality",
        "detail": "",
        "parameters": {},
        "metrics": {"labels": 500, "rolling_auc": 0.78, "rolling_log_loss": 0.5},
    }


Record = tuple[Stream, str, dict]  # stream, key, value


def records(customers: int, scores: int, days: int, partitions: int) -> Iterator[Record]:
    """The synthetic output of `days` days: `scores` score records spread over the
    customers, about one change per 3 scores and one trigger (and outcome) per 10."""
    rng = random.Random(7)
    per_customer = max(1, scores // customers)
    for index in range(customers):
        customer = f"c{index:07d}"
        frequency, lifecycle = 0, None
        for n in range(per_customer):
            at = START + timedelta(days=days * (n + rng.random()) / per_customer)
            frequency += rng.random() < 0.3
            yield Stream.SCORES, customer, score(customer, at, n, frequency, rng)
            if n % 3 == 0:
                target = LIFECYCLES[n % len(LIFECYCLES)]
                yield Stream.SEGMENT_CHANGES, customer, change(customer, at, n, lifecycle, target)
                lifecycle = target
            if n % 10 == 5:
                arm = "treatment" if rng.random() < 0.8 else "control"
                yield Stream.PROGRAMME_TRIGGERS, customer, trigger(customer, at, n, arm)
                yield Stream.PROGRAMME_OUTCOMES, customer, outcome(customer, at, n, arm)
    for day in range(days):
        for partition in range(partitions):
            at = START + timedelta(days=day)
            yield Stream.MODEL_HEALTH, f"p{partition}", health(f"p{partition}", at)
            yield Stream.PROGRAMME_OUTCOMES, "save_offer", result(f"p{partition}", at)


async def produce(servers: str, prefix: str, stream: Iterator[Record]) -> int:
    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(
        bootstrap_servers=servers, linger_ms=50, max_batch_size=1 << 20, acks=1
    )
    await producer.start()
    sent, pending = 0, []
    try:
        for kind, key, value in stream:
            topic = prefix + kind.value
            pending.append(await producer.send(topic, orjson.dumps(value), key=key.encode()))
            sent += 1
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


def read(kafka_url: str, prefix: str) -> None:
    """The child: build the report from the service's topics, print its figures."""
    from streams.report import build_report
    from streams.settings import load_settings

    settings = load_settings(kafka_url=kafka_url, topic_prefix=prefix)
    imported = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    report = build_report(settings, from_service=True)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"customers {report.customers:,}, changes {report.migration.changes:,}, "
        f"skipped {report.skipped:,}: {seconds:.1f} s, peak RSS {peak:,.0f} MiB "
        f"({imported:,.0f} MiB after the imports)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--scores", type=int, default=1_500_000)
    parser.add_argument("--days", type=int, default=180)
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--reads", type=int, default=1, help="report builds to time")
    parser.add_argument("--read", nargs=2, metavar=("KAFKA_URL", "PREFIX"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.read:
        read(*args.read)
        return

    from streams.devstack import DevStack
    from streams.kafka_admin import bootstrap_servers
    from streams.topics import TopicNames

    names = TopicNames("bench.")
    with DevStack() as stack:
        stack.start(redis=False)
        stack.create_topics(names.outputs, partitions=args.partitions)
        started = time.perf_counter()
        sent = asyncio.run(
            produce(
                bootstrap_servers(stack.kafka_url),
                names.prefix,
                records(args.customers, args.scores, args.days, args.partitions),
            )
        )
        print(f"produced {sent:,} records in {time.perf_counter() - started:.0f} s")
        for _ in range(args.reads):
            command = [sys.executable, "-m", "bench.report_scale", "--read"]
            subprocess.run([*command, stack.kafka_url, names.prefix], check=True)


if __name__ == "__main__":
    main()
