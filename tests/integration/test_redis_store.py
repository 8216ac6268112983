"""Scores served from a real Redis-protocol server: layout, ordering, erasure, outages."""

from __future__ import annotations

import asyncio
import csv
import uuid
from datetime import datetime

import orjson
import redis
import redis.asyncio as aioredis

from agents.redis_store import HASH_FIELDS, RedisScoreStore, segment_totals
from models.config import ScoringConfig
from streams.offline import cell_text, score_file
from tests.factories import jsonl
from tests.integration.own_redis import OwnRedis
from tests.unit.test_engine import random_history


def score_event(customer: str, at: str, clv: float, lifecycle: str, tier: str = "rest") -> dict:
    return {
        "customer_id": customer,
        "scored_at": at,
        "clv": clv,
        "lifecycle": lifecycle,
        "value_tier": tier,
        "segment": f"{lifecycle}/{tier}",
        "top_needs": ["books", "music"],
        "churn_probability": 0.5,
    }


def run(coroutine):
    return asyncio.run(coroutine)


async def write(url: str, prefix: str, batches: list[list[tuple[str, dict | None, float]]]):
    client = aioredis.from_url(url)
    store = RedisScoreStore(client, prefix=prefix)
    for batch in batches:
        for customer, score, erased_at in batch:
            store.add(customer, score, erased_at)
        assert await store.flush()
    await client.aclose()
    return store


def test_the_served_hash_equals_the_offline_row_and_segments_answer_in_one_call(
    redis_url, tmp_path
):
    events = tmp_path / "events.jsonl"
    events.write_bytes(jsonl(random_history(200, 300, seed=4)))
    emitted, scores = tmp_path / "emitted.jsonl", tmp_path / "scores.csv"
    config = ScoringConfig(min_customers_for_fit=100, min_fit_history_days=60)
    score_file(events, scores, config, emitted_path=emitted, show_progress=False,
               fit_in_background=False, final_refit=False)  # fmt: skip
    updates = [orjson.loads(line) for line in emitted.read_bytes().splitlines()]
    updates = [u["value"] for u in updates if u["stream"] == "scores"]
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    run(write(redis_url, prefix, [[(u["customer_id"], u, 0.0) for u in updates]]))
    sync = redis.Redis.from_url(redis_url, decode_responses=True)
    latest = {u["customer_id"]: u for u in updates}  # file order is event order
    with open(scores, encoding="utf-8") as source:
        offline = {row["customer_id"]: row for row in csv.DictReader(source)}
    for customer, update in latest.items():
        served = sync.hgetall(f"{prefix}customer:{customer}")
        assert set(served) == {*HASH_FIELDS, "_at"}
        assert served == {
            **{c: cell_text(update.get(c)) for c in HASH_FIELDS},
            "_at": served["_at"],
        }
        for column in ("frequency", "recency_days", "total_spend", "refund_total"):
            assert served[column] == offline[customer][column], (customer, column)
    at_risk = sync.zrevrange(f"{prefix}lifecycle:at_risk", 0, 99, withscores=True)
    expected = sorted(
        (u for u in latest.values() if u["lifecycle"] == "at_risk"), key=lambda u: -u["clv"]
    )[:100]
    assert at_risk and [c for c, _ in at_risk] == [u["customer_id"] for u in expected]
    assert [round(s, 6) for _, s in at_risk] == [round(u["clv"], 6) for u in expected]
    assert_totals_match_the_sets(sync, redis_url, prefix)


def assert_totals_match_the_sets(sync: redis.Redis, url: str, prefix: str) -> None:
    """The kept per-segment totals equal a read of every member of every set."""
    sets = sorted(key.removeprefix(prefix) for key in sync.scan_iter(f"{prefix}*:*"))
    sets = [name for name in sets if name.split(":")[0] in ("lifecycle", "tier")]

    async def totals():
        client = aioredis.from_url(url)
        try:
            return await segment_totals(client, prefix, [*sets, "lifecycle:nobody"])
        finally:
            await client.aclose()

    kept = run(totals())
    assert kept.pop("lifecycle:nobody") == (0, 0.0)
    for name in sets:
        members = sync.zrange(prefix + name, 0, -1, withscores=True)
        assert kept[name][0] == len(members), name
        assert abs(kept[name][1] - sum(s for _, s in members)) < 1e-6 * (1 + kept[name][1])


def test_older_scores_never_overwrite_newer_ones_and_customers_move_between_sets(redis_url):
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    new = score_event("c1", "2024-03-01T00:00:00+00:00", 50.0, "at_risk", "top_5")
    old = score_event("c1", "2024-02-01T00:00:00+00:00", 10.0, "active")
    newer = score_event("c1", "2024-03-05T00:00:00+00:00", 70.0, "active", "top_5")
    store = run(write(redis_url, prefix, [[("c1", new, 0.0)], [("c1", old, 0.0)]]))
    assert (store.written, store.ignored_older) == (1, 1)
    sync = redis.Redis.from_url(redis_url, decode_responses=True)
    assert sync.hget(f"{prefix}customer:c1", "lifecycle") == "at_risk"
    assert sync.zscore(f"{prefix}lifecycle:at_risk", "c1") == 50.0
    run(write(redis_url, prefix, [[("c1", newer, 0.0)]]))
    assert sync.zscore(f"{prefix}lifecycle:at_risk", "c1") is None
    assert sync.zscore(f"{prefix}lifecycle:active", "c1") == 70.0
    assert sync.zscore(f"{prefix}tier:top_5", "c1") == 70.0
    assert_totals_match_the_sets(sync, redis_url, prefix)
    assert sync.hget(f"{prefix}segment-clv", "lifecycle:at_risk") == "0"  # moved out


