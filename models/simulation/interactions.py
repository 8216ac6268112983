"""Interactions, carrying the churn signal the way real data does.

Engagement e(t) is 1 while a customer is alive, fades linearly to 0.3 over the
60 days before dropout and is 0.05 after it. Logins and e-mail opens scale with
e(t); support tickets and complaints rise in the 45 days before dropout; survey
and review scores fall with e(t); unsubscribes cluster in the weeks after dropout.

>>> engagement(np.array([0.0, 70.0, 100.0, 101.0]), np.full(4, 100.0)).round(2).tolist()
[1.0, 0.65, 0.05, 0.05]
"""

from __future__ import annotations

import numpy as np

from models.simulation.population import Population
from models.simulation.purchases import Purchases
from models.simulation.sampling import categorical_rows_chunked, poisson_segments
from models.simulation.timeline import Code, EventBatch

FADE_DAYS = 60.0
FADE_FLOOR = 0.3
AFTER_DROPOUT = 0.05
MINUTE = 1.0 / 1440.0

SESSION_SHARE = 0.5  # repeat purchases preceded by a login and page views
PAGE_VIEWS_PER_LOGIN = 0.8
CART_ABANDON_SHARE = 0.1
EMAIL_FIRST_SEND, EMAIL_INTERVAL = 2.0 + 9.0 / 24.0, 7.0
EMAIL_OPEN_DELAY_DAYS = 0.25
CLICK_GIVEN_OPEN = 0.2
SUPPORT_PER_DAY, COMPLAINT_PER_DAY = 0.002, 0.0004
SUPPORT_RISE, COMPLAINT_RISE, SERVICE_AFTER_DROPOUT = 4.0, 6.0, 0.3
SERVICE_WARNING_DAYS = 45.0
SURVEY_SHARE, REVIEW_SHARE = 0.25, 0.06


def engagement(time: np.ndarray, dropout: np.ndarray) -> np.ndarray:
    """e(t): 1 alive, linear fade to FADE_FLOOR before dropout, AFTER_DROPOUT after."""
    fade = np.clip((dropout - time) / FADE_DAYS, 0.0, 1.0)
    return np.where(time >= dropout, AFTER_DROPOUT, FADE_FLOOR + (1.0 - FADE_FLOOR) * fade)


def satisfaction(time: np.ndarray, dropout: np.ndarray) -> np.ndarray:
    """Probability behind survey and review scores: 0.8 when engaged, ~0.33 after dropout."""
    return 0.3 + 0.5 * engagement(time, dropout)


def purchase_sessions(
    rng: np.random.Generator, people: Population, bought: Purchases
) -> list[EventBatch]:
    """A login and page views of the purchase's category shortly before repeat purchases."""
    repeat = bought.time > people.acquired[bought.customer]
    chosen = np.flatnonzero(repeat & (rng.random(bought.size) < SESSION_SHARE))
    customer, bought_at = bought.customer[chosen], bought.time[chosen]
    login = np.maximum(
        bought_at - rng.uniform(2.0, 40.0, chosen.size) * MINUTE,
        people.acquired[customer] + MINUTE,
    )
    views = 1 + rng.poisson(PAGE_VIEWS_PER_LOGIN, chosen.size)
    owner = np.repeat(np.arange(chosen.size), views)
    view_time = login[owner] + rng.random(owner.size) * (bought_at - login)[owner]
    return [
        EventBatch(Code.LOGIN, customer, login),
        EventBatch(
            Code.PAGE_VIEW, customer[owner], view_time, category=bought.category[chosen][owner]
        ),
    ]


def browsing(rng: np.random.Generator, people: Population, days: int) -> list[EventBatch]:
    """Logins at a personal rate x e(t), with page views and some abandoned carts."""
    end = np.full(people.size, float(days))
    alive_until = np.minimum(people.dropout, end)
    owner, time = poisson_segments(rng, people.login_rate, people.acquired, alive_until)
    kept = rng.random(owner.size) < engagement(time, people.dropout[owner])
    owner, time = owner[kept], time[kept]
    late_owner, late_time = poisson_segments(
        rng, people.login_rate * AFTER_DROPOUT, people.dropout, end
    )
    customer = np.concatenate([owner, late_owner])
    login = np.concatenate([time, late_time])

    views = rng.poisson(PAGE_VIEWS_PER_LOGIN, login.size)
    view_of = np.repeat(np.arange(login.size), views)
    view_time = login[view_of] + rng.uniform(0.5, 20.0, view_of.size) * MINUTE
    view_customer = customer[view_of]
    abandoned = np.flatnonzero(rng.random(login.size) < CART_ABANDON_SHARE)
    abandon_time = login[abandoned] + rng.uniform(5.0, 30.0, abandoned.size) * MINUTE
    preference = people.preference
    return [
        EventBatch(Code.LOGIN, customer, login),
        EventBatch(
            Code.PAGE_VIEW,
            view_customer,
            view_time,
            category=categorical_rows_chunked(rng, preference, view_customer),
        ),
        EventBatch(
            Code.CART_ABANDON,
            customer[abandoned],
            abandon_time,
            category=categorical_rows_chunked(rng, preference, customer[abandoned]),
        ),
    ]


