"""The streaming worker end to end: real broker, real Redis, real worker processes."""

from __future__ import annotations

import contextlib
import io
import signal
import time
from collections import Counter
from datetime import date
from pathlib import Path

import orjson
import pytest
import redis

from models.emitted import Stream
from streams.offline import SCORE_COLUMNS, cell_text
from streams.settings import Settings
from streams.topics import TopicNames, partition_of
from tests.integration.own_redis import OwnRedis
from tests.integration.worker_harness import (
    changelog_states,
    fresh_settings,
    metric,
    offline_replay,
    produce,
    redis_scores,
    replay,
    simulated_file,
    topic_values,
    wait_until_scored,
    worker,
)

# Every column of the scores, and the time they are as of: the worker's N partitions
# and the offline scorer's `--partitions N` are the same computation (each partition
# has its own clock, value-model refits, online churn model, population quantiles and
# needs model), so nothing needs a tolerance. An offline run with another partitioning
# differs in what the per-partition models give (churn probability and reasons, RFM,
# value tiers, needs) and is no reference.
COMPARED_FIELDS = (*SCORE_COLUMNS[1:], "scored_at")


def offline_stream_scores(events: Path, settings: Settings) -> tuple[dict[str, dict], dict]:
    """The last score per customer of an offline run cut as the stream is: the same
    partitions, and the clock left at the last event's watermark. (`clvstream score`
    then advances each partition to the end of the as-of day and re-scores the silent
    customers due by then, a time the worker has not reached.)"""
    emitted = io.BytesIO()
    offline = offline_replay(events, settings, emitted)
    last: dict[str, dict] = {}
    for line in emitted.getvalue().splitlines():
        envelope = orjson.loads(line)
        if envelope["stream"] == "scores":
            if envelope["value"] is None:
                last.pop(envelope["key"], None)
            else:
                last[envelope["key"]] = envelope["value"]
    counts: Counter = Counter()
    for engine in offline.engines.values():
        counts.update({k: v for k, v in engine.counters.as_dict().items() if isinstance(v, int)})
    return last, counts


def assert_served_as_offline(served: dict[str, dict], expected: dict[str, dict]) -> None:
    assert set(served) == set(expected)
    differ = Counter(
        name
        for customer_id, score in expected.items()
        for name in COMPARED_FIELDS
        if served[customer_id][name] != cell_text(score[name])
    )
    assert not differ, f"columns that differ (customers): {dict(differ)}"


def assert_top_of_segment(status: int, top: dict, served: dict, lifecycle: str, n: int) -> None:
    """The API's top list of a lifecycle segment: its n highest-CLV customers as served
    in Redis, highest first, with the asked fields."""
    assert status == 200 and top["segment"] == lifecycle
    rows = top["customers"]
    members = [row for row in served.values() if row["lifecycle"] == lifecycle and row["clv"]]
    best = sorted((float(row["clv"]) for row in members), reverse=True)[:n]
    assert len(rows) == min(n, len(members)) > 0
    assert [row["clv"] for row in rows] == pytest.approx(best)
    for row in rows:
        assert row["lifecycle"] == lifecycle
        stored = served[row["customer_id"]]["churn_probability"]  # the hash's text
        assert (
            isinstance(row["churn_probability"], float)
            and f"{row['churn_probability']:.6f}" == stored
        )


def with_future_date(events: Path) -> None:
    """Put an event dated in 2150 in the middle of the file (a bad producer clock)."""
    lines = events.read_bytes().splitlines(keepends=True)
    middle = len(lines) // 2
    event = next(e for e in (_json_or_none(line) for line in lines[middle:]) if isinstance(e, dict))
    event.update(event_id="from-the-future", occurred_at="2150-06-01T00:00:00+00:00")
    lines.insert(middle, orjson.dumps(event) + b"\n")
    events.write_bytes(b"".join(lines))


