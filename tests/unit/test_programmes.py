"""Programmes: the decision, its guardrails, control groups, attribution, outcomes."""

from __future__ import annotations

import pickle
from collections import defaultdict

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from models.checkpoint import checkpoint_bytes, restore_checkpoint
from models.config import ScoringConfig
from models.emitted import Stream
from models.engine import ScoringEngine
from models.programmes.book import ProgrammeBook, pooled_summary
from models.programmes.catalogue import Eligibility, Programme, ProgrammesConfig
from models.programmes.decision import assign_arm
from models.programmes.measurement import estimate
from models.programmes.memory import SALES_KEPT, Attribution, ProgrammeMemory
from models.state import CustomerState
from models.timeline import SECONDS_PER_DAY
from schemas.outputs import ProgrammeOutcome, ProgrammeResult, ProgrammeTrigger
from tests.factories import customer_event, interaction, purchase, raw, refund

DAY = SECONDS_PER_DAY


def everyone(**changes) -> Programme:
    """A programme every purchaser is eligible for (and that always pays)."""
    options = {
        "id": "everyone",
        "name": "Everyone",
        "goal": "growth",
        "cost_per_contact": 1.0,
        "uplift_prior": 0.5,
        "attribution_days": 10,
        "cooldown_days": 10,
        "control_share": 0.3,
    }
    return Programme(**{**options, **changes})


def config_with(*programmes: Programme, lateness: float = 0.0, **guardrails) -> ScoringConfig:
    # windows close at their end unless a test gives refunds a grace period
    options = {"catalogue": programmes, "freeze_min_labels": 10**9, "refund_grace_days": 0}
    options |= guardrails
    return ScoringConfig(
        programmes=ProgrammesConfig(**options),
        churn_model=False,
        allowed_lateness_seconds=lateness,
    )


def consent(customer: str, day: float, granted: bool = True) -> dict:
    return customer_event(customer, day, "consent", consent={"marketing_email": granted})


def feed(engine: ScoringEngine, events: list[dict]) -> list:
    outputs = []
    for number, event in enumerate(events, 1):
        outputs += engine.process_raw(raw(event), {"source": "file", "file": "t", "line": number})
    return outputs


def triggers(outputs) -> list[dict]:
    return [o.value for o in outputs if o.stream is Stream.PROGRAMME_TRIGGERS]


def outcomes(outputs, event_type: str = "programme_outcome") -> list[dict]:
    return [
        o.value
        for o in outputs
        if o.stream is Stream.PROGRAMME_OUTCOMES and o.value["event_type"] == event_type
    ]


def test_the_catalogue_refuses_overlapping_windows_and_unknown_names():
    with pytest.raises(ValidationError, match="cooldown_days must be at least"):
        everyone(cooldown_days=5, attribution_days=30)
    with pytest.raises(ValidationError, match="unknown event kinds"):
        Eligibility(event_kinds=frozenset({"complain"}))
    with pytest.raises(ValidationError):
        everyone(consent="marketing_mail")


def test_control_share_is_within_one_point_of_the_setting_and_stable():
    for share in (0.1, 0.2, 0.5):
        arms = [assign_arm("salt", f"c{i}", "win_back", share) for i in range(40_000)]
        assert abs(arms.count("control") / len(arms) - share) < 0.01
    assert assign_arm("salt", "c7", "p", 0.3) == assign_arm("salt", "c7", "p", 0.3)
    # another salt or programme reshuffles who is held out
    first = [assign_arm("salt", f"c{i}", "p", 0.5) for i in range(200)]
    assert first != [assign_arm("pepper", f"c{i}", "p", 0.5) for i in range(200)]
    assert first != [assign_arm("salt", f"c{i}", "q", 0.5) for i in range(200)]


def test_a_trigger_names_programme_arm_value_cost_reasons_offer_and_expiry():
    engine = ScoringEngine(config_with(everyone()), refit=False)
    events = [consent("a", 0), purchase("a", 0, 100.0)]
    [trigger] = triggers(feed(engine, events))
    parsed = ProgrammeTrigger.model_validate(trigger)
    assert parsed.programme_id == "everyone" and parsed.customer_id == "a"
    assert abs(parsed.expected_incremental_value - (0.5 * parsed.value_at_stake - 1.0)) < 1e-5
    assert parsed.expected_incremental_value > 0
    assert (parsed.expires_at - parsed.occurred_at).days == 14
    assert (parsed.attribution_ends_at - parsed.occurred_at).days == 10
    assert parsed.cost == (1.0 if parsed.arm == "treatment" else 0.0)
    assert any("expected incremental value" in reason for reason in parsed.reasons)
    # the same input gives the same trigger id
    again = ScoringEngine(config_with(everyone()), refit=False)
    assert triggers(feed(again, events)) == [trigger]


