"""Scores served from a real Redis-protocol server: layout, ordering, erasure, outages."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import uuid
from datetime import datetime
from pathlib import Path

import orjson
import redis
import redis.asyncio as aioredis

from agents.redis_loss import RedisMarkers, marker_key
from agents.redis_store import HASH_FIELDS, RedisScoreStore, segment_totals, top_of_segment
from models.config import ScoringConfig
from models.timeline import iso_utc
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
        summed = sum(s for _, s in members if s != float("-inf"))  # CLV unknown: not summed
        assert abs(kept[name][1] - summed) < 1e-6 * (1 + kept[name][1])


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


def at(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def test_a_replayed_older_erasure_neither_removes_a_newer_score_nor_lowers_the_tombstone(
    redis_url,
):
    """A retry, or a partition's previous owner still flushing, sends an erasure again."""
    sync = redis.Redis.from_url(redis_url, decode_responses=True)
    jan, feb, mar = (
        "2024-01-01T00:00:00+00:00",
        "2024-02-01T00:00:00+00:00",
        "2024-03-01T00:00:00+00:00",
    )
    back = f"test:{uuid.uuid4().hex[:8]}:"  # erased in January, back in March
    came_back = score_event("c", mar, 50.0, "active")
    run(write(redis_url, back, [[("c", None, at(jan))], [("c", came_back, 0.0)]]))
    store = run(write(redis_url, back, [[("c", None, at(jan))]]))
    assert store.ignored_older == 1
    assert sync.hget(f"{back}customer:c", "scored_at") == mar
    assert sync.zscore(f"{back}lifecycle:active", "c") == 50.0
    assert_totals_match_the_sets(sync, redis_url, back)
    twice = f"test:{uuid.uuid4().hex[:8]}:"  # erased in March; January's erasure again
    run(write(redis_url, twice, [[("c", None, at(mar))], [("c", None, at(jan))]]))
    assert float(sync.get(f"{twice}erased:c")) == at(mar)
    store = run(write(redis_url, twice, [[("c", score_event("c", feb, 9.0, "active"), 0.0)]]))
    assert store.ignored_older == 1 and not sync.exists(f"{twice}customer:c")


def test_an_erasure_at_a_scores_own_time_wins_to_the_microsecond(redis_url):
    """A score's time is its `scored_at` text (microseconds); an erasure's is a float
    (`max` of the customer's times): both compare at the same rounding."""
    sync = redis.Redis.from_url(redis_url, decode_responses=True)
    t = 1704067200.9999997  # rounds up to the next microsecond in `scored_at`
    scored = score_event("c", iso_utc(t), 7.0, "active")
    same_batch = f"test:{uuid.uuid4().hex[:8]}:"
    run(write(redis_url, same_batch, [[("c", scored, 0.0), ("c", None, t)]]))
    assert not sync.exists(f"{same_batch}customer:c")
    replayed = f"test:{uuid.uuid4().hex[:8]}:"
    run(write(redis_url, replayed, [[("c", scored, 0.0)], [("c", None, t)], [("c", scored, 0.0)]]))
    assert not sync.exists(f"{replayed}customer:c")
    assert sync.zscore(f"{replayed}lifecycle:active", "c") is None


def test_totals_lost_with_the_data_are_summed_again(redis_url):
    """`segment-clv` gone (Redis restarted without persistence, FLUSHDB, eviction):
    the next flush notices and sums the sets again, so /segments does not stay null."""
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    sync = redis.Redis.from_url(redis_url, decode_responses=True)

    async def scenario() -> None:
        client = aioredis.from_url(redis_url)
        store = RedisScoreStore(client, prefix=prefix)
        try:
            store.add("a", score_event("a", "2024-01-01T00:00:00+00:00", 5.0, "active"), None)
            assert await store.flush()
            for key in sync.scan_iter(match=f"{prefix}*"):  # this test's keys only
                sync.delete(key)
            store.add("b", score_event("b", "2024-01-02T00:00:00+00:00", 2.0, "active"), None)
            assert await store.flush()
            totals = await segment_totals(client, prefix, ["lifecycle:active"])
            assert totals == {"lifecycle:active": (1, 2.0)}
        finally:
            await client.aclose()

    run(scenario())
    assert_totals_match_the_sets(sync, redis_url, prefix)


