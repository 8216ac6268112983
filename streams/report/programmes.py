"""Programme results: the measured incremental revenue of each programme, pooled
over the scopes (partitions) that measure it, with a verdict against its break-even.

Each scope's latest `programme_result` carries its arms' sufficient statistics; the
pooling and the CUPED estimate are `models.programmes.measurement`'s (`ArmStats`,
`estimate`), the same the service's own pooled summary uses.

>>> results = ProgrammeResults(until=float("inf"))
>>> results.add_trigger({"programme_id": "p", "arm": "control"}, in_period=True)
>>> [(row.id, row.triggered_control, row.verdict) for row in results.rows({}, margin=1.0)]
[('p', 1, 'not measured yet')]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from models.programmes.measurement import ArmStats, Estimate, estimate
from streams.report.options import order

MIN_WINDOWS = 30  # closed windows per arm below which an estimate is only indicative


def effect_text(per_customer: float, low: float, high: float) -> str:
    """A measured effect with its 95 % interval, as the report and the CLI print it.
    The interval is not symmetric (its ends move with the revenue's skewness), so
    both ends are shown, not a ± half width.

    >>> effect_text(31.72, -146.32, 91.07)
    '+31.72 (-146.32 to +91.07)'
    >>> effect_text(1234.5, 1000, 1500)
    '+1,234.50 (+1,000.00 to +1,500.00)'
    """
    return f"{per_customer:+,.2f} ({low:+,.2f} to {high:+,.2f})"


def roi_text(result: Estimate, margin: float) -> str:
    """The ROI with the range its effect's 95 % interval gives it: the cost of the
    measured contacts is known, so the ROI is exactly as uncertain as the incremental
    revenue (a point ROI would look precise where the interval spans break-even).
    A dash without cost.

    >>> fit = Estimate(100, 100, 9.0, -1.0, 14.0, 0.0, 0.0, 900.0, 200.0, 3.5, 50.0)
    >>> roi_text(fit, margin=1.0)
    '+350% (-150% to +600%)'
    """
    if not result.cost > 0:
        return "–"
    low, high = (
        (per_customer * result.treated * margin - result.cost) / result.cost
        for per_customer in (result.low, result.high)
    )
    return f"{result.roi:+,.0%} ({low:+,.0%} to {high:+,.0%})"


@dataclass(frozen=True)
class ProgrammeRow:
    id: str
    name: str
    cost_per_contact: float | None  # configured, else the measured mean
    break_even: float | None  # incremental revenue per treated that pays for a contact
    triggered_treatment: int  # in the period
    triggered_control: int
    windows_treated: int  # closed attribution windows measured (to the period end)
    windows_control: int
    result: Estimate | None
    cost: float
    status: str  # active, stopped, or "" before any measurement
    detail: str

    @property
    def indicative(self) -> bool:
        """Too few closed windows in an arm for the interval to be trusted."""
        return min(self.windows_treated, self.windows_control) < MIN_WINDOWS

    @property
    def verdict(self) -> str:
        """pays off / loses money when the whole 95 % interval is on one side of the
        break-even, else unclear yet.

        >>> from dataclasses import replace
        >>> from models.programmes.measurement import Estimate
        >>> fit = Estimate(40, 40, 9.0, 4.0, 14.0, 0.0, 0.0, 360.0, 80.0, 3.5, 50.0)
        >>> row = ProgrammeRow("p", "P", 2.0, 2.0, 0, 0, 40, 40, fit, 80.0, "active", "")
        >>> row.verdict, replace(row, break_even=5.0).verdict, replace(row, result=None).verdict
        ('pays off', 'unclear yet', 'not measured yet')
        """
        result, break_even = self.result, self.break_even
        if result is None or break_even is None:
            return "not measured yet"
        if result.low >= break_even:
            return "pays off"
        if result.high < break_even:
            return "loses money"
        return "unclear yet"


class ProgrammeResults:
    """Folds the programme events: triggers of the period, and the latest result of
    each (programme, scope) before `until` (the period's end, epoch seconds)."""

    def __init__(self, until: float) -> None:
        self._until = until
        self._ids: set[str] = set()
        self._triggers: Counter[tuple[str, str]] = Counter()
        self._results: dict[tuple[str, str], tuple[float, Mapping[str, Any]]] = {}

    def add_trigger(self, value: Mapping[str, Any], in_period: bool) -> None:
        self._ids.add(value["programme_id"])
        if in_period:
            self._triggers[value["programme_id"], value["arm"]] += 1

    def add_outcome(self, value: Mapping[str, Any]) -> None:
        self._ids.add(value["programme_id"])

    def add_result(self, at: float, value: Mapping[str, Any]) -> None:
        """A `programme_result` at `at`; a later one of the same scope replaces it."""
        programme_id = value["programme_id"]
        self._ids.add(programme_id)
        if at >= self._until:
            return
        ArmStats.from_dict(value["treatment_stats"])  # readable, or skipped as a whole
        ArmStats.from_dict(value["control_stats"])
        scope = (programme_id, str(value.get("scope", "")))
        held = self._results.get(scope)
        if held is None or at >= held[0]:
            self._results[scope] = (at, value)

    def rows(
        self, programmes: Mapping[str, tuple[str, float]], margin: float
    ) -> tuple[ProgrammeRow, ...]:
        """A row per programme seen, the configured ones (name, cost per contact) first."""
        ids = order(self._ids, tuple(programmes))
        rows = []
        for programme_id in ids:
            name, cost_per_contact = programmes.get(programme_id, (programme_id, None))
            scopes = [v for (p, _), (_, v) in sorted(self._results.items()) if p == programme_id]
            treated, control, status, detail = pool_results(scopes)
            if cost_per_contact is None and treated.n:
                cost_per_contact = treated.cost / treated.n
            rows.append(
                ProgrammeRow(
                    id=programme_id,
                    name=name,
                    cost_per_contact=cost_per_contact,
                    break_even=None if cost_per_contact is None else cost_per_contact / margin,
                    triggered_treatment=self._triggers[programme_id, "treatment"],
                    triggered_control=self._triggers[programme_id, "control"],
                    windows_treated=treated.n,
                    windows_control=control.n,
                    result=estimate(treated, control, margin=margin),
                    cost=treated.cost,
                    status=status,
                    detail=detail,
                )
            )
        return tuple(rows)


def pool_results(results: list[Mapping[str, Any]]) -> tuple[ArmStats, ArmStats, str, str]:
    """Pool the latest `programme_result` of each scope: the arms' sums add up; the
    programme counts as stopped where any scope stopped it.

    >>> stats = {"n": 2, "sx": 0, "sy": 10, "sxx": 0, "syy": 50, "sxy": 0, "stake": 0, "cost": 4}
    >>> treated, control, status, detail = pool_results([
    ...     {"treatment_stats": stats, "control_stats": stats, "status": "active", "detail": ""},
    ...     {"treatment_stats": stats, "control_stats": stats, "status": "stopped",
    ...      "detail": "stopped: too little"}])
    >>> treated.n, treated.sy, treated.cost, status, detail
    (4, 20.0, 8.0, 'stopped', 'stopped: too little (in 1 of 2 scopes)')
    >>> pool_results([{"treatment_stats": stats, "control_stats": stats, "status": "active",
    ...                "erased_windows": {"treatment": 3, "control": 0}}])[3][:60]
    'customers erased before their window closed: 3 treated, 0 co'
    """
    treated, control = ArmStats(), ArmStats()
    stopped = []
    erased = [0, 0]
    for result in results:
        treated = treated.merged(ArmStats.from_dict(result["treatment_stats"]))
        control = control.merged(ArmStats.from_dict(result["control_stats"]))
        if result.get("status") == "stopped":
            stopped.append(result.get("detail") or "stopped")
        counts = result.get("erased_windows") or {}
        erased[0] += int(counts.get("treatment", 0))
        erased[1] += int(counts.get("control", 0))
    if not results:
        return treated, control, "", ""
    attrition = (
        f"customers erased before their window closed: {erased[0]:,} treated, {erased[1]:,} "
        "control first exposures (not measured)"
        if any(erased)
        else ""
    )
    if not stopped:
        return treated, control, "active", attrition
    detail = stopped[0]
    if len(results) > 1:
        detail += f" (in {len(stopped)} of {len(results)} scopes)"
    return treated, control, "stopped", "; ".join(filter(None, (detail, attrition)))
