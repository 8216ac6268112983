"""Guards at the engine's input: repeats by id within reach of the clock, dates from
the future, opt-outs and erasures however late, erased customers staying erased, and
ids unique across partitions."""

from __future__ import annotations

import pytest

from models.checkpoint import checkpoint_bytes, restore_checkpoint
from models.config import ScoringConfig
from models.emitted import Stream
from models.engine import ScoringEngine
from models.timeline import SECONDS_PER_DAY
from schemas.outputs import ModelHealth
from schemas.parsing import Rejected, parse_event
from tests.factories import BASE, customer_event, interaction, purchase, raw

DAY = SECONDS_PER_DAY
T0 = BASE.timestamp()


def feed(engine: ScoringEngine, events: list[dict]) -> list:
    outputs = []
    for number, event in enumerate(events, 1):
        outputs += engine.process_raw(raw(event), {"source": "file", "line": number})
    return outputs


def reasons(outputs: list) -> list[str]:
    return [o.value["reason"] for o in outputs if o.stream is Stream.DEAD_LETTER]


def test_a_repeat_after_many_other_events_within_the_lateness_changes_nothing():
    engine = ScoringEngine(ScoringConfig(), refit=False)
    first = purchase("a", 0.0, 100.0)
    views = [interaction("a", 0.001 * n, "page_view") for n in range(1, 41)]
    feed(engine, [first, *views, first])
    assert engine.states["a"].gross_spend == 100.0
    assert engine.counters.duplicates == 1 and engine.counters.dedupe_overflows == 0


def test_ids_behind_the_watermark_are_forgotten_and_their_repeats_are_late():
    engine = ScoringEngine(ScoringConfig(allowed_lateness_seconds=DAY), refit=False)
    first = purchase("a", 0.0, 100.0)
    feed(engine, [first, *(interaction("a", 1.0 + n, "login") for n in range(5))])
    assert len(engine.states["a"].recent_ids) < 6 * 16  # the oldest were dropped
    assert reasons(feed(engine, [first])) == ["late"]
    assert engine.states["a"].gross_spend == 100.0


def test_more_ids_than_the_limit_within_reach_are_counted():
    engine = ScoringEngine(ScoringConfig(dedupe_window=4), refit=False)
    feed(engine, [interaction("a", 0.001 * n) for n in range(6)])
    assert engine.counters.dedupe_overflows == 2
    assert engine.counters.as_dict()["dedupe_overflows"] == 2


def test_an_event_from_the_future_is_dead_lettered_and_moves_no_clock():
    engine = ScoringEngine(ScoringConfig(), refit=False)
    engine.future_limit = T0 + 10 * DAY
    feed(engine, [purchase("a", 1.0)])
    watermark = engine.clock.watermark
    outputs = feed(engine, [interaction("b", 365 * 120)])  # a date in the 2140s
    assert reasons(outputs) == ["future_timestamp"]
    assert engine.clock.watermark == watermark and "b" not in engine.states
    assert reasons(feed(engine, [purchase("c", 2.0)])) == []  # later events still apply
    assert engine.counters.dead_lettered["future_timestamp"] == 1


def test_a_late_opt_out_applies_and_a_late_grant_does_not():
    engine = ScoringEngine(ScoringConfig(allowed_lateness_seconds=DAY), refit=False)
    feed(engine, [purchase("a", 1.0), purchase("z", 10.0)])  # watermark: day 9
    withdrawal = {"marketing_email": False, "marketing_sms": True}
    outputs = feed(engine, [customer_event("a", 5.0, "consent", consent=withdrawal)])
    assert reasons(outputs) == []
    assert engine.states["a"].consent == {"marketing_email": False}  # sms grant not applied
    grant = {"marketing_email": True}
    outputs = feed(engine, [customer_event("a", 6.0, "consent", consent=grant)])
    assert reasons(outputs) == ["late"] and engine.states["a"].consent["marketing_email"] is False
    assert reasons(feed(engine, [interaction("b", 2.0, "unsubscribe")])) == []
    assert engine.states["b"].consent == {"marketing_email": False}


