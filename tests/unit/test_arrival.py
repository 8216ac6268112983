"""The merge by event time waits for records that may be on their way to an input with
nothing buffered (`agents.arrival`), without a broker."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.partition import PartitionScorer
from models.config import ScoringConfig
from tests.factories import interaction, purchase

TRANSACTIONS, INTERACTIONS = "t.transactions", "t.interactions"
TOPICS = ("t.customer-events", TRANSACTIONS, INTERACTIONS)
IN_FLIGHT = 0.1  # seconds from a record's producer to the broker, at most
DAY_SECONDS = 0.03  # a replay at about a thousand events/s: a day passes in 30 ms


def scorer() -> PartitionScorer:
    config = ScoringConfig(churn_model=False)  # allowed lateness: one day
    return PartitionScorer(0, TOPICS, config, in_flight_seconds=IN_FLIGHT)


def record(offset: int, event: dict, produced_at: float) -> tuple:
    return (offset, event["customer_id"].encode(), orjson.dumps(event), produced_at)


def fetched_at(now: float) -> dict[str, float]:
    """Every input has nothing left to fetch, each last fetched `now`."""
    return dict.fromkeys(TOPICS, now)


def test_records_ahead_of_what_is_known_complete_wait_for_the_next_fetch():
    part = scorer()
    # Interactions of days 0-3 have arrived; a purchase of day 1 sent together with
    # them lingers in its producer's batch: transactions look empty.
    part.add(
        INTERACTIONS,
        [record(i, interaction("c1", day), day * DAY_SECONDS) for i, day in enumerate(range(4))],
    )
    part.drain(fetched_at(3 * DAY_SECONDS + 0.02))
    # Day 0 is confirmed (produced more than IN_FLIGHT before the fetch), days up to
    # half the allowed lateness beyond it go; the rest waits.
    assert part.next_offsets[INTERACTIONS] == 1 and part.gated
    part.add(TRANSACTIONS, [record(0, purchase("c1", 1), 1 * DAY_SECONDS)])
    part.drain(fetched_at(3 * DAY_SECONDS + 0.03))  # customer-events may still bring day 1
    assert part.next_offsets[INTERACTIONS] == 1 and part.gated
    part.drain(fetched_at(3 * DAY_SECONDS + IN_FLIGHT))  # everything produced is here
    assert part.engine.counters.as_dict()["late"] == 0
    assert part.engine.counters.applied == 5 and not part.gated
    assert part.next_offsets == {TOPICS[0]: 0, TRANSACTIONS: 1, INTERACTIONS: 4}


def test_live_records_a_moment_apart_do_not_wait():
    """Event time as fast as the wall clock: what is unconfirmed is seconds behind the
    confirmed time, far within half the allowed lateness."""
    part = scorer()
    start = 1_000.0
    day = 86_400.0
    first = interaction("c1", start / day)
    part.add(INTERACTIONS, [record(0, first, start)])
    part.drain(fetched_at(start + 1.0))  # confirmed: fetched well after it was produced
    for offset in range(1, 6):
        at = start + 10.0 * offset
        part.add(INTERACTIONS, [record(offset, interaction("c1", at / day), at)])
        part.drain(fetched_at(at + 0.01))  # fetched right away: not confirmed yet
        assert not part.gated and part.next_offsets[INTERACTIONS] == offset + 1


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(
        st.tuples(
            st.booleans(),  # a purchase, else an interaction
            st.floats(0.0, 1.5),  # days after the previous event
            st.floats(0.0, 1.0),  # its time to the broker, as a share of IN_FLIGHT
        ),
        min_size=2,
        max_size=40,
    ),
    poll_every=st.floats(0.001, 0.08),
)
def test_an_in_order_producer_whose_records_take_up_to_the_allowance_never_has_one_late(
    events, poll_every
):
    """Records produced in event-time order, each reaching the broker within
    IN_FLIGHT seconds (a topic keeps its own order), fetched by polls at any pace:
    none is dead-lettered as late, and all are applied in the end."""
    arrivals: dict[str, list[tuple[float, tuple]]] = {TRANSACTIONS: [], INTERACTIONS: []}
    day = 0.0
    for n, (is_purchase, gap, delay) in enumerate(events):
        day += gap
        topic = TRANSACTIONS if is_purchase else INTERACTIONS
        event = (purchase if is_purchase else interaction)(f"c{n % 3}", day)
        produced = day * DAY_SECONDS
        queue = arrivals[topic]
        arrives = max(produced + delay * IN_FLIGHT, queue[-1][0] if queue else 0.0)
        queue.append((arrives, record(len(queue), event, produced)))
    part = scorer()
    now, last = 0.0, max(queue[-1][0] for queue in arrivals.values() if queue) + IN_FLIGHT
    while now <= last + poll_every:
        for topic, queue in arrivals.items():
            part.add(topic, [rec for arrives, rec in queue if now - poll_every < arrives <= now])
        part.drain(fetched_at(now))
        now += poll_every
    counters = part.engine.counters.as_dict()
    assert counters["late"] == 0
    assert counters["applied"] + counters["duplicates"] == len(events)


def test_a_record_behind_another_inputs_buffered_ones_is_not_confirmed_past_its_own():
    """Each input's partition on its own broker: one input's fetch response reaches the
    worker after another's newer one. Records buffered on an input say nothing of
    what is still on its way behind them, produced before a record processed ahead of
    them: that record is not confirmed past it (twice confirmed so, the merge ran a
    day ahead of an interaction still on its way, and dead-lettered it as late)."""
    part = scorer()
    fetched = dict.fromkeys(TOPICS, 0.2)
    part.add(TRANSACTIONS, [record(0, purchase("c0", 0.0), 0.0)])
    part.drain(dict(fetched))  # day 0 confirmed

    def fetched_now(*fetches: tuple[str, float, list[tuple]], limit: int | None = 1) -> None:
        for topic, at, records in fetches:
            fetched[topic] = at
            part.add(topic, records)
        part.drain(dict(fetched), limit)

    # One producer in event-time order: interactions of days 0.10-0.14 (the last one
    # reaches the broker 0.09 s after it was produced), then purchases of days 0.5-1.9.
    days = (0.10, 0.11, 0.12, 0.13, 0.14)
    late = [record(i, interaction("c1", day), 1.0 + i * 0.0005) for i, day in enumerate(days)]
    bought = [
        record(i + 1, purchase("c2", day), 1.01 + i * 0.01)
        for i, day in enumerate((0.5, 1.0, 1.5, 1.9))
    ]
    fetched_now((TRANSACTIONS, 1.015, bought[:1]), (TOPICS[0], 1.015, []))  # half a day ahead
    fetched_now((INTERACTIONS, 1.05, late[:2]))
    fetched_now((INTERACTIONS, 1.07, late[2:3]))
    fetched_now((TRANSACTIONS, 1.13, bought[1:2]), (TOPICS[0], 1.13, []))
    part.drain(dict(fetched), 1)
    fetched_now(
        (INTERACTIONS, 1.08, late[3:4]),  # (a response older than the others')
        (TRANSACTIONS, 1.14, bought[2:]),
        (TOPICS[0], 1.14, []),
    )
    for _ in range(3):
        part.drain(dict(fetched), 1)
    fetched_now((INTERACTIONS, 1.2, late[4:]), limit=None)
    part.drain(dict.fromkeys(TOPICS, 2.0))
    assert part.engine.counters.as_dict()["late"] == 0
    assert part.next_offsets == {TOPICS[0]: 0, TRANSACTIONS: 5, INTERACTIONS: 5}
