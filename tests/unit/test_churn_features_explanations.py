"""Churn explanations are true for capped features: a days-since feature at its cap
means "never, or at least that long"; recency at its cap means "at least that long"."""

from __future__ import annotations

import pytest

from models.churn import ChurnModel, ranked_reasons
from models.churn_features import FEATURES, NEUTRAL_SURVEY, NEVER_DAYS, churn_features, describe
from models.state import CustomerState
from schemas.inputs import INTERACTION_KINDS

DAY = 86_400.0
AT_CAP = {
    "days_since_login": "never logged in, or not for 365 days or more",
    "days_since_page_view": "never viewed a page, or not for 365 days or more",
    "days_since_email_open": "never opened an e-mail, or not for 365 days or more",
    "recency_days": "no purchase for 1095 days or more",
}


@pytest.mark.parametrize(
    ("name", "value", "text"),
    [
        ("days_since_login", 41.0, "no login for 41 days"),
        ("days_since_page_view", 12.4, "no page view for 12 days"),
        ("days_since_email_open", 364.0, "no e-mail opened for 364 days"),
        ("recency_days", 1094.0, "no purchase for 1094 days"),
        ("recency_days", 365.0, "no purchase for 365 days"),  # not capped at 365
        ("days_since_login", NEVER_DAYS, AT_CAP["days_since_login"]),
        ("days_since_page_view", NEVER_DAYS, AT_CAP["days_since_page_view"]),
        ("days_since_email_open", NEVER_DAYS, AT_CAP["days_since_email_open"]),
        ("recency_days", 3 * NEVER_DAYS, AT_CAP["recency_days"]),
        ("recency_days", 5_000.0, AT_CAP["recency_days"]),  # beyond the cap, e.g. an old vector
        ("complaints_30d", 2.0, "2 complaints in 30 days"),
        ("answered_survey", 0.0, "never answered a survey"),
    ],
)
def test_describe_words(name, value, text):
    assert describe(name, value) == text


def test_every_capped_feature_has_cap_words():
    assert set(AT_CAP) <= set(FEATURES)
    for name in FEATURES:
        if name.startswith("days_since_"):
            assert describe(name, NEVER_DAYS).startswith("never ")


def described(state: CustomerState, at: float) -> dict[str, str]:
    vector = churn_features(state, at, p_alive=0.5, p_no_purchase=0.5)
    return {name: describe(name, value) for name, value in zip(FEATURES, vector, strict=True)}


def test_a_customer_who_never_engaged_is_described_as_never():
    state = CustomerState.new(0.0)
    state.add_purchase(day=0, amount=20.0)
    words = described(state, 50 * DAY)
    for name in ("days_since_login", "days_since_page_view", "days_since_email_open"):
        assert words[name] == AT_CAP[name]
    assert words["recency_days"] == "no purchase for 50 days"


def test_days_are_the_whole_days_of_the_score_not_rounded_up():
    state = CustomerState.new(0.0)
    state.add_purchase(day=0, amount=20.0)
    state.add_purchase(day=23, amount=20.0)
    state.engagement = state.engagement.observe("login", 100.2 * DAY)
    words = described(state, 282.7 * DAY)  # tenure 282 whole days, recency 23
    assert words["tenure_days"] == "customer for 282 days"
    assert words["recency_days"] == "no purchase for 259 days"  # 282 - 23
    assert words["days_since_login"] == "no login for 182 days"  # 182.5 days ago


def test_long_gaps_are_described_as_at_least_the_cap():
    state = CustomerState.new(0.0)
    state.add_purchase(day=0, amount=20.0)
    engagement = state.engagement
    engagement = engagement.observe("login", 0.0).observe("page_view", 10 * DAY)
    state.engagement = engagement.observe("email_open", 1_900 * DAY)
    words = described(state, 2_000 * DAY)
    assert words["recency_days"] == AT_CAP["recency_days"]  # really 2000 days
    assert words["days_since_login"] == AT_CAP["days_since_login"]  # really 2000 days
    assert words["days_since_page_view"] == AT_CAP["days_since_page_view"]
    assert words["days_since_email_open"] == "no e-mail opened for 100 days"