def test_the_best_paying_programme_wins_and_the_runner_up_says_why_it_lost():
    cheap = everyone(id="cheap", cost_per_contact=0.5, uplift_prior=0.01)
    rich = everyone(id="rich", cost_per_contact=2.0, uplift_prior=0.9)
    engine = ScoringEngine(config_with(cheap, rich), refit=False)
    [trigger] = triggers(feed(engine, [consent("a", 0), purchase("a", 0, 100.0)]))
    assert trigger["programme_id"] == "rich"
    assert trigger["runner_up"]["programme_id"] == "cheap"
    assert trigger["runner_up"]["why_lost"].startswith("lower expected value")


def test_the_runner_up_is_the_next_best_by_value_even_when_blocked_and_only_if_eligible():
    cheap = everyone(id="cheap", cost_per_contact=0.5, uplift_prior=0.01)
    rich = everyone(id="rich", cost_per_contact=2.0, uplift_prior=0.9)
    sms = everyone(id="sms", uplift_prior=0.99, consent="marketing_sms")  # no such consent
    engine = ScoringEngine(config_with(cheap, rich, sms), refit=False)
    [trigger] = triggers(feed(engine, [consent("a", 0), purchase("a", 0, 100.0)]))
    assert trigger["programme_id"] == "rich"
    assert trigger["runner_up"]["programme_id"] == "sms"  # worth more, but blocked
    assert "marketing_sms" in trigger["runner_up"]["why_lost"]
    # a blocked programme the customer is not eligible for is never the runner-up
    champions = Eligibility(rfm_segments=frozenset({"champions"}))
    sms = everyone(id="sms", uplift_prior=0.99, consent="marketing_sms", eligibility=champions)
    engine = ScoringEngine(config_with(cheap, rich, sms), refit=False)
    [trigger] = triggers(feed(engine, [consent("a", 0), purchase("a", 0, 100.0)]))
    assert trigger["runner_up"]["programme_id"] == "cheap"


def test_nothing_is_triggered_when_the_best_programme_does_not_pay():
    costly = everyone(cost_per_contact=10_000.0)
    engine = ScoringEngine(config_with(costly), refit=False)
    assert triggers(feed(engine, [consent("a", 0), purchase("a", 0, 100.0)])) == []


def test_without_marketing_consent_there_is_no_trigger_unless_configured():
    engine = ScoringEngine(config_with(everyone()), refit=False)
    events = [purchase("unknown", 0), consent("no", 0, False), purchase("no", 0)]
    assert triggers(feed(engine, events)) == []
    lenient = ScoringEngine(config_with(everyone(), assume_consent=True), refit=False)
    fired = triggers(feed(lenient, events))
    assert [t["customer_id"] for t in fired] == ["unknown"]  # an explicit no stays a no


def test_unsubscribing_stops_triggers():
    engine = ScoringEngine(config_with(everyone(cooldown_days=1, attribution_days=1)), refit=False)
    first = triggers(feed(engine, [consent("a", 0), purchase("a", 0)]))
    later = triggers(feed(engine, [interaction("a", 5, "unsubscribe"), purchase("a", 6)]))
    assert len(first) == 1 and later == []


def test_revenue_in_the_window_is_attributed_when_it_closes():
    engine = ScoringEngine(config_with(everyone()), refit=False)
    outputs = feed(
        engine,
        [
            consent("a", 0),
            purchase("a", 0, 100.0),  # triggers: not counted itself
            purchase("a", 5, 30.0),
            refund("a", 8, 10.0),
            purchase("a", 25, 999.0),  # after the 20-day window
            purchase("z", 40, 1.0),  # moves the clock on
        ],
    )
    outcome, repeat = outcomes(outputs)  # the day-25 purchase triggered again
    parsed = ProgrammeOutcome.model_validate(outcome)
    assert repeat["revenue"] == 0.0 and not repeat["first_exposure"]
    assert parsed.revenue == 20.0 and parsed.customer_id == "a"
    assert parsed.pre_period_value == 100.0  # all spend so far, over one window
    [result] = [r for r in outcomes(outputs, "programme_result") if r["programme_id"] == "everyone"]
    ProgrammeResult.model_validate(result)
    arm = "treatment_stats" if parsed.arm == "treatment" else "control_stats"
    assert result[arm]["n"] == 1 and result[arm]["sy"] == 20.0
    # the window is gone from the state; the outcome id derives from the trigger
    assert parsed.trigger_id not in {a.trigger_id for a in engine.states["a"].programmes.open}
    assert parsed.event_id != parsed.trigger_id