def test_an_opt_out_re_sent_after_a_newer_grant_does_not_undo_it():
    # The unsubscribe's id is forgotten once the watermark passes it; re-sent then, it
    # is late, and late opt-outs apply: but the customer opted in again since.
    engine = ScoringEngine(ScoringConfig(allowed_lateness_seconds=DAY), refit=False)
    unsubscribe = interaction("a", 1.0, "unsubscribe")
    grant = customer_event("a", 3.0, "consent", consent={"marketing_email": True})
    feed(engine, [purchase("a", 0.5), unsubscribe, grant, purchase("z", 10.0)])
    feed(engine, [purchase("a", 10.5)])  # remembers its id, forgets the passed ones
    assert engine.states["a"].consent == {"marketing_email": True}
    assert len(engine.states["a"].recent_ids) == 16  # (one 16-byte record)
    assert reasons(feed(engine, [unsubscribe])) == []
    assert engine.states["a"].consent == {"marketing_email": True}
    withdrawal = customer_event("a", 9.5, "consent", consent={"marketing_email": False})
    feed(engine, [withdrawal])  # a newer one, late: applies
    assert engine.states["a"].consent == {"marketing_email": False}


def test_consent_settings_within_the_lateness_end_as_in_time_order():
    withdrawal = customer_event("a", 2.0, "consent", consent={"marketing_sms": False})
    grant = customer_event("a", 3.0, "consent", consent={"marketing_sms": True})
    unsubscribe, opt_in = (
        interaction("a", 4.0, "unsubscribe"),
        customer_event("a", 4.0, "consent", consent={"marketing_email": True}),
    )
    ends = set()
    for order in (
        [withdrawal, grant, unsubscribe, opt_in],
        [opt_in, grant, unsubscribe, withdrawal],
    ):
        engine = ScoringEngine(ScoringConfig(), refit=False)
        feed(engine, [purchase("a", 1.0), *order])
        ends.add(tuple(sorted(engine.states["a"].consent.items())))
    # the later grant wins; at the same time, the withdrawal
    assert ends == {(("marketing_email", False), ("marketing_sms", True))}


def test_a_late_erasure_erases_and_its_tombstone_supersedes_every_score():
    engine = ScoringEngine(ScoringConfig(allowed_lateness_seconds=DAY), refit=False)
    feed(engine, [purchase("a", 5.0), purchase("a", 8.0), purchase("z", 10.0)])
    outputs = feed(engine, [customer_event("a", 6.0, "erasure")])
    [tombstone] = [o for o in outputs if o.stream is Stream.SCORES]
    assert tombstone.value is None and tombstone.at >= T0 + 8.0 * DAY
    assert "a" not in engine.states and engine.counters.erased == 1


def test_an_erasure_re_sent_after_the_customer_came_back_keeps_the_new_start():
    # The erasure's id went with the erased state; once the watermark has passed it the
    # engine forgets it too. Re-sent then, it must not erase the customer's new start.
    engine = ScoringEngine(ScoringConfig(allowed_lateness_seconds=DAY), refit=False)
    erasure = customer_event("a", 2.0, "erasure")
    feed(engine, [purchase("a", 1.0, 100.0), erasure, purchase("a", 4.0, 7.0)])
    feed(engine, [purchase("z", 10.0)])
    assert engine.erasures == {} and engine.states["a"].gross_spend == 7.0
    outputs = feed(engine, [erasure])
    assert outputs == [] and engine.states["a"].gross_spend == 7.0
    assert engine.counters.erased == 1 and engine.counters.erasures_predating_customer == 1


def test_an_erasure_arriving_after_the_customers_later_events_ends_as_in_time_order():
    events = [customer_event("a", 2.0, "erasure"), purchase("a", 3.0, 7.0)]
    spends = {}
    for order in (events, events[::-1]):
        engine = ScoringEngine(ScoringConfig(), refit=False)
        feed(engine, order)
        assert feed(engine, [purchase("a", 1.5, 100.0)]) == []  # before it: dropped
        spends[len(spends)] = engine.states["a"].gross_spend
    assert spends == {0: 7.0, 1: 7.0}


