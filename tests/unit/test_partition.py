"""The worker's per-partition logic without a broker: merge, checkpoints, restore."""

from __future__ import annotations

import msgpack
import orjson
import pytest

from agents.changelog import ChangelogFold
from agents.partition import (
    CHECKPOINT_KEY,
    NEW,
    UPDATED,
    Checkpoint,
    PartitionScorer,
    decode_checkpoint,
    encode_checkpoint,
)
from models.config import ScoringConfig
from models.emitted import Stream
from models.state import CustomerState
from schemas.outputs import DeadLetter
from streams.topics import TopicNames, partition_of
from tests.factories import BASE, interaction, purchase

TOPICS = ("t.customer-events", "t.transactions", "t.interactions")


def records(events: list[dict], first_offset: int = 0) -> list[tuple]:
    """Records as fetched (offset, key, value, timestamp), keyed by customer id."""
    return [
        (first_offset + i, e["customer_id"].encode(), orjson.dumps(e), 0.0)
        for i, e in enumerate(events)
    ]


def scorer() -> PartitionScorer:
    return PartitionScorer(0, TOPICS, ScoringConfig(churn_model=False))


def test_inputs_are_merged_by_event_time_and_wait_for_an_input_that_is_behind():
    part = scorer()
    part.add("t.interactions", records([interaction("c1", day, "login") for day in (1, 3, 5)]))
    assert part.drain(idle={"t.customer-events"}) == []  # transactions may still bring day 0
    part.add("t.transactions", records([purchase("c1", 0), purchase("c1", 4)]))
    outputs = part.drain(idle={"t.customer-events"})
    # day 0, 1, 3, 4 are safe; day 5 waits: transactions may still bring day 4.5
    assert part.next_offsets == {"t.customer-events": 0, "t.transactions": 2, "t.interactions": 2}
    assert [o for o in outputs if o.stream is Stream.DEAD_LETTER] == []
    part.drain(idle=set(TOPICS))
    assert part.next_offsets["t.interactions"] == 3
    assert part.engine.counters.applied == 5


def test_bad_records_keep_their_place_and_become_dead_letters_with_their_origin():
    part = scorer()
    part.add("t.transactions", [(7, None, b"{not json", 0.0), (8, b"c1", None, 0.0)])
    outputs = part.drain(idle=set(TOPICS))
    dead = [o.value for o in outputs if o.stream is Stream.DEAD_LETTER]
    assert [d["origin"] for d in dead] == [
        {"source": "kafka", "topic": "t.transactions", "partition": 0, "offset": 7},
        {"source": "kafka", "topic": "t.transactions", "partition": 0, "offset": 8, "key": "c1"},
    ]
    assert part.next_offsets["t.transactions"] == 9


def test_a_record_dated_in_the_future_keeps_its_place_and_holds_nothing_back():
    part = scorer()
    part.engine.future_limit = BASE.timestamp() + 30 * 86_400.0
    future = interaction("c2", 365 * 100, "login")
    part.add("t.interactions", records([interaction("c1", 1), future, interaction("c1", 3)]))
    part.add("t.transactions", records([purchase("c1", 2), purchase("c1", 4)]))
    outputs = part.drain(idle={"t.customer-events"})
    [dead] = [o.value for o in outputs if o.stream is Stream.DEAD_LETTER]
    assert dead["reason"] == "future_timestamp" and dead["origin"]["offset"] == 1
    # day 1, the future record, day 2 and day 3 went; day 4 waits for interactions
    assert part.next_offsets == {"t.customer-events": 0, "t.transactions": 1, "t.interactions": 3}


def test_a_future_verdict_is_kept_when_the_limit_moves_before_the_record_is_merged():
    """Decided as it is buffered (where it is merged), not again when processed: a limit
    that moved on meanwhile (the wall clock) must not let it jump ahead of earlier
    events and make them late."""
    part = scorer()
    limit = BASE.timestamp() + 30 * 86_400.0
    part.engine.future_limit = limit
    part.add("t.transactions", records([purchase("c1", 35)]))  # 5 days past the limit
    part.engine.future_limit = limit + 10 * 86_400.0  # the limit moves before the merge
    part.add("t.interactions", records([interaction("c1", 1)]))
    outputs = part.drain(idle=set(TOPICS))
    dead = [o.value["reason"] for o in outputs if o.stream is Stream.DEAD_LETTER]
    assert dead == ["future_timestamp"]  # and the interaction of day 1 was not late
    assert part.engine.counters.applied == 1


