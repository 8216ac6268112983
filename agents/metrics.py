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
>>> '# HELP clvstream_events_in_total Input records read, by input topic.' in text
True
>>> "process_cpu_seconds_total" in text and 'python_gc_collections_total{generation="2"}' in text
True
"""

from __future__ import annotations

import gc
import os
import time
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
            # a producer's clock ahead of ours: 0, not a negative sum (read as a reset)
            value = max(value, 0.0)
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
        lines, cumulative = [*_header(name, "histogram")], 0
        for bound, count in zip(self.buckets, self.counts, strict=False):
            cumulative += count
            lines.append(f'{name}_bucket{{le="{bound:g}"}} {cumulative}')
        lines.append(f'{name}_bucket{{le="+Inf"}} {self.count}')
        lines.append(f"{name}_sum {self.total:.6f}")
        lines.append(f"{name}_count {self.count}")
        return lines


class HeldPartitionCounts:
    """Counts kept by the partitions' engines (checkpointed with their state, so they
    move with a partition and go back to the checkpoint's on a replay) as counters of
    this worker: what each partition counted while this worker held it. Summed as they
    stood, they fell when a partition left (a rebalance, a replay), which Prometheus
    reads as a reset (`rate()` takes the whole remainder as new), and jumped by a
    partition's history when one came.

    >>> held = HeldPartitionCounts()
    >>> held.held(0, {"rescored": 40})  # restored with 40 counted before
    >>> held.totals({0: {"rescored": 45}})["rescored"]
    5
    >>> held.released(0, {"rescored": 47})
    >>> held.totals({})["rescored"]
    7
    """

    def __init__(self) -> None:
        self._released: Counter[str] = Counter()  # by partitions no longer held
        self._at_hold: dict[int, dict[str, int]] = {}  # each held partition's, when taken

    def held(self, partition: int, counts: Mapping[str, int]) -> None:
        """A partition taken (restored), with the counts it comes with."""
        self._at_hold[partition] = dict(counts)

    def released(self, partition: int, counts: Mapping[str, int]) -> None:
        """A partition given up (or dropped for a replay), with its counts by then."""
        self._released.update(_since(counts, self._at_hold.pop(partition, counts)))

    def totals(self, held: Mapping[int, Mapping[str, int]]) -> Counter[str]:
        """Counted so far, given the counts of the partitions held now."""
        totals = Counter(self._released)
        for partition, counts in held.items():
            totals.update(_since(counts, self._at_hold.get(partition, counts)))
        return totals


def _since(counts: Mapping[str, int], start: Mapping[str, int]) -> dict[str, int]:
    return {name: max(0, value - start.get(name, 0)) for name, value in counts.items()}


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
        self.checkpoints_past_redis = 0  # confirmed during a long Redis outage regardless
        self.redis_read_back = 0  # ... on a partition newly held, or after Redis lost writes
        self.redis_losses = 0  # partitions whose Redis marker showed acknowledged writes lost
        self.redis_evicted_keys = 0  # keys Redis evicted (maxmemory) while the worker watched
        self.restored_customers = 0
        self.buffered_high_water = 0  # most records one input has held, waiting to merge
        self.merge_waits = 0  # polls whose merge waited for a record that may be on its way
        self.latency = Histogram()  # broker timestamp of the input -> score in Redis
        self.partition_counts = HeldPartitionCounts()  # the engines' own, while held here

    def render(self, lag: Mapping[str, int], extra: Mapping[str, float] = {}) -> str:
        lines = _header("clvstream_events_in_total", "counter")
        lines += [
            f'clvstream_events_in_total{{topic="{t}"}} {n}' for t, n in _sorted(self.events_in)
        ]
        lines += _header("clvstream_events_out_total", "counter")
        lines += [
            f'clvstream_events_out_total{{stream="{s}"}} {n}' for s, n in _sorted(self.events_out)
        ]
        lines += _header("clvstream_dead_lettered_total", "counter")
        lines += [
            f'clvstream_dead_lettered_total{{reason="{r}"}} {n}'
            for r, n in _sorted(self.dead_lettered)
        ]
        lines += _header("clvstream_consumer_lag", "gauge")
        lines += [f'clvstream_consumer_lag{{partition="{p}"}} {n}' for p, n in sorted(lag.items())]
        scalars = {
            "clvstream_redis_writes_total": self.redis_writes,
            "clvstream_redis_failed_flushes_total": self.redis_failed_flushes,
            "clvstream_output_batches_failed_total": self.output_batches_failed,
            "clvstream_partition_replays_total": self.replays,
            "clvstream_checkpoints_total": self.checkpoints,
            "clvstream_checkpointed_states_total": self.checkpointed_states,
            "clvstream_checkpoints_past_redis_total": self.checkpoints_past_redis,
            "clvstream_redis_read_back_total": self.redis_read_back,
            "clvstream_redis_losses_total": self.redis_losses,
            "clvstream_redis_evicted_keys_total": self.redis_evicted_keys,
            "clvstream_restored_customers_total": self.restored_customers,
            "clvstream_buffered_records_high_water": self.buffered_high_water,
            "clvstream_merge_waits_total": self.merge_waits,
            **extra,
        }
        for name, value in {**scalars, **process_metrics()}.items():
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [*_header(name, kind), f"{name} {sample_text(value)}"]
        lines += _header("python_gc_collections_total", "counter")
        lines += [
            f'python_gc_collections_total{{generation="{generation}"}} {stats["collections"]}'
            for generation, stats in enumerate(gc.get_stats())
        ]
        lines += self.latency.render("clvstream_processing_latency_seconds")
        return "\n".join(lines) + "\n"


def process_metrics() -> dict[str, float]:
    """CPU time, resident memory and open files of this process (what Linux tells)."""
    metrics = {"process_cpu_seconds_total": time.process_time()}
    try:
        with open("/proc/self/statm") as statm:
            metrics["process_resident_memory_bytes"] = int(statm.read().split()[1]) * _PAGE
        metrics["process_open_fds"] = len(os.listdir("/proc/self/fd"))
    except OSError:  # not Linux: no /proc
        pass
    return metrics


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

HELP = {
    "clvstream_events_in_total": "Input records read, by input topic.",
    "clvstream_events_out_total": "Output events produced, by output stream.",
    "clvstream_dead_lettered_total": "Inputs sent to the dead-letter topic, by reason.",
    "clvstream_consumer_lag": "Input records not processed yet, by topic/partition.",
    "clvstream_redis_writes_total": "Customer scores written to Redis.",
    "clvstream_redis_failed_flushes_total": "Writes to Redis that failed (retried).",
    "clvstream_output_batches_failed_total": "Output batches the broker refused after retries.",
    "clvstream_partition_replays_total": "Partitions read again from their last checkpoint.",
    "clvstream_checkpoints_total": "Partition checkpoints written.",
    "clvstream_checkpoints_past_redis_total": "Checkpoints confirmed during a long Redis "
    "outage without waiting for its scores.",
    "clvstream_redis_read_back_total": "Scores and erasures read back from the scores topic "
    "and given to Redis again: a partition newly held (from its Redis marker on), or "
    "Redis lost writes it had acknowledged.",
    "clvstream_redis_losses_total": "Times a partition's marker showed that Redis had lost "
    "scores it acknowledged (a restart without persistence, a flush, a failover).",
    "clvstream_redis_evicted_keys_total": "Keys Redis evicted at its memory limit while the "
    "worker watched (its INFO evicted_keys): with an allkeys policy, customer rows lost.",
    "clvstream_checkpointed_states_total": "Customer states written by checkpoints.",
    "clvstream_restored_customers_total": "Customer states restored from changelogs.",
    "clvstream_buffered_records_high_water": "Most records one input has held for the merge.",
    "clvstream_merge_waits_total": "Polls whose merge by event time waited for an input with "
    "nothing buffered, whose records may still be on their way (a fast replay).",
    "clvstream_customers": "Customers held by this worker's partitions.",
    "clvstream_assigned_partitions": "Input partitions assigned to this worker.",
    "clvstream_redis_pending": "Customers whose latest score is not in Redis yet.",
    "clvstream_buffered_records": "Records buffered for the merge by event time.",
    "clvstream_rescored_total": "Silent customers re-scored as the event clock passed them.",
    "clvstream_duplicates_total": "Input events ignored as duplicates (same event id).",
    "clvstream_value_fits_missing_statistics_total": "Value-model refits without some "
    "partitions' statistics.",
    "clvstream_value_fits_installed_late_total": "Value-model refits installed after their day.",
    "clvstream_processing_latency_seconds": "From an input's broker timestamp to its score "
    "in Redis.",
    "process_cpu_seconds_total": "CPU time of the worker process.",
    "process_resident_memory_bytes": "Resident memory of the worker process.",
    "process_open_fds": "Open file descriptors of the worker process.",
    "python_gc_collections_total": "Garbage collections, by generation.",
}


def _header(name: str, kind: str) -> list[str]:
    text = HELP.get(name)
    return [*([f"# HELP {name} {text}"] if text else []), f"# TYPE {name} {kind}"]


def _sorted(counter: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counter.items())


def sample_text(value: float) -> str:
    """A sample value in full (`:g` would round 1,234,567 to 1.23457e+06).

    >>> sample_text(1234567), sample_text(2.5), sample_text(True), sample_text(float("nan"))
    ('1234567', '2.5', '1', 'NaN')
    """
    if isinstance(value, int):
        return str(int(value))
    if value != value:
        return "NaN"
    return repr(float(value)) if abs(value) != float("inf") else ("+Inf" if value > 0 else "-Inf")
