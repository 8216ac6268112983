"""The served churn probability is calibrated: a simulated population is scored through
the offline engine as of a date, and the served `churn_probability` is compared with
what happened next (no purchase in the 90 days after it), as `bench.churn` does at
6,000 customers (ECE about 0.03) but small enough for a unit test.

The bound is honest for the sample: with about 1,500 scored purchasers and ten bins,
a perfectly calibrated predictor with these probabilities has an expected calibration
error of about 0.026 from label noise alone (99th percentile about 0.042, by drawing
the labels from the probabilities). The bound allows 0.02 on top for what the bench
measures at scale: ECE <= 0.06. Seeds 1-4 give 0.028 to 0.057 at this size; served
probabilities scaled by 0.9 give 0.07 to 0.11, and a Brier score worse than the value
model's.
"""

from __future__ import annotations

import csv
from datetime import date, timedelta

import numpy as np
import orjson

from bench.metrics import brier, expected_calibration_error
from models.config import ScoringConfig
from models.simulation import SimulationConfig, simulate
from streams.offline import score_file

CUSTOMERS, DAYS, AS_OF_DAY, SEED = 1500, 500, 400, 4
WINDOW_DAYS = 90
ECE_BOUND = 0.06


def test_served_churn_probability_is_calibrated_against_resolved_labels(tmp_path):
    simulation = simulate(SimulationConfig(customers=CUSTOMERS, days=DAYS, seed=SEED))
    lines = [line for _, line in simulation.events()]
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"".join(line + b"\n" for line in lines))
    as_of = date(2024, 1, 1) + timedelta(days=AS_OF_DAY)
    assert simulation.config.start == date(2024, 1, 1)
    assert AS_OF_DAY + WINDOW_DAYS < DAYS  # every label is resolved by the simulated period

    scores = tmp_path / "scores.csv"
    config = ScoringConfig(churn_window_days=WINDOW_DAYS)
    result = score_file(
        events, scores, config, as_of=as_of, show_progress=False, fit_in_background=False
    )

    with open(scores, encoding="utf-8") as source:
        rows = [row for row in csv.DictReader(source) if row["p_alive"]]  # purchasers
    buyers = purchasers_within(lines, as_of, WINDOW_DAYS)
    churned = np.array([row["customer_id"] not in buyers for row in rows])
    served = np.array([float(row["churn_probability"]) for row in rows])
    value = np.array([float(row["value_churn_probability"]) for row in rows])

    # the sample is what the bound was set for, and the online model has its say
    assert len(rows) > 1400 and 0.3 < churned.mean() < 0.8
    assert result.engine.scorer.churn.labels > 3 * config.churn_warmup_labels
    assert np.mean(np.abs(served - value) > 0.01) > 0.5

    ece, table = expected_calibration_error(served, churned)
    assert ece <= ECE_BOUND, f"ECE {ece:.4f}; reliability (bin, n, mean p, observed): {table}"
    assert brier(served, churned) <= brier(value, churned)


def purchasers_within(lines: list[bytes], as_of: date, window_days: int) -> set[str]:
    """Customers with a purchase in the `window_days` whole days after the as-of date."""
    low = (as_of + timedelta(days=1)).isoformat()
    high = (as_of + timedelta(days=window_days + 1)).isoformat()
    buyers = set()
    for line in lines:
        event = orjson.loads(line)
        purchased = event.get("event_type") == "transaction" and event.get("kind") == "purchase"
        if purchased and low <= event["occurred_at"][:10] < high:
            buyers.add(event["customer_id"])
    return buyers
