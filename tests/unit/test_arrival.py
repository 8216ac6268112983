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
