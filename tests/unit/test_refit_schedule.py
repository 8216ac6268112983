"""A partition's own refit schedule: its fits run off the event loop, and a caller
that must not block is told to hold an event back until the fit it needs is done."""

from __future__ import annotations

from concurrent.futures import Future

from models.config import ScoringConfig
from models.engine import ScoringEngine
from models.refit import fit_value_params
from models.timeline import SECONDS_PER_DAY, day_of
from tests.factories import BASE, purchase, raw
from tests.unit.test_engine import random_history

CONFIG = ScoringConfig(
    min_customers_for_fit=50, min_fit_history_days=60, min_repeat_customers_for_spend_fit=10
)
T0 = BASE.timestamp()
DAY0 = day_of(T0)


class HeldExecutor:
    """Fits at once, or (held) never until released: a fit process still running."""

    def __init__(self) -> None:
        self.held = False
        self.waiting: list[tuple[Future, tuple]] = []

    def submit(self, fn, *args):
        future: Future = Future()
        if self.held:
            self.waiting.append((future, args))
        else:
            _run(future, fn, args)
        return future

    def release(self) -> None:
        for future, args in self.waiting:
            _run(future, fit_value_params, args)
        self.waiting = []


def _run(future: Future, fn, args: tuple) -> None:
    try:
        future.set_result(fn(*args))
    except Exception as error:
        future.set_exception(error)


def origin(line: int) -> dict:
    return {"source": "file", "file": "t.jsonl", "line": line}


def test_an_event_that_would_finish_a_running_fit_early_waits_for_it():
    """Alone, a partition whose watermark reaches the next refit slot before its
    pending refit's install day (a gap in the data started that refit between slots)
    finishes the pending one first. An event that takes it there must wait while that
    fit still runs: the service's event loop would block on the fit process."""
    executor = HeldExecutor()
    engine = ScoringEngine(CONFIG, fit_executor=executor)
    for number, event in enumerate(random_history(300, 200, seed=4), 1):
        engine.process_raw(raw(event), origin(number))
    refits = engine._refits
    gap_day = refits.next_day + 5 - DAY0  # a gap: the next refit starts 5 days late
    executor.held = True
    engine.process_raw(raw(purchase("c1", gap_day + 1)), origin(10_000))
    pending = refits.pending
    assert pending is not None and not pending.future.done()
    assert refits.next_day < pending.install_day  # its slot comes before its install day
    at = (refits.next_day - DAY0 + 1) * SECONDS_PER_DAY + T0  # watermark onto that slot
    assert engine.waiting_for_fit(at)
    executor.release()
    assert not engine.waiting_for_fit(at)
    day = (at - T0) / SECONDS_PER_DAY
    outputs = engine.process_raw(raw(purchase("c2", day)), origin(10_001))
    assert any(
        o.value.get("status") == "fitted" for o in outputs if o.value.get("model") == "value"
    )
