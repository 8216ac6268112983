"""The simulator: contracts, determinism, the latent process, noise, the truth file."""

from __future__ import annotations

import csv
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta

import numpy as np
import orjson
import pytest
from pydantic import ValidationError

from models.config import ScoringConfig
from models.emitted import Output, Stream
from models.engine import ScoringEngine
from models.errors import ConfigError
from models.programmes.catalogue import ProgrammesConfig
from models.simulation import TRUTH_COLUMNS, SimulationConfig, simulate
from models.simulation.effects import ProgrammeEffects, with_programme_effects
from schemas.parsing import Rejected, parse_event
from streams.cli import main
from streams.simulate import write_simulation

START = date(2024, 1, 1)


def _events(config: SimulationConfig) -> list[tuple[float, bytes]]:
    return list(simulate(config).events())


def _documents(lines: list[bytes]) -> list[dict]:
    return [orjson.loads(line) for line in lines]


def _time(document: dict) -> datetime:
    return datetime.fromisoformat(document["occurred_at"])


@pytest.fixture(scope="module")
def two_years() -> tuple[list[dict], list[dict]]:
    """2,000 customers over 730 days, no noise: (event documents, truth rows)."""
    simulation = simulate(SimulationConfig(customers=2_000, days=730, seed=11))
    documents = _documents([line for _, line in simulation.events()])
    return documents, simulation.truth()


# -- contracts ------------------------------------------------------------------------


def test_every_line_is_a_valid_compact_event_when_noise_is_off() -> None:
    events = _events(SimulationConfig(customers=150, days=400, seed=1))
    kinds = set()
    for _, line in events:
        event = parse_event(line)
        assert not isinstance(event, Rejected), (event, line)
        assert orjson.dumps(orjson.loads(line)) == line  # compact, orjson's own bytes
        kinds.add((event.event_type, event.kind))
    # Every kind the simulator knows (erasures are too rare for 150 customers).
    assert len(kinds - {("customer", "erasure")}) == 14


def test_same_seed_same_bytes_and_other_seed_other_bytes() -> None:
    config = SimulationConfig(customers=120, days=90, seed=5, duplicate_rate=0.02)
    first, again = _events(config), _events(config)
    other = _events(config.model_copy(update={"seed": 6}))
    assert first == again
    assert simulate(config).truth() == simulate(config).truth()
    assert [line for _, line in first] != [line for _, line in other]


def test_events_are_in_time_order_within_the_period(two_years) -> None:
    documents, _ = two_years
    times = [_time(document) for document in documents]
    assert times == sorted(times)
    assert times[0] >= datetime.fromisoformat("2024-01-01T00:00:00+00:00")
    assert times[-1] < datetime.fromisoformat("2025-12-31T00:00:00+00:00")  # 730 days
    assert len({t.hour for t in times}) == 24  # spread over the day


def test_timestamps_returned_with_lines_are_the_event_times() -> None:
    for stamp, line in _events(SimulationConfig(customers=30, days=60, seed=2)):
        assert stamp == _time(orjson.loads(line)).timestamp()


def test_event_ids_are_unique_and_customer_ids_sortable(two_years) -> None:
    documents, _ = two_years
    ids = [document["event_id"] for document in documents]
    assert len(ids) == len(set(ids))
    assert all(document["customer_id"].startswith("c") for document in documents)
    assert {len(document["customer_id"]) for document in documents} == {8}


# -- the latent process ---------------------------------------------------------------


def test_each_customer_starts_with_profile_consent_and_a_purchase(two_years) -> None:
    documents, truth = two_years
    first_three = defaultdict(list)
    for document in documents:
        if len(first_three[document["customer_id"]]) < 3:
            first_three[document["customer_id"]].append(document)
    for row in truth:
        profile, consent, purchase = first_three[row["customer_id"]]
        assert (profile["kind"], consent["kind"], purchase["kind"]) == (
            "profile",
            "consent",
            "purchase",
        )
        assert profile["occurred_at"] == purchase["occurred_at"] == row["acquired_at"]
        assert profile["profile"]["signup_at"] == row["acquired_at"]
    acquired = [datetime.fromisoformat(row["acquired_at"]).date() for row in truth]
    assert max(acquired) < START + timedelta(days=365)  # first half of the period


def test_nothing_follows_an_erasure() -> None:
    documents = _documents(
        [line for _, line in _events(SimulationConfig(customers=4_000, days=120, seed=3))]
    )
    erased_at = {d["customer_id"]: _time(d) for d in documents if d["kind"] == "erasure"}
    assert erased_at  # ~0.2% of customers ask for erasure
    for document in documents:
        when = erased_at.get(document["customer_id"])
        if when is not None and document["kind"] != "erasure":
            assert _time(document) < when


