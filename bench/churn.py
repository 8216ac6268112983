"""Churn on simulated data with interactions, through the real product path.

    python -m bench.churn [--customers 6000 --days 730 --as-of-day 600 --seeds 3]

`clvstream simulate` writes a population whose engagement fades before dropout;
`clvstream score --as-of` scores it; the label is "no purchase in the 90 days after
the as-of date" (read from the same events file). Compared: the served
`churn_probability` (online model blended with the value model), the value model's
own P(no purchase in 90 days), and recency alone (days since the last purchase).
Calibration: Brier score, expected calibration error and the reliability table.

Batch reference (the goal: served AUC within 0.02 of it): the same events are replayed
in-process through `streams.offline.score_file` (what `clvstream score` runs), each
purchaser's churn feature vector at the as-of instant is taken from the product's own
`ScoreFields`, and a standardized L2 logistic regression is fitted on those vectors
with every label known. Reported: its 5-fold out-of-fold AUC (folds split by the seed)
and, for reference, its in-sample AUC. The in-process served probabilities are checked
against the CLI's CSV.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import numpy as np
import orjson

from bench.metrics import (
    auc,
    brier,
    expected_calibration_error,
    fit_logistic,
    out_of_fold_logistic,
    predict_logistic,
)
from bench.scratch import work_dir
from models.timeline import day_of_date, end_of_day
from streams.offline import score_file
from streams.settings import load_settings

START = date(2024, 1, 1)
WINDOW_DAYS = 90
FOLDS = 5
GOAL_GAP = 0.02  # served AUC at most this far below the batch logistic regression's


def purchasers_after(events: Path, as_of: date) -> set[str]:
    """Customers with a purchase in (as_of, as_of + window]."""
    low = datetime.combine(as_of + timedelta(days=1), datetime.min.time()).isoformat()
    high = datetime.combine(as_of + timedelta(days=WINDOW_DAYS + 1), datetime.min.time())
    buyers = set()
    with open(events, "rb") as lines:
        for line in lines:
            event = orjson.loads(line)
            if event.get("event_type") != "transaction" or event.get("kind") != "purchase":
                continue
            when = event["occurred_at"][:19]
            if low <= when < high.isoformat():
                buyers.add(event["customer_id"])
    return buyers


def run(customers: int, days: int, as_of_day: int, seed: int, work: Path) -> dict:
    events = work / f"events-{seed}.jsonl"
    scores = work / f"scores-{seed}.csv"
    cli = [sys.executable, "-m", "streams.cli"]
    subprocess.run(
        [*cli, "simulate", "--customers", str(customers), "--days", str(days),
         "--seed", str(seed), "--out", str(events)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    as_of = START + timedelta(days=as_of_day)
    subprocess.run(
        [*cli, "score", str(events), "--out", str(scores), "--as-of", as_of.isoformat(),
         "--churn-window-days", str(WINDOW_DAYS)],
        check=True, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    buyers = purchasers_after(events, as_of)
    with open(scores, encoding="utf-8") as source:
        rows = [row for row in csv.DictReader(source) if row["p_alive"]]
    label = np.array([row["customer_id"] not in buyers for row in rows])
    served = np.array([float(row["churn_probability"]) for row in rows])
    value = np.array([float(row["value_churn_probability"]) for row in rows])
    recency = np.array([int(row["tenure_days"]) - int(row["recency_days"]) for row in rows])
    ece, table = expected_calibration_error(served, label)
    value_ece, _ = expected_calibration_error(value, label)
    in_process = in_process_features(events, as_of, work / f"scores-in-process-{seed}.csv")
    vectors = aligned_vectors(in_process, rows)
    return {
        "customers": len(rows),
        "churn_rate": float(label.mean()),
        "auc_served": auc(served, label),
        "auc_value": auc(value, label),
        "auc_recency": auc(recency, label),
        "brier_served": brier(served, label),
        "brier_value": brier(value, label),
        "ece_served": ece,
        "ece_value": value_ece,
        "table": table,
        **batch_reference(vectors, label, seed),
        **served_agreement(in_process, rows, scores),
    }


class InProcess(NamedTuple):
    """The in-process replay: each purchaser's churn vector and served probability at
    the as-of instant, and the CSV that replay wrote."""

    vectors: dict[str, tuple[float, ...]]
    served: dict[str, float]
    scores: Path


def in_process_features(events: Path, as_of: date, scores: Path) -> InProcess:
    """Replay `events` as `clvstream score --as-of` does, in this process, and read the
    churn vectors off the engine's final states exactly as the product scores them."""
    config = load_settings(scoring={"churn_window_days": WINDOW_DAYS}).scoring
    result = score_file(events, scores, config, as_of=as_of, show_progress=False)
    engine, at = result.engine, end_of_day(day_of_date(as_of))
    vectors, served = {}, {}
    for customer_id in sorted(engine.states):
        fields = engine.scorer.scores_of(engine.states[customer_id], at)
        if fields.churn_vector is not None:
            vectors[customer_id] = fields.churn_vector
            served[customer_id] = fields.churn_probability
    return InProcess(vectors, served, scores)


