"""Programmes in the streaming service: the same triggers and outcomes as offline."""

from __future__ import annotations

import collections

import orjson
import pytest

from models.emitted import Stream
from models.simulation import SimulationConfig
from models.simulation.effects import ProgrammeEffects
from streams.offline import score_file
from streams.simulate import write_simulation
from streams.topics import TopicNames
from tests.integration.worker_harness import (
    fresh_settings,
    replay,
    topic_values,
    wait_until_scored,
    worker,
)


@pytest.mark.parametrize("partitions", [1, 2])
def test_the_service_emits_the_offline_scorers_triggers_and_outcomes(
    kafka_url, redis_url, tmp_path, partitions
):
    """Offline `--partitions N` is the service with N partitions."""
    settings = fresh_settings(kafka_url, redis_url, partitions=partitions)
    events = tmp_path / "events.jsonl"
    write_simulation(
        SimulationConfig(customers=500, days=300, seed=5),
        events,
        effects=ProgrammeEffects(effects={"save_offer": 40.0, "onboarding_nurture": 10.0}),
        scoring=settings.scoring,
    )
    emitted = tmp_path / "emitted.jsonl"
    score_file(
        events, tmp_path / "scores.csv", settings.scoring, emitted_path=emitted,
        show_progress=False, fit_in_background=False, partitions=partitions,
    )  # fmt: skip
    offline = collections.defaultdict(set)
    with open(emitted, "rb") as lines:
        for line in lines:
            value = orjson.loads(line)["value"]
            if value and value["event_type"] in ("programme_trigger", "programme_outcome"):
                offline[value["event_type"]].add(value["event_id"])
    assert len(offline["programme_trigger"]) > 50 and len(offline["programme_outcome"]) > 20

    sent = replay(events, settings)
    process = worker(settings, tmp_path)
    try:
        wait_until_scored([process], sent)
        _, served = process.get("/programmes")
    finally:
        assert process.stop() == 0
    names = TopicNames(settings.topic_prefix)
    triggers = topic_values(settings, names.output(Stream.PROGRAMME_TRIGGERS))
    outcomes = topic_values(settings, names.output(Stream.PROGRAMME_OUTCOMES))
    streamed_triggers = {t["event_id"] for t in triggers}
    assert streamed_triggers == offline["programme_trigger"]
    # Outcomes close as the clock passes their window: the stream's clock stops at the
    # last event's watermark, the offline run advances to the end of the last day.
    streamed_outcomes = {o["event_id"] for o in outcomes if o["event_type"] == "programme_outcome"}
    assert streamed_outcomes <= offline["programme_outcome"]
    assert len(streamed_outcomes) >= 0.9 * len(offline["programme_outcome"])
    results = [o for o in outcomes if o["event_type"] == "programme_result"]
    assert results and {r["scope"] for r in results} == {f"p{n}" for n in range(partitions)}
    by_programme = {row["programme_id"]: row for row in served["programmes"]}
    counted = collections.Counter((t["programme_id"], t["arm"]) for t in triggers)
    for programme_id, row in by_programme.items():
        assert row["triggers"] == {
            "treatment": counted[(programme_id, "treatment")],
            "control": counted[(programme_id, "control")],
        }
    assert by_programme["save_offer"]["closed"]["treatment"] > 0