def misrouted_records(events: Path, settings: Settings) -> list[tuple]:
    """Three valid events careless producers sent: a purchase keyed by another
    customer's id (it may land on another partition than its customer's), an
    interaction on the transactions topic, and a purchase rightly keyed but on another
    partition than the partitioner gives its key (a producer with another partitioner).
    All must be dead-lettered without changing any score."""
    lines = [_json_or_none(line) for line in events.read_bytes().splitlines()]
    valid = [e for e in lines if isinstance(e, dict) and "customer_id" in e]
    purchase = next(e for e in valid if e.get("kind") == "purchase")
    login = next(e for e in valid if e.get("event_type") == "interaction")
    other = next(e["customer_id"] for e in valid if e["customer_id"] != purchase["customer_id"])
    # dated last (not late), so that applying them would change their customers' scores
    last = max(e["occurred_at"] for e in valid if not e["occurred_at"].startswith("2150"))
    names = TopicNames(settings.topic_prefix)
    keyed_otherwise = {**purchase, "event_id": "keyed-otherwise", "occurred_at": last,
                       "amount": 9999.0}  # fmt: skip
    wrong_topic = {**login, "event_id": "on-the-wrong-topic", "occurred_at": last,
                   "kind": "complaint"}  # fmt: skip
    elsewhere = {**purchase, "event_id": "on-another-partition", "occurred_at": last,
                 "amount": 7777.0}  # fmt: skip
    home = partition_of(purchase["customer_id"], settings.partitions, settings.partitioner)
    return [
        (names.for_event_type("transaction"), other.encode(), orjson.dumps(keyed_otherwise)),
        (
            names.for_event_type("transaction"),
            login["customer_id"].encode(),
            orjson.dumps(wrong_topic),
        ),
        (
            names.for_event_type("transaction"),
            purchase["customer_id"].encode(),
            orjson.dumps(elsewhere),
            (home + 1) % settings.partitions,
        ),
    ]


def _json_or_none(line: bytes) -> object:
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError:
        return None


def test_replayed_events_reach_redis_with_the_offline_scorers_results(
    kafka_url, redis_url, tmp_path
):
    settings = fresh_settings(kafka_url, redis_url, partitions=2)
    events = simulated_file(tmp_path, 400, 300, seed=4, duplicate_rate=0.01, malformed_rate=0.005)
    with_future_date(events)
    expected, offline_counts = offline_stream_scores(events, settings)
    sent = replay(events, settings)
    misrouted = misrouted_records(events, settings)
    produce(settings, misrouted)
    process = worker(settings, tmp_path)
    try:
        wait_until_scored([process], sent + len(misrouted))
        served = redis_scores(settings)
        dead = metric(process, "clvstream_dead_lettered_total")
        future = metric(process, 'clvstream_dead_lettered_total{reason="future_timestamp"}')
        keyed = metric(process, 'clvstream_dead_lettered_total{reason="key_mismatch"}')
        on_wrong_topic = metric(process, 'clvstream_dead_lettered_total{reason="wrong_topic"}')
        elsewhere = metric(process, 'clvstream_dead_lettered_total{reason="wrong_partition"}')
        _, api_row = process.get(f"/customers/{sorted(served)[0]}")
        status, missing = process.get("/customers/nobody-here")
        _, segments = process.get("/segments")
        sizes = {name: part["customers"] for name, part in segments["lifecycle"].items()}
        largest = max(sizes, key=sizes.__getitem__)
        top_query = f"/segments/lifecycle/{largest}?limit=5&fields=churn_probability,lifecycle"
        top_status, top = process.get(top_query)
        unknown_status, unknown = process.get("/segments/lifecycle/nonsense")
        bad_limit_status, _ = process.get(f"/segments/lifecycle/{largest}?limit=0")
    finally:
        assert process.stop() == 0
    assert_served_as_offline(served, expected)
    assert_top_of_segment(top_status, top, served, largest, 5)
    assert (unknown_status, bad_limit_status) == (404, 400)
    assert "at_risk" in unknown["known"]["lifecycle"]  # JSON, not a text
    assert dead == offline_counts["dead_lettered"] + len(misrouted) > len(misrouted)
    assert future == 1  # and it moved no clock: every later event was scored as offline
    assert (keyed, on_wrong_topic, elsewhere) == (1, 1, 1)  # and changed no score (as offline)
    assert len({row["churn_probability"] for row in served.values()}) > 100  # not constant
    assert api_row["customer_id"] == sorted(served)[0] and "clv" in api_row
    # typed JSON: the hash's text as numbers and lists, the same values
    hash_row = served[api_row["customer_id"]]
    assert (
        isinstance(api_row["frequency"], int) and str(api_row["frequency"]) == hash_row["frequency"]
    )
    assert isinstance(api_row["top_needs"], list) and isinstance(api_row["p_alive"], float)
    assert f"{api_row['p_alive']:.6f}" == hash_row["p_alive"]
    assert status == 404 and "nobody-here" in missing["error"]
    assert sum(s["customers"] for s in segments["lifecycle"].values()) == len(served)
    served_clv = sum(float(row["clv"]) for row in served.values() if row["clv"])
    segments_clv = sum(s["clv"] for s in segments["lifecycle"].values())
    assert served_clv > 0 and abs(segments_clv - served_clv) <= 0.01 * len(segments["lifecycle"])


