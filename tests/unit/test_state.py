"""Customer state: BTYD statistics, refunds, de-duplication memory, serialization."""

from __future__ import annotations

from array import array

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from models.churn_features import FEATURES, FEATURES_V6, NEVER_DAYS
from models.engagement import TRACKED_KINDS
from models.state import CustomerState


def test_same_day_purchases_merge_and_repeat_days_count():
    s = CustomerState.new(0.0)
    for day, amount in [(10, 20.0), (10, 5.0), (12, 7.0), (12, 3.0), (20, 10.0)]:
        s.add_purchase(day, amount)
    assert (s.first_day, s.last_day, s.repeat_days) == (10, 20, 2)
    assert (s.spend_first, s.spend_repeat, s.purchase_count) == (25.0, 20.0, 5)
    assert s.mean_repeat_spend == 10.0


def test_a_late_purchase_before_the_first_becomes_the_first():
    s = CustomerState.new(0.0)
    s.add_purchase(10, 20.0)
    s.add_purchase(8, 5.0)
    assert (s.first_day, s.last_day, s.repeat_days) == (8, 10, 1)
    assert (s.spend_first, s.spend_repeat) == (5.0, 20.0)


def test_a_late_purchase_on_a_known_day_merges():
    s = CustomerState.new(0.0)
    for day in (10, 12, 14):
        s.add_purchase(day, 10.0)
    s.add_purchase(12, 1.0)  # out of order, same day as an earlier purchase
    assert s.repeat_days == 2
    s.add_purchase(13, 1.0)  # out of order, a new day
    assert s.repeat_days == 3 and s.last_day == 14


def test_refunds_reduce_value_but_are_not_purchases():
    s = CustomerState.new(0.0)
    s.add_purchase(1, 50.0)
    s.add_purchase(5, 50.0)
    before = s.mean_repeat_spend
    s.add_refund(25.0)
    assert s.repeat_days == 1 and s.purchase_count == 2
    assert s.net_spend == 75.0
    assert s.mean_repeat_spend == before * 0.75
    s.add_refund(500.0)
    assert s.net_spend == 0.0 and s.mean_repeat_spend == 0.0


def test_forgetting_old_days_keeps_the_last_purchase_day():
    s = CustomerState.new(0.0)
    for day in (1, 3, 5):
        s.add_purchase(day, 1.0)
    s.forget_days_before(4)
    assert s.recent_days == [5]
    s.forget_days_before(100)
    assert s.recent_days == [5] and s.last_day == 5


def fp(number: int) -> bytes:
    return number.to_bytes(8, "big")


def test_dedupe_memory_is_bounded_and_fifo():
    s = CustomerState.new(0.0)
    overflows = [s.remember(fp(number), float(number), 0.0, limit=32) for number in range(40)]
    assert len(s.recent_ids) == 32 * 16
    assert not s.has_seen(fp(7)) and s.has_seen(fp(8)) and s.has_seen(fp(39))
    assert overflows == [False] * 32 + [True] * 8


def test_ids_are_kept_until_the_watermark_passes_them_not_by_count():
    s = CustomerState.new(0.0)
    for number in range(100):
        assert not s.remember(fp(number), 1000.0 + number, watermark=900.0, limit=256)
    assert all(s.has_seen(fp(n)) for n in range(100))
    s.remember(fp(100), 1200.0, watermark=1050.0, limit=256)
    assert not s.has_seen(fp(49)) and s.has_seen(fp(50)) and s.has_seen(fp(100))
    assert len(s.recent_ids) == 51 * 16


def test_an_id_behind_the_watermark_goes_before_one_in_reach_however_they_arrived():
    """Ids are kept in arrival order, which is not event-time order within the allowed
    lateness: an out-of-reach id behind one in reach made the limit force the one in
    reach out (a repeat of it was then applied twice)."""
    s = CustomerState.new(0.0)
    s.remember(fp(1), 2000.0, watermark=1000.0, limit=2)
    s.remember(fp(2), 1200.0, watermark=1000.0, limit=2)  # earlier, within the lateness
    assert not s.remember(fp(3), 2600.0, watermark=1600.0, limit=2)  # fp(2) out of reach
    assert s.has_seen(fp(1)) and s.has_seen(fp(3)) and not s.has_seen(fp(2))
    assert s.remember(fp(4), 2700.0, watermark=1600.0, limit=2)  # all in reach: one goes
    assert not s.has_seen(fp(1)) and s.has_seen(fp(3)) and s.has_seen(fp(4))


def test_ids_of_an_older_state_format_are_kept_until_its_last_event():
    s = CustomerState.new(0.0)
    s.last_event_at = 500.0
    s.remember(fp(1), 500.0, 0.0, 32)
    v5 = msgpack.unpackb(s.to_bytes(), raw=False)
    v5[0], v5[12] = 5, fp(1)  # format 5: fingerprints without times
    old = CustomerState.from_bytes(msgpack.packb(v5, use_bin_type=True))
    assert old.has_seen(fp(1)) and old.recent_ids == s.recent_ids


