"""`clvstream score --partitions N --jobs J`: customers split as the service splits
them, each partition scored on its own, in one process or several."""

from __future__ import annotations

import csv
from datetime import date

import orjson
import pytest

from models.config import ScoringConfig
from models.simulation import SimulationConfig, simulate
from streams.cli import main
from streams.offline import score_file
from streams.topics import partition_of, routing_fields

CONFIG = ScoringConfig(
    min_customers_for_fit=100, min_fit_history_days=60, min_repeat_customers_for_spend_fit=20
)
AS_OF = date(2024, 9, 1)


@pytest.fixture(scope="module")
def events_file(tmp_path_factory):
    """A simulated population (purchases, interactions, programmes) with bad lines."""
    path = tmp_path_factory.mktemp("partitioned") / "events.jsonl"
    simulation = simulate(SimulationConfig(customers=400, days=240, seed=4))
    lines = [line for _, line in simulation.events()]
    lines[40:40] = [b"{broken", b'{"event_type":"x","customer_id":"zz"}', b"[1, 2]"]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def run(events, folder, name: str, **options):
    out = folder / f"{name}.csv"
    emitted, dead = folder / f"{name}.emitted.jsonl", folder / f"{name}.dead.jsonl"
    result = score_file(
        events,
        out,
        CONFIG,
        emitted_path=emitted,
        dead_letter_path=dead,
        show_progress=False,
        fit_in_background=options.pop("fit_in_background", False),
        **options,
    )
    return result, out.read_bytes(), emitted.read_bytes(), dead.read_bytes()


def rows(data: bytes) -> dict[str, dict]:
    return {row["customer_id"]: row for row in csv.DictReader(data.decode().splitlines())}


def test_the_output_does_not_depend_on_how_many_processes_score_the_partitions(
    events_file, tmp_path
):
    one = run(events_file, tmp_path, "one", partitions=3, jobs=1)
    two = run(events_file, tmp_path, "two", partitions=3, jobs=2)
    assert one[1:] == two[1:]  # scores, emitted events, dead letters: byte for byte
    # the leader's refits in a fit process of its own (as `clvstream score` runs them)
    fitted_aside = run(events_file, tmp_path, "aside", partitions=3, jobs=2, fit_in_background=True)
    assert one[1:] == fitted_aside[1:]
    assert one[0].counters == two[0].counters
    letters = [orjson.loads(line) for line in two[3].splitlines()]
    assert sorted(d["reason"] for d in letters) == [
        "malformed_json",
        "malformed_json",
        "unknown_event_type",
    ]
    lines = [line for line in events_file.read_bytes().splitlines() if line.strip()]
    assert two[0].counters["read"] == len(lines)
    values = [orjson.loads(line)["value"] or {} for line in two[2].splitlines()]  # tombstones
    scopes = {value.get("scope") for value in values}
    assert {"p0", "p1", "p2"} <= scopes  # programme results per partition, as in the service


@pytest.mark.parametrize("partitioner", ["murmur2", "crc32"])
def test_a_partition_scores_its_customers_as_if_it_had_only_their_events(
    events_file, tmp_path, partitioner
):
    """What makes N offline partitions the service's N partitions: each has its own
    clock and online models, fed only with its own customers' events (those the
    producers' partitioner puts on it); the value model is one for all, fitted by
    partition 0 on every partition's customers, as one partition fits it."""
    options = {"partitions": 2, "jobs": 2, "as_of": AS_OF, "partitioner": partitioner}
    _, scores, emitted, _ = run(events_file, tmp_path, "split", **options)
    split = rows(scores)
    assert len({row["model_version"] for row in split.values()}) == 1  # one value model
    _, _, whole_emitted, _ = run(events_file, tmp_path, "whole", as_of=AS_OF)
    final, whole_final = last_value_fit(emitted, "p0"), last_value_fit(whole_emitted, "all")
    assert final["metrics"]["customers"] == whole_final["metrics"]["customers"]
    for name, value in whole_final["parameters"].items():
        assert final["parameters"][name] == pytest.approx(value, rel=1e-3)
    seen: set[str] = set()
    for partition in (0, 1):
        own = [
            line
            for line in events_file.read_bytes().splitlines()
            if _customer(line) is not None
            and partition_of(_customer(line), 2, partitioner) == partition
        ]
        alone = tmp_path / f"alone-{partition}.jsonl"
        alone.write_bytes(b"\n".join(own) + b"\n")
        config = CONFIG.for_partition(2)
        out = tmp_path / f"alone-{partition}.csv"
        score_file(alone, out, config, as_of=AS_OF, show_progress=False, fit_in_background=False)
        by_itself = rows(out.read_bytes())
        assert by_itself
        assert all(  # its own history ...
            split[cid][column] == row[column]
            for cid, row in by_itself.items()
            for column in ("frequency", "recency_days", "tenure_days", "total_spend")
        )
        # ... and the value model of everyone, not the one its customers alone give
        assert {split[cid]["model_version"] for cid in by_itself} == {final["model_version"]}
        assert next(iter(by_itself.values()))["model_version"] != final["model_version"]
        seen |= by_itself.keys()
    assert seen == split.keys()


def last_value_fit(emitted: bytes, scope: str) -> dict:
    fits = [
        value
        for line in emitted.splitlines()
        if (value := orjson.loads(line)["value"] or {}).get("model") == "value"
        and value["scope"] == scope
        and value["status"] == "fitted"
    ]
    return fits[-1]