@contextlib.asynccontextmanager
async def store_on_own_redis(tmp_path: Path, prefix: str):
    """(server, client, store) on a Redis of the test's own, to kill or make a
    replica, once a first score ("a", new, 5.0) is written; stopped afterwards."""
    server = OwnRedis(tmp_path / "valkey")  # removed by pytest, not left in /tmp
    server.start()
    client = aioredis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)
    store = RedisScoreStore(client, prefix=prefix)
    try:
        store.add("a", score_event("a", "2024-01-01T00:00:00+00:00", 5.0, "new"), None)
        assert await store.flush()
        yield server, client, store
    finally:
        await client.aclose()
        server.kill()


def test_writes_redis_refuses_are_kept_and_written_once_it_accepts_them(tmp_path):
    """A replica after a failover answers READONLY: the batch is kept, not dropped."""

    async def scenario() -> None:
        async with store_on_own_redis(tmp_path, "ro:") as (_, client, store):
            await client.replicaof("127.0.0.1", 1)  # a replica now (of nothing reachable)
            store.add("b", score_event("b", "2024-01-02T00:00:00+00:00", 2.0, "new"), None)
            assert not await store.flush()
            assert store.pending == 1 and store.failed_flushes == 1
            assert "READONLY" in store.last_error.upper()
            await client.replicaof("NO", "ONE")
            assert await store.flush() and store.pending == 0 and store.last_error == ""
            assert await client.zscore("ro:lifecycle:new", "b") == 2.0

    run(scenario())


def test_a_write_cancelled_mid_way_keeps_its_scores_and_claims_none_written(tmp_path):
    """A stop cancels a write Redis is slow to answer: what it took goes back in the
    queue, and `written_upto` (what a checkpoint may count on) does not move."""

    async def scenario() -> None:
        async with store_on_own_redis(tmp_path, "cancel:") as (server, client, store):
            store.add("b", score_event("b", "2024-01-02T00:00:00+00:00", 2.0, "new"), None)
            server.pause()
            try:
                write = asyncio.create_task(store.flush())
                await asyncio.sleep(0.2)
                write.cancel()
                await asyncio.gather(write, return_exceptions=True)
                assert store.pending == 1 and store.written_upto == 1
            finally:
                server.pause(False)
            assert await store.flush() and store.pending == 0 and store.written_upto == 2
            assert await client.zscore("cancel:lifecycle:new", "b") == 2.0

    async def guarded() -> None:
        await asyncio.wait_for(scenario(), 30)

    run(guarded())


def test_a_view_of_a_hung_redis_answers_503_within_its_limit_and_the_client_recovers(
    tmp_path,
):
    """The web views waited the client's 5 s timeout for a Redis that holds its
    connections and answers nothing (paused, hung); /health asked with its own 1 s."""
    from agents import web

    class Web:
        def json(self, body, status=200):
            return status, body

    async def scenario() -> None:
        async with store_on_own_redis(tmp_path, "hung:") as (server, _, _):
            # as the worker's client: its timeout is long enough for a large write
            client = aioredis.from_url(server.url, socket_connect_timeout=1, socket_timeout=5)

            @web.served_from_redis
            async def view(_web, _request):
                return 200, await client.hgetall("hung:customer:a")

            before = await view(Web(), None)
            assert before[0] == 200 and before[1]
            server.pause()
            try:
                started = asyncio.get_running_loop().time()
                status, body = await view(Web(), None)
                waited = asyncio.get_running_loop().time() - started
            finally:
                server.pause(False)
            assert status == 503 and "did not answer" in body["error"]
            assert web.REDIS_VIEW_SECONDS <= waited < web.REDIS_VIEW_SECONDS + 1.5
            assert await view(Web(), None) == before  # no reply of the hung read taken
            await client.aclose()

    run(asyncio.wait_for(scenario(), 30))


