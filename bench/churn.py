"""Churn on simulated data with interactions, through the real product path.

    python -m bench.churn [--customers 6000 --days 730 --as-of-day 600 --seeds 3]

`clvstream simulate` writes a population whose engagement fades before dropout;
`clvstream score --as-of` scores it; the label is "no purchase in the 90 days after
the as-of date" (read from the same events file). Compared: the served
`churn_probability` (online model blended with the value model), the value model's
own P(no purchase in 90 days), and recency alone (days since the last purchase).
Calibration: Brier score, expected calibration error and the reliability table.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import orjson

from bench.metrics import auc, brier, expected_calibration_error

START = date(2024, 1, 1)
WINDOW_DAYS = 90


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
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=6000)
    parser.add_argument("--days", type=int, default=730)
    parser.add_argument("--as-of-day", type=int, default=600)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="clv-churn-"))
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
    keys = ("auc_served", "auc_value", "auc_recency", "brier_served", "ece_served", "ece_value")
    median = {key: statistics.median(r[key] for r in results) for key in keys}
    lift = median["auc_served"] - median["auc_recency"]
    print(
        "median: "
        + "  ".join(f"{key} {value:.4f}" for key, value in median.items())
        + f"\nAUC over recency alone: {lift:+.4f} (required >= +0.03: "
        + ("met" if lift >= 0.03 else "NOT met")
        + f"); ECE {median['ece_served']:.4f} (goal <= 0.03: "
        + ("met" if median["ece_served"] <= 0.03 else "NOT met")
        + ")"
    )
    print("reliability (last seed): bin, customers, mean served p, observed churn")
    for row in results[-1]["table"]:
        print(f"  {row[0]}  {row[1]:>6}  {row[2]:.3f}  {row[3]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