def test_refunds_in_the_grace_after_a_window_count_against_it_and_it_closes_later():
    config = config_with(everyone(attribution_days=10, cooldown_days=30), refund_grace_days=7)
    engine = ScoringEngine(config, refit=False)
    events = [
        consent("a", 0),
        purchase("a", 0, 100.0),  # triggers
        purchase("a", 5, 40.0),
        refund("a", 13, 15.0),  # 3 days after the window: the offer's sale returned
        purchase("z", 16.5, 1.0),  # the window ended, its grace has not
    ]
    assert outcomes(feed(engine, events)) == []
    later = feed(engine, [refund("a", 18, 5.0), purchase("z", 19, 1.0)])  # after the grace
    [outcome] = outcomes(later)
    assert outcome["revenue"] == 25.0 and outcome["occurred_at"].startswith("2024-01-11")


def test_a_refund_in_a_newer_window_of_the_programme_is_not_the_older_ones():
    config = config_with(everyone(attribution_days=10, cooldown_days=10), refund_grace_days=7)
    engine = ScoringEngine(config, refit=False)
    fired = triggers(feed(engine, [consent("a", 0), purchase("a", 0, 100.0)]))
    fired += triggers(feed(engine, [purchase("a", 11, 50.0)]))  # triggers again
    assert len(fired) == 2
    closed = outcomes(feed(engine, [refund("a", 12, 20.0), purchase("z", 40, 1.0)]))
    revenue = {o["trigger_id"]: o["revenue"] for o in closed}
    assert revenue == {fired[0]["event_id"]: 0.0, fired[1]["event_id"]: -20.0}


def test_a_refund_naming_its_purchase_counts_where_the_purchase_counted():
    config = config_with(everyone(attribution_days=10, cooldown_days=10), refund_grace_days=7)
    engine = ScoringEngine(config, refit=False)
    events = [
        consent("a", 0),
        purchase("a", 0, 100.0, event_id="before"),  # triggers: before the first window
        purchase("a", 3, 30.0, event_id="in-first"),
    ]
    fired = triggers(feed(engine, events))
    fired += triggers(feed(engine, [purchase("a", 11, 70.0)]))  # triggers again
    assert len(fired) == 2
    feed(engine, [purchase("a", 11.5, 50.0, event_id="in-second")])
    returns = [
        refund("a", 12, 60.0, refund_of="before"),  # bought before any window: neither
        refund("a", 12.5, 20.0, refund_of="in-first"),  # the first window's sale
        refund("a", 13, 25.0, refund_of="in-first"),  # only the 10 it has left
        refund("a", 14, 5.0, refund_of="in-second"),
    ]
    closed = outcomes(feed(engine, [*returns, purchase("z", 40, 1.0)]))
    revenue = {o["trigger_id"]: o["revenue"] for o in closed}
    # by time alone, every refund would have counted against the second window: -60
    assert revenue == {fired[0]["event_id"]: 0.0, fired[1]["event_id"]: 45.0}


def test_a_refund_of_an_unknown_purchase_counts_by_time_when_sales_were_forgotten():
    window = Attribution("t", "p", "treatment", 0.0, 100.0, 0.0, 1.0, 0.0, True, 0.0)
    memory = ProgrammeMemory().opened(window)
    for k in range(SALES_KEPT + 1):  # the first sale is forgotten
        memory = memory.attribute(1.0 + k, 10.0, sale=f"s{k}".encode())
    assert memory.sales_lost_until == 100.0 and len(memory.sales) == SALES_KEPT
    revenue = 10.0 * (SALES_KEPT + 1)
    assert memory.attribute(50.0, -4.0, refund_of=b"s0").open[0].revenue == revenue - 4.0
    assert memory.attribute(50.0, -4.0, refund_of=b"s1").open[0].revenue == revenue - 4.0
    # all known: an unknown purchase is one no open window counted
    known = ProgrammeMemory().opened(window).attribute(1.0, 10.0, sale=b"s0")
    assert known.attribute(50.0, -4.0, refund_of=b"other").open[0].revenue == 10.0
    # a state written before sales were kept knows none of its open windows' sales
    old = ProgrammeMemory.from_list(known.to_list()[:3])
    assert old.sales_lost_until == 100.0
    assert old.attribute(50.0, -4.0, refund_of=b"s0").open[0].revenue == 6.0
    assert ProgrammeMemory.from_list(known.to_list()) == known
    # once every window that may have counted a lost sale has closed, an unknown
    # purchase is one no open window counted again; the sales go with their windows
    newer = Attribution("u", "q", "treatment", 60.0, 300.0, 0.0, 1.0, 0.0, True, 0.0)
    after, closed = memory.opened(newer).closing(watermark=200.0)
    assert len(closed) == 1 and after.sales == () and after.sales_lost_until is None
    assert after.attribute(250.0, -4.0, refund_of=b"s0").open[0].revenue == 0.0