def test_an_oversized_record_waits_in_the_buffer_with_only_what_its_dead_letter_shows():
    alone, waiting = scorer(), scorer()
    huge = b'{"event_type": "transaction", "note": "' + "é".encode() * 600_000 + b'"}'
    alone.add("t.transactions", [(0, None, huge, 0.0)])
    waiting.add("t.transactions", [(0, None, huge, 0.0)])
    [buffered] = waiting.buffers["t.transactions"]
    assert len(buffered.raw) <= 4 * 64 * 1024 + 4  # not the 1.2 MB it came as
    [expected] = alone.drain(idle=set(TOPICS))
    [dead] = waiting.drain(idle=set(TOPICS))
    assert dead.value == expected.value  # the same dead letter (text, detail and id)
    assert "truncated" in dead.value["detail"] and dead.value["reason"] == "oversized_payload"


def test_records_keyed_otherwise_or_on_another_types_topic_are_dead_lettered_in_place():
    """With the input contract on (as in the service), a record must be keyed by its
    customer id (else it may sit on another partition than the customer's other
    events) and carry its topic's event type; such a record keeps its place, goes to
    the dead letters with the reason and changes no state."""
    types = TopicNames("t.").event_types
    part = PartitionScorer(0, TOPICS, ScoringConfig(churn_model=False), event_types=types)
    good, other_key, no_key = purchase("c1", 0), purchase("c2", 1), purchase("c3", 1.5)
    on_wrong_topic = interaction("c1", 2, "login")
    part.add(
        "t.transactions",
        [
            (0, b"c1", orjson.dumps(good), 0.0),
            (1, b"c1", orjson.dumps(other_key), 0.0),
            (2, None, orjson.dumps(no_key), 0.0),
            (3, b"c1", orjson.dumps(on_wrong_topic), 0.0),
            (4, b"c1", orjson.dumps(purchase("c1", 3)), 0.0),
        ],
    )
    outputs = part.drain(idle=set(TOPICS))
    dead = [o for o in outputs if o.stream is Stream.DEAD_LETTER]
    assert [(o.key, o.value["reason"], o.value["origin"]["offset"]) for o in dead] == [
        ("c2", "key_mismatch", 1),
        ("c3", "key_mismatch", 2),
        ("c1", "wrong_topic", 3),
    ]
    assert "'c1' differs" in dead[0].value["detail"] and "no key" in dead[1].value["detail"]
    assert "interaction event on t.transactions" in dead[2].value["detail"]
    assert set(part.states) == {"c1"} and part.states["c1"].purchase_count == 2
    counters = part.engine.counters.as_dict()
    assert counters["dead_lettered_by_reason"] == {"key_mismatch": 2, "wrong_topic": 1}
    assert counters["read"] == 5 and counters["applied"] == 2
    assert part.next_offsets["t.transactions"] == 5


def test_a_dead_letter_names_the_records_key_so_a_tombstone_can_be_traced():
    """A null value (a tombstone on an input topic) has nothing but its key to say whose
    it was: the dead letter's origin carries the key (as text, cut to 256 characters)."""
    part = scorer()
    long_key = "k" * 300
    part.add(
        "t.transactions",
        [
            (0, b"c1", orjson.dumps(purchase("c1", 0)), 0.0),
            (1, b"c9", None, 0.0),
            (2, long_key.encode(), b"{not json", 0.0),
            (3, None, b"", 0.0),
        ],
    )
    dead = [o for o in part.drain(idle=set(TOPICS)) if o.stream is Stream.DEAD_LETTER]
    origins = [o.value["origin"] for o in dead]
    assert [o.get("key") for o in origins] == ["c9", "k" * 256, None]
    assert [o["offset"] for o in origins] == [1, 2, 3]
    DeadLetter.model_validate(dead[0].value)  # the contract takes the key
    assert dead[0].value["event_id"] != dead[2].value["event_id"]


@pytest.mark.parametrize("partitioner", ["murmur2", "crc32"])
def test_a_record_of_a_customer_the_partitioner_puts_elsewhere_is_dead_lettered(partitioner):
    """With the partitions checked (as in the service by default), a record must be
    on the partition the producers' partitioner gives its key: one elsewhere (a
    producer with another partitioner) would split its customer's state. It keeps its
    place, goes to the dead letters with the reason and changes nothing."""
    home = partition_of("c1", 2, partitioner)
    stranger = next(
        c for c in ("c2", "c3", "c4", "c5", "d") if partition_of(c, 2, partitioner) != home
    )
    part = PartitionScorer(
        home,
        TOPICS,
        ScoringConfig(churn_model=False),
        event_types=TopicNames("t.").event_types,
        route=lambda customer_id: partition_of(customer_id, 2, partitioner),
    )
    events = [purchase("c1", 0), purchase(stranger, 1), purchase("c1", 2)]
    part.add("t.transactions", records(events))
    outputs = part.drain(idle=set(TOPICS))
    dead = [o for o in outputs if o.stream is Stream.DEAD_LETTER]
    assert [(o.key, o.value["reason"], o.value["origin"]["offset"]) for o in dead] == [
        (stranger, "wrong_partition", 1)
    ]
    detail = dead[0].value["detail"]
    assert f"partition {home} of t.transactions" in detail and f"partition {1 - home}" in detail
    assert set(part.states) == {"c1"} and part.states["c1"].purchase_count == 2
    assert part.engine.counters.as_dict()["dead_lettered_by_reason"] == {"wrong_partition": 1}


