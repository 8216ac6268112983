"""Partitions sharing one value model: the leader publishes, followers install the
same parameters on the same days and wait rather than run ahead of it."""

from __future__ import annotations

from models.checkpoint import checkpoint_bytes, restore_checkpoint
from models.config import ScoringConfig
from models.engine import ScoringEngine
from models.shared_fits import SharedFits
from models.timeline import SECONDS_PER_DAY, day_of
from models.transition import Stream
from tests.factories import BASE, purchase, raw
from tests.unit.test_engine import random_history

CONFIG = ScoringConfig(
    min_customers_for_fit=50, min_fit_history_days=60, min_repeat_customers_for_spend_fit=10
)
T0 = BASE.timestamp()


def origin(line: int) -> dict:
    return {"source": "file", "file": "t.jsonl", "line": line}


def installs(outputs) -> list[tuple[str, str, str]]:
    return [
        (o.value["status"], o.value["model_version"], o.value["occurred_at"])
        for o in outputs
        if o.stream is Stream.MODEL_HEALTH and o.value.get("model") == "value"
    ]


def test_a_follower_installs_the_leaders_fits_on_their_days_and_waits_for_them():
    book = SharedFits(CONFIG.refit_install_delay_days)
    leader = ScoringEngine(CONFIG, shared=book, publish=book.apply, scope="p0")
    follower = ScoringEngine(CONFIG, shared=book, scope="p1")
    history = random_history(400, 300, seed=2)
    leading = [e for e in history if int(e["customer_id"][1:]) % 2 == 0]
    following = [e for e in history if int(e["customer_id"][1:]) % 2 == 1]
    assert follower.waiting_for_fit(T0)  # nothing published yet
    led, followed, held = [], [], 0
    for number, event in enumerate(following, 1):
        at = _time(event)
        while follower.waiting_for_fit(at) and leading:  # the leader goes on meanwhile
            held += 1
            led += leader.process_raw(raw(leading.pop(0)), origin(number))
        followed += follower.process_raw(raw(event), origin(number))
    assert held > 0
    by_leader = [i for i in installs(led) if i[0] == "fitted"]
    by_follower = [i for i in installs(followed) if i[0] == "fitted"]
    assert len(by_follower) >= 2 and by_follower == by_leader[: len(by_follower)]
    assert follower._refits.late_installs == 0


def test_a_restored_follower_does_not_install_a_fit_twice():
    book = SharedFits(30)
    follower = ScoringEngine(CONFIG, shared=book, scope="p1")
    params = follower.scorer.params
    book.apply(("progress", day_of(T0) + 100))
    book.apply(("start", day_of(T0) + 40))
    assert follower.waiting_for_fit(T0 + 45 * SECONDS_PER_DAY)  # its outcome is unknown
    record = ("outcome", day_of(T0) + 40, {**params.as_dict(), "fitted_through": "2024-01-10"},
              None, False)  # fmt: skip
    book.apply(record)
    assert not follower.waiting_for_fit(T0 + 45 * SECONDS_PER_DAY)
    assert follower.waiting_for_fit(T0 + 140 * SECONDS_PER_DAY)  # past what is known
    outputs = []
    for day in (1, 20, 39, 41, 50):
        outputs += follower.process_raw(raw(purchase("a", day)), origin(day))
    assert installs(outputs) == [
        ("fitted", follower.scorer.model_version, "2024-02-10T00:00:00+00:00")
    ]
    twin = ScoringEngine(CONFIG, shared=book, states=dict(follower.states), scope="p1",
                         derive_from_states=False)  # fmt: skip
    restore_checkpoint(twin, checkpoint_bytes(follower))
    later = twin.process_raw(raw(purchase("a", 60)), origin(60))
    assert installs(later) == [] and twin.scorer.model_version == follower.scorer.model_version


def test_the_first_outcome_of_an_install_day_stands():
    book = SharedFits(30)
    assert book.apply(("outcome", 10, None, "first", False))
    assert not book.apply(("outcome", 10, None, "second", False))
    assert not book.apply(("start", 10))  # known already: a repeat changes nothing
    assert book.outcomes[10].error == "first"
    book.apply(("progress", 50))
    assert not book.apply(("progress", 20))  # a restarted leader's older progress
    assert book.known_through == 80


def _time(event: dict) -> float:
    from datetime import datetime

    return datetime.fromisoformat(event["occurred_at"]).timestamp()