def test_a_worker_killed_mid_replay_ends_with_the_state_of_an_uninterrupted_run(
    kafka_url, redis_url, tmp_path
):
    events = simulated_file(tmp_path, 900, 400, seed=9)
    states = []
    for crash in (False, True):
        settings = fresh_settings(kafka_url, redis_url, partitions=2, checkpoint_seconds=0.2)
        replay(events, settings)
        process = worker(settings, tmp_path, f"worker-crash-{crash}")
        if crash:
            deadline = time.monotonic() + 60
            while process.get("/health")[1]["customers"] < 200:
                assert time.monotonic() < deadline, "no customers scored"
                time.sleep(0.02)
            # A checkpoint that holds states, not merely the next checkpoint: early in
            # the replay one partition may score hundreds of customers in one poll while
            # the other has scored none, and a poll checkpoints only the partition most
            # overdue, which may be the one with nothing to write.
            written = metric(process, "clvstream_checkpointed_states_total")
            while metric(process, "clvstream_checkpointed_states_total") <= written:
                assert time.monotonic() < deadline, "no checkpoint of states written"
                time.sleep(0.02)
            assert not process.get("/health")[1]["caught_up"], "killed too late"
            process.process.send_signal(signal.SIGKILL)
            process.process.wait()
            process = worker(settings, tmp_path, "worker-restarted")
            # Both partitions restored: the states checkpointed may be either partition's
            # (the group may hand out one partition first).
            process.wait_ready(90, partitions=2)
            assert metric(process, "clvstream_restored_customers_total") > 0
        wait_until_scored([process], 0)
        assert process.stop() == 0  # a clean stop writes a final checkpoint
        states.append(changelog_states(settings))
    uninterrupted, crashed = states
    assert len(uninterrupted) > 800
    assert crashed == uninterrupted


