"""Lifecycle segment of a customer from the value model's scores.

>>> from models.config import ScoringConfig
>>> cfg = ScoringConfig()
>>> lifecycle(None, 0, 0, cfg)
'prospect'
>>> risky = ValueScores(p_alive=0.9, p_no_purchase=0.7, expected_spend=30.0, horizon=(1.0, 0.9))
>>> lifecycle(risky, 2, 200, cfg), lifecycle_reason("at_risk", risky, 200, cfg)
('at_risk', 'churn_probability 0.70 >= 0.60')
>>> lifecycle(risky, 0, 3, cfg)
'new'
"""

from __future__ import annotations

from models.config import ScoringConfig
from models.value import ValueScores

LIFECYCLE_SEGMENTS = ("prospect", "new", "active", "at_risk", "lost")


def lifecycle(
    scores: ValueScores | None,
    repeat_days: int,
    tenure_days: int,
    config: ScoringConfig,
    churn_probability: float | None = None,
) -> str:
    """The lifecycle segment of a customer; `scores` is None before the first purchase.
    Risk is `churn_probability` (default: the value model's P(no purchase))."""
    if scores is None:
        return "prospect"
    if repeat_days == 0 and tenure_days <= config.new_customer_days:
        return "new"
    if scores.p_alive < config.lost_p_alive:
        return "lost"
    risk = scores.p_no_purchase if churn_probability is None else churn_probability
    if risk >= config.at_risk_churn_probability:
        return "at_risk"
    return "active"


def lifecycle_reason(
    segment: str,
    scores: ValueScores | None,
    tenure_days: int,
    config: ScoringConfig,
    churn_probability: float | None = None,
) -> str:
    """Why `lifecycle` chose `segment` (built only when a change is announced)."""
    if segment == "prospect":
        return "no purchase yet"
    if segment == "new":
        return f"first purchase {tenure_days} days ago"
    if segment == "lost":
        return f"p_alive {scores.p_alive:.2f} < {config.lost_p_alive:.2f}"
    threshold = config.at_risk_churn_probability
    relation = ">=" if segment == "at_risk" else "<"
    risk = scores.p_no_purchase if churn_probability is None else churn_probability
    return f"churn_probability {risk:.2f} {relation} {threshold:.2f}"