def test_a_named_refund_counts_within_the_grace_only_and_a_sale_refunded_in_full_goes():
    window = Attribution("t", "p", "treatment", 0.0, 10.0, 0.0, 1.0, 0.0, True, 0.0)
    memory = ProgrammeMemory().opened(window).attribute(5.0, 30.0, sale=b"s")
    assert memory.attribute(14.9, -8.0, grace=5.0, refund_of=b"s").open[0].revenue == 22.0
    # after the grace, a refund counts no more, named or not (the clock closes the
    # window in its own time: the result must not depend on when)
    assert memory.attribute(15.1, -8.0, grace=5.0, refund_of=b"s").open[0].revenue == 30.0
    refunded = memory.attribute(6.0, -30.0, refund_of=b"s")
    assert refunded.open[0].revenue == 0.0 and refunded.sales == ()
    assert refunded.attribute(7.0, -5.0, refund_of=b"s").open[0].revenue == 0.0


def test_erasure_drops_open_windows_and_keeps_nothing():
    engine = ScoringEngine(config_with(everyone()), refit=False)
    feed(engine, [consent("a", 0), purchase("a", 0, 100.0)])
    [trigger] = triggers(feed(engine, [consent("b", 0), purchase("b", 0, 80.0)]))
    outputs = feed(engine, [customer_event("a", 2, "erasure"), purchase("z", 40)])
    assert "a" not in engine.states
    assert [o for o in outcomes(outputs) if o["customer_id"] == "a"] == []
    # ... but the lost window is counted by arm, so attrition between the arms shows
    arm_a = assign_arm(engine.config.programmes.salt, "a", "everyone", 0.3)
    [result] = outcomes(outputs, "programme_result")  # b's window closed
    assert ProgrammeResult.model_validate(result).erased_windows == {
        "treatment": int(arm_a == "treatment"),
        "control": int(arm_a == "control"),
    }
    [pooled] = pooled_summary([engine.scorer.programmes])
    assert pooled["erased_windows"] == result["erased_windows"]
    assert trigger["customer_id"] == "b"


def test_a_low_auc_alarm_freezes_triggers_and_says_so():
    engine = ScoringEngine(config_with(everyone(), freeze_min_labels=0), refit=False)
    book = engine.scorer.programmes
    event = book.on_health({"rolling_auc": 0.52, "labels": 500.0, "drifts_detected": 0}, 0.0)
    assert event["status"] == "frozen" and "AUC 0.520" in event["detail"]
    assert triggers(feed(engine, [consent("a", 0), purchase("a", 0)])) == []
    event = book.on_health({"rolling_auc": 0.8, "labels": 900.0, "drifts_detected": 0}, DAY)
    assert event["status"] == "unfrozen"
    assert len(triggers(feed(engine, [consent("b", 1), purchase("b", 1)]))) == 1


def test_an_auc_hovering_at_the_freeze_level_does_not_freeze_and_resume_every_day():
    config = config_with(everyone(), freeze_min_labels=0, freeze_below_auc=0.6)
    book = ScoringEngine(config, refit=False).scorer.programmes
    statuses = []
    for day, auc in enumerate([0.61, 0.59, 0.605, 0.598, 0.615, 0.621, 0.61, 0.599]):
        event = book.on_health({"rolling_auc": auc, "labels": 5000.0}, day * DAY)
        statuses.append(event["status"] if event else None)
    # frozen below 0.60; resumes only at 0.62 (0.60 + the 0.02 margin); frozen again below 0.60
    assert statuses == [None, "frozen", None, None, None, "unfrozen", None, "frozen"]


def test_a_drift_alarm_freezes_triggers_for_a_while():
    engine = ScoringEngine(
        config_with(everyone(), freeze_days_after_drift=10, freeze_min_labels=0), refit=False
    )
    book = engine.scorer.programmes
    assert book.on_health({"rolling_auc": 0.8, "labels": 50.0, "drifts_detected": 1}, 0.0)
    assert book.frozen(5 * DAY) is not None and book.frozen(11 * DAY) is None