def test_a_backlog_goes_out_in_parts_oldest_first_and_counts_as_written_at_its_end(
    redis_url,
):
    """After an outage a worker may hold a score for every customer: one pipeline of
    them all would outlast the client's timeout and fail again and again."""
    prefix = f"test:{uuid.uuid4().hex[:8]}:"

    async def scenario() -> None:
        client = aioredis.from_url(redis_url)
        store = RedisScoreStore(client, prefix=prefix, flush_limit=3)
        try:
            for n in range(7):
                at = f"2024-01-0{n + 1}T00:00:00+00:00"
                store.add(f"c{n}", score_event(f"c{n}", at, 1.0, "active"), None)
            sizes = []
            while store.pending:
                assert await store.flush()
                sizes.append(store.pending)
                if store.pending:  # covered only once the last part is written
                    assert store.written_upto == 0
            assert sizes == [4, 1, 0] and store.written == 7 and store.written_upto == 7
            assert await client.zcard(f"{prefix}lifecycle:active") == 7
        finally:
            await client.aclose()

    run(scenario())


def test_customers_without_a_known_clv_are_counted_listed_last_and_not_summed(redis_url):
    """A prospect (nothing bought) or anyone before the first value fit has no CLV:
    /segments counted them nowhere."""
    prefix = f"test:{uuid.uuid4().hex[:8]}:"
    sync = redis.Redis.from_url(redis_url, decode_responses=True)
    jan, feb = "2024-01-01T00:00:00+00:00", "2024-02-01T00:00:00+00:00"
    prospect = {**score_event("p", jan, 0.0, "prospect"), "clv": None, "value_tier": None}
    unknown = {**score_event("u", jan, 0.0, "new"), "clv": None}
    known = score_event("k", jan, 12.5, "new")
    run(write(redis_url, prefix, [[("p", prospect, 0.0), ("u", unknown, 0.0), ("k", known, 0.0)]]))

    async def views():
        client = aioredis.from_url(redis_url)
        try:
            sets = ["lifecycle:prospect", "lifecycle:new", "tier:rest"]
            top = await top_of_segment(client, prefix, "lifecycle:new", 10, ["lifecycle"])
            return await segment_totals(client, prefix, sets), top
        finally:
            await client.aclose()

    totals, top = run(views())
    assert totals == {
        "lifecycle:prospect": (1, 0.0),
        "lifecycle:new": (2, 12.5),
        "tier:rest": (2, 12.5),
    }
    assert [(row["customer_id"], row["clv"]) for row in top] == [("k", 12.5), ("u", None)]
    assert_totals_match_the_sets(sync, redis_url, prefix)
    fitted = score_event("u", feb, 30.0, "active")  # the first fit gives a CLV
    run(write(redis_url, prefix, [[("u", fitted, 0.0)]]))
    assert run(views())[0]["lifecycle:new"] == (1, 12.5)
    assert_totals_match_the_sets(sync, redis_url, prefix)
    assert not sync.exists(f"{prefix}lifecycle:")  # no set for an empty lifecycle
    sync.hdel(f"{prefix}customer:k", "lifecycle")  # as a version without the column wrote
    assert [row["lifecycle"] for row in run(views())[1]] == [None]  # listed, not taken as erased


def test_scoring_goes_on_while_redis_is_down_and_catches_up_when_it_returns(tmp_path):
    async def scenario() -> None:
        async with store_on_own_redis(tmp_path, "down:") as (server, client, store):
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