@pytest.mark.parametrize(("silent", "days"), [(0, (80, 180)), (1, (100, 10_000))])
def test_every_partition_installs_the_leaders_refits_on_the_same_days_even_when_it_lags(
    events_file, tmp_path, silent, days
):
    """Partition 0 leads the value-model refits, on every partition's statistics. With
    its customers silent for 100 days the others run ahead of it and hold their events
    back; with partition 1's customers silent from day 100 on, the leader holds its
    events back until partition 1's end; in one process or three, each refit is
    installed on the day the leader set, with the same outputs."""
    lines = events_file.read_bytes().splitlines()
    start = orjson.loads(lines[0])["occurred_at"][:10]
    first_day = date.fromisoformat(start).toordinal()

    def silent_then(line: bytes) -> bool:  # an event of the silent partition's customers
        customer = _customer(line)
        if customer is None or partition_of(customer, 3) != silent:
            return False
        stamp = orjson.loads(line).get("occurred_at")
        if stamp is None:
            return False
        day = date.fromisoformat(stamp[:10]).toordinal()
        return days[0] <= day - first_day < days[1]

    lagging = tmp_path / "lagging.jsonl"
    lagging.write_bytes(b"\n".join(line for line in lines if not silent_then(line)) + b"\n")
    one = run(lagging, tmp_path, "lag-one", partitions=3, jobs=1)
    three = run(lagging, tmp_path, "lag-three", partitions=3, jobs=3)
    assert one[1:] == three[1:]
    installed: dict[str, set[tuple[str, str]]] = {}
    for line in one[2].splitlines():
        value = orjson.loads(line)["value"] or {}
        if value.get("model") == "value":  # fitted, or skipped: too few customers yet
            installed.setdefault(value["scope"], set()).add(
                (value["status"], value["model_version"], value["occurred_at"])
            )
    assert set(installed) == {"p0", "p1", "p2"}
    assert len(installed["p0"]) >= 5  # scheduled refits and the final one
    assert installed["p0"] == installed["p1"] == installed["p2"]


def test_the_as_of_day_does_not_depend_on_whether_the_last_event_was_still_held(
    events_file, tmp_path
):
    """A follower's last event, 5 days after the rest and rejected when applied (its
    currency), may still be held when the file ends, or not: the as-of day is the
    same either way."""
    customer = next(f"c{n:07d}" for n in range(10**6) if partition_of(f"c{n:07d}", 2) == 1)
    last = orjson.loads(events_file.read_bytes().splitlines()[-1])["occurred_at"][:10]
    later = date.fromordinal(date.fromisoformat(last).toordinal() + 5).isoformat()
    bad = {"event_type": "transaction", "schema_version": 1, "event_id": "late-gold",
           "customer_id": customer, "occurred_at": f"{later}T12:00:00+00:00",
           "kind": "purchase", "amount": 10.0, "currency": "XAU"}  # fmt: skip
    path = tmp_path / "gold.jsonl"
    path.write_bytes(events_file.read_bytes() + orjson.dumps(bad) + b"\n")
    one = run(path, tmp_path, "gold-one", partitions=2, jobs=1)
    two = run(path, tmp_path, "gold-two", partitions=2, jobs=2)
    assert one[0].as_of == two[0].as_of == later
    assert one[1:] == two[1:]


def test_one_partition_is_the_plain_offline_scorer(events_file, tmp_path):
    partitioned = run(events_file, tmp_path, "p1", partitions=1, jobs=4)
    plain = run(events_file, tmp_path, "plain")
    assert partitioned[1:] == plain[1:]


def test_cli_takes_partitions_and_jobs(events_file, tmp_path, capsys):
    out = tmp_path / "cli.csv"
    code = main(["score", str(events_file), "--out", str(out), "--partitions", "2", "--jobs", "2"])
    printed = capsys.readouterr().out
    assert code == 0 and "in 2 partitions" in printed
    assert "value model (p0)" in printed and "value model (p1)" in printed
    with pytest.raises(SystemExit):
        main(["score", str(events_file), "--out", str(out), "--jobs", "0"])


def _customer(line: bytes) -> str | None:
    return routing_fields(line)[1]


@pytest.mark.parametrize("final_refit", [True, False])
def test_refits_installed_at_once_and_an_as_of_date_past_the_data_end_without_waiting(
    events_file, tmp_path, final_refit
):
    """No install delay: a refit the leader's last advance starts takes effect on the
    as-of day itself, past every event; the run ends (in one process or two, with the
    same bytes), every partition having installed it."""
    config = CONFIG.model_copy(update={"refit_install_delay_days": 0})
    last = orjson.loads(events_file.read_bytes().splitlines()[-1])["occurred_at"][:10]
    as_of = date.fromordinal(date.fromisoformat(last).toordinal() + 45)  # crosses a slot
    runs = []
    for jobs in (1, 2):
        out, emitted = tmp_path / f"late-{jobs}.csv", tmp_path / f"late-{jobs}.jsonl"
        score_file(events_file, out, config, as_of=as_of, emitted_path=emitted,
                   final_refit=final_refit, show_progress=False, fit_in_background=False,
                   partitions=2, jobs=jobs)  # fmt: skip
        runs.append((out.read_bytes(), emitted.read_bytes()))
    assert runs[0] == runs[1]
    fits = {}
    for line in runs[0][1].splitlines():
        value = orjson.loads(line)["value"] or {}
        if value.get("model") == "value":
            fits.setdefault(value["scope"], []).append((value["occurred_at"], value["status"]))
    assert fits["p0"] == fits["p1"] and fits["p0"][-1][0][:10] == as_of.isoformat()