@pytest.mark.parametrize(("partitions", "store"), [(4, "memory"), (4, "rocksdb")])
def test_a_second_worker_takes_over_the_partitions_of_a_killed_one(
    kafka_url, redis_url, tmp_path, partitions, store
):
    # On RocksDB each worker keeps 20 deserialized states per partition of ~125. Inputs
    # pause at 100 buffered records (fetches of up to 200 come on top): pauses and
    # resumes all along, and the merge by event time must still give the offline run.
    options = {"store": store, "store_dir": tmp_path / "states", "store_cache_customers": 20}
    options |= {"max_buffered_per_input": 100, "max_batch": 200}
    settings = fresh_settings(kafka_url, redis_url, partitions=partitions, **options)
    events = simulated_file(tmp_path, 500, 300, seed=12)
    expected, _ = offline_stream_scores(events, settings)
    sent = replay(events, settings)
    first = worker(settings, tmp_path, "first")
    second = worker(settings, tmp_path, "second")
    try:
        deadline = time.monotonic() + 60
        while True:
            shares = [len(p.get("/health")[1]["partitions"]) for p in (first, second)]
            if all(shares) and sum(shares) == partitions:
                break
            assert time.monotonic() < deadline, f"partitions not split: {shares}"
            time.sleep(0.2)
        held = [metric(first, "clvstream_buffered_records_high_water")]
        first.process.send_signal(signal.SIGKILL)
        first.process.wait()
        deadline = time.monotonic() + 60
        while len(second.get("/health")[1]["partitions"]) < partitions:
            assert time.monotonic() < deadline, "the survivor did not take over"
            time.sleep(0.2)
        wait_until_scored([second], 0)
        served = redis_scores(settings)
        held.append(metric(second, "clvstream_buffered_records_high_water"))
    finally:
        second.stop()
        first.stop()
    assert_served_as_offline(served, expected)
    assert sent > 0
    assert 0 < max(held) <= 100 + 200  # the limit, and one fetch beyond it at most
    if store == "rocksdb":
        # The survivor stopped cleanly and deleted its databases; the killed worker's
        # stay behind (the changelog holds the states: they are safe to delete).
        [left] = list((tmp_path / "states").iterdir())
        assert list(left.glob("p*/CURRENT")), "the killed worker kept no RocksDB database"


@pytest.mark.parametrize("silent", [0, 1])
def test_the_partitions_go_on_when_one_has_nothing_more_to_read(
    kafka_url, redis_url, tmp_path, silent
):
    """Partition 0 leads the value-model refits, on every partition's statistics; the
    customers of partition `silent` have no events after day 150 (of 300). Once it has
    had nothing to read for a while, the others stop waiting for its refits (partition
    0 silent), or it publishes its statistics for every later refit and partition 0
    fits on them (partition 1 silent): everything is scored, where without the
    release they would wait for ever."""
    from streams.topics import routing_fields

    settings = fresh_settings(kafka_url, redis_url, leader_idle_release_seconds=2.0)
    source = simulated_file(tmp_path, 300, 300, seed=8)
    lines = source.read_bytes().splitlines()
    first_day = orjson.loads(lines[0])["occurred_at"][:10]

    def dropped(line: bytes) -> bool:  # the silent partition's events after day 150
        customer = routing_fields(line)[1]
        event = _json_or_none(line)
        if customer is None or partition_of(customer, 2) != silent or not isinstance(event, dict):
            return False
        return _days_between(first_day, event["occurred_at"][:10]) > 150

    events = tmp_path / f"partition-{silent}-ends-early.jsonl"
    events.write_bytes(b"\n".join(line for line in lines if not dropped(line)) + b"\n")
    sent = replay(events, settings)
    process = worker(settings, tmp_path)
    try:
        wait_until_scored([process], sent, timeout=120)
        health = process.get("/health")[1]
    finally:
        assert process.stop() == 0
    assert health["waiting_for_fits"] == [] and health["caught_up"]


def _days_between(start: str, end: str) -> int:
    from datetime import date

    return (date.fromisoformat(end) - date.fromisoformat(start)).days


@contextlib.contextmanager
def _scored_on_own_redis(
    kafka_url: str, tmp_path: Path, customers: int, seed: int, **overrides: object
):
    """A worker on a Redis of its own (to kill or pause), after scoring a small replay:
    yields (the Redis server, the settings, the worker); stops both."""
    redis_server = OwnRedis(tmp_path / "valkey")
    redis_server.start()
    settings = fresh_settings(kafka_url, redis_server.url, **{"partitions": 1, **overrides})
    sent = replay(simulated_file(tmp_path, customers, 2 * customers - 20, seed=seed), settings)
    process = worker(settings, tmp_path)
    try:
        # (this relies on /health's `redis_pending` counting writes still in flight)
        wait_until_scored([process], sent)
        yield redis_server, settings, process
    finally:
        assert process.stop() == 0
        redis_server.kill()