def test_a_programme_clearly_below_its_cost_stops_and_says_so():
    engine = ScoringEngine(
        config_with(
            everyone(cost_per_contact=5.0, uplift_prior=0.9),
            stop_min_control=5,
            learn_min_windows=5,
        ),
        refit=False,
    )
    # Nobody buys again: incremental revenue 0 +- 0, far below the cost of 5.
    customers = [f"c{i:03d}" for i in range(60)]
    events = [consent(c, 0) for c in customers] + [purchase(c, 0, 100.0) for c in customers]
    fired = triggers(feed(engine, events))
    assert len(fired) == 60
    outputs = feed(engine, [purchase("late", 30)])
    [result] = outcomes(outputs, "programme_result")
    assert result["status"] == "stopped" and "clearly below the cost" in result["detail"]
    assert result["uplift"] < 0.9  # the measurement pulled the prior down
    more = [consent("new", 31), purchase("new", 31, 100.0)]
    assert triggers(feed(engine, more)) == []


def test_the_book_survives_a_checkpoint_and_windows_still_close():
    config = config_with(everyone())
    engine = ScoringEngine(config, refit=False)
    feed(engine, [consent("a", 0), purchase("a", 0, 100.0), purchase("a", 3, 7.0)])
    blob = checkpoint_bytes(engine)
    states = {cid: CustomerState.from_bytes(s.to_bytes()) for cid, s in engine.states.items()}
    restored = ScoringEngine(config, states=states, refit=False)
    restore_checkpoint(restored, blob)
    assert len(restored.scorer.programmes.timers) == 1  # rebuilt from the open window
    closing = [purchase("z", 40)]
    expected = outcomes(feed(engine, closing))
    assert outcomes(feed(restored, [dict(closing[0])])) == expected
    assert expected[0]["revenue"] == 7.0
    book = pickle.loads(pickle.dumps(restored.scorer.programmes))
    assert book.triggers == engine.scorer.programmes.triggers
    assert len(book.timers) == 0  # timers are not pickled: states rebuild them


def test_partition_books_pool_to_the_estimate_of_all_windows():
    config = config_with(everyone(attribution_days=1, cooldown_days=1))
    books = []
    for part in ("p0", "p1"):
        engine = ScoringEngine(config, refit=False, scope=part)
        customers = [f"{part}-{i}" for i in range(40)]
        feed(engine, [consent(c, 0) for c in customers])
        feed(engine, [purchase(c, 0, 10.0 + i) for i, c in enumerate(customers)])
        feed(engine, [purchase(c, 0.5, float(i % 7)) for i, c in enumerate(customers)])
        feed(engine, [purchase("z", 3)])
        books.append(engine.scorer.programmes)
    [row] = pooled_summary(books)
    treated = books[0].arms["everyone"][0].merged(books[1].arms["everyone"][0])
    control = books[0].arms["everyone"][1].merged(books[1].arms["everyone"][1])
    assert row["closed"] == {"treatment": treated.n, "control": control.n}
    assert treated.n + control.n == 80
    assert row["incremental_revenue_per_customer"] == estimate(treated, control).per_customer
    assert row["triggers"]["treatment"] + row["triggers"]["control"] >= 80


def test_state_with_programmes_round_trips():
    engine = ScoringEngine(config_with(everyone()), refit=False)
    feed(engine, [consent("a", 0), purchase("a", 0, 100.0)])
    state = engine.states["a"]
    assert state.programmes is not None and len(state.programmes.open) == 1
    assert CustomerState.from_bytes(state.to_bytes()) == state


def test_only_first_exposures_are_pooled_and_repeats_are_reported():
    engine = ScoringEngine(config_with(everyone(cooldown_days=20)), refit=False)
    outputs = feed(
        engine,
        [consent("a", 0), purchase("a", 0, 50.0), purchase("a", 21, 50.0), purchase("z", 60)],
    )
    first, repeat = outcomes(outputs)
    assert first["first_exposure"] is True and repeat["first_exposure"] is False
    assert first["revenue"] == 0.0 and repeat["revenue"] == 0.0
    [result] = outcomes(outputs, "programme_result")
    assert result["treated"] + result["control"] == 1


