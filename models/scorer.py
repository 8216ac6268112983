"""The scoring policy: turns a customer state into its current scores and segment.

A `Scorer` pairs one version of the value model's parameters (a new population fit
makes a new scorer, `with_params`, so a score names the exact parameters behind it)
with the partition's online churn model, which keeps learning and is shared.
"""

from __future__ import annotations

from models.churn import ChurnModel
from models.churn_features import churn_features
from models.config import ScoringConfig
from models.segments import lifecycle, lifecycle_reason
from models.state import CustomerState
from models.timeline import day_of, iso_utc
from models.value import ValueModel, ValueParams


class Scorer:
    def __init__(
        self, config: ScoringConfig, params: ValueParams, churn: ChurnModel | None = None
    ) -> None:
        self.config = config
        self.params = params
        self.model_version = params.version
        self.value_model = ValueModel(params, config)
        if churn is None and config.churn_model:
            churn = ChurnModel(config.churn_warmup_labels, config.churn_learning_rate)
        self.churn = churn

    def with_params(self, params: ValueParams) -> Scorer:
        return Scorer(self.config, params, self.churn)

    def scores_of(self, state: CustomerState, at: float) -> ScoreFields:
        """Scores of `state` as of event time `at` (whole UTC days for the BTYD clock)."""
        return ScoreFields(state, at, self)


class ScoreFields:
    """The score of one customer at one instant (a snapshot: later changes to the state
    do not alter it), the payload of a score update, a CSV row or a Redis hash."""

    __slots__ = (
        "_churn",
        "_churn_coefficients",
        "at",
        "churn_probability",
        "churn_vector",
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
        self.churn_vector = self._churn = self._churn_coefficients = None
        self.churn_probability = None
        if state.consent.get("profiling") is False:
            self.values = None
            self.segment = "not_profiled"
            return
        if first is None:
            self.values = None
        else:
            values = self.values = scorer.value_model.score(
                self.frequency, self.recency_days, day - first, self.monetary_value
            )
            self.churn_probability = values.p_no_purchase
            churn = scorer.churn
            if churn is not None:
                vector = churn_features(state, at, values.p_alive, values.p_no_purchase)
                self.churn_vector = vector
                self.churn_probability = churn.probability(vector, values.p_no_purchase)
                if churn.labels:
                    self._churn, self._churn_coefficients = churn, churn.coefficients()
        self.segment = lifecycle(
            self.values, self.frequency, self.tenure_days, scorer.config, self.churn_probability
        )

    @property
    def churn_reasons(self) -> list[str]:
        """Top factors of the churn risk, from the model as it was when scored."""
        if self._churn is None:
            return []
        return self._churn.reasons(self.churn_vector, self._churn_coefficients)

    def segment_reason(self, config: ScoringConfig) -> str:
        if self.segment == "not_profiled":
            return "customer objected to profiling"
        return lifecycle_reason(
            self.segment, self.values, self.tenure_days, config, self.churn_probability
        )

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
            "churn_probability": self.churn_probability,
            "value_churn_probability": values.p_no_purchase if values else None,
            "churn_reasons": self.churn_reasons,
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