def test_records_fetched_again_after_a_seek_are_not_processed_twice():
    part = scorer()
    part.add("t.transactions", records([purchase("c1", 0), purchase("c1", 2)]))
    part.drain(idle=set(TOPICS))
    part.add("t.transactions", records([purchase("c1", 0), purchase("c1", 2)]))
    assert part.buffered() == 0


def test_a_checkpoint_writes_changed_states_flagged_new_or_updated_then_the_record():
    part = scorer()
    part.add("t.transactions", records([purchase("c1", 0), purchase("c2", 0)]))
    part.drain(idle=set(TOPICS))
    first = part.take_checkpoint()
    assert [(k, v[:1]) for k, v in first.states] == [(b"c1", NEW), (b"c2", NEW)]
    part.add("t.transactions", records([purchase("c1", 3)], first_offset=2))
    part.drain(idle=set(TOPICS))
    second = part.take_checkpoint()
    assert [(k, v[:1]) for k, v in second.states] == [(b"c1", UPDATED)]
    assert part.take_checkpoint().states == []


def test_restore_rolls_back_states_written_after_the_last_checkpoint():
    v1, v2 = CustomerState(), CustomerState()
    v2.purchase_count = 2
    fold = ChangelogFold()
    fold.add(b"c1", NEW + v1.to_bytes())
    fold.add(CHECKPOINT_KEY, _checkpoint_record({"t.transactions": 1}))
    fold.add(b"c1", UPDATED + v2.to_bytes())  # its checkpoint never came
    fold.add(b"c2", NEW + v2.to_bytes())
    restored = fold.result()
    assert set(restored.states) == {"c1"}
    assert restored.states["c1"].purchase_count == v1.purchase_count
    assert restored.offsets == {"t.transactions": 1} and restored.rolled_back == 2


def test_restore_keeps_the_newer_state_when_compaction_removed_the_checkpointed_one():
    state = CustomerState()
    state.purchase_count = 3
    fold = ChangelogFold()
    fold.add(CHECKPOINT_KEY, _checkpoint_record({}))
    fold.add(b"c9", UPDATED + state.to_bytes())  # the earlier version was compacted away
    fold.add(b"c8", None)
    assert fold.result().states["c9"].purchase_count == 3
    assert "c8" not in fold.result().states


def _checkpoint_record(offsets: dict[str, int]) -> bytes:
    from agents.partition import encode_checkpoint

    return encode_checkpoint(offsets, b"engine")


def test_an_idle_partition_in_live_mode_follows_the_wall_clock_and_rescores_the_silent():
    part = scorer()
    part.add("t.transactions", records([purchase("c1", 0), purchase("c1", 10)]))
    part.drain(idle=set(TOPICS))
    before = part.engine.clock.watermark
    now = before + 400 * 86_400
    outputs = part.follow_wall_clock(now)
    assert part.engine.clock.watermark == now - part.engine.config.allowed_lateness_seconds
    assert any(o.stream is Stream.SCORES and o.key == "c1" for o in outputs)
    assert part.follow_wall_clock(now) == []  # the clock never goes back or repeats


def test_a_partition_restored_with_its_timers_derived_in_steps_goes_on_as_one_derived_at_once():
    from models.checkpoint import checkpoint_bytes

    part = scorer()
    events = [purchase(f"c{n}", n % 9, 10.0 + n) for n in range(40)]
    part.add("t.transactions", records(sorted(events, key=lambda e: e["occurred_at"])))
    part.drain(idle=set(TOPICS))
    blob, states = checkpoint_bytes(part.engine), dict(part.states)

    def restored(derive: bool) -> list:
        twin = PartitionScorer(
            0, TOPICS, ScoringConfig(churn_model=False), states=dict(states),
            engine_blob=blob, offsets=part.next_offsets, derive=derive,
        )  # fmt: skip
        if not derive:
            assert len(list(twin.engine.rebuild_in_steps(states_per_step=7))) == 5
        later = BASE.timestamp() + 90 * 86_400
        return [(o.stream, o.key, o.value) for o in twin.follow_wall_clock(later)]

    outputs = restored(True)
    assert outputs == restored(False)
    assert sum(1 for stream, _, _ in outputs if stream is Stream.SCORES) >= 40  # re-scored


