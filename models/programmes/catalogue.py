"""The programme catalogue and its guardrails: configuration validated by pydantic.

A programme says who is eligible (segments, transitions, churn band, value tier,
needs, the event just seen), what a contact costs, the uplift expected before any
measurement (a prior, as a share of the value at stake), how long revenue is
attributed to it, how often a customer may get it, which consent it needs, which
share of eligible customers is held out as control, and its daily budget.

>>> config = ProgrammesConfig()
>>> [p.id for p in config.catalogue]  # doctest: +NORMALIZE_WHITESPACE
['win_back', 'save_offer', 'service_recovery', 'vip_upgrade', 'loyalty_reward',
 'onboarding_nurture']
>>> config.max_contacts, config.contact_window_days
(2, 30)
>>> from pydantic import ValidationError
>>> try:
...     Programme(id="x", name="X", goal="retention", cost_per_contact=1, control_share=0.7)
... except ValidationError as error:
...     print(error.errors()[0]["loc"])
('control_share',)
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from models.timeline import SECONDS_PER_DAY
from schemas.inputs import INTERACTION_KINDS

Days = Annotated[int, Field(ge=1, le=3650)]
_EVENT_KINDS = frozenset(INTERACTION_KINDS) | {"purchase", "refund", "profile", "consent"}
Names = frozenset[str] | None


class Eligibility(BaseModel):
    """Conditions that must all hold; an unset condition always holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    lifecycles: Names = Field(None, description="Lifecycle segments, e.g. {lapsing}.")
    value_tiers: Names = Field(None, description="Value tiers, e.g. {top_5, next_15}.")
    rfm_segments: Names = Field(None, description="Named RFM segments, e.g. {champions}.")
    entered_lifecycle: Names = Field(
        None, description="The lifecycle changed into one of these with this very score."
    )
    entered_tier: Names = Field(
        None, description="The value tier changed into one of these with this very score."
    )
    event_kinds: Names = Field(
        None, description="The event just scored is one of these kinds, e.g. {complaint}."
    )
    churn_min: float = Field(0.0, ge=0, le=1, description="Churn band, lower end (inclusive).")
    churn_max: float = Field(1.0, ge=0, le=1, description="Churn band, upper end (inclusive).")
    min_clv: float = Field(0.0, ge=0, description="Base currency.")
    min_total_spend: float = Field(
        0.0, ge=0, description="Past net spend, base currency (high value while lapsing)."
    )
    needs_required: bool = Field(False, description="Only with top needs to offer.")

    @model_validator(mode="after")
    def _band(self) -> Eligibility:
        if self.churn_min > self.churn_max:
            raise ValueError("churn_min must not exceed churn_max")
        unknown = sorted((self.event_kinds or frozenset()) - _EVENT_KINDS)
        if unknown:
            raise ValueError(f"unknown event kinds {unknown}; known: {sorted(_EVENT_KINDS)}")
        return self


class Programme(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    name: str = Field(min_length=1, max_length=80)
    goal: Literal["retention", "growth", "reactivation"] = Field(
        description="retention: the value at stake is churn probability x the CLV's "
        "revenue (the CLV before the margin rate: what the programme protects); growth: "
        "it is the CLV's revenue (what the programme adds to); "
        "reactivation: the customer's past value per horizon (what winning them back "
        "restores; a lapsing customer's CLV is low by definition)."
    )
    eligibility: Eligibility = Eligibility()
    cost_per_contact: float = Field(ge=0, le=1e6, description="Base currency, per treated.")
    uplift_prior: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Expected incremental revenue in the attribution window as a share of "
        "the value at stake, before measurement.",
    )
    uplift_prior_sd: float = Field(0.05, gt=0, le=1, description="Uncertainty of the prior.")
    attribution_days: Days = 60
    cooldown_days: Days = 90
    consent: Literal["marketing_email", "marketing_sms", "marketing_phone"] | None = Field(
        "marketing_email", description="Consent flag required (None: no marketing consent)."
    )
    control_share: float = Field(0.2, gt=0, le=0.5)
    daily_budget: float | None = Field(
        None, gt=0, description="Base currency per event-time day; None: unlimited."
    )
    offer_valid_days: Days = 14

    @model_validator(mode="after")
    def _windows_do_not_overlap(self) -> Programme:
        if self.cooldown_days < self.attribution_days:
            raise ValueError(
                "cooldown_days must be at least attribution_days: overlapping windows of "
                "one programme would count the same revenue twice"
            )
        return self


def _names(*names: str) -> frozenset[str]:
    return frozenset(names)