def test_a_marker_is_raised_never_lowered_and_not_once_redis_lost_what_was_acknowledged(
    redis_url,
):
    prefix = f"t{uuid.uuid4().hex[:8]}:"

    async def scenario() -> list:
        client = aioredis.from_url(redis_url)
        markers = RedisMarkers(client, prefix)
        try:
            seen = [await markers.raise_to({0: 100, 1: 0}, {})]  # none acknowledged yet
            seen.append(await markers.raise_to({0: 50}, {0: 100}))  # (a former owner's)
            seen.append(await markers.read([0, 1, 2]))
            await client.delete(marker_key(prefix, 0))  # Redis lost it (restarted empty)
            await client.set(marker_key(prefix, 1), -5)  # ... or holds less (a replica)
            seen.append(await markers.raise_to({0: 200, 1: 30, 2: 7}, {0: 100, 1: 0}))
            seen.append(await markers.read([0, 1, 2]))
            return seen
        finally:
            await client.delete(*[marker_key(prefix, p) for p in range(3)])
            await client.aclose()

    assert run(scenario()) == [
        set(),
        set(),
        {0: 100, 1: 0, 2: None},
        {0, 1},  # refused: raised, they would claim what Redis lost
        {0: None, 1: -5, 2: 7},
    ]


def test_a_flush_finds_out_when_redis_lost_writes_it_had_acknowledged(tmp_path):
    """Each flush reads the worker's token, then writes a new one after its scores: a
    Redis that lost acknowledged writes (here, restarted empty; or an older token, as
    AOF's lost last second or a replica behind would show) is noticed by the next
    flush, while a flush that failed (its token perhaps written) is no false alarm."""
    server = OwnRedis(tmp_path / "valkey")
    server.start()

    async def scenario() -> list[bool]:
        client = aioredis.from_url(server.url, socket_timeout=2)
        store = RedisScoreStore(client, prefix="tok:")
        seen = []
        try:
            for day, customer in enumerate("abc", start=1):
                store.add(
                    customer, score_event(customer, f"2024-01-0{day}T00:00:00+00:00", 1, "new")
                )
                assert await store.flush()
                seen.append(store.lost_writes)
            await client.set(store.token_key, store.token - 1)  # the last flush's writes lost
            store.add("d", score_event("d", "2024-01-04T00:00:00+00:00", 1.0, "new"))
            assert await store.flush()
            seen.append(store.lost_writes)
            store.lost_writes = False
            server.kill()
            store.add("e", score_event("e", "2024-01-05T00:00:00+00:00", 1.0, "new"))
            assert not await store.flush()  # (Redis down)
            server.start()  # restarted empty: the token gone
            await client.set(store.token_key, store.token + 1)  # as if the failed one wrote it
            store.add("f", score_event("f", "2024-01-06T00:00:00+00:00", 1.0, "new"))
            assert await store.flush()
            seen.append(store.lost_writes)  # its token may have been written: no alarm
            await client.delete(store.token_key)  # restarted empty since
            store.add("g", score_event("g", "2024-01-07T00:00:00+00:00", 1.0, "new"))
            assert await store.flush()
            seen.append(store.lost_writes)
            return seen
        finally:
            await client.aclose()
            server.kill()

    assert asyncio.run(scenario()) == [False, False, False, True, False, True]


def test_markers_are_not_raised_past_a_flush_token_redis_no_longer_has(redis_url):
    prefix = f"t{uuid.uuid4().hex[:8]}:"

    async def scenario() -> list:
        client = aioredis.from_url(redis_url)
        markers = RedisMarkers(client, prefix)
        token_key = f"{prefix}flush-token:w1"
        try:
            await client.set(token_key, 7)
            seen = [await markers.raise_to({0: 100}, {}, (token_key, 7))]
            seen.append(await markers.raise_to({0: 200}, {0: 100}, (token_key, 8)))  # lost
            seen.append(await markers.read([0]))
            return seen
        finally:
            await client.delete(token_key, marker_key(prefix, 0))
            await client.aclose()

    assert run(scenario()) == [set(), None, {0: 100}]