def test_a_catch_up_rescore_far_behind_the_clock_triggers_nothing():
    config = config_with(everyone(cooldown_days=1, attribution_days=1))
    config = config.model_copy(update={"rescore_after_days": (14, 30)})
    engine = ScoringEngine(config, refit=False)
    feed(engine, [consent("a", 0), purchase("a", 0, 50.0)])
    # the clock creeps day by day: the day-14 re-score is timely and may trigger
    timely = feed(engine, [interaction("z", day) for day in range(1, 16)])
    rescored = [o for o in timely if o.stream is Stream.SCORES and o.key == "a"]
    assert rescored and triggers(timely)[0]["cause"] == "due:2024-01-15"
    # a jump of the clock past the day-30 re-score: scored, not offered anything
    jumped = feed(engine, [interaction("z", 90)])
    assert [o for o in jumped if o.stream is Stream.SCORES and o.key == "a"]
    assert triggers(jumped) == []


def test_a_drift_freeze_ends_with_an_unfrozen_event():
    engine = ScoringEngine(
        config_with(everyone(), freeze_days_after_drift=10, freeze_min_labels=0), refit=False
    )
    book = engine.scorer.programmes
    healthy = {"rolling_auc": 0.8, "labels": 50.0}
    assert book.on_health({**healthy, "drifts_detected": 1}, 0.0)["status"] == "frozen"
    assert book.on_health({**healthy, "drifts_detected": 1}, 5 * DAY) is None
    assert book.on_health({**healthy, "drifts_detected": 1}, 11 * DAY)["status"] == "unfrozen"


def test_results_of_the_same_day_have_distinct_ids():
    engine = ScoringEngine(config_with(everyone(attribution_days=1)), refit=False)
    customers = [f"c{i}" for i in range(12)]
    feed(engine, [consent(c, 0) for c in customers] + [purchase(c, 0) for c in customers])
    first = outcomes(feed(engine, [purchase("z", 2.1)]), "programme_result")
    feed(engine, [consent(c, 2.2) for c in ("x", "y")] + [purchase(c, 2.2) for c in ("x", "y")])
    second = outcomes(feed(engine, [purchase("z", 4.1)]), "programme_result")
    assert first and second and first[0]["event_id"] != second[0]["event_id"]


def test_the_margin_counts_once_and_the_stake_is_revenue_like_the_outcomes():
    config = config_with(everyone()).model_copy(update={"margin_rate": 0.3})
    engine = ScoringEngine(config, refit=False)
    outputs = feed(engine, [consent("a", 0), purchase("a", 0, 100.0)])
    [trigger] = triggers(outputs)
    [score] = [o.value for o in outputs if o.stream is Stream.SCORES][-1:]
    # growth: the stake is the CLV's revenue (the CLV before its margin rate) ...
    assert trigger["value_at_stake"] == pytest.approx(score["clv"] / 0.3, rel=1e-5)
    # ... and the margin applies once to the expected incremental value
    value = 0.3 * 0.5 * trigger["value_at_stake"] - 1.0
    assert trigger["expected_incremental_value"] == pytest.approx(value, abs=1e-5)


def test_a_programme_the_measurement_cut_down_says_so_while_active():
    config = config_with(everyone(uplift_prior=0.9), stop_min_control=10**6, learn_min_windows=5)
    engine = ScoringEngine(config, refit=False)
    customers = [f"c{i:03d}" for i in range(60)]  # nobody buys again: no effect
    feed(engine, [consent(c, 0) for c in customers] + [purchase(c, 0, 100.0) for c in customers])
    [result] = outcomes(feed(engine, [purchase("late", 30)]), "programme_result")
    assert result["status"] == "active" and result["uplift"] <= 0.45
    assert result["detail"].startswith("learned uplift ") and "prior 0.900" in result["detail"]


def _stopped_engine(config: ScoringConfig) -> ScoringEngine:
    """An engine whose programme `everyone` stopped (nobody bought again)."""
    engine = ScoringEngine(config, refit=False)
    customers = [f"c{i:03d}" for i in range(60)]
    feed(engine, [consent(c, 0) for c in customers] + [purchase(c, 0, 100.0) for c in customers])
    feed(engine, [purchase("late", 30)])
    assert engine.scorer.programmes.stopped("everyone")
    return engine


def _restored(engine: ScoringEngine, config: ScoringConfig) -> ScoringEngine:
    restored = ScoringEngine(config, states=dict(engine.states), refit=False)
    restore_checkpoint(restored, checkpoint_bytes(engine))
    return restored