def test_refunds_point_to_earlier_purchases_of_the_same_customer(two_years) -> None:
    documents, _ = two_years
    purchases = {}
    refunds = 0
    for document in documents:
        if document["kind"] == "purchase":
            purchases[document["event_id"]] = document
        elif document["kind"] == "refund":
            refunds += 1
            purchase = purchases[document["refund_of"]]  # seen earlier in the file
            assert purchase["customer_id"] == document["customer_id"]
            assert 0 < document["amount"] <= purchase["amount"]
            delay = _time(document) - _time(purchase)
            assert timedelta(days=0.9) < delay < timedelta(days=30.1)
    assert 0.02 < refunds / len(purchases) < 0.07


def test_basket_items_sum_to_the_amount_to_the_cent(two_years) -> None:
    documents, _ = two_years
    for document in documents:
        if document["kind"] == "purchase":
            items = document["items"]
            assert 1 <= len(items) <= 3
            cents = sum(item["quantity"] * round(item["unit_price"] * 100) for item in items)
            assert cents == round(document["amount"] * 100)
            assert 0 <= document["margin"] <= document["amount"]


def test_spend_and_purchase_rates_follow_the_population_parameters(two_years) -> None:
    documents, truth = two_years
    amounts = [d["amount"] for d in documents if d["kind"] == "purchase"]
    assert 35 < np.mean(amounts) < 70  # mean ~ p gamma / (q - 1) = 50
    rate = np.array([row["purchase_rate_per_day"] for row in truth])
    purchases = np.array([row["n_purchases"] for row in truth])
    assert np.corrcoef(rate, purchases)[0, 1] > 0.4


def test_interactions_are_the_majority(two_years) -> None:
    documents, _ = two_years
    share = sum(d["event_type"] == "interaction" for d in documents) / len(documents)
    assert 0.7 < share < 0.85


def test_logins_fade_before_dropout(two_years) -> None:
    documents, truth = two_years
    dropout = {
        row["customer_id"]: datetime.fromisoformat(row["dropout_at"])
        for row in truth
        if row["dropout_at"]
        and datetime.fromisoformat(row["dropout_at"]) - datetime.fromisoformat(row["acquired_at"])
        > timedelta(days=120)
    }
    acquired = {row["customer_id"]: datetime.fromisoformat(row["acquired_at"]) for row in truth}
    early = late = 0
    for document in documents:
        customer = document["customer_id"]
        if document["kind"] == "login" and customer in dropout:
            before = dropout[customer] - _time(document)
            if timedelta(0) < before <= timedelta(days=45):
                late += 1
            elif before > timedelta(days=45):
                early += 1
    early_days = sum((dropout[c] - acquired[c]).days - 45 for c in dropout)
    late_days = 45 * len(dropout)
    assert late / late_days < 0.8 * (early / early_days)


def test_complaints_rise_and_survey_scores_fall_before_dropout(two_years) -> None:
    documents, truth = two_years
    dropout = {
        row["customer_id"]: datetime.fromisoformat(row["dropout_at"])
        for row in truth
        if row["dropout_at"]
    }
    scores: dict[bool, list[float]] = {True: [], False: []}
    for document in documents:
        customer = document["customer_id"]
        if document["kind"] == "survey":
            fading = customer in dropout and _time(document) > dropout[customer] - timedelta(60)
            scores[fading].append(document["value"])
    assert np.mean(scores[True]) < np.mean(scores[False]) - 1.0


def test_the_next_category_depends_on_the_last_one(two_years) -> None:
    documents, _ = two_years
    last: dict[str, str] = {}
    pairs = []
    for document in documents:
        if document["kind"] == "purchase":
            category = document["items"][0]["category"]
            if document["customer_id"] in last:
                pairs.append((last[document["customer_id"]], category))
            last[document["customer_id"]] = category
    half = len(pairs) // 2
    train, test = pairs[:half], pairs[half:]
    popular = Counter(nxt for _, nxt in train).most_common(1)[0][0]
    after: dict[str, Counter] = defaultdict(Counter)
    for previous, nxt in train:
        after[previous][nxt] += 1
    by_popularity = np.mean([nxt == popular for _, nxt in test])
    by_transition = np.mean([after[prev].most_common(1)[0][0] == nxt for prev, nxt in test])
    assert by_transition > by_popularity + 0.1


