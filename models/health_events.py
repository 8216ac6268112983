"""Model-health output events: one shape for every model (the value model's refits,
the churn model's quality and drift, the programmes' freezes).

>>> event_id = daily_event_id("churn", "drift", 0, "v1", "p0")
>>> event = model_health_event(event_id, 0.0, "churn", "p0", "v1", "drift", "seen", {"auc": 0.7})
>>> event["occurred_at"], event["model_version"], event["parameters"], event["metrics"]
('1970-01-01T00:00:00+00:00', 'v1', {}, {'auc': 0.7})
"""

from __future__ import annotations

from models.ids import deterministic_id
from models.timeline import date_of_day, iso_utc


def model_health_event(
    event_id: str,
    at: float,
    model: str,
    scope: str,
    version: str,
    status: str,
    detail: str,
    metrics: dict | None = None,
    parameters: dict | None = None,
) -> dict:
    """The payload of a `model-health` output (see `schemas.outputs`)."""
    return {
        "event_type": "model_health",
        "schema_version": 1,
        "event_id": event_id,
        "occurred_at": iso_utc(at),
        "model": model,
        "scope": scope,
        "model_version": version,
        "status": status,
        "detail": detail,
        "parameters": {} if parameters is None else parameters,
        "metrics": {} if metrics is None else metrics,
    }


def daily_event_id(model: str, status: str, day: int, version: str, scope: str) -> str:
    """The id of a model's status on an event-time day (one event per such status and
    day, model version and scope)."""
    return deterministic_id("model", model, status, date_of_day(day), version, scope)
