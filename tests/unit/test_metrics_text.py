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
