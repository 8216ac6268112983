"""The worker's metrics, rendered as Prometheus text.

>>> m = WorkerMetrics()
>>> m.events_in["clv.transactions"] += 2
>>> m.latency.observe_many([0.004, 0.3])
>>> text = m.render(lag={"clv.transactions/0": 5})
>>> 'clvstream_events_in_total{topic="clv.transactions"} 2' in text
True
>>> 'clvstream_processing_latency_seconds_bucket{le="0.005"} 1' in text
True
>>> 'clvstream_consumer_lag{partition="clv.transactions/0"} 5' in text
True
"""

from __future__ import annotations

from bisect import bisect_left
from collections import Counter
from collections.abc import Iterable, Mapping

LATENCY_BUCKETS = (
    0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75,
    1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


class Histogram:
    """Cumulative-bucket histogram (Prometheus semantics), bounded memory."""

    def __init__(self, buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)  # the last one is +Inf
        self.total = 0.0
        self.count = 0

    def observe_many(self, values: Iterable[float]) -> None:
        buckets, counts = self.buckets, self.counts
        for value in values:
            counts[bisect_left(buckets, value)] += 1
            self.total += value
            self.count += 1

    def quantile(self, q: float) -> float | None:
        """Upper bound of the bucket holding the q-quantile (None without data)."""
        if not self.count:
            return None
        rank, seen = q * self.count, 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            seen += count
            if seen >= rank:
                return bound
        return float("inf")

    def render(self, name: str) -> list[str]:
        lines, cumulative = [f"# TYPE {name} histogram"], 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            cumulative += count
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {cumulative}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{name}_sum {self.total:.6f}")
        lines.append(f"{name}_count {self.count}")
        return lines


class WorkerMetrics:
    def __init__(self) -> None:
        self.events_in: Counter[str] = Counter()  # by input topic
        self.events_out: Counter[str] = Counter()  # by output stream
        self.dead_lettered: Counter[str] = Counter()  # by reason
        self.redis_writes = 0
        self.redis_failed_flushes = 0
        self.output_batches_failed = 0  # output batches the broker refused (after retries)
        self.replays = 0  # partitions read again from their last checkpoint for that
        self.checkpoints = 0
        self.checkpointed_states = 0  # customer states written by those checkpoints
        self.restored_customers = 0
        self.buffered_high_water = 0  # most records one input has held, waiting to merge
        self.latency = Histogram()  # broker timestamp of the input -> score in Redis

    def render(self, lag: Mapping[str, int], extra: Mapping[str, float] = {}) -> str:
        lines = ["# TYPE clvstream_events_in_total counter"]
        lines += [
            f'clvstream_events_in_total{{topic="{t}"}} {n}' for t, n in _sorted(self.events_in)
        ]
        lines.append("# TYPE clvstream_events_out_total counter")
        lines += [
            f'clvstream_events_out_total{{stream="{s}"}} {n}' for s, n in _sorted(self.events_out)
        ]
        lines.append("# TYPE clvstream_dead_lettered_total counter")
        lines += [
            f'clvstream_dead_lettered_total{{reason="{r}"}} {n}'
            for r, n in _sorted(self.dead_lettered)
        ]
        lines.append("# TYPE clvstream_consumer_lag gauge")
        lines += [f'clvstream_consumer_lag{{partition="{p}"}} {n}' for p, n in sorted(lag.items())]
        scalars = {
            "clvstream_redis_writes_total": self.redis_writes,
            "clvstream_redis_failed_flushes_total": self.redis_failed_flushes,
            "clvstream_output_batches_failed_total": self.output_batches_failed,
            "clvstream_partition_replays_total": self.replays,
            "clvstream_checkpoints_total": self.checkpoints,
            "clvstream_checkpointed_states_total": self.checkpointed_states,
            "clvstream_restored_customers_total": self.restored_customers,
            "clvstream_buffered_records_high_water": self.buffered_high_water,
            **extra,
        }
        for name, value in scalars.items():
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# TYPE {name} {kind}", f"{name} {value:g}"]
        lines += self.latency.render("clvstream_processing_latency_seconds")
        return "\n".join(lines) + "\n"


def _sorted(counter: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counter.items())