def test_the_api_answers_503_while_redis_is_down_and_again_once_it_is_back(kafka_url, tmp_path):
    with _scored_on_own_redis(kafka_url, tmp_path, 40, seed=5) as (redis_server, settings, process):
        customer = sorted(redis_scores(settings))[0]
        before = process.get(f"/customers/{customer}")[0]
        redis_server.kill()
        paths = (f"/customers/{customer}", "/segments", "/segments/lifecycle/active")
        down = [process.get(path) for path in paths]
        redis_server.start()  # empty: the killed server kept nothing
        back = process.get(f"/customers/{customer}")
    assert before == 200
    assert [status for status, _ in down] == [503, 503, 503]
    assert all(body["error"].startswith("Redis unreachable") for _, body in down)
    # Redis answers again (the scores it lost come back within `redis_check_seconds`)
    assert back[0] == 200 or (back[0] == 404 and customer in back[1]["error"])


def test_keys_redis_evicts_at_its_memory_limit_are_counted_and_reported(kafka_url, tmp_path):
    """An `allkeys-*` policy under a memory limit takes any key (customer rows in no
    order a marker can see; a marker it takes means a read-back): the worker reports
    the policy, counts each eviction and says so."""
    with _scored_on_own_redis(kafka_url, tmp_path, 40, seed=5, redis_check_seconds=0.3) as (
        redis_server,
        _,
        process,
    ):
        _, before = process.get("/health")
        client = redis.Redis.from_url(redis_server.url)
        used = int(client.info("memory")["used_memory"])
        client.config_set("maxmemory-policy", "allkeys-random")
        client.config_set("maxmemory", used + 256 * 1024)
        filler = b"x" * 4096
        for index in range(400):  # 1.6 MB: well past the limit
            with contextlib.suppress(redis.exceptions.OutOfMemoryError):
                client.set(f"filler:{index}", filler)
        # The worker's own writes after the filler may make Redis evict more: wait
        # until its count is Redis's count at the same moment.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            evicted = int(client.info("stats")["evicted_keys"])
            _, after = process.get("/health")
            evicted_total = metric(process, "clvstream_redis_evicted_keys_total")
            if after["redis_evicted_keys"] == evicted_total == evicted:
                break
            time.sleep(0.2)
        logged = (tmp_path / "worker.log").read_text()
    assert (before["redis_evicted_keys"], before["redis_eviction_policy"]) == (0, "")
    assert evicted > 0
    assert after["redis_evicted_keys"] == evicted
    assert after["redis_eviction_policy"] == "allkeys-random"
    assert evicted_total == evicted
    assert "Redis evicted" in logged and "maxmemory-policy allkeys-random" in logged


def _wait_for_scores(settings, expected: dict, timeout: float = 60.0) -> dict:
    """Redis's customer rows, once they are `expected` (or the last read at the timeout)."""
    deadline = time.monotonic() + timeout
    while True:
        served = redis_scores(settings)
        if served == expected or time.monotonic() > deadline:
            return served
        time.sleep(0.2)


