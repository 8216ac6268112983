"""The scoring policy: turns a customer state into its current scores and segment.

A `Scorer` pairs one version of the value model's parameters (a new population fit
makes a new scorer, `with_params`, so a score names the exact parameters behind it)
with the partition's learners, which keep learning and are shared across versions:
the online churn model, the population quantiles behind value tiers and RFM, and the
next-category model behind customer needs. The quantiles and the needs model are read
through snapshots refreshed once per event-time day (`refresh`), so a score depends
only on the inputs before it.
"""

from __future__ import annotations

from models.churn import ChurnModel, ranked_reasons, value_model_reasons
from models.churn_features import churn_features
from models.config import ScoringConfig
from models.needs import EMPTY_NEEDS, NeedsModel, NeedsSnapshot, top_needs
from models.population import (
    CLV,
    EMPTY_SNAPSHOT,
    LAST_DAY,
    PURCHASE_DAYS,
    SPEND,
    Population,
    PopulationSnapshot,
    population_bins,
)
from models.programmes.book import ProgrammeBook, spend_days_for
from models.segments import UNRANKED, Why, lifecycle_of, rfm_named, rfm_scores, value_tier
from models.state import CustomerState
from models.timeline import SECONDS_PER_DAY, iso_utc
from models.value import ValueModel, ValueParams

_UNSET: list = []  # marks a lazily computed field not computed yet
_NOT_PROFILED = Why("customer objected to profiling")
_PROSPECT = Why("no purchase yet")


class Scorer:
    version_number = 0  # installs before this scorer's parameters (pickles without it: 0)

    def __init__(self, config: ScoringConfig, params: ValueParams) -> None:
        self.config = config
        self.params = params
        self.model_version = params.version
        self.value_model = ValueModel.shared(params, config)
        self.churn = (
            ChurnModel(config.churn_warmup_labels, config.churn_learning_rate)
            if config.churn_model
            else None
        )
        if self.churn is not None:
            self.churn.by_version.name(0, params.version)
        self.population = Population()
        self.needs = NeedsModel(config.needs.max_categories, config.needs.next_half_life_days)
        self.population_snapshot: PopulationSnapshot = EMPTY_SNAPSHOT
        self.needs_snapshot: NeedsSnapshot = EMPTY_NEEDS
        self.programmes = (
            ProgrammeBook(
                config.programmes,
                config.margin_rate,
                spend_days=spend_days_for(config.allowed_lateness_seconds),
            )
            if config.programmes.enabled
            else None
        )

    def with_params(self, params: ValueParams) -> Scorer:
        """A scorer for new value-model parameters that shares every learner."""
        twin = Scorer.__new__(Scorer)
        twin.__dict__.update(self.__dict__)
        twin.params, twin.model_version = params, params.version
        twin.value_model = ValueModel.shared(params, self.config)
        twin.version_number = self.version_number + 1
        if twin.churn is not None:
            twin.churn.by_version.name(twin.version_number, params.version)
        return twin

    def adopt(self, config: ScoringConfig) -> None:
        """Run a restored scorer under the current settings, keeping what it learned
        (the value parameters, the churn, population and needs models, the programmes'
        measurements): a checkpoint pickles the settings it ran under, and a restart
        with changed settings (a programme withdrawn, a budget, thresholds) must apply
        them. A model switched off is dropped; one switched on starts cold."""
        self.config = config
        self.value_model = ValueModel.shared(self.params, config)
        if not config.churn_model:
            self.churn = None
        elif self.churn is None:
            self.churn = ChurnModel(config.churn_warmup_labels, config.churn_learning_rate)
            self.churn.by_version.name(self.version_number, self.model_version)
        else:  # the blend's policy; the learned model keeps its learning rate
            self.churn.warmup_labels = config.churn_warmup_labels
        self.needs.max_categories = config.needs.max_categories
        self.needs.half_life_days = config.needs.next_half_life_days
        spend_days = spend_days_for(config.allowed_lateness_seconds)
        if not config.programmes.enabled:
            self.programmes = None
        elif getattr(self, "programmes", None) is None:  # also: pickled before programmes
            self.programmes = ProgrammeBook(
                config.programmes, config.margin_rate, spend_days=spend_days
            )
        else:
            self.programmes.reconfigure(config.programmes, config.margin_rate, spend_days)

    def refresh(self, day: int) -> None:
        """Freeze the current population quantiles and needs model (as of event-time
        `day`) for the next scores."""
        self.population_snapshot = self.population.snapshot()
        self.needs_snapshot = self.needs.snapshot(day)

    def scores_of(self, state: CustomerState, at: float) -> ScoreFields:
        """Scores of `state` as of event time `at` (whole UTC days for the BTYD clock)."""
        return ScoreFields(state, at, self)