def test_a_format_6_state_gains_the_newer_kinds_as_known_then_or_never_seen():
    s = CustomerState.new(0.0)
    s.engagement = s.engagement.observe("login", 100.0).observe("complaint", 200.0)
    s.engagement = s.engagement.observe("survey", 300.0, 4.0)
    vector = array("d", range(len(FEATURES)))
    s.snapshots = ((300.0, 0.25, vector, False, 3),)
    v6 = msgpack.unpackb(s.to_bytes(), raw=False)
    # format 6: 7 tracked kinds (login ... cart_abandon), 20 features per snapshot
    values = array("d")
    values.frombytes(v6[20][0])
    k = len(TRACKED_KINDS)
    old_values = values[: 2 + 7] + values[2 + k : 2 + k + 7]
    old_vector = array("d", (vector[FEATURES.index(name)] for name in FEATURES_V6))
    v6[0], v6[20][0], v6[21][0][2] = 6, old_values.tobytes(), old_vector.tobytes()
    old = CustomerState.from_bytes(msgpack.packb(v6, use_bin_type=True))
    assert old.engagement.days_since("login", 86_400.0 + 100.0) == 1.0
    assert old.engagement.days_since("complaint", 200.0) == 0.0
    assert old.engagement.days_since("survey", 300.0) is None  # not kept by format 6
    assert old.engagement.last_survey == 4.0
    widened = dict(zip(FEATURES, old.snapshots[0][2], strict=True))
    for name in FEATURES:  # what format 6 lacked is "never", whatever came after
        expected = vector[FEATURES.index(name)] if name in FEATURES_V6 else NEVER_DAYS
        assert widened[name] == expected
    assert old.snapshots[0][:2] == (300.0, 0.25) and len(old.snapshots[0][2]) == len(FEATURES)
    assert old.snapshots[0][3:] == (False, 3)  # the version number was not in format 6
    del v6[21][0][4]
    older = CustomerState.from_bytes(msgpack.packb(v6, use_bin_type=True))
    assert older.snapshots[0][3:] == (False, -1)


def test_consent_of_a_format_8_state_has_no_time_and_any_later_setting_applies():
    s = CustomerState.new(1.7e9)
    s.update_consent([("marketing_email", True), ("profiling", False)], at=1.7e9 + 100)
    v8 = msgpack.unpackb(s.to_bytes(), raw=False)
    assert v8[13] == [[True, 1.7e9 + 100], None, None, [False, 1.7e9 + 100]]
    v8[0], v8[13] = 8, [True, None, None, False]  # format 8: the flags alone
    old = CustomerState.from_bytes(msgpack.packb(v8, use_bin_type=True))
    assert old.consent == {"marketing_email": True, "profiling": False}
    assert old.consent_at == {}
    old.update_consent([("marketing_email", False)], at=1.7e9)  # older, but nothing to beat
    assert old.consent["marketing_email"] is False and old.consent_at["marketing_email"] == 1.7e9
    s.update_consent([("marketing_email", False)], at=1.7e9)  # the newer grant stands
    assert s.consent["marketing_email"] is True


def test_a_fingerprint_straddling_two_others_is_not_seen():
    s = CustomerState.new(0.0)
    s.remember(bytes([0, 0, 0, 0, 1, 2, 3, 4]), 0.0, 0.0, 32)
    s.remember(bytes([5, 6, 7, 8, 0, 0, 0, 0]), 0.0, 0.0, 32)
    assert not s.has_seen(bytes([1, 2, 3, 4, 5, 6, 7, 8]))
    assert s.has_seen(bytes([5, 6, 7, 8, 0, 0, 0, 0]))


def test_copy_covers_every_slot_and_is_independent():
    s = CustomerState.new(5.0)
    for name in CustomerState.__slots__:
        if getattr(s, name) is None:
            setattr(s, name, 1)
    twin = s.copy()
    assert twin == s
    twin.remember(fp(1), 0.0, 0.0, 32)
    twin.recent_days.append(1)
    twin.consent["profiling"] = False
    assert twin != s and s.recent_ids == b"" and s.consent == {}


finite = st.floats(0, 1e6, allow_nan=False)


@given(
    purchases=st.lists(st.tuples(st.integers(0, 2000), finite), max_size=30),
    refunds=st.lists(finite, max_size=5),
    ids=st.lists(st.binary(min_size=8, max_size=8), max_size=40),
    consent=st.dictionaries(
        st.sampled_from(["marketing_email", "marketing_sms", "profiling"]), st.booleans()
    ),
    timed=st.dictionaries(st.sampled_from(["marketing_phone", "profiling"]), st.booleans()),
    segment=st.none() | st.sampled_from(["new", "active"]),
)
@settings(max_examples=200, deadline=None)
def test_serialization_round_trip(purchases, refunds, ids, consent, timed, segment):
    s = CustomerState.new(1.7e9)
    for day, amount in purchases:
        s.add_purchase(day, amount)
    for amount in refunds:
        s.add_refund(amount)
    for fingerprint in ids:
        s.remember(fingerprint, 1.7e9, 0.0, 32)
    s.consent.update(consent)  # (set without a time, as a format-8 state's are read)
    s.update_consent(timed.items(), at=1.7e9 + 5.0)
    s.segment, s.due_day = segment, 20_000
    assert CustomerState.from_bytes(s.to_bytes()) == s


def test_serialized_state_is_compact():
    s = CustomerState.new(1.7e9)
    for day in range(0, 300, 10):
        s.add_purchase(19_000 + day, 42.5)
    for number in range(32):
        s.remember(fp(number * 7919), 1.7e9, 0.0, 32)
    s.segment = "active"
    # 32 ids x 16 bytes + about 150 bytes of statistics + 22 doubles of engagement
    assert len(s.to_bytes()) < 910