def test_churn_reasons_use_the_cap_words():
    state = CustomerState.new(0.0)
    state.add_purchase(day=0, amount=20.0)
    vector = churn_features(state, 2_000 * DAY, p_alive=0.5, p_no_purchase=0.5)
    pushing = {"recency_days", "days_since_page_view", "days_since_email_open"}
    weights = tuple(1.0 if name in pushing else 0.0 for name in FEATURES)
    zeros, ones = (0.0,) * len(FEATURES), (1.0,) * len(FEATURES)
    reasons = ChurnModel().reasons(vector, (zeros, ones, weights, 0.0))
    assert reasons == [
        AT_CAP["recency_days"],
        AT_CAP["days_since_page_view"],
        AT_CAP["days_since_email_open"],
    ]


@pytest.mark.parametrize("kind", INTERACTION_KINDS)  # every kind of the contract
def test_days_since_the_last_interaction_of_each_kind(kind):
    state = CustomerState.new(0.0)
    state.add_purchase(day=0, amount=20.0)
    before = dict(zip(FEATURES, churn_features(state, 50 * DAY, 0.5, 0.5), strict=True))
    assert before[f"days_since_{kind}"] == NEVER_DAYS
    state.engagement = state.engagement.observe(kind, 9 * DAY, 8.0).observe(kind, 10 * DAY, 8.0)
    after = dict(zip(FEATURES, churn_features(state, 50 * DAY, 0.5, 0.5), strict=True))
    assert after[f"days_since_{kind}"] == 40.0
    # no other kind's clock moved
    changed = {n for n in FEATURES if n.startswith("days_since_") and after[n] != before[n]}
    assert changed == {f"days_since_{kind}"}
    assert describe(f"days_since_{kind}", 40.0).count("40") == 1


def _pushing(names: set[str], mean: float, sign: float):
    """Model terms (scale 1) under which `names` push risk up for values below `mean`
    (sign -1) or above it (sign 1)."""
    return tuple(
        (index, mean, 1.0, sign if FEATURES[index] in names else 0.0)
        for index in range(len(FEATURES))
    )


def test_flags_and_imputed_values_are_described_as_they_are():
    state = CustomerState.new(0.0)
    state.add_purchase(day=0, amount=34.77)  # a one-time buyer who never answered a survey
    state.consent["marketing_email"] = True
    vector = churn_features(state, 30 * DAY, p_alive=0.5, p_no_purchase=0.5)
    words = dict(zip(FEATURES, vector, strict=True))
    assert words["last_survey"] == NEUTRAL_SURVEY and words["unsubscribed"] == 0.0
    # a negative weight on a zero flag pushes risk up: the words must not say "unsubscribed"
    terms = tuple(
        (i, 1.0 if FEATURES[i] == "unsubscribed" else 0.0, 1.0,
         -1.0 if FEATURES[i] == "unsubscribed" else (1.0 if FEATURES[i] in {
             "last_survey", "answered_survey", "log_monetary"} else 0.0))
        for i in range(len(FEATURES))
    )  # fmt: skip
    reasons = ranked_reasons(vector, terms, top=4)
    assert "subscribed to marketing e-mail" in reasons
    assert "unsubscribed from marketing e-mail" not in reasons
    assert "never answered a survey" in reasons and not any("survey score" in r for r in reasons)
    assert len(reasons) == len(set(reasons))  # the survey's two features, said once
    assert describe("unsubscribed", 1.0) == "unsubscribed from marketing e-mail"


def test_a_burst_of_tickets_does_not_hide_earlier_complaints():
    state = CustomerState.new(0.0)
    state.add_purchase(day=0, amount=20.0)
    engagement = state.engagement.observe("complaint", 1 * DAY).observe("complaint", 2 * DAY)
    for day in range(3, 13):
        engagement = engagement.observe("support_ticket", day * DAY)
    state.engagement = engagement
    words = described(state, 15 * DAY)
    assert words["complaints_30d"] == "2 complaints in 30 days"
    assert words["tickets_30d"] == "8 or more support tickets in 30 days"  # 10 in truth


def test_spend_is_the_average_repeat_purchase_and_a_one_time_buyer_has_none():
    state = CustomerState.new(0.0)
    state.add_purchase(day=0, amount=500.0)
    vector = churn_features(state, 10 * DAY, p_alive=0.5, p_no_purchase=0.5)
    [reason] = ranked_reasons(vector, _pushing({"log_monetary"}, 1.0, -1.0))
    assert reason == "no repeat purchase yet"
    state.add_purchase(day=5, amount=20.0)
    vector = churn_features(state, 10 * DAY, p_alive=0.5, p_no_purchase=0.5)
    [reason] = ranked_reasons(vector, _pushing({"log_monetary"}, 10.0, -1.0))
    assert reason == "average repeat purchase 20.00"