def test_a_drain_in_chunks_gives_the_outputs_and_states_of_one_drain():
    events = [purchase(f"c{k % 7}", day=k / 3) for k in range(60)]
    events += [interaction(f"c{k % 5}", day=k / 4 + 0.1, kind="login") for k in range(40)]
    transactions = [e for e in events if e["event_type"] == "transaction"]
    interactions = [e for e in events if e["event_type"] == "interaction"]
    whole, chunked = scorer(), scorer()
    for part in (whole, chunked):
        part.add("t.transactions", records(transactions))
        part.add("t.interactions", records(interactions))
    expected = whole.drain(idle=set(TOPICS))
    assert not whole.more
    outputs, chunks = [], 0
    while True:
        outputs += chunked.drain(idle=set(TOPICS), limit=7)
        chunks += 1
        if not chunked.more:
            break
    assert chunks == len(events) // 7 + 1
    assert [(o.stream, o.key, o.value) for o in outputs] == [
        (o.stream, o.key, o.value) for o in expected
    ]
    assert chunked.next_offsets == whole.next_offsets
    assert dict(chunked.states.items()) == dict(whole.states.items())


def test_a_checkpoint_confirmed_past_redis_names_where_and_an_older_record_still_reads():
    plain = Checkpoint([(b"c1", None)], encode_checkpoint({"t": 7}, b"engine"))
    assert plain.past_redis(None) is plain  # Redis had its scores: format 1, as before
    assert decode_checkpoint(plain.record) == ({"t": 7}, b"engine", None)
    assert msgpack.unpackb(plain.record)[0] == 1  # what a worker of an earlier version reads
    past = plain.past_redis(1234)
    assert past.states == plain.states
    assert decode_checkpoint(past.record) == ({"t": 7}, b"engine", 1234)
    with pytest.raises(ValueError, match="unknown checkpoint record format"):
        decode_checkpoint(msgpack.packb([3, {}, b"", 1, 2]))
    with pytest.raises(ValueError, match="unknown checkpoint record format"):
        decode_checkpoint(msgpack.packb([2, {}, b""]))  # format 2 without its offset


def test_a_partition_restored_in_the_middle_of_a_catch_up_rescores_the_rest_first():
    """A checkpoint taken while a bounded clock advance has customers left due: the
    restored partition re-scores them before its next event, like one never stopped."""
    from models.checkpoint import checkpoint_bytes

    config = ScoringConfig(churn_model=False)
    part = PartitionScorer(0, TOPICS, config, max_rescores=3)
    events = [purchase(f"c{n}", n % 9, 10.0 + n) for n in range(20)]
    part.add("t.transactions", records(sorted(events, key=lambda e: e["occurred_at"])))
    part.drain(idle=set(TOPICS))
    part.follow_wall_clock(BASE.timestamp() + 200 * 86_400)
    assert part.behind
    blob, states = checkpoint_bytes(part.engine), dict(part.states)
    twin = PartitionScorer(
        0, TOPICS, config, states=dict(states), engine_blob=blob,
        offsets=part.next_offsets, max_rescores=3,
    )  # fmt: skip

    later = records([purchase("c0", 199)], first_offset=20)

    def go_on(scorer: PartitionScorer) -> list:
        scorer.add("t.transactions", later)
        outputs = scorer.catch_up() + scorer.drain(idle=set(TOPICS))
        while scorer.behind or scorer.buffered():
            outputs += scorer.catch_up() + scorer.drain(idle=set(TOPICS))
        return [(o.stream, o.key, o.value) for o in outputs]

    expected = go_on(part)
    assert len(expected) > 10
    assert go_on(twin) == expected


@pytest.mark.parametrize("first", ["unsupported_currency", "future_timestamp"])
def test_a_partition_whose_first_events_are_dead_lettered_goes_on_with_the_next(first):
    """Dead-lettered by the engine before any event was applied (the clock not started):
    the partition stayed `behind` and drained nothing more, for ever."""
    part = PartitionScorer(0, TOPICS, ScoringConfig(), max_rescores=2000)
    part.engine.future_limit = BASE.timestamp() + 30 * 86_400.0
    bad = (
        purchase("c1", 1, currency="SEK")
        if first == "unsupported_currency"
        else purchase("c1", 365 * 100)
    )
    part.add("t.transactions", records([bad, purchase("c2", 2)]))
    outputs = part.drain(idle=set(TOPICS))
    outputs += part.catch_up() + part.drain(idle=set(TOPICS))
    dead = [o.value["reason"] for o in outputs if o.stream is Stream.DEAD_LETTER]
    assert dead == [first]
    assert not part.behind
    assert part.next_offsets["t.transactions"] == 2
    assert part.engine.counters.applied == 1