# -- noise ----------------------------------------------------------------------------


def test_noise_rates_give_roughly_the_requested_counts() -> None:
    clean = SimulationConfig(customers=400, days=200, seed=9)
    noisy = clean.model_copy(update={"duplicate_rate": 0.05, "malformed_rate": 0.03})
    noisy = noisy.model_copy(update={"late_rate": 0.02})
    simulation = simulate(noisy)
    n = sum(simulation.counts().values())
    summary = simulation.noise.summary()
    lines = [line for _, line in simulation.events()]
    assert len(lines) == n + summary["duplicates"]
    for name, rate in (("duplicates", 0.05), ("malformed", 0.03), ("late", 0.02)):
        assert abs(summary[name] - rate * n) < 5 * np.sqrt(rate * n), name

    repeats = sum(count - 1 for count in Counter(lines).values())
    assert repeats == summary["duplicates"]  # same bytes again
    rejected = [line for line in lines if isinstance(parse_event(line), Rejected)]
    # Every malformed line is rejected, and so are its duplicates.
    assert summary["malformed"] <= len(rejected) <= summary["malformed"] + summary["duplicates"]
    clean_lines = {line for _, line in simulate(clean).events()}
    assert not set(rejected) & clean_lines


def test_late_lines_arrive_days_after_they_occurred() -> None:
    simulation = simulate(SimulationConfig(customers=300, days=120, seed=4, late_rate=0.02))
    delays = []
    for arrival, line in simulation.events():
        delay = arrival - _time(orjson.loads(line)).timestamp()
        if delay > 0:
            delays.append(delay / 86_400)
    assert len(delays) == simulation.noise.late
    assert min(delays) >= 3 and max(delays) <= 10


# -- truth and files ------------------------------------------------------------------


def test_truth_rows_match_the_emitted_events(two_years) -> None:
    documents, truth = two_years
    purchases = Counter(d["customer_id"] for d in documents if d["kind"] == "purchase")
    interactions = Counter(d["customer_id"] for d in documents if d["event_type"] == "interaction")
    erased = {d["customer_id"] for d in documents if d["kind"] == "erasure"}
    assert [row["customer_id"] for row in truth] == sorted(row["customer_id"] for row in truth)
    for row in truth:
        customer = row["customer_id"]
        assert row["n_purchases"] == purchases[customer]
        assert row["n_interactions"] == interactions[customer]
        assert row["erased"] == (customer in erased)
        assert row["alive_at_end"] == (row["dropout_at"] == "")
        assert len(row["top_categories"].split("|")) == 3


def test_write_simulation_writes_events_truth_and_a_summary(tmp_path) -> None:
    config = SimulationConfig(customers=50, days=60, seed=8, duplicate_rate=0.01)
    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.csv"
    summary = write_simulation(config, events, truth)
    lines = events.read_bytes().splitlines()
    assert lines == [line for _, line in simulate(config).events()]
    assert summary["lines"] == len(lines) == summary["events"] + summary["noise"]["duplicates"]
    assert summary["counts"]["customer.profile"] == 50
    with open(truth, newline="") as source:
        rows = list(csv.DictReader(source))
    assert tuple(rows[0]) == TRUTH_COLUMNS
    expected = simulate(config).truth()
    assert [row["customer_id"] for row in rows] == [row["customer_id"] for row in expected]
    assert all(
        row[column] == str(value)
        for row, truth_row in zip(rows, expected, strict=True)
        for column, value in truth_row.items()
    )
    write_simulation(config, tmp_path / "again.jsonl", tmp_path / "again.csv")
    assert (tmp_path / "again.jsonl").read_bytes() == events.read_bytes()
    assert (tmp_path / "again.csv").read_bytes() == truth.read_bytes()


def test_interactions_can_be_switched_off_without_changing_purchases() -> None:
    config = SimulationConfig(customers=100, days=120, seed=12)
    quiet = config.model_copy(update={"interactions": False})
    with_interactions = simulate(config).counts()
    without = simulate(quiet).counts()
    assert sum(n for key, n in without.items() if key.startswith("interaction.")) == 0
    assert without["transaction.purchase"] == with_interactions["transaction.purchase"]


def test_config_is_strict() -> None:
    with pytest.raises(ValidationError):
        SimulationConfig(customers=1, days=10, seed=0, unknown=1)
    with pytest.raises(ValidationError):
        SimulationConfig(customers=1, days=10, seed=0, acquisition_days=11)
    with pytest.raises(ValidationError):
        SimulationConfig(customers=0, days=10, seed=0)
    for aliased in (-1, 2**64):  # drawn as seed 2**64 - 1 and 0 were, the same files
        with pytest.raises(ValidationError):
            SimulationConfig(customers=1, days=1, seed=aliased)
    tiny = simulate(SimulationConfig(customers=1, days=1, seed=2**64 - 1))
    assert tiny.counts()["customer.profile"] == 1


