"""Alert forwarding: the 1:1 mapping of a Vigil alert onto Alertmanager API v2.

``POST /api/v2/alerts`` takes a list of these objects; a resolved alert carries
``endsAt``. The fingerprint doubles as PagerDuty's ``dedup_key``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from schemas.alerts import Alert


def _iso(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def to_alertmanager(alert: Alert) -> dict[str, Any]:
    data = alert.data
    posted: dict[str, Any] = {
        "labels": {"alertname": data.alertname, "severity": data.severity, **data.labels},
        "annotations": {k: v for k, v in data.annotations.model_dump().items() if v}
        | {"value": str(data.value), "threshold": str(data.threshold)}
        | ({"auto_rollback": "true"} if data.auto_rollback else {}),
        "startsAt": _iso(data.starts_at),
        "generatorURL": f"vigil://alerts/{data.fingerprint}",
    }
    if data.ends_at is not None:
        posted["endsAt"] = _iso(data.ends_at)
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