def test_totals_start_from_sets_written_before_they_were_kept(redis_url):
    """Sets written by a version without totals (plain ZADDs here) are summed once, at
    the first flush; later moves keep the totals right."""
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    sync = redis.Redis.from_url(redis_url, decode_responses=True)
    sync.zadd(f"{prefix}lifecycle:active", {"old": 500.25, "old2": 300.5})
    sync.zadd(f"{prefix}tier:top_5", {"old": 500.25})
    sync.hset(f"{prefix}customer:old", mapping={"_at": "1.0", "lifecycle": "active",
                                                "value_tier": "top_5"})  # fmt: skip

    async def totals():
        client = aioredis.from_url(redis_url)
        try:
            return await segment_totals(client, prefix, ["lifecycle:active"])
        finally:
            await client.aclose()

    assert run(totals()) == {"lifecycle:active": (2, None)}  # not started: unknown
    moved = score_event("old", "2024-03-01T00:00:00+00:00", 40.0, "at_risk", "rest")
    run(write(redis_url, prefix, [[("old", moved, 0.0)]]))
    assert run(totals()) == {"lifecycle:active": (1, 300.5)}
    assert_totals_match_the_sets(sync, redis_url, prefix)
    assert sync.hget(f"{prefix}segment-clv", "tier:top_5") == "0"


def test_erased_customers_are_removed_and_stay_removed(redis_url):
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    score = score_event("gone", "2024-03-01T00:00:00+00:00", 50.0, "active", "top_5")
    erasure_time = datetime.fromisoformat("2024-03-02T00:00:00+00:00").timestamp()
    run(write(redis_url, prefix, [[("gone", score, 0.0)], [("gone", None, erasure_time)]]))
    sync = redis.Redis.from_url(redis_url, decode_responses=True)
    assert not sync.exists(f"{prefix}customer:gone")
    assert sync.zscore(f"{prefix}lifecycle:active", "gone") is None
    assert sync.zscore(f"{prefix}tier:top_5", "gone") is None
    store = run(write(redis_url, prefix, [[("gone", score, 0.0)]]))  # a replay of the past
    assert store.ignored_older == 1 and not sync.exists(f"{prefix}customer:gone")
    assert_totals_match_the_sets(sync, redis_url, prefix)
    assert sync.hget(f"{prefix}segment-clv", "tier:top_5") == "0"


def test_scoring_goes_on_while_redis_is_down_and_catches_up_when_it_returns(tmp_path):
    server = OwnRedis(tmp_path / "valkey")  # removed by pytest, not left in /tmp
    url = server.url

    async def scenario() -> None:
        server.start()
        client = aioredis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        store = RedisScoreStore(client, prefix="down:")
        try:
            store.add("a", score_event("a", "2024-01-01T00:00:00+00:00", 5.0, "new"), None)
            assert await store.flush()
            server.kill()
            for day in range(2, 6):  # the scorer keeps producing; Redis is gone
                at = f"2024-01-0{day}T00:00:00+00:00"
                store.add("a", score_event("a", at, float(day), "active"), None)
                store.add("b", score_event("b", at, 1.0, "new"), None)
                assert not await store.flush()
            assert store.pending == 2 and store.failed_flushes == 4
            server.start()
            assert await store.flush() and store.pending == 0
            served = await client.hget("down:customer:a", "scored_at")
            assert served == b"2024-01-05T00:00:00+00:00"
            assert await client.zscore("down:lifecycle:new", "b") == 1.0
        finally:
            await client.aclose()
            server.kill()

    run(scenario())


def test_a_flush_in_flight_still_counts_as_pending(redis_url):
    """`pending` (served as /health's `redis_pending`) says 0 only once Redis has
    answered: a caller waiting for 0 then finds every score in Redis."""

    async def scenario() -> None:
        client = aioredis.from_url(redis_url)
        store = RedisScoreStore(client, prefix=f"t{uuid.uuid4().hex[:8]}:")
        try:
            store.add("a", score_event("a", "2024-01-01T00:00:00+00:00", 5.0, "new"), None)
            store.add("b", score_event("b", "2024-01-01T00:00:00+00:00", 1.0, "new"), None)
            flush = asyncio.create_task(store.flush())
            await asyncio.sleep(0)  # the flush has sent its commands, Redis has not answered
            assert not flush.done() and store.pending == 2
            assert await flush and store.pending == 0
            assert await client.exists(store.customer_key("a"), store.customer_key("b")) == 2
        finally:
            await client.aclose()

    run(scenario())
