"""Alert forwarding: the 1:1 mapping of a Vigil alert onto Alertmanager API v2.

``POST /api/v2/alerts`` takes a list of these objects. Labels are the alert's routing
labels (from the catalogue) and its identifying labels; annotations carry the summary,
description, runbook, value and threshold, the evidence query and, while an alert is
held because it flaps, ``flapping``. ``generatorURL`` opens the alert and its evidence
on the worker's web port (``/alerts/<fingerprint>``). The fingerprint doubles as
PagerDuty's ``dedup_key``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.alerts import Alert


def iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_alertmanager(
    alert: Alert, public_url: str = "", ends_at: datetime | None = None
) -> dict[str, Any]:
    """The API v2 object of ``alert``. ``ends_at`` overrides ``endsAt`` (the forwarder
    sends firing alerts with an end ahead of now, so a lost forwarder cannot leave them
    firing forever); a resolved alert ends at its resolution."""
    data = alert.data
    annotations = {k: v for k, v in data.annotations.model_dump().items() if v}
    annotations |= {"value": f"{data.value:g}", "threshold": f"{data.threshold:g}"}
    query = data.evidence.get("query")
    if isinstance(query, str) and query:
        annotations["evidence_query"] = query
    annotations["fingerprint"] = data.fingerprint
    posted: dict[str, Any] = {
        "labels": {
            **data.routing,
            **data.labels,
            "alertname": data.alertname,
            "severity": data.severity,
        },
        "annotations": annotations,
        "startsAt": iso(data.starts_at),
        "generatorURL": f"{public_url.rstrip('/')}/alerts/{data.fingerprint}"
        if public_url
        else f"http://127.0.0.1:6066/alerts/{data.fingerprint}",
    }
    end = data.ends_at if data.status == "resolved" else ends_at
    if end is not None:
        posted["endsAt"] = iso(end)
    return posted


def to_pagerduty(alert: Alert, routing_key: str) -> dict[str, Any]:
    """PagerDuty Events API v2 body: trigger while firing, resolve when resolved."""
    data = alert.data
    severity = {"critical": "critical", "high": "error", "medium": "warning", "low": "info"}
    return {
        "routing_key": routing_key,
        "dedup_key": data.fingerprint,
        "event_action": "trigger" if data.status == "firing" else "resolve",
        "payload": {
            "summary": data.annotations.summary,
            "source": data.labels.get("tenant_id", "vigil"),
            "severity": severity[data.severity],
            "custom_details": {
                "labels": data.labels,
                "value": data.value,
                "threshold": data.threshold,
            },
        },
    }
