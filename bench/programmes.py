"""Does the measured incremental revenue cover the true effect? (20 seeds)

    python -m bench.programmes [--customers 4000 --days 540 --seeds 20 --first-seed 1 --jobs 2]

Each seed simulates a population, then runs it through the scorer in a closed loop
(`models.simulation.effects`): every treated customer of a programme gets, on
average, exactly that programme's true additional revenue (one extra purchase with
probability 0.5); control customers get nothing. At the end, per programme, the
product's own estimate (CUPED, Welch 95% interval, from the partition's book) is
compared with the true effect. It is measured on each customer's first exposure to
the programme (repeat windows are reported, not pooled). Reported per programme:
seeds with a result, how many intervals covered the truth, the median estimate,
the median half-width and the median variance reduction from the covariate; and the
coverage over all (programme, seed) pairs. The goal: each programme's interval
covers the truth in at least 90% of the seeds.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor

TRUE_EFFECTS = {
    "win_back": 25.0,
    "save_offer": 12.0,
    "service_recovery": 20.0,
    "vip_upgrade": 40.0,
    "loyalty_reward": 15.0,
    "onboarding_nurture": 6.0,
}


def run_seed(customers: int, days: int, seed: int) -> dict:
    from models.config import ScoringConfig
    from models.emitted import Stream
    from models.engine import ScoringEngine
    from models.simulation import SimulationConfig, simulate
    from models.simulation.effects import ProgrammeEffects, with_programme_effects

    started = time.perf_counter()
    simulation = simulate(SimulationConfig(customers=customers, days=days, seed=seed))
    engine = ScoringEngine(ScoringConfig())
    effects = ProgrammeEffects(effects=TRUE_EFFECTS, seed=seed)
    lines = triggers = 0
    last_arrival = 0.0
    for arrival, _, outputs in with_programme_effects(simulation.events(), engine, effects):
        lines += 1
        last_arrival = arrival
        triggers += sum(1 for output in outputs if output.stream is Stream.PROGRAMME_TRIGGERS)
    engine.advance_watermark(last_arrival)
    book = engine.scorer.programmes
    results = {}
    for programme_id, effect in TRUE_EFFECTS.items():
        result = book.estimate(programme_id)
        if result is None:
            continue
        results[programme_id] = {
            "estimate": result.per_customer,
            "low": result.low,
            "high": result.high,
            "covered": result.low <= effect <= result.high,
            "treated": result.treated,
            "control": result.control,
            "reduction": result.variance_reduction,
            "stopped": book.stopped(programme_id) is not None,
        }
    return {
        "seed": seed,
        "lines": lines,
        "triggers": triggers,
        "seconds": time.perf_counter() - started,
        "results": results,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=4000)
    parser.add_argument("--days", type=int, default=540)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument(
        "--first-seed", type=int, default=1, help="seeds first-seed .. first-seed + seeds - 1"
    )
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = list(
            pool.map(
                run_seed,
                [args.customers] * args.seeds,
                [args.days] * args.seeds,
                range(args.first_seed, args.first_seed + args.seeds),
            )
        )
    print(
        f"seeds {args.first_seed}-{args.first_seed + args.seeds - 1}: "
        f"{args.seeds} seeds x {args.customers} customers x {args.days} days; "
        f"median {statistics.median(r['seconds'] for r in runs):.0f} s per seed, "
        f"{statistics.median(r['lines'] for r in runs):,.0f} lines and "
        f"{statistics.median(r['triggers'] for r in runs):,.0f} triggers per seed"
    )
    print(
        f"{'programme':20} {'true':>6} {'seeds':>5} {'covered':>7} {'median est':>10} "
        f"{'half-width':>10} {'treated':>7} {'control':>7} {'var cut':>7} {'too high/low':>13}"
    )
    pairs = covered_pairs = 0
    shortfalls = []
    for programme_id, effect in TRUE_EFFECTS.items():
        rows = [r["results"][programme_id] for r in runs if programme_id in r["results"]]
        # Every seed is a pair: a seed without a result covers nothing (as in the
        # per-programme test below, which counts against all the seeds).
        pairs += args.seeds
        if not rows:
            print(f"{programme_id:20} {effect:6.1f}   no results")
            shortfalls.append(programme_id)
            continue
        covered = sum(row["covered"] for row in rows)
        covered_pairs += covered
        if covered < 0.9 * args.seeds:
            shortfalls.append(programme_id)
        median = statistics.median
        print(
            f"{programme_id:20} {effect:6.1f} {len(rows):5d} {covered:7d} "
            f"{median(r['estimate'] for r in rows):10.2f} "
            f"{median((r['high'] - r['low']) / 2 for r in rows):10.2f} "
            f"{median(r['treated'] for r in rows):7.0f} {median(r['control'] for r in rows):7.0f} "
            f"{median(r['reduction'] for r in rows):7.1%} "
            f"{sum(r['low'] > effect for r in rows):>7d}/{sum(r['high'] < effect for r in rows)}"
        )
    coverage = covered_pairs / pairs if pairs else 0.0
    print(f"coverage over all (programme, seed) pairs: {covered_pairs}/{pairs} = {coverage:.1%}")
    print(f"programmes below 90% of {args.seeds} seeds: {', '.join(shortfalls) or 'none'}")
    return 1 if shortfalls else 0


if __name__ == "__main__":
    sys.exit(main())
