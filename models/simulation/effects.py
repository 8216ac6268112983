"""Programmes with a known true effect: the simulation in a closed loop with the scorer.

Who is treated depends on the scorer's decisions, so the effect cannot be drawn up
front. `with_programme_effects` feeds the simulated events through a scoring engine;
for every `treatment` trigger of a programme with a true effect it adds, with
probability `response_rate`, one purchase later in the attribution window whose
amount has mean `effect / response_rate`: the expected additional revenue per
treated customer is exactly the programme's effect. Control customers get nothing.
The added purchases are fed back in event-time order, so the lines come out in the
order the engine saw them: scoring the written file with the same settings gives
the same triggers.

>>> from models.config import ScoringConfig
>>> from models.engine import ScoringEngine
>>> from models.simulation import SimulationConfig, simulate
>>> sim = simulate(SimulationConfig(customers=300, days=200, seed=4))
>>> effects = ProgrammeEffects(effects={"save_offer": 30.0}, seed=4)
>>> lines = list(with_programme_effects(sim.events(), ScoringEngine(ScoringConfig()), effects))
>>> added = [line for _, line, _ in lines if b'"channel":"programme"' in line]
>>> len(lines) > sum(1 for _ in sim.events()) and len(added) > 0
True
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Annotated

import orjson
from pydantic import BaseModel, ConfigDict, Field

from models.emitted import Erasure, Output, Stream
from models.engine import ScoringEngine
from models.timeline import SECONDS_PER_DAY, iso_utc
from schemas.common import MAX_AMOUNT

GAMMA_SHAPE = 4.0  # spread of the added purchase's amount around its mean
WINDOW_SHARE = (0.05, 0.9)  # where in the attribution window the added purchase falls


class ProgrammeEffects(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    effects: dict[str, Annotated[float, Field(ge=0, allow_inf_nan=False)]] = Field(
        default_factory=dict,
        description="True additional revenue per treated customer, per programme id "
        "(finite, not below 0: the simulator adds purchases, it takes none away).",
    )
    response_rate: float = Field(0.5, gt=0, le=1)
    seed: int = 0


def with_programme_effects(
    events: Iterable[tuple[float, bytes]],
    engine: ScoringEngine,
    effects: ProgrammeEffects,
    file_name: str = "simulated",
    until: float | None = None,
) -> Iterator[tuple[float, bytes, list[Output]]]:
    """(arrival, line, outputs) for every line, the added purchases included, in the
    order the engine processed them. Purchases due after the last simulated event or
    at or after `until` (epoch seconds: the end of the period, which late lines may
    arrive after) are not added (the period is over), nor those due after the
    customer's erasure."""
    pending: list[tuple[float, int, bytes, str]] = []
    line_number = 0

    def feed(arrival: float, line: bytes) -> tuple[float, bytes, list[Output]]:
        nonlocal line_number, pending
        line_number += 1
        origin = {"source": "file", "file": file_name, "line": line_number}
        outputs = engine.process_raw(line, origin)
        for output in outputs:
            if output.stream is Stream.PROGRAMME_TRIGGERS:
                added = _added_purchase(output.value, engine, effects)
                if added is not None and (until is None or added[0] < until):
                    customer = output.value["customer_id"]
                    heapq.heappush(pending, (added[0], line_number, added[1], customer))
            elif isinstance(output, Erasure) and pending:
                # Nothing follows an erasure: the customer's purchases to come are off.
                pending = [entry for entry in pending if entry[3] != output.key]
                heapq.heapify(pending)
        return arrival, line, outputs

    for arrival, line in events:
        while pending and pending[0][0] < arrival:
            at, _, added_line, _ = heapq.heappop(pending)
            yield feed(at, added_line)
        yield feed(arrival, line)


def _added_purchase(
    trigger: dict, engine: ScoringEngine, effects: ProgrammeEffects
) -> tuple[float, bytes] | None:
    effect = effects.effects.get(trigger["programme_id"], 0.0)
    if trigger["arm"] != "treatment" or effect <= 0:
        return None
    rng = random.Random(f"{effects.seed}:{trigger['event_id']}")
    if rng.random() >= effects.response_rate:
        return None
    programme = engine.config.programmes.programme(trigger["programme_id"])
    low, high = WINDOW_SHARE
    delay = programme.attribution_days * SECONDS_PER_DAY * rng.uniform(low, high)
    start = _epoch(trigger["occurred_at"])
    mean = effect / effects.response_rate
    amount = round(rng.gammavariate(GAMMA_SHAPE, mean / GAMMA_SHAPE), 2)
    amount = min(max(0.01, amount), MAX_AMOUNT)  # within the contract's amounts
    at = round(start + delay)
    event = {
        "event_type": "transaction",
        "schema_version": 1,
        "event_id": f"{trigger['customer_id']}-p{trigger['event_id'][:12]}",
        "customer_id": trigger["customer_id"],
        "occurred_at": iso_utc(at),
        "kind": "purchase",
        "amount": amount,
        "currency": engine.config.base_currency,
        "channel": "programme",
    }
    return float(at), orjson.dumps(event)


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()
