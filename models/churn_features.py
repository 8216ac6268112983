"""The churn model's features of one customer at one instant, and their plain names.

Features are a tuple in `FEATURES` order (compact in snapshots); `as_dict` gives the
River-style dict. Missing information has a neutral, documented value.

>>> from models.state import CustomerState
>>> s = CustomerState.new(0.0)
>>> s.add_purchase(day=0, amount=20.0)
>>> f = churn_features(s, at=50 * 86_400.0, p_alive=0.9, p_no_purchase=0.4)
>>> dict(zip(FEATURES, f))["recency_days"], dict(zip(FEATURES, f))["days_since_login"]
(50.0, 365.0)
>>> describe("complaints_30d", 2.0), describe("days_since_login", 41.0)
('2 complaints in 30 days', 'no login for 41 days')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from models.engagement import DAYS_SINCE_KINDS, MAX_RECENT_ISSUES
from models.timeline import SECONDS_PER_DAY

if TYPE_CHECKING:  # the state widens old snapshots with `widen_v6`: no import cycle
    from models.state import CustomerState

NEVER_DAYS = 365.0  # "days since" for a kind never seen, and the cap
NEUTRAL_SURVEY = 7.0  # a customer who never answered counts as a typical answer

_VALUE_AND_ENGAGEMENT = (
    "recency_days",
    "log_frequency",
    "tenure_days",
    "log_monetary",
    "p_alive",
    "value_logit_no_purchase",
    "logins_30d",
    "page_views_30d",
    "email_opens_30d",
    "email_clicks_30d",
    "cart_abandons_30d",
)
_PROFILE = ("last_survey", "answered_survey", "unsubscribed", "log_refunds")
FEATURES = (
    *_VALUE_AND_ENGAGEMENT,
    "tickets_30d",
    "complaints_30d",
    *(f"days_since_{kind}" for kind in DAYS_SINCE_KINDS),
    *_PROFILE,
)
# The features of state formats up to 6, in their order (older snapshots are widened).
FEATURES_V6 = (
    *_VALUE_AND_ENGAGEMENT,
    "days_since_login",
    "days_since_page_view",
    "days_since_email_open",
    "tickets_30d",
    "complaints_30d",
    *_PROFILE,
)

_DESCRIPTIONS = {
    "recency_days": "no purchase for {:.0f} days",
    "log_frequency": "{:.0f} repeat purchase days",
    "tenure_days": "customer for {:.0f} days",
    "log_monetary": "average repeat purchase {:.2f}",
    "p_alive": "P(alive) {:.2f}",
    "value_logit_no_purchase": "value model: P(no purchase in the window) {:.2f}",
    "logins_30d": "{:.1f} logins (count decayed by half every 30 days)",
    "page_views_30d": "{:.1f} page views (count decayed by half every 30 days)",
    "email_opens_30d": "{:.1f} e-mail opens (count decayed by half every 30 days)",
    "email_clicks_30d": "{:.1f} e-mail clicks (count decayed by half every 30 days)",
    "cart_abandons_30d": "{:.1f} abandoned carts (count decayed by half every 30 days)",
    "days_since_login": "no login for {:.0f} days",
    "days_since_page_view": "no page view for {:.0f} days",
    "days_since_email_open": "no e-mail opened for {:.0f} days",
    "days_since_email_click": "no e-mail clicked for {:.0f} days",
    "days_since_cart_abandon": "last abandoned cart {:.0f} days ago",
    "days_since_support_ticket": "last support ticket {:.0f} days ago",
    "days_since_complaint": "last complaint {:.0f} days ago",
    "days_since_survey": "last survey answered {:.0f} days ago",
    "days_since_unsubscribe": "unsubscribed {:.0f} days ago",
    "days_since_review": "last review {:.0f} days ago",
    "tickets_30d": "{:.0f} support tickets in 30 days",
    "complaints_30d": "{:.0f} complaints in 30 days",
    "last_survey": "last survey score {:.0f}/10",
    "answered_survey": "answered a survey: {:.0f}",
    "unsubscribed": "unsubscribed from marketing e-mail",
    "log_refunds": "{:.0f} refunds",
}
_UNDO_LOG = {"log_frequency", "log_monetary", "log_refunds"}


def churn_features(
    state: CustomerState,
    at: float,
    p_alive: float,
    p_no_purchase: float,
    mean_spend: float | None = None,
) -> tuple[float, ...]:
    """The feature vector of a purchasing customer as of event time `at` (`mean_spend`:
    the state's mean repeat spend, if the caller has it already)."""
    day = at / SECONDS_PER_DAY
    engagement = state.engagement
    if mean_spend is None:
        mean_spend = state.spend_summary()[0]
    survey = engagement.last_survey
    recency = day - state.last_day
    tenure = day - state.first_day
    p = p_no_purchase if p_no_purchase < _LOGIT_HIGH else _LOGIT_HIGH
    if p < _LOGIT_LOW:
        p = _LOGIT_LOW
    return (
        (recency if recency < _MAX_RECENCY else _MAX_RECENCY) if recency > 0.0 else 0.0,
        math.log1p(state.repeat_days),
        tenure if tenure > 0.0 else 0.0,
        math.log1p(mean_spend),
        p_alive,
        math.log(p / (1.0 - p)),
        *engagement.churn_inputs(at, NEVER_DAYS),
        NEUTRAL_SURVEY if survey is None else survey,
        0.0 if survey is None else 1.0,
        1.0 if state.consent.get("marketing_email") is False else 0.0,
        math.log1p(state.refund_count),
    )


_MAX_RECENCY = NEVER_DAYS * 3
_LOGIT_LOW, _LOGIT_HIGH = 1e-6, 1.0 - 1e-6
# Capped features: (cap, the words for a value at the cap). A days-since feature is
# `NEVER_DAYS` both when the kind was never seen and when it was last seen that long
# ago or longer; recency (purchasers only: never "never") is capped at `_MAX_RECENCY`.
_NEVER_OR_LONG = {
    "login": "never logged in",
    "page_view": "never viewed a page",
    "email_open": "never opened an e-mail",
    "email_click": "never clicked an e-mail",
    "cart_abandon": "never abandoned a cart",
    "support_ticket": "never raised a support ticket",
    "complaint": "never complained",
    "survey": "never answered a survey",
    "unsubscribe": "never unsubscribed",
    "review": "never wrote a review",
}
_AT_CAP = {
    "recency_days": (_MAX_RECENCY, f"no purchase for {_MAX_RECENCY:.0f} days or more"),
    # the state keeps the last MAX_RECENT_ISSUES of each kind: a full list is "or more"
    "tickets_30d": (MAX_RECENT_ISSUES, f"{MAX_RECENT_ISSUES} or more support tickets in 30 days"),
    "complaints_30d": (MAX_RECENT_ISSUES, f"{MAX_RECENT_ISSUES} or more complaints in 30 days"),
    **{
        f"days_since_{kind}": (NEVER_DAYS, f"{never}, or not for {NEVER_DAYS:.0f} days or more")
        for kind, never in _NEVER_OR_LONG.items()
    },
}


def widen_v6(vector: Sequence[float]) -> tuple:
    """A feature vector of state format 6 or older in today's `FEATURES`: the
    days-since features it lacks read as never seen (`NEVER_DAYS`).

    >>> v = widen_v6(tuple(float(i) for i in range(len(FEATURES_V6))))
    >>> len(v) == len(FEATURES), dict(zip(FEATURES, v))["days_since_login"]
    (True, 11.0)
    >>> dict(zip(FEATURES, v))["days_since_complaint"], dict(zip(FEATURES, v))["days_since_review"]
    (365.0, 365.0)
    """
    old = dict(zip(FEATURES_V6, vector, strict=True))
    return tuple(old.get(name, NEVER_DAYS) for name in FEATURES)


def describe(name: str, value: float) -> str:
    """A feature and its value in words, for explanations. A value at its cap says only
    that the truth is at least the cap, and a days-since feature's cap also stands for
    "never" (the vector cannot tell them apart), so the words say exactly that.

    >>> describe("days_since_page_view", NEVER_DAYS)
    'never viewed a page, or not for 365 days or more'
    >>> describe("recency_days", 3 * NEVER_DAYS), describe("recency_days", 200.0)
    ('no purchase for 1095 days or more', 'no purchase for 200 days')
    >>> describe("tenure_days", 282.6), describe("days_since_login", 40.9)
    ('customer for 282 days', 'no login for 40 days')
    """
    capped = _AT_CAP.get(name)
    if capped is not None and value >= capped[0]:
        return capped[1]
    if name in _UNDO_LOG:
        value = math.expm1(value)
    elif name == "value_logit_no_purchase":
        value = 1.0 / (1.0 + math.exp(-value))
    if name == "answered_survey":
        return "never answered a survey" if value == 0.0 else "answered a survey"
    if name == "unsubscribed":  # a flag: its words follow its value
        return "unsubscribed from marketing e-mail" if value else "subscribed to marketing e-mail"
    if name in _WHOLE_DAYS or name.startswith("days_since_"):
        # whole days passed, like the score's recency and tenure (rounding would say
        # 283 days of a customer whose tenure is 282 and a bit)
        value = math.floor(value + 1e-9)
    return _DESCRIPTIONS[name].format(value)


_WHOLE_DAYS = frozenset({"recency_days", "tenure_days"})
_INDEX = {name: index for index, name in enumerate(FEATURES)}
VALUE_MODEL_INPUTS = tuple(
    _INDEX[name] for name in ("value_logit_no_purchase", "recency_days", "log_frequency")
)
"""The features the value model's probability rests on (its reasons at cold start)."""


def describe_in(vector: Sequence[float], index: int) -> str:
    """`describe` of one feature of a customer's vector, with what the other features
    say about it: an imputed survey score is "never answered a survey", the average
    repeat purchase of a one-time buyer "no repeat purchase yet".

    >>> v = [0.0] * len(FEATURES)
    >>> v[_INDEX["last_survey"]] = NEUTRAL_SURVEY
    >>> describe_in(v, _INDEX["last_survey"]), describe_in(v, _INDEX["log_monetary"])
    ('never answered a survey', 'no repeat purchase yet')
    """
    name = FEATURES[index]
    if name == "last_survey" and vector[_INDEX["answered_survey"]] == 0.0:
        return "never answered a survey"
    if name in ("log_monetary", "log_frequency") and vector[_INDEX["log_frequency"]] == 0.0:
        return "no repeat purchase yet"
    return describe(name, vector[index])