def test_the_period_must_lie_within_the_contracts_time_range() -> None:
    # Timestamps are 1970-01-01 .. 2200-01-01 (schemas.common): outside, every event is
    # rejected; past year 9999 the dates cannot even be written.
    for start, days in ((date(1969, 12, 1), 60), (date(2199, 12, 1), 60), (date(9999, 12, 25), 10)):
        with pytest.raises(ValidationError):
            SimulationConfig(customers=1, days=days, seed=0, start=start)
    for start in (date(1970, 1, 1), date(2199, 12, 2)):  # the first and the last 30 days
        simulation = simulate(SimulationConfig(customers=20, days=30, seed=1, start=start))
        for _, line in simulation.events():
            assert not isinstance(parse_event(line), Rejected), line


# -- the command line -----------------------------------------------------------------


@pytest.mark.parametrize(
    "option",
    [
        ("--customers", "0"),
        ("--days", "0"),
        ("--days", "40000"),
        ("--duplicate-rate", "1.5"),
        ("--late-rate", "-0.1"),
        ("--malformed-rate", "nan"),
        ("--start", "1969-12-01"),
        ("--start", "9999-12-25"),
        ("--programme-effect", "save_offer=nan"),
        ("--programme-effect", "save_offer=inf"),
        ("--programme-effect", "save_offer=-5"),
    ],
)
def test_an_invalid_simulate_option_is_one_line_and_exit_code_2(option, tmp_path, capsys) -> None:
    out = tmp_path / "events.jsonl"
    argv = ["simulate", "--customers", "5", "--days", "10", "--out", str(out), *option]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("clvstream: ") and err.count("\n") == 1  # one line, no traceback
    assert option[0] in err
    assert not out.exists()


@pytest.mark.parametrize("effect", [float("nan"), float("inf"), -5.0])
def test_a_true_effect_is_a_finite_amount_not_below_zero(effect) -> None:
    # nan gave every responder a purchase of 0.01, inf purchases with amount null (not a
    # valid event), and a negative effect was taken as none at all: refused instead.
    with pytest.raises(ValidationError):
        ProgrammeEffects(effects={"save_offer": effect})
    assert ProgrammeEffects(effects={"save_offer": 0.0, "win_back": 25.0}).effects["win_back"] == 25


