"""Alerts: CloudEvents 1.0 JSON whose ``data`` maps 1:1 to Alertmanager API v2.

``data.fingerprint`` is stable for one alert (alertname + identifying labels) and is the
Kafka key of the alerts topic and the PagerDuty ``dedup_key``; ``id`` is deterministic
(fingerprint, status, time), so an alert re-emitted after a replay collapses.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Severity = Literal["critical", "high", "medium", "low"]
Status = Literal["firing", "resolved"]


def alert_fingerprint(alertname: str, labels: dict[str, str]) -> str:
    """sha256 over the alert name and its labels (identifying and routing), sorted;
    32 hex chars."""
    text = alertname + "\x1f" + "\x1f".join(f"{k}={labels[k]}" for k in sorted(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


class Annotations(BaseModel):
    model_config = ConfigDict(frozen=True)

    summary: str
    description: str = ""
    runbook_url: str = ""
    #: set while the alert is held firing because it flaps (see streams/alerting.py)
    flapping: str = ""


class AlertData(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    fingerprint: str
    status: Status
    alertname: str
    severity: Severity
    labels: dict[str, str]
    #: the catalogue's routing labels (alertname, severity, category, family,
    #: tenant_id, auto_rollback); with ``labels`` they make the fingerprint
    routing: dict[str, str] = Field(default_factory=dict)
    annotations: Annotations
    value: float
    threshold: float
    starts_at: datetime = Field(alias="startsAt")
    ends_at: datetime | None = Field(default=None, alias="endsAt")
    evidence: dict[str, Any] = Field(default_factory=dict)
    #: the canary plan's instruction: roll the deployment back automatically
    auto_rollback: bool = False
    #: wall-clock time it was published (``Alert.time`` is event time): MTTD starts here
    published_at: datetime | None = None


class Alert(BaseModel):
    """A CloudEvents 1.0 envelope around :class:`AlertData`."""

    model_config = ConfigDict(frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str
    source: str = "/vigil"
    type: Literal["io.vigil.alert.firing", "io.vigil.alert.resolved"]
    subject: str
    time: datetime
    datacontenttype: Literal["application/json"] = "application/json"
    data: AlertData

    @classmethod
    def build(cls, data: AlertData, at: datetime, source: str = "/vigil") -> Alert:
        digest = hashlib.sha256(
            f"{data.fingerprint}|{data.status}|{at.isoformat()}".encode()
        ).hexdigest()[:32]
        return cls(
            id=digest,
            source=source,
            type=f"io.vigil.alert.{data.status}",
            subject=data.fingerprint,
            time=at,
            data=data,
        )

    def to_json(self) -> bytes:
        return self.model_dump_json(by_alias=True).encode()