def email_campaigns(rng: np.random.Generator, people: Population, days: int) -> list[EventBatch]:
    """A weekly campaign to consenting customers; opens ~ propensity x e(send)."""
    email_stop = people.email_stop
    opened_by, opened_at, campaign = [], [], []
    number = 0
    send = EMAIL_FIRST_SEND
    while send < days:
        eligible = np.flatnonzero((people.acquired < send) & (email_stop > send))
        p_open = people.email_propensity[eligible] * engagement(
            np.full(eligible.size, send), people.dropout[eligible]
        )
        opener = eligible[rng.random(eligible.size) < p_open]
        opened_by.append(opener)
        opened_at.append(send + rng.exponential(EMAIL_OPEN_DELAY_DAYS, opener.size))
        campaign.append(np.full(opener.size, number, dtype=np.int64))
        number += 1
        send += EMAIL_INTERVAL
    customer = np.concatenate([np.zeros(0, dtype=np.int64), *opened_by])
    open_time = np.concatenate([np.zeros(0), *opened_at])
    campaign_of = np.concatenate([np.zeros(0, dtype=np.int64), *campaign])
    clicked = np.flatnonzero(rng.random(customer.size) < CLICK_GIVEN_OPEN)
    click_time = open_time[clicked] + (0.5 + rng.exponential(3.0, clicked.size)) * MINUTE
    return [
        EventBatch(Code.EMAIL_OPEN, customer, open_time, ref=campaign_of),
        EventBatch(Code.EMAIL_CLICK, customer[clicked], click_time, ref=campaign_of[clicked]),
    ]


def service_contacts(rng: np.random.Generator, people: Population, days: int) -> list[EventBatch]:
    """Support tickets and complaints: rare, several times likelier before dropout."""
    end = np.full(people.size, float(days))
    warning = people.dropout - SERVICE_WARNING_DAYS
    segments = (
        (people.acquired, np.minimum(warning, end), 1.0),
        (np.maximum(people.acquired, warning), np.minimum(people.dropout, end), None),
        (people.dropout, end, SERVICE_AFTER_DROPOUT),
    )
    batches = []
    for code, base, rise in (
        (Code.SUPPORT_TICKET, SUPPORT_PER_DAY, SUPPORT_RISE),
        (Code.COMPLAINT, COMPLAINT_PER_DAY, COMPLAINT_RISE),
    ):
        for lo, hi, factor in segments:
            rate = np.full(people.size, base * (rise if factor is None else factor))
            owner, time = poisson_segments(rng, rate, lo, hi)
            batches.append(EventBatch(code, owner, time))
    return batches


def feedback(rng: np.random.Generator, people: Population, bought: Purchases) -> list[EventBatch]:
    """Surveys (0-10) and reviews (1-5 stars) after some purchases, lower when fading."""
    batches = []
    for code, share, delay, scale in (
        (Code.SURVEY, SURVEY_SHARE, (0.5, 4.0), 10),
        (Code.REVIEW, REVIEW_SHARE, (3.0, 21.0), 4),
    ):
        chosen = np.flatnonzero(rng.random(bought.size) < share)
        customer = bought.customer[chosen]
        time = bought.time[chosen] + rng.uniform(*delay, chosen.size)
        score = rng.binomial(scale, satisfaction(time, people.dropout[customer]))
        if code == Code.REVIEW:
            score = score + 1
        category = bought.category[chosen] if code == Code.REVIEW else None
        batches.append(EventBatch(code, customer, time, value=score, category=category))
    return batches


def unsubscribes(people: Population) -> EventBatch:
    """The unsubscribe clicks drawn with the population."""
    customer = np.flatnonzero(np.isfinite(people.unsubscribe))
    return EventBatch(Code.UNSUBSCRIBE, customer, people.unsubscribe[customer])
