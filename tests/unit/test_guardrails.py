"""Programme guardrails, deterministically: the daily budget (per event-time day, both
arms blocked once it is spent, reset the next day, kept however late events may
arrive) and the contact cap (across programmes and arms, over a sliding window)."""

from __future__ import annotations

from collections import Counter, defaultdict

from models.engine import ScoringEngine
from models.programmes.book import SPEND_DAYS_BEHIND_WATERMARK, ProgrammeBook, spend_days_for
from models.programmes.catalogue import Eligibility, ProgrammesConfig
from models.programmes.decision import assign_arm
from models.programmes.memory import Attribution
from tests.factories import interaction, purchase
from tests.unit.test_programmes import DAY, _epoch, config_with, consent, everyone, feed, triggers

SALT = ProgrammesConfig().salt


def budgeted(**changes):
    """Costs 2 per treated contact, 6 a day: three treatment triggers a day."""
    options = {
        "id": "budgeted",
        "cost_per_contact": 2.0,
        "daily_budget": 6.0,
        "cooldown_days": 1,
        "attribution_days": 1,
    }
    return everyone(**{**options, **changes})


def fallback():
    """Unbudgeted and worth less than `budgeted`: wins only when `budgeted` is blocked,
    and then records why `budgeted` lost."""
    return everyone(id="fallback", uplift_prior=0.3, cooldown_days=1, attribution_days=1)


def treated(count: int, programme_id: str = "budgeted", share: float = 0.01) -> list[str]:
    """`count` customers in the treatment arm of the programme."""
    names = (f"c{i:03d}" for i in range(10_000))
    chosen = (c for c in names if assign_arm(SALT, c, programme_id, share) == "treatment")
    return [next(chosen) for _ in range(count)]


