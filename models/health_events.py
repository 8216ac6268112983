"""Model-health output events: one shape for every model (the value model's refits,
the churn model's quality and drift, the programmes' freezes).

>>> event = daily_health_event(0, "churn", "p0", "v1", "drift", "drift seen", {"auc": 0.7})
>>> event["occurred_at"], event["model_version"], event["parameters"], event["metrics"]
('1970-01-01T00:00:00+00:00', 'v1', {}, {'auc': 0.7})
>>> event["event_id"] == daily_health_event(0, "churn", "p0", "v1", "drift", "")["event_id"]
True
"""

from __future__ import annotations

from models.ids import deterministic_id
from models.timeline import date_of_day, iso_utc, start_of_day


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


def daily_health_event(
    day: int,
    model: str,
    scope: str,
    version: str,
    status: str,
    detail: str,
    metrics: dict | None = None,
    parameters: dict | None = None,
) -> dict:
    """A model's status on an event-time day, its id derived from the model, status,
    day, version and scope (one event per such status and day)."""
    event_id = deterministic_id("model", model, status, date_of_day(day), version, scope)
    return model_health_event(
        event_id, start_of_day(day), model, scope, version, status, detail, metrics, parameters
    )