def test_an_erased_customer_is_not_brought_back_by_a_resent_earlier_event():
    engine = ScoringEngine(ScoringConfig(), refit=False)
    bought = purchase("a", 1.0, 100.0)
    feed(engine, [bought, customer_event("a", 1.1, "erasure"), purchase("b", 1.2)])
    assert feed(engine, [bought]) == [] and "a" not in engine.states
    assert engine.counters.dropped_after_erasure == 1
    restored = ScoringEngine(ScoringConfig(), refit=False, states=dict(engine.states))
    restore_checkpoint(restored, checkpoint_bytes(engine))
    assert feed(restored, [bought]) == [] and "a" not in restored.states
    feed(restored, [purchase("a", 1.3, 5.0)])  # a new purchase after the erasure: a new start
    assert restored.states["a"].gross_spend == 5.0


def test_erasures_are_forgotten_once_the_watermark_passes_them():
    engine = ScoringEngine(ScoringConfig(allowed_lateness_seconds=DAY), refit=False)
    feed(engine, [purchase("a", 1.0), customer_event("a", 1.0, "erasure")])
    assert engine.erasures
    feed(engine, [purchase("b", 5.0)])
    assert engine.erasures == {}


@pytest.mark.parametrize(
    "invisible",
    [
        *("\u200b", "\u200d", "\u00ad", "\ufeff", "\u202e", "\u2060", "\u0085", "\ue000"),
        *("\u00a0", "\U000e0041", "\U000f0000", "\ufe0f", "\u034f", "\u3164", "\ufdd0"),
        *("\uffff", "\U0001d173", "\u17b4"),
    ],
)
def test_ids_with_invisible_characters_are_rejected(invisible):
    # "c1" and "c<zero-width space>1" look the same: they would be two customers.
    for field in ("customer_id", "event_id"):
        event = {**interaction("c1", 1.0), field: f"c{invisible}1"}
        rejected = parse_event(raw(event))
        assert isinstance(rejected, Rejected) and rejected.reason == "invalid_id"
        assert rejected.detail.startswith(f"{field}: ") and "invisible" in rejected.detail
    visible = parse_event(raw({**interaction("Ünïcødé-客户-😀", 1.0)}))
    assert not isinstance(visible, Rejected)


def test_words_keep_the_joiners_their_spelling_needs_but_nothing_else_invisible():
    books = "\u06a9\u062a\u0627\u0628\u200c\u0647\u0627"  # Persian "books", with a ZWNJ
    event = purchase("c1", 1.0)
    event["items"] = [{"sku": "s1", "category": books, "quantity": 1, "unit_price": 5.0}]
    assert not isinstance(parse_event(raw(event)), Rejected)
    for hidden in ("\u200b", "\U000e0041", "\u202e"):
        event["items"][0]["category"] = f"books{hidden}"
        rejected = parse_event(raw(event))
        assert isinstance(rejected, Rejected) and rejected.reason == "invalid_field"
        assert "invisible" in rejected.detail and "pattern" not in rejected.detail


def test_an_input_id_that_looks_like_a_timer_cause_is_rejected():
    rejected = parse_event(raw(interaction("a", 1.0, event_id="due:2024-01-15")))
    assert isinstance(rejected, Rejected) and rejected.reason == "invalid_id"
    assert "reserved" in rejected.detail


@pytest.mark.parametrize("model", ["value", "churn"])
def test_model_health_ids_differ_between_partitions(model):
    config = ScoringConfig(churn_warmup_labels=1)
    events = [purchase(f"c{n}", n % 90, 20.0 + n % 7) for n in range(400)]
    events.sort(key=lambda e: e["occurred_at"])
    reports = {}
    for scope in ("p0", "p1"):
        engine = ScoringEngine(config, scope=scope)
        outputs = feed(engine, events) + engine.advance_watermark(T0 + 400 * DAY)
        health = [
            ModelHealth.model_validate(o.value)
            for o in outputs
            if o.stream is Stream.MODEL_HEALTH and o.value["model"] == model
        ]
        assert health and {h.scope for h in health} == {scope}
        reports[scope] = {h.event_id for h in health}
    assert not reports["p0"] & reports["p1"]