def test_scores_redis_lost_come_back_without_new_events(kafka_url, tmp_path):
    """Redis may lose what it acknowledged: restarted without persistence, flushed, or
    failed over to a replica behind it (a marker per partition lower than the worker
    last raised it). The worker notices by its markers and writes the lost scores
    again, read back from the scores topic: with no new event, while running and when
    a worker starts on a Redis that lost everything meanwhile. (Before, they stayed
    missing until each customer's next event.)"""
    redis_server = OwnRedis(tmp_path / "valkey")
    redis_server.start()
    settings = fresh_settings(kafka_url, redis_server.url, partitions=2, redis_check_seconds=0.3)
    sent = replay(simulated_file(tmp_path, 60, 100, seed=8), settings)
    process = worker(settings, tmp_path)
    try:
        wait_until_scored([process], sent)
        served = redis_scores(settings)
        _, segments = process.get("/segments")
        time.sleep(1.5)  # the markers raised (once a second at most) and checked
        redis_server.kill()
        redis_server.start()  # empty: the killed server kept nothing
        after_restart = _wait_for_scores(settings, served)
        losses = metric(process, "clvstream_redis_losses_total")
        _, segments_after = process.get("/segments")
        # a replica behind: partition 0's marker lower than acknowledged, rows missing
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            markers = client.mget([f"{settings.redis_prefix}scores-offset:{p}" for p in (0, 1)])
            client.set(f"{settings.redis_prefix}scores-offset:0", 0)
            dropped = sorted(c for c in served if partition_of(c, 2) == 0)[:5]
            client.delete(*[f"{settings.redis_prefix}customer:{c}" for c in dropped])
            after_failover = _wait_for_scores(settings, served)
            losses_after_failover = metric(process, "clvstream_redis_losses_total")
        finally:
            client.close()
        assert process.stop() == 0
        redis_server.kill()
        redis_server.start()  # lost while no worker ran
        process = worker(settings, tmp_path, "again")
        after_downtime = _wait_for_scores(settings, served)
        read_back = metric(process, "clvstream_redis_read_back_total")
        # raised to where the read-back ended, with no new score: the next worker to
        # hold the partitions reads from there, not from the beginning again
        keys = [f"{settings.redis_prefix}scores-offset:{p}" for p in (0, 1)]
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                raised_again = client.mget(keys)
                if all(
                    int(m or 0) >= int(before)
                    for m, before in zip(raised_again, markers, strict=True)
                ):
                    break
                time.sleep(0.1)
        finally:
            client.close()
    finally:
        if process.process.poll() is None:
            assert process.stop() == 0
        redis_server.kill()
    assert len(served) >= 50 and all(m is not None and int(m) > 0 for m in markers)
    assert after_restart == served and losses == 2  # both partitions' markers were gone
    assert segments_after == segments  # the segment totals summed again, too
    assert len(dropped) == 5 and after_failover == served and losses_after_failover == 3
    assert after_downtime == served and read_back >= len(served)
    assert [
        int(m or 0) >= int(before) for m, before in zip(raised_again, markers, strict=True)
    ] == [
        True,
        True,
    ]


def test_health_is_not_ready_while_redis_hangs_and_the_worker_stays_live(kafka_url, tmp_path):
    with _scored_on_own_redis(kafka_url, tmp_path, 25, seed=6) as (redis_server, _, process):
        ready = process.get("/health")
        redis_server.pause()  # accepts connections, answers nothing; no write pending
        try:
            hung, live = process.get("/health"), process.get("/live")
        finally:
            redis_server.pause(False)
        again = process.get("/health")
    assert ready[0] == 200 and ready[1]["redis_ok"]
    assert hung[0] == 503 and not hung[1]["redis_ok"] and hung[1]["status"] == "degraded"
    assert live[0] == 200 and live[1]["status"] == "alive"
    assert again[0] == 200 and again[1]["redis_ok"]


