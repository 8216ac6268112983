"""The worker's /metrics text: every metric says what it counts (Prometheus HELP)."""

from __future__ import annotations

from agents.metrics import WorkerMetrics


def test_every_metric_has_help_and_a_type_and_the_process_is_measured():
    metrics = WorkerMetrics()
    metrics.events_in["clv.transactions"] += 3
    metrics.dead_lettered["late"] += 1
    extra = {"clvstream_customers": 7, "clvstream_rescored_total": 2}
    lines = metrics.render({"clv.transactions/0": 4}, extra).splitlines()
    typed = [line.split()[2] for line in lines if line.startswith("# TYPE ")]
    helped = {line.split()[2] for line in lines if line.startswith("# HELP ")}
    assert len(typed) == len(set(typed)) and set(typed) <= helped
    assert {
        "clvstream_customers",
        "process_cpu_seconds_total",
        "python_gc_collections_total",
    } <= set(typed)
    resident = next(line for line in lines if line.startswith("process_resident_memory_bytes "))
    assert float(resident.split()[1]) > 10_000_000  # a Python process holds more than 10 MB
    assert 'clvstream_dead_lettered_total{reason="late"} 1' in lines


def test_values_are_written_in_full_and_the_latency_sum_never_falls():
    """`:g` wrote 1,234,567 writes as 1.23457e+06: increments below the sixth digit
    vanished and `rate()` stepped. A negative latency (the producer's clock ahead of
    ours) made `_sum` fall, which Prometheus reads as a counter reset."""
    metrics = WorkerMetrics()
    metrics.redis_writes = 1_234_567
    metrics.latency.observe_many([0.5, -0.2])
    lines = metrics.render({}, {"clvstream_customers": 2_500_001}).splitlines()
    assert "clvstream_redis_writes_total 1234567" in lines
    assert "clvstream_customers 2500001" in lines
    assert "clvstream_processing_latency_seconds_sum 0.500000" in lines
    assert 'clvstream_processing_latency_seconds_bucket{le="0.005"} 1' in lines
