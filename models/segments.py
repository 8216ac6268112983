"""Segments: lifecycle (one risk scale, with hysteresis), value tier, RFM.

Each rule returns the segment and, for lifecycle and tier, a `Why` that becomes the
reason of a segment change ("churn_probability 0.83 >= lapsing 0.80 + margin 0.03");
the text is only built when a change is announced.

>>> from models.config import SegmentConfig
>>> cfg = SegmentConfig()
>>> facts = Facts(churn=0.70, p_alive=0.6, repeat_days=3, tenure_days=400,
...               quiet_days=80, bought_today=False, previous="active", days_in_segment=30)
>>> segment, why = lifecycle(facts, cfg)
>>> segment, why.text()
('at_risk', 'churn_probability 0.70 >= at_risk 0.60 + margin 0.03')
>>> lifecycle(facts._replace(churn=0.62), cfg)[0]  # inside the margin: no change
'active'
>>> lifecycle(facts._replace(churn=0.62, previous="at_risk"), cfg)[0]  # and no way back
'at_risk'
>>> rfm_segment(5, 5), rfm_segment(1, 5), rfm_segment(1, 1)
('champions', 'cant_lose_them', 'lost')
"""

from __future__ import annotations

import math
from typing import NamedTuple

from models.config import SegmentConfig

LIFECYCLE_SEGMENTS = (
    "prospect",
    "new",
    "active",
    "at_risk",
    "lapsing",
    "lost",
    "reactivated",
    "not_profiled",
)
RISK_BANDS = ("active", "at_risk", "lapsing", "lost")
_BAND_INDEX = {name: index for index, name in enumerate(RISK_BANDS)}
RFM_SEGMENTS = (
    "champions",
    "loyal",
    "potential_loyalist",
    "new",
    "promising",
    "need_attention",
    "about_to_sleep",
    "at_risk",
    "cant_lose_them",
    "hibernating",
    "lost",
)
UNRANKED = "unranked"


class Facts(NamedTuple):
    """What the lifecycle rule looks at, as of the scoring instant."""

    churn: float  # served churn probability
    p_alive: float
    repeat_days: int
    tenure_days: int
    quiet_days: int  # days since the last purchase day
    bought_today: bool
    previous: str | None  # the lifecycle segment so far
    days_in_segment: float


class Why(NamedTuple):
    """The rule behind a segment: a format template and its values, formatted only
    when a change is announced (scores are many, changes few)."""

    template: str
    values: tuple = ()

    def text(self) -> str:
        return self.template.format(*self.values)


_CHURN_UP = "churn_probability {:.2f} >= {} {:.2f} + margin {:.2f}"
_CHURN_DOWN = "churn_probability {:.2f} < {} {:.2f} - margin {:.2f}"
_TIER_UP = "CLV rank: top {:.1%} <= {} {:.0%} (- margin {:.0%})"
_TIER_DOWN = "CLV rank: top {:.1%} > {} {:.0%} (+ margin {:.0%})"


def lifecycle(facts: Facts, cfg: SegmentConfig) -> tuple[str, Why]:
    """The lifecycle segment of a customer who has bought at least once."""
    return lifecycle_of(*facts, cfg)


def lifecycle_of(
    churn: float,
    p_alive: float,
    repeat_days: int,
    tenure_days: int,
    quiet_days: int,
    bought_today: bool,
    previous: str | None,
    days_in_segment: float,
    cfg: SegmentConfig,
) -> tuple[str, Why]:
    """`lifecycle` with the facts as arguments (the scorer's path: no `Facts` built)."""
    if repeat_days == 0 and tenure_days <= cfg.new_customer_days:
        return "new", Why("first purchase {} days ago", (tenure_days,))
    if bought_today and previous in ("lapsing", "lost"):
        return "reactivated", Why("bought again while {}", (previous,))
    if quiet_days >= cfg.lost_after_days:
        why = Why("days without a purchase {} >= {}", (quiet_days, cfg.lost_after_days))
        return "lost", why
    band, why = _risk_band(churn, p_alive, previous, cfg)
    if previous == "reactivated":
        if days_in_segment < cfg.reactivated_days and band < _LAPSING:
            return "reactivated", why
        if band < _LAPSING:  # the period is over (a rise to lapsing or lost says so itself)
            why = Why(f"reactivated {{}} days ago (period {{}} days); {why.template}",
                      (int(days_in_segment), cfg.reactivated_days, *why.values))  # fmt: skip
    candidate = RISK_BANDS[band]
    if (
        candidate != previous
        and previous in _BAND_INDEX
        and not bought_today
        and days_in_segment < cfg.min_days_in_segment
    ):
        return previous, why  # too soon to move without a purchase: hold
    return candidate, why


_LAPSING, _LOST = _BAND_INDEX["lapsing"], _BAND_INDEX["lost"]
_THRESHOLD_NAMES = ("at_risk", "lapsing", "lost")


