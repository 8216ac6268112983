"""The scoring policy: turns a customer state into its current scores and segment.

A `Scorer` is immutable: a new population fit makes a new scorer
(`with_params`), so a score always names the exact parameters behind it.
"""

from __future__ import annotations

from models.config import ScoringConfig
from models.segments import lifecycle, lifecycle_reason
from models.state import CustomerState
from models.timeline import day_of, iso_utc
from models.value import ValueModel, ValueParams


class Scorer:
    def __init__(self, config: ScoringConfig, params: ValueParams) -> None:
        self.config = config
        self.params = params
        self.model_version = params.version
        self.value_model = ValueModel(params, config)

    def with_params(self, params: ValueParams) -> Scorer:
        return Scorer(self.config, params)

    def scores_of(self, state: CustomerState, at: float) -> ScoreFields:
        """Scores of `state` as of event time `at` (whole UTC days for the BTYD clock)."""
        return ScoreFields(state, at, self)


class ScoreFields:
    """The score of one customer at one instant (a snapshot: later changes to the state
    do not alter it), the payload of a score update, a CSV row or a Redis hash."""

    __slots__ = (
        "at",
        "frequency",
        "model_version",
        "monetary_value",
        "recency_days",
        "refund_total",
        "segment",
        "tenure_days",
        "total_spend",
        "values",
    )

    def __init__(self, state: CustomerState, at: float, scorer: Scorer) -> None:
        self.at = at
        self.model_version = scorer.model_version
        day = day_of(at)
        first = state.first_day
        self.frequency = state.repeat_days
        self.recency_days = state.last_day - first if first is not None else 0
        self.tenure_days = max(0, day - (first if first is not None else day_of(state.first_seen)))
        self.monetary_value, self.total_spend = state.spend_summary()
        self.refund_total = state.refund_total
        if state.consent.get("profiling") is False:
            self.values = None
            self.segment = "not_profiled"
            return
        self.values = (
            None
            if first is None
            else scorer.value_model.score(
                self.frequency, self.recency_days, day - first, self.monetary_value
            )
        )
        self.segment = lifecycle(self.values, self.frequency, self.tenure_days, scorer.config)

    def segment_reason(self, config: ScoringConfig) -> str:
        if self.segment == "not_profiled":
            return "customer objected to profiling"
        return lifecycle_reason(self.segment, self.values, self.tenure_days, config)

    def as_row(self, customer_id: str) -> dict:
        """Flat fields shared by the score event, the CSV row and the Redis hash."""
        values = self.values
        return {
            "customer_id": customer_id,
            "frequency": self.frequency,
            "recency_days": self.recency_days,
            "tenure_days": self.tenure_days,
            "monetary_value": self.monetary_value,
            "total_spend": self.total_spend,
            "refund_total": self.refund_total,
            "p_alive": values.p_alive if values else None,
            "expected_purchases": values.expected_purchases if values else None,
            "predicted_value": values.predicted_value if values else None,
            "clv": values.clv if values else None,
            "churn_probability": values.p_no_purchase if values else None,
            "segment": self.segment,
            "model_version": self.model_version,
        }

    def as_event(self, customer_id: str, event_id: str, cause: str, config: ScoringConfig) -> dict:
        return {
            "event_type": "score",
            "schema_version": 1,
            "event_id": event_id,
            "scored_at": iso_utc(self.at),
            "cause": cause,
            **self.as_row(customer_id),
            "currency": config.base_currency,
            "horizon_days": config.horizon_days,
            "churn_window_days": config.churn_window_days,
        }