def day_of_trigger(trigger: dict) -> int:
    return int(_epoch(trigger["occurred_at"]) // DAY)


def test_a_spent_daily_budget_blocks_both_arms_with_the_reason_and_resets_the_next_day():
    engine = ScoringEngine(config_with(budgeted(), fallback()), refit=False)
    customers = [f"c{i:02d}" for i in range(20)]
    arms = [assign_arm(SALT, c, "budgeted", 0.3) for c in customers]
    third_treated = [i for i, arm in enumerate(arms) if arm == "treatment"][2]
    served = customers[: third_treated + 1]
    # the scenario has control customers before and after the budget runs out
    assert "control" in arms[:third_treated] and "control" in arms[third_treated + 1 :]

    feed(engine, [consent(c, 0) for c in customers])
    fired = triggers(
        feed(engine, [purchase(c, 0.1 + i / 100, 100.0) for i, c in enumerate(customers)])
    )

    assert [t["customer_id"] for t in fired] == customers  # everyone gets something
    first = [t for t in fired if t["programme_id"] == "budgeted"]
    assert [t["customer_id"] for t in first] == served
    assert Counter(t["arm"] for t in first) == Counter(arms[: third_treated + 1])
    # control contacts cost nothing; the three treated ones spend the budget exactly
    assert [t["cost"] for t in first if t["arm"] == "control"] == [0.0] * (third_treated - 2)
    assert sum(t["cost"] for t in first) == 6.0
    # the rest, control customers included, are blocked and the reason is recorded
    rest = fired[len(served) :]
    assert {t["programme_id"] for t in rest} == {"fallback"}
    assert {t["runner_up"]["programme_id"] for t in rest} == {"budgeted"}
    assert {t["runner_up"]["why_lost"] for t in rest} == {"daily budget spent"}
    assert {day_of_trigger(t) for t in fired} == {day_of_trigger(fired[0])}

    # the next event-time day has its budget again (cooldowns of a day have passed)
    again = triggers(
        feed(engine, [purchase(c, 1.5 + i / 100, 100.0) for i, c in enumerate(customers)])
    )
    second = [t for t in again if t["programme_id"] == "budgeted"]
    assert [t["customer_id"] for t in second] == served
    assert sum(t["cost"] for t in second) == 6.0
    assert day_of_trigger(second[0]) == day_of_trigger(fired[0]) + 1


def test_without_another_programme_a_spent_budget_triggers_nothing():
    engine = ScoringEngine(config_with(budgeted(control_share=0.01)), refit=False)
    customers = treated(8)
    feed(engine, [consent(c, 0) for c in customers])
    fired = triggers(feed(engine, [purchase(c, 0.5, 100.0) for c in customers]))
    assert [t["customer_id"] for t in fired] == customers[:3]
    assert engine.scorer.programmes.budget_left(budgeted(), day_of_trigger(fired[0])) == 0.0


def test_the_budget_holds_when_events_may_be_ten_days_late():
    """Allowed lateness is unbounded in the config: spend must be kept as long as an
    event for its day can still be applied (it was forgotten 7 days after the day of
    a later trigger, and a day spent twice: 12 of a budget of 7)."""
    programme = budgeted(control_share=0.01, cost_per_contact=3.0, daily_budget=7.0)
    engine = ScoringEngine(config_with(programme, lateness=10 * DAY), refit=False)
    customers = treated(81)
    feed(engine, [consent(c, 0) for c in customers])
    spent: dict[int, float] = defaultdict(float)

    def buy(day: float, who: list[str]) -> None:
        for trigger in triggers(feed(engine, [purchase(c, day, 100.0) for c in who])):
            spent[day_of_trigger(trigger)] += trigger["cost"]

    for day in range(25):  # every day's budget is spent, by three buyers a day
        buy(day + 0.1, customers[3 * day : 3 * day + 3])
    buy(15.5, customers[75:78])  # nine days late: still applied, but day 15 is spent
    assert len(spent) == 25
    assert max(spent.values()) == 6.0  # two contacts of 3 fit a budget of 7
    # spend far behind the watermark (day 14) is forgotten: the book stays small
    book = engine.scorer.programmes
    first_kept = min(day for _, day in book.spent)
    # kept: as far back as a catch-up re-score can trigger (a day plus the lateness)
    assert first_kept == min(spent) + 14 - spend_days_for(10 * DAY) == min(spent) + 2


def test_spend_is_forgotten_only_behind_the_watermark_and_forgotten_days_count_as_spent():
    programme = budgeted()
    book = ProgrammeBook(ProgrammesConfig(catalogue=(programme,)))
    attribution = Attribution(
        "t", "budgeted", "treatment", 100 * DAY, 101 * DAY, 0, 0, 2.0, True, 0
    )
    book.record("a", attribution)
    assert book.budget_left(programme, 100) == 4.0
    list(book.due_customers((100 + SPEND_DAYS_BEHIND_WATERMARK) * DAY))
    assert book.budget_left(programme, 100) == 4.0  # a re-score may still be this late
    list(book.due_customers((101 + SPEND_DAYS_BEHIND_WATERMARK) * DAY))
    assert book.spent == {}
    assert book.budget_left(programme, 100) == 0.0  # forgotten: may have been spent
    assert book.budget_left(programme, 99) == 0.0
    assert book.budget_left(programme, 101) == 6.0


def test_an_old_checkpoint_without_spent_from_counts_days_before_its_oldest_spend_as_spent():
    programme = budgeted()
    book = ProgrammeBook(ProgrammesConfig(catalogue=(programme,)))
    book.spent = {("budgeted", 50): 2.0}
    state = book.__getstate__()
    del state["spent_from"]
    old = ProgrammeBook.__new__(ProgrammeBook)
    old.__setstate__(state)
    assert old.budget_left(programme, 49) == 0.0
    assert old.budget_left(programme, 50) == 4.0


# -- the contact cap ------------------------------------------------------------------


def capped(*programmes):
    return config_with(*programmes, max_contacts=2, contact_window_days=10)


def customers_in(arm: str, programme_id: str = "everyone", share: float = 0.3) -> str:
    return next(
        c for c in (f"c{i}" for i in range(100)) if assign_arm(SALT, c, programme_id, share) == arm
    )


def test_the_contact_cap_holds_within_its_window_and_lifts_after_it():
    programme = everyone(cooldown_days=1, attribution_days=1)  # cooldowns never block here
    for arm in ("treatment", "control"):  # a control contact counts as a contact
        customer = customers_in(arm)
        engine = ScoringEngine(capped(programme), refit=False)
        days = [0, 2, 4, 8, 10.5, 11, 12.5]
        events = [consent(customer, 0)] + [purchase(customer, d, 100.0) for d in days]
        fired = triggers(feed(engine, events))
        assert {t["arm"] for t in fired} == {arm}
        at = [(_epoch(t["occurred_at"]) - _epoch(fired[0]["occurred_at"])) / DAY for t in fired]
        # days 4 and 8: two contacts in (-6, 4] and (-2, 8]; day 10.5: only day 2's in
        # (0.5, 10.5]; day 11: 2 and 10.5 in (1, 11]; day 12.5: only 10.5 in (2.5, 12.5]
        assert at == [0, 2, 10.5, 12.5]


def test_the_contact_cap_counts_contacts_of_every_programme():
    service = everyone(
        id="service",
        cooldown_days=1,
        attribution_days=1,
        uplift_prior=0.9,
        eligibility=Eligibility(event_kinds=frozenset({"complaint"})),
    )
    programme = everyone(cooldown_days=1, attribution_days=1)
    engine = ScoringEngine(capped(programme, service), refit=False)
    events = [
        consent("a", 0),
        purchase("a", 0, 100.0),  # everyone
        interaction("a", 1, "complaint"),  # service
        purchase("a", 3, 100.0),  # capped, though its own cooldown is over
        interaction("a", 4, "complaint"),  # capped
        purchase("a", 10.5, 100.0),  # the day-0 contact has left the window
    ]
    fired = triggers(feed(engine, events))
    assert [t["programme_id"] for t in fired] == ["everyone", "service", "everyone"]
    assert fired[-1]["occurred_at"].startswith("2024-01-11T12")