def _risk_band(
    churn: float, p_alive: float, previous: str | None, cfg: SegmentConfig
) -> tuple[int, Why]:
    """Band on the churn-probability scale; a threshold must be crossed by the margin
    (away from the band the customer is in), so a customer near one does not flap."""
    current = _BAND_INDEX.get(previous, 0)
    # No band to hold on to yet (first scores, the end of `new`): no margin.
    held = previous in _BAND_INDEX or previous == "reactivated"
    margin = cfg.risk_margin if held else 0.0
    thresholds = (cfg.at_risk, cfg.lapsing, cfg.lost)
    band = 0
    crossed = None  # (template, index) of the last threshold crossed, for the reason
    for index, threshold in enumerate(thresholds):
        if index < current:  # staying above a threshold already crossed: easier
            if churn < threshold - margin:
                crossed = (_CHURN_DOWN, index)
                break
        elif churn < threshold + margin:
            break
        else:
            crossed = (_CHURN_UP, index)
        band = index + 1
    if band == _LAPSING and p_alive < cfg.lost_p_alive:
        return _LOST, Why("p_alive {:.2f} < {:.2f} while lapsing", (p_alive, cfg.lost_p_alive))
    if crossed is None:  # no threshold crossed: in the first band, or staying in one
        if band == 0 and margin:
            template = "churn_probability {:.2f} < at_risk {:.2f} + margin {:.2f}"
            return band, Why(template, (churn, cfg.at_risk, margin))
        if band == 0:
            return band, Why("churn_probability {:.2f} < at_risk {:.2f}", (churn, cfg.at_risk))
        return band, Why("churn_probability {:.2f}: still {}", (churn, RISK_BANDS[band]))
    template, index = crossed
    return band, Why(template, (churn, _THRESHOLD_NAMES[index], thresholds[index], margin))


def value_tier(
    top_share: float,
    previous: str | None,
    cfg: SegmentConfig,
    days_in_tier: float = math.inf,
    bought_today: bool = False,
) -> tuple[str, Why]:
    """The CLV tier from the customer's top share (0 = highest CLV), with hysteresis:
    a boundary at share s must be passed by s x `tier_margin`, away from the tier the
    customer is in, and without a purchase a tier is kept `min_days_in_segment`.

    >>> cfg = SegmentConfig()
    >>> value_tier(0.049, None, cfg)[0], value_tier(0.059, "top_5", cfg)[0]
    ('top_5', 'top_5')
    >>> value_tier(0.07, "top_5", cfg)[1].text()
    'CLV rank: top 7.0% > top_5 5% (+ margin 20%)'
    """
    tiers = cfg.value_tiers
    count = current = tier = len(tiers)
    margin = 0.0
    if previous is not None:
        margin = cfg.tier_margin
        current = _tier_index(tiers).get(previous, count)
    for index, (_, share) in enumerate(tiers):
        if top_share <= share * (1 + margin if index >= current else 1 - margin):
            tier = index
            break
    if tier < current:  # up: the boundary above the old tier was passed
        why = Why(_TIER_UP, (top_share, *tiers[tier], margin))
    elif tier > current:  # down: the old tier's own boundary was passed
        why = Why(_TIER_DOWN, (top_share, *tiers[current], margin))
    else:
        why = Why("CLV rank: top {:.1%}", (top_share,))
    held = previous is not None and not bought_today and days_in_tier < cfg.min_days_in_segment
    if held:  # too soon to move without a purchase: the tier stays (`rest` too)
        tier = current
    return (tiers[tier][0] if tier < count else "rest"), why


_TIER_INDEX: list[tuple[tuple, dict[str, int]]] = [((), {})]  # last tiers: {name: index}


def _tier_index(tiers: tuple[tuple[str, float], ...]) -> dict[str, int]:
    seen, index = _TIER_INDEX[0]
    if seen is not tiers:
        index = {name: position for position, (name, _) in enumerate(tiers)}
        _TIER_INDEX[0] = (tiers, index)
    return index


def rfm_scores(recency_pct: float, frequency_pct: float, monetary_pct: float) -> str:
    """R, F and M quintile scores 1-5 from population percentiles, as "RFM" digits.

    >>> rfm_scores(0.99, 0.5, 0.1)
    '531'
    """
    r = min(5, 1 + int(recency_pct * 5))
    f = min(5, 1 + int(frequency_pct * 5))
    m = min(5, 1 + int(monetary_pct * 5))
    return f"{r}{f}{m}"


def rfm_segment(r: int, fm: int) -> str:
    """The named RFM segment from recency and the frequency-monetary score (both 1-5)."""
    if r <= 2:
        if fm == 5:
            return "cant_lose_them"
        if fm >= 3:
            return "at_risk"
        return "lost" if r == 1 and fm == 1 else "hibernating"
    if r == 3:
        if fm <= 2:
            return "about_to_sleep"
        return "need_attention" if fm == 3 else "loyal"
    if fm == 1:
        return "new" if r == 5 else "promising"
    if fm <= 3:
        return "potential_loyalist"
    return "champions" if r == 5 else "loyal"


def rfm_named(scores: str) -> str:
    """The RFM segment of "RFM" digits; FM is the mean of F and M, rounded half up.

    >>> rfm_named("534"), rfm_named("145")
    ('champions', 'cant_lose_them')
    """
    return _RFM_NAMES[scores]


_RFM_NAMES = {
    f"{r}{f}{m}": rfm_segment(r, (f + m + 1) // 2)
    for r in range(1, 6)
    for f in range(1, 6)
    for m in range(1, 6)
}