DEFAULT_CATALOGUE: tuple[Programme, ...] = (
    Programme(
        id="win_back",
        name="Win-back for lapsing high-value customers",
        goal="reactivation",
        # Lapsing customers' CLV is low by definition: high value means what they spent.
        eligibility=Eligibility(lifecycles=_names("lapsing"), min_total_spend=100.0),
        cost_per_contact=5.0,
        uplift_prior=0.10,
        attribution_days=60,
        cooldown_days=120,
        daily_budget=2000.0,
    ),
    Programme(
        id="save_offer",
        name="Save offer for customers at risk",
        goal="retention",
        eligibility=Eligibility(lifecycles=_names("at_risk"), churn_min=0.6, min_clv=20.0),
        cost_per_contact=2.0,
        uplift_prior=0.08,
        attribution_days=60,
        cooldown_days=90,
        daily_budget=1000.0,
    ),
    Programme(
        id="service_recovery",
        name="Service recovery after a complaint",
        goal="retention",
        eligibility=Eligibility(event_kinds=_names("complaint")),
        cost_per_contact=4.0,
        uplift_prior=0.15,
        attribution_days=60,
        cooldown_days=60,
    ),
    Programme(
        id="vip_upgrade",
        name="VIP upgrade for rising value",
        goal="growth",
        eligibility=Eligibility(entered_tier=_names("top_5")),
        cost_per_contact=10.0,
        uplift_prior=0.04,
        attribution_days=90,
        cooldown_days=365,
    ),
    Programme(
        id="loyalty_reward",
        name="Loyalty reward for champions",
        goal="growth",
        eligibility=Eligibility(rfm_segments=_names("champions"), lifecycles=_names("active")),
        cost_per_contact=3.0,
        uplift_prior=0.03,
        attribution_days=90,
        cooldown_days=180,
        control_share=0.15,
    ),
    Programme(
        id="onboarding_nurture",
        name="Onboarding nurture for new customers",
        goal="growth",
        eligibility=Eligibility(lifecycles=_names("new"), needs_required=True),
        cost_per_contact=0.5,
        uplift_prior=0.05,
        attribution_days=30,
        cooldown_days=365,
    ),
)


class ProgrammesConfig(BaseModel):
    """The catalogue and the guardrails that hold across programmes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = True
    catalogue: tuple[Programme, ...] = DEFAULT_CATALOGUE
    max_contacts: int = Field(
        2, ge=1, le=100, description="Programme contacts per customer in the contact window."
    )
    contact_window_days: Days = 30
    salt: str = Field(
        "clvstream-2026", min_length=1, description="Control-group assignment; change to reshuffle."
    )
    assume_consent: bool = Field(
        False, description="Treat an unknown consent flag as granted (never an explicit no)."
    )
    freeze_below_auc: float = Field(
        0.6, ge=0, le=1, description="Freeze triggers while the churn model's rolling AUC is below."
    )
    unfreeze_auc_margin: float = Field(
        0.02,
        ge=0,
        le=0.2,
        description="An AUC freeze ends only once the rolling AUC is this much above the "
        "freeze level (a model hovering at the level would freeze and resume every day).",
    )
    freeze_min_labels: int = Field(
        2000, ge=0, description="Labels before the AUC freeze applies (cold start: no freeze)."
    )
    freeze_days_after_drift: int = Field(
        14, ge=0, le=365, description="Freeze triggers this long after a churn drift alarm."
    )
    refund_grace_days: int = Field(
        14,
        ge=0,
        le=90,
        description="Refunds this many days after an attribution window's end still count "
        "against it (a purchase the programme brought and that was returned is not "
        "revenue); the window's outcome comes that much later.",
    )
    stop_min_control: int = Field(
        50, ge=2, description="Control outcomes before a programme may be stopped."
    )
    stop_confidence: float = Field(
        0.99,
        ge=0.5,
        lt=1,
        description="A programme stops when the interval of this confidence lies below "
        "its cost (each of a stream worker's partitions tests its own share of the "
        "windows at 1 - (1 - this) / partitions, so together they stop a break-even "
        "programme no more often than one test would).",
    )
    learn_min_windows: int = Field(
        30, ge=2, description="Closed windows per arm before measurement updates the uplift."
    )
    budget_share: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Share of each daily budget this scorer may spend (a stream worker "
        "spends 1/partitions per partition).",
    )

    @model_validator(mode="after")
    def _unique(self) -> ProgrammesConfig:
        ids = [programme.id for programme in self.catalogue]
        if len(set(ids)) != len(ids):
            raise ValueError("programme ids must be unique")
        return self

    @property
    def refund_grace_seconds(self) -> float:
        return self.refund_grace_days * SECONDS_PER_DAY

    def programme(self, programme_id: str) -> Programme:
        for programme in self.catalogue:
            if programme.id == programme_id:
                return programme
        raise KeyError(programme_id)