class ScoreFields:
    """The score of one customer at one instant (a snapshot: later changes to the state
    do not alter it), the payload of a score update, a CSV row or a Redis hash."""

    __slots__ = (
        "_affinity",
        "_churn_terms",
        "_config",
        "_needs",
        "_population",
        "_rfm",
        "_top_needs",
        "at",
        "bins",
        "churn_probability",
        "churn_vector",
        "frequency",
        "lifecycle",
        "lifecycle_why",
        "model_version",
        "monetary_value",
        "recency_days",
        "refund_total",
        "tenure_days",
        "tier_why",
        "total_spend",
        "value_tier",
        "values",
    )

    def __init__(self, state: CustomerState, at: float, scorer: Scorer) -> None:
        self.at = at
        self.model_version = scorer.model_version
        config = self._config = scorer.config
        day = int(at // SECONDS_PER_DAY)
        first = state.first_day
        frequency = self.frequency = state.repeat_days
        self.recency_days = state.last_day - first if first is not None else 0
        self.tenure_days = tenure = max(
            0, day - (first if first is not None else int(state.first_seen // SECONDS_PER_DAY))
        )
        mean_spend, total_spend = self.monetary_value, self.total_spend = state.spend_summary()
        refunds = self.refund_total = state.refund_total
        # The share of their spend the customer kept (net / gross; 1 without refunds):
        # refunds scale the expected spend per purchase (`GammaGamma.expected_spend`).
        retained = 1.0
        if refunds > 0.0:
            gross = state.spend_first + state.spend_repeat
            retained = total_spend / gross if total_spend > 0.0 else 0.0
        self.churn_vector = self._churn_terms = None
        self.churn_probability = self.values = self.bins = None
        self.value_tier = self.tier_why = None
        self._population, self._affinity, self._needs = scorer.population_snapshot, None, None
        self._rfm = self._top_needs = _UNSET
        if state.consent.get("profiling") is False:
            self.lifecycle, self.lifecycle_why = "not_profiled", _NOT_PROFILED
            return
        self._affinity, self._needs = state.affinity, scorer.needs_snapshot
        if first is None:
            self.lifecycle, self.lifecycle_why = "prospect", _PROSPECT
            return
        values = self.values = scorer.value_model.score(
            frequency, self.recency_days, day - first, mean_spend, retained
        )
        p_alive = values.p_alive
        churn_probability = values.p_no_purchase
        churn = scorer.churn
        if churn is not None:
            vector = self.churn_vector = churn_features(
                state, at, p_alive, churn_probability, mean_spend
            )
            churn_probability = churn.probability(vector, churn_probability)
            if churn.weight() >= 0.5:  # the model leads the served probability: its reasons
                self._churn_terms = churn.terms()
        self.churn_probability = churn_probability
        last_day = state.last_day
        bought_today = day == last_day
        segments = config.segments
        self.lifecycle, self.lifecycle_why = lifecycle_of(
            churn_probability,
            p_alive,
            frequency,
            tenure,
            day - last_day,
            bought_today,
            state.segment,
            (at - state.segment_since) / SECONDS_PER_DAY,
            segments,
        )
        bins = self.bins = population_bins(
            values.clv, last_day, frequency + 1, total_spend / (frequency + 1)
        )
        population = self._population
        if population.customers >= segments.min_customers_for_tiers:
            top_share = 1.0 - population.percentile(CLV, bins[CLV])
            self.value_tier, self.tier_why = value_tier(
                top_share,
                state.value_tier,
                segments,
                (at - state.tier_since) / SECONDS_PER_DAY,
                bought_today,
            )

    @property
    def segment(self) -> str:
        """Lifecycle by value tier, e.g. `at_risk/top_5` (lifecycle alone while unranked)."""
        tier = self.value_tier
        return self.lifecycle if tier is None else f"{self.lifecycle}/{tier}"

    @property
    def rfm_score(self) -> str | None:
        """R, F, M quintiles as digits ("543") within the partition's purchasers."""
        if self._rfm is not _UNSET:
            return self._rfm
        bins, population = self.bins, self._population
        if bins is None or population.customers < self._config.segments.min_customers_for_tiers:
            self._rfm = None
            return None
        self._rfm = rfm_scores(
            population.percentile(LAST_DAY, bins[LAST_DAY]),
            population.share_below(PURCHASE_DAYS, bins[PURCHASE_DAYS]),
            population.percentile(SPEND, bins[SPEND]),
        )
        return self._rfm

    @property
    def top_needs(self) -> list[str]:
        """Next-best categories (a fresh list each time; computed once)."""
        if self._top_needs is _UNSET:
            self._top_needs = (
                []
                if self._affinity is None
                else top_needs(self._affinity, self._needs, self._config.needs)
            )
        return list(self._top_needs)

    @property
    def churn_reasons(self) -> list[str]:
        """Top factors of the churn risk: from the churn model as it was when scored once
        it leads the served probability (weight >= 0.5), else the value model's."""
        terms, vector = self._churn_terms, self.churn_vector
        if terms is not None:
            return ranked_reasons(vector, terms)
        # the value model leads (cold start: few labels yet): its probability and inputs
        return [] if vector is None else value_model_reasons(vector)

    def as_row(self, customer_id: str) -> dict:
        """Flat fields shared by the score event, the CSV row and the Redis hash."""
        values = self.values
        rfm = self.rfm_score
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
            "lifecycle": self.lifecycle,
            "value_tier": UNRANKED if self.value_tier is None and self.bins else self.value_tier,
            "rfm_score": rfm,
            "rfm_segment": rfm_named(rfm) if rfm else None,
            "top_needs": self.top_needs,
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