@pytest.mark.parametrize("outage_seconds", [60.0, 0.5], ids=["redis-waited-for", "long-outage"])
def test_a_worker_killed_while_redis_hangs_leaves_no_newest_score_out_of_redis(
    kafka_url, tmp_path, outage_seconds
):
    """A checkpoint is confirmed only once Redis has answered for the scores it covers:
    killed while Redis hangs, the worker restarts from one before the scores Redis never
    got and writes them again. (Confirmed regardless, the restart replayed from after
    them and those customers kept an older score in Redis until their next event.)
    After a long outage (`redis_outage_confirm_seconds`) checkpoints are confirmed
    regardless, and name where Redis may lack scores from: the restart reads those
    back from the scores topic and writes them again, erasures included."""
    events = simulated_file(tmp_path, 300, 360, seed=12)
    lines = events.read_bytes().splitlines(keepends=True)
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_bytes(b"".join(lines[: len(lines) // 2]))
    second.write_bytes(b"".join(lines[len(lines) // 2 :]))
    redis_server = OwnRedis(tmp_path / "valkey")
    redis_server.start()
    settings = fresh_settings(
        kafka_url, redis_server.url, partitions=1, checkpoint_seconds=0.2,
        redis_outage_confirm_seconds=outage_seconds,
    )  # fmt: skip
    process = None
    try:
        sent = replay(first, settings)
        process = worker(settings, tmp_path, "before")
        wait_until_scored([process], sent)
        redis_server.pause()  # connections open, nothing answered
        replay(second, settings)
        deadline = time.monotonic() + 90
        while not process.get("/health")[1]["caught_up"]:
            assert time.monotonic() < deadline, "the second half not scored"
            time.sleep(0.1)
        time.sleep(1.5)  # several checkpoints due meanwhile
        past_redis = metric(process, "clvstream_checkpoints_past_redis_total")
        if outage_seconds < 60:  # until two more, at least one after everything was scored
            while metric(process, "clvstream_checkpoints_past_redis_total") < past_redis + 2:
                assert time.monotonic() < deadline, "no checkpoint confirmed past Redis"
                time.sleep(0.2)
        process.process.send_signal(signal.SIGKILL)
        process.process.wait()
        redis_server.pause(False)
        process = worker(settings, tmp_path, "after")
        wait_until_scored([process], 0)
        served = redis_scores(settings)
        read_back = metric(process, "clvstream_redis_read_back_total")
    finally:
        if process is not None and process.process.poll() is None:
            assert process.stop() == 0
        redis_server.kill()
    assert past_redis == 0 if outage_seconds == 60 else read_back > 0
    half = len(lines) // 2
    erased = {
        event["customer_id"] for event in map(orjson.loads, lines) if event.get("kind") == "erasure"
    }
    erased_in_outage = {
        event["customer_id"]
        for event in map(orjson.loads, lines[half:])
        if event.get("kind") == "erasure"
    }
    assert erased_in_outage and not erased & set(served)  # their rows deleted, too
    newest: dict[str, str] = {}
    for score in topic_values(settings, TopicNames(settings.topic_prefix).output(Stream.SCORES)):
        customer = score["customer_id"]
        newest[customer] = max(newest.get(customer, ""), score["scored_at"])
    expected = {c: at for c, at in newest.items() if c not in erased}
    assert len(expected) > 250
    assert {c: served.get(c, {}).get("scored_at") for c in expected} == expected


def test_scores_redis_lost_under_a_busy_worker_come_back(kafka_url, tmp_path):
    """A Redis restarted empty while the worker goes on scoring, before its next check:
    the markers it raises must not claim the scores Redis lost (written onto the empty
    Redis, they hid the loss from every check: the rows stayed missing)."""
    redis_server = OwnRedis(tmp_path / "valkey")
    redis_server.start()
    settings = fresh_settings(kafka_url, redis_server.url, partitions=1, redis_check_seconds=8)
    sent = replay(simulated_file(tmp_path, 40, 60, seed=11), settings)
    more = tmp_path / "more.jsonl"  # other customers' events, scored after the restart
    later = simulated_file(tmp_path, 5, 2, seed=12, start=date(2024, 2, 28))
    more.write_text(later.read_text().replace('"c0', '"n0'))
    marker = f"{settings.redis_prefix}scores-offset:0"
    process = worker(settings, tmp_path)
    try:
        wait_until_scored([process], sent)
        served = redis_scores(settings)
        client = redis.Redis.from_url(redis_server.url, decode_responses=True)
        try:
            deadline = time.monotonic() + 30
            while int(client.get(marker) or 0) == 0 and time.monotonic() < deadline:
                time.sleep(0.05)  # the first check (8 s after the start), its read-back, a raise
            raised = int(client.get(marker) or 0)
        finally:
            client.close()
        redis_server.kill()
        redis_server.start()  # empty; the worker scores on, and raises, before its check
        sent += replay(more, settings)
        wait_until_scored([process], sent)
        deadline = time.monotonic() + 30
        while True:
            after = redis_scores(settings)  # (rows may be newer: the clock moved on)
            if set(after) >= set(served) or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        losses = metric(process, "clvstream_redis_losses_total")
    finally:
        assert process.stop() == 0
        redis_server.kill()
    assert raised > 0 and len(served) >= 30
    assert sorted(set(served) - set(after)) == [] and losses == 1
    assert len(after) > len(served)  # the other customers' scores were written meanwhile