def aligned_vectors(in_process: InProcess, rows: list[dict]) -> np.ndarray:
    """The in-process feature vectors in the order of the CLI's scored purchasers."""
    missing = [row["customer_id"] for row in rows if row["customer_id"] not in in_process.vectors]
    if missing or len(in_process.vectors) != len(rows):
        raise RuntimeError(
            f"in-process purchasers differ from the CLI's: {len(in_process.vectors)} vs "
            f"{len(rows)} ({len(missing)} missing, e.g. {missing[:3]})"
        )
    return np.array([in_process.vectors[row["customer_id"]] for row in rows])


def batch_reference(vectors: np.ndarray, label: np.ndarray, seed: int) -> dict:
    """AUC of a batch logistic regression with all labels known: out-of-fold and in-sample."""
    out_of_fold = out_of_fold_logistic(vectors, label, FOLDS, seed)
    in_sample = predict_logistic(fit_logistic(vectors, label), vectors)
    return {"auc_batch_oof": auc(out_of_fold, label), "auc_batch_in_sample": auc(in_sample, label)}


def served_agreement(in_process: InProcess, rows: list[dict], scores: Path) -> dict:
    """How far the in-process served probabilities are from the CLI's CSV (6 decimals)."""
    gaps = [
        abs(in_process.served[row["customer_id"]] - float(row["churn_probability"])) for row in rows
    ]
    return {
        "served_max_diff": max(gaps, default=0.0),
        "csv_identical": in_process.scores.read_bytes() == scores.read_bytes(),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=6000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--as-of-day", type=int, default=600)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    if args.as_of_day + WINDOW_DAYS >= args.days:
        # The label needs the whole window simulated: past the end of the simulation
        # nobody buys, and every customer would look like a churner.
        parser.error(
            f"--as-of-day + {WINDOW_DAYS} must fall before --days (the simulation's end): "
            f"{args.as_of_day} + {WINDOW_DAYS} >= {args.days}"
        )
    work = work_dir("clv-churn-")
    results = []
    for seed in range(1, args.seeds + 1):
        result = run(args.customers, args.days, args.as_of_day, seed, work)
        results.append(result)
        print(
            f"seed {seed}: {result['customers']:,} purchasers, churn rate "
            f"{result['churn_rate']:.2f}; AUC served {result['auc_served']:.4f} value "
            f"{result['auc_value']:.4f} recency {result['auc_recency']:.4f}; Brier served "
            f"{result['brier_served']:.4f} value {result['brier_value']:.4f}; ECE served "
            f"{result['ece_served']:.4f} value {result['ece_value']:.4f}"
        )
        print(
            f"  batch LR (same features, all labels known): AUC {FOLDS}-fold out-of-fold "
            f"{result['auc_batch_oof']:.4f} in-sample {result['auc_batch_in_sample']:.4f}; "
            f"served - batch out-of-fold {result['auc_served'] - result['auc_batch_oof']:+.4f}; "
            f"in-process vs CLI churn_probability max |diff| {result['served_max_diff']:.2e}, "
            f"scores CSV {'identical' if result['csv_identical'] else 'DIFFERENT'}"
        )
    keys = (
        "auc_served",
        "auc_value",
        "auc_recency",
        "auc_batch_oof",
        "auc_batch_in_sample",
        "brier_served",
        "ece_served",
        "ece_value",
    )
    median = {key: statistics.median(r[key] for r in results) for key in keys}
    lift = median["auc_served"] - median["auc_recency"]
    gap = median["auc_served"] - median["auc_batch_oof"]
    print(
        "median: "
        + "  ".join(f"{key} {value:.4f}" for key, value in median.items())
        + f"\nAUC over recency alone: {lift:+.4f} (required >= +0.03: "
        + ("met" if lift >= 0.03 else "NOT met")
        + f"); ECE {median['ece_served']:.4f} (goal <= 0.03: "
        + ("met" if median["ece_served"] <= 0.03 else "NOT met")
        + f")\nAUC served - batch LR out-of-fold: {gap:+.4f} (goal within {GOAL_GAP}: "
        + ("met" if gap >= -GOAL_GAP else "NOT met")
        + ")"
    )
    print("reliability (last seed): bin, customers, mean served p, observed churn")
    for row in results[-1]["table"]:
        print(f"  {row[0]}  {row[1]:>6}  {row[2]:.3f}  {row[3]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
