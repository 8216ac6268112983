"""The bookkeeping that finds scores Redis acknowledged and lost (`agents.redis_loss`)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from agents.redis_loss import ReadBack, RedisLossWatch


def checked(markers: dict[int, int | None]) -> RedisLossWatch:
    """A watch whose partitions were checked, read back and raised to `markers`."""
    watch = RedisLossWatch()
    watch.check(watch.known(), markers)
    for partition in markers:
        watch.read_back_done(partition)
    watch.raised({p: m for p, m in markers.items() if m is not None})
    return watch


def test_a_marker_raised_while_the_read_was_under_way_is_not_a_loss():
    watch = checked({0: 100})
    known = watch.known()  # the read is sent now ...
    watch.raised({0: 150})  # ... a write raises the marker before its answer
    assert watch.check(known, {0: 100}) == []  # what the read saw: no loss
    assert watch.check(watch.known(), {0: 150}) == []  # and 150 stands
    assert watch.check(watch.known(), {0: 120}) == [ReadBack(0, 120, lost=True)]


def test_a_partition_is_not_raised_before_its_first_check_nor_during_its_read_back():
    watch = RedisLossWatch()
    assert watch.to_raise([0], lambda p: 50) == {}  # not checked yet
    assert watch.check(watch.known(), {0: None}) == [ReadBack(0, None, lost=False)]
    assert watch.to_raise([0], lambda p: 50) == {}  # reading back
    assert watch.check(watch.known(), {0: None}) == []  # (no second read-back meanwhile)
    watch.read_back_done(0)
    assert watch.to_raise([0], lambda p: 50) == {0: 50}
    assert watch.to_raise([0], lambda p: None) == {}  # nothing delivered yet


def test_a_failed_read_back_or_a_partition_held_again_is_read_back_again():
    watch = checked({0: 10, 1: 20})
    watch.check(watch.known(), {0: 5, 1: 20})
    watch.read_back_failed(0)
    assert watch.check(watch.known(), {0: 5, 1: 20}) == [ReadBack(0, 5, lost=False)]
    watch.forget(1)  # revoked, then held again (a replay, a rebalance)
    assert watch.check(watch.known(), {1: 20}) == [ReadBack(1, 20, lost=False)]


@given(
    st.lists(st.one_of(st.none(), st.integers(0, 1000)), min_size=1, max_size=20),
    st.lists(st.integers(0, 1000), min_size=1, max_size=20),
)
def test_a_loss_is_reported_exactly_when_redis_shows_less_than_it_acknowledged(reads, raises):
    watch = checked({0: 0})
    acknowledged = 0
    for read, raise_to in zip(reads, raises, strict=False):
        due = watch.check(watch.known(), {0: read})
        lost = read is None or read < acknowledged
        assert due == ([ReadBack(0, read, lost=True)] if lost else [])
        if lost:
            watch.read_back_done(0)
            acknowledged = read or 0
        else:
            acknowledged = max(acknowledged, read)
        markers = watch.to_raise([0], lambda p, r=raise_to: r)
        assert markers == (
            {0: raise_to} if raise_to > acknowledged or (lost and read is None) else {}
        )
        watch.raised(markers)
        if markers:
            acknowledged = raise_to


def test_a_partition_read_back_is_raised_to_where_the_read_back_ended_without_new_scores():
    """A partition with no score since held (`covered` None) was never raised: each
    worker that held it next read it back again, from its marker or the beginning."""
    watch = RedisLossWatch()
    assert watch.check(watch.known(), {0: None, 1: 40}) == [
        ReadBack(0, None, lost=False),
        ReadBack(1, 40, lost=False),
    ]
    watch.read_back_done(0, upto=900)
    watch.read_back_done(1, upto=40)  # nothing after its marker
    assert watch.to_raise([0, 1], lambda p: None) == {0: 900}
    watch.raised({0: 900})
    assert watch.to_raise([0, 1], {0: 950, 1: 60}.get) == {0: 950, 1: 60}  # scores since
    watch.forget(0)  # given up: where its read-back ended is not kept
    watch.check(watch.known(), {0: 900})
    watch.read_back_done(0)
    assert watch.to_raise([0], lambda p: None) == {}