def test_a_settings_file_without_programme_effects_is_refused_not_ignored(tmp_path, capsys) -> None:
    config = tmp_path / "settings.toml"
    config.write_text("[scoring]\nchurn_window_days = 60\n")
    out = tmp_path / "events.jsonl"
    argv = ["simulate", "--customers", "5", "--days", "10", "--out", str(out)]
    assert main([*argv, "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clvstream: ") and "--programme-effect" in err and err.count("\n") == 1
    assert not out.exists()
    argv += ["--programme-effect", "save_offer=5"]
    assert main([*argv, "--config", str(config)]) == 0 and out.exists()


def test_a_programme_given_two_true_effects_is_refused(tmp_path, capsys) -> None:
    # The second value silently replaced the first.
    out = tmp_path / "events.jsonl"
    argv = ["simulate", "--customers", "5", "--days", "10", "--out", str(out)]
    argv += ["--programme-effect", "save_offer=5", "--programme-effect", "save_offer = 10"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("clvstream: ") and "save_offer" in err and err.count("\n") == 1
    assert not out.exists()


class _TriggeringEngine:
    """A real engine that also answers each listed purchase with a `save_offer`
    treatment trigger (who is treated is the scorer's business, not this test's)."""

    def __init__(self, treated: set[bytes]) -> None:
        self.engine = ScoringEngine(ScoringConfig())
        self.config, self.treated = self.engine.config, treated

    def process_raw(self, line: bytes, origin: dict) -> list[Output]:
        outputs = self.engine.process_raw(line, origin)
        if line in self.treated:
            event = orjson.loads(line)
            trigger = {
                "event_id": f"{event['event_id']:0>32}",
                "customer_id": event["customer_id"],
                "occurred_at": event["occurred_at"],
                "programme_id": "save_offer",
                "arm": "treatment",
            }
            outputs.append(Output(Stream.PROGRAMME_TRIGGERS, event["customer_id"], trigger))
        return outputs


def _line(customer: str, day: float, kind: str) -> tuple[float, bytes]:
    at = datetime(2024, 1, 1, tzinfo=UTC) + timedelta(days=day)
    event = {"event_id": f"{customer}-{kind}", "customer_id": customer}
    event["occurred_at"] = at.isoformat()
    if kind == "erasure":
        event |= {"event_type": "customer", "kind": "erasure"}
    else:
        event |= {"event_type": "transaction", "kind": "purchase", "amount": 20.0}
        event["currency"] = "USD"
    return at.timestamp(), orjson.dumps(event)


def test_no_programme_purchase_follows_the_customers_erasure() -> None:
    # c1 and c2 are treated on day 0; c1 asks for erasure on day 2. The added purchase,
    # due within the 60-day window, re-created the erased customer.
    window = ScoringConfig().programmes.programme("save_offer").attribution_days
    events = [
        _line("c1", 0.0, "purchase"),
        _line("c2", 0.0, "purchase"),
        _line("c1", 2.0, "erasure"),
        _line("c3", window + 1.0, "purchase"),
    ]
    engine = _TriggeringEngine({events[0][1], events[1][1]})
    effects = ProgrammeEffects(effects={"save_offer": 30.0}, response_rate=1.0)
    lines = [orjson.loads(line) for _, line, _ in with_programme_effects(events, engine, effects)]
    added = [line["customer_id"] for line in lines if line.get("channel") == "programme"]
    assert added == ["c2"]


def test_the_truth_counts_the_purchases_programme_effects_add(tmp_path) -> None:
    # The truth's n_purchases left out the purchases added for treated customers, so it
    # disagreed with the events file for every customer who got one.
    config = SimulationConfig(customers=300, days=200, seed=4)
    events, truth = tmp_path / "events.jsonl", tmp_path / "truth.csv"
    effects = ProgrammeEffects(effects={"save_offer": 30.0}, seed=4)
    summary = write_simulation(config, events, truth, effects=effects)
    assert summary["programme_effects"]["purchases_added"] > 0
    documents = _documents(events.read_bytes().splitlines())
    purchases = Counter(d["customer_id"] for d in documents if d.get("kind") == "purchase")
    with open(truth, newline="") as source:
        rows = list(csv.DictReader(source))
    assert {row["customer_id"]: int(row["n_purchases"]) for row in rows} == {
        row["customer_id"]: purchases[row["customer_id"]] for row in rows
    }


def test_programme_purchases_stay_within_the_simulated_period(tmp_path) -> None:
    # Late lines arrive up to 10 days after the period; purchases added for treated
    # customers were written as long as a line still came, so some fell after its end.
    config = SimulationConfig(customers=300, days=200, seed=4, late_rate=0.05)
    effects = ProgrammeEffects(
        effects={"save_offer": 30.0, "win_back": 30.0, "onboarding_nurture": 30.0}, seed=4
    )
    events = tmp_path / "events.jsonl"
    summary = write_simulation(config, events, effects=effects)
    assert summary["programme_effects"]["purchases_added"] > 0
    end = datetime.combine(config.end, datetime.min.time(), UTC)
    documents = _documents(events.read_bytes().splitlines())
    assert max(_time(document) for document in documents) < end


def test_programme_purchases_are_valid_events_however_large_the_effect() -> None:
    # A purchase of mean effect / response rate (here 2e9) went over the contract's
    # largest amount (1e9) and was rejected as bad input.
    events = [_line(f"c{number}", 0.0, "purchase") for number in range(20)]
    events.append(_line("c99", 70.0, "purchase"))
    engine = _TriggeringEngine({line for _, line in events[:20]})
    effects = ProgrammeEffects(effects={"save_offer": 1e9}, response_rate=0.5)
    added = [
        line
        for _, line, _ in with_programme_effects(events, engine, effects)
        if b'"channel":"programme"' in line
    ]
    assert added
    assert not [line for line in added if isinstance(parse_event(line), Rejected)]


def test_effects_with_programmes_switched_off_are_refused(tmp_path) -> None:
    # Nobody can be treated: the file came out without any effect while the summary
    # reported the true effects as given.
    scoring = ScoringConfig(programmes=ProgrammesConfig(enabled=False))
    effects = ProgrammeEffects(effects={"save_offer": 30.0})
    events = tmp_path / "events.jsonl"
    config = SimulationConfig(customers=20, days=30, seed=1)
    with pytest.raises(ConfigError, match="switched off"):
        write_simulation(config, events, effects=effects, scoring=scoring)
    assert not events.exists()