def test_a_restart_applies_changed_settings_and_keeps_what_was_learned():
    stopping = {"stop_min_control": 5, "learn_min_windows": 5}
    before = config_with(everyone(cost_per_contact=5.0, uplift_prior=0.9), **stopping)
    engine = _stopped_engine(before)
    learned = engine.scorer.programmes.uplift("everyone")
    # the same settings: nothing changes (a restore continues as if never stopped)
    same = _restored(engine, before)
    assert same.scorer.programmes.stopped("everyone")
    assert same.scorer.programmes.uplift("everyone") == learned
    # a new programme, a withdrawn one, a budget, the churn model switched on
    fresh = everyone(id="fresh", goal="growth", daily_budget=1.0)
    after = config_with(fresh, **stopping).model_copy(update={"churn_model": True})
    restored = _restored(engine, after)
    scorer = restored.scorer
    assert scorer.config is restored.config and scorer.programmes.config is after.programmes
    assert scorer.churn is not None and restored._learning.model is scorer.churn
    measured = engine.scorer.programmes.arms["everyone"][1].n
    assert measured > 0 and scorer.programmes.arms["everyone"][1].n == measured  # kept
    fired = triggers(
        feed(restored, [consent(c, 40) for c in "xyz"] + [purchase(c, 40, 100.0) for c in "xyz"])
    )
    assert {t["programme_id"] for t in fired} == {"fresh"}  # never the withdrawn one
    assert sum(t["cost"] for t in fired) <= 1.0  # the new daily budget holds


def test_a_stop_is_tested_again_when_the_cost_per_contact_changes():
    stopping = {"stop_min_control": 5, "learn_min_windows": 5}
    engine = _stopped_engine(config_with(everyone(cost_per_contact=5.0), **stopping))
    # still clearly below a cost of 4: stays stopped; a free programme cannot lose
    dearer = _restored(engine, config_with(everyone(cost_per_contact=4.0), **stopping))
    assert dearer.scorer.programmes.stopped("everyone")
    free = _restored(engine, config_with(everyone(cost_per_contact=0.0), **stopping))
    assert free.scorer.programmes.stopped("everyone") is None


def test_partitions_test_their_stops_at_a_raised_confidence():
    def stopped(config: ScoringConfig) -> bool:
        book = ProgrammeBook(config.programmes, config.margin_rate)
        for i in range(100):  # treated bring 2 more than control, for a cost of 4
            for arm, revenue in (("treatment", 22.0 + i % 10), ("control", 20.0 + i % 10)):
                cost = 4.0 if arm == "treatment" else 0.0
                window = Attribution(f"t{i}{arm}", "everyone", arm, 0.0, DAY, 0.0, 100.0, cost,
                                     True, revenue)  # fmt: skip
                book.observe(f"c{i}{arm}", window)
        book.results(1)
        return book.stopped("everyone") is not None

    config = config_with(everyone(cost_per_contact=4.0), stop_min_control=50)
    assert stopped(config)  # one scope at 99%: the interval lies below the cost
    assert config.for_partition(4).programmes.stop_confidence == pytest.approx(0.9975)
    strict = config.programmes.model_copy(update={"stop_confidence": 1 - 1e-12})
    assert not stopped(config.model_copy(update={"programmes": strict}))


def test_a_checkpoint_from_before_programmes_restores_with_a_fresh_book():
    config = config_with(everyone())
    engine = ScoringEngine(config, refit=False)
    feed(engine, [purchase("a", 0)])
    del engine.scorer.programmes  # what an older version pickled
    restored = ScoringEngine(config, states=dict(engine.states), refit=False)
    restore_checkpoint(restored, checkpoint_bytes(engine))
    assert restored.scorer.programmes is not None
    assert len(triggers(feed(restored, [consent("b", 1), purchase("b", 1, 90.0)]))) == 1


# -- guardrails over random event sequences -------------------------------------------

CUSTOMERS = tuple("abcdefgh")
KINDS = ("purchase", "complaint", "login", "grant", "withdraw", "refund", "erase")
# weighted towards what triggers, so that days with more eligible moments than the caps
# and budgets allow are common
LIKELY_KINDS = ("purchase",) * 4 + ("complaint",) * 2 + ("login",) * 2 + KINDS[3:]

event_strategy = st.tuples(
    st.sampled_from(CUSTOMERS),
    st.one_of(  # days after the previous event (or before): mostly busy days
        st.floats(min_value=-0.3, max_value=0.4), st.floats(min_value=-1.2, max_value=1.5)
    ),
    st.sampled_from(LIKELY_KINDS),
    st.floats(min_value=1.0, max_value=300.0),
)


def build(sequence, consenting: tuple[str, ...] = ()) -> list[dict]:
    day, events = 0.0, [consent(customer, 0.0) for customer in consenting]
    for customer, gap, kind, amount in sequence:
        day = max(0.0, day + gap)
        if kind == "purchase":
            events.append(purchase(customer, day, amount))
        elif kind == "refund":
            events.append(refund(customer, day, amount / 10))
        elif kind in ("complaint", "login"):
            events.append(interaction(customer, day, kind))
        elif kind == "erase":
            events.append(customer_event(customer, day, "erasure"))
        else:
            events.append(consent(customer, day, kind == "grant"))
    return events


sequences = st.lists(event_strategy, min_size=20, max_size=150)
guardrails = st.fixed_dictionaries(
    {
        "control_share": st.sampled_from([0.01, 0.3, 0.5]),  # 0.01: (almost) all treated
        "max_contacts": st.sampled_from([1, 2, 3]),
        "contact_window_days": st.sampled_from([3, 5, 10]),
        "daily_budget": st.sampled_from([3.0, 7.0, None]),  # one or two treated a day
        "consenting": st.sampled_from([True, True, True, False]),  # all consent at the start
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequences, guardrails)
def test_caps_cooldowns_budgets_and_consent_are_never_violated(sequence, guardrail):
    share = guardrail["control_share"]
    frequent = everyone(
        id="frequent",
        cooldown_days=2,
        attribution_days=2,
        cost_per_contact=3.0,
        daily_budget=guardrail["daily_budget"],
        control_share=share,
    )
    service = everyone(
        id="service",
        cooldown_days=3,
        attribution_days=3,
        cost_per_contact=1.0,
        eligibility=Eligibility(event_kinds=frozenset({"complaint"})),
        uplift_prior=0.9,
        control_share=share,
    )
    daily = everyone(  # a short cooldown: the contact cap binds before it
        id="daily",
        cooldown_days=1,
        attribution_days=1,
        cost_per_contact=0.5,
        eligibility=Eligibility(event_kinds=frozenset({"login"})),
        uplift_prior=0.7,
        control_share=share,
    )
    max_contacts, window_days = guardrail["max_contacts"], guardrail["contact_window_days"]
    config = config_with(
        frequent,
        service,
        daily,
        max_contacts=max_contacts,
        contact_window_days=window_days,
        lateness=DAY,  # events up to a day out of order are applied
    )
    engine = ScoringEngine(config, refit=False)
    events = build(sequence, CUSTOMERS if guardrail["consenting"] else ())
    granted: dict[str, tuple[float, bool]] = {}  # (time set, consent)
    contacts: dict[str, list[float]] = defaultdict(list)
    last: dict[tuple[str, str], float] = {}
    spent: dict[tuple[str, int], float] = defaultdict(float)
    for number, event in enumerate(events, 1):
        customer = event["customer_id"]
        outputs = engine.process_raw(raw(event), {"source": "file", "file": "t", "line": number})
        if not outputs or any(o.stream is Stream.DEAD_LETTER for o in outputs):
            continue  # not applied: too late, or dropped (dated before the customer's erasure)
        if event["event_type"] == "customer" and event["kind"] == "consent":
            # a setting older than the one held changes nothing (a withdrawal wins ties)
            setting = (_epoch(event["occurred_at"]), not event["consent"]["marketing_email"])
            if customer not in granted or setting >= granted[customer]:
                granted[customer] = setting
        if event["event_type"] == "customer" and event["kind"] == "erasure":
            granted.pop(customer, None)  # nothing kept: a new start needs new consent
            contacts.pop(customer, None)
            last = {k: v for k, v in last.items() if k[0] != customer}
        for trigger in triggers(outputs):
            at = _epoch(trigger["occurred_at"])
            who, programme = trigger["customer_id"], trigger["programme_id"]
            assert granted.get(who, (0, True))[1] is False, "triggered without consent"
            window = [t for t in contacts[who] if t > at - window_days * DAY]
            assert len(window) < max_contacts, "contact cap exceeded"
            if (who, programme) in last:
                cooldown = config.programmes.programme(programme).cooldown_days
                assert at - last[(who, programme)] >= cooldown * DAY, "cooldown broken"
            contacts[who].append(at)
            last[(who, programme)] = at
            spent[(programme, int(at // DAY))] += trigger["cost"]
    for (programme, _), cost in spent.items():
        budget = config.programmes.programme(programme).daily_budget
        assert budget is None or cost <= budget, "daily budget overspent"


def _epoch(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()
