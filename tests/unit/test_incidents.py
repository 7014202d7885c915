"""Incidents with explicit times: grouping by tenant, category and overlap; timeline;
MTTD / MTTA / MTTR; acknowledgement by hand and from a PagerDuty v3 webhook."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client import CollectorRegistry

from schemas.alerts import Alert, Annotations
from streams.alerting import AlertPublisher, AlertSpec
from streams.incidents import IncidentTracker, incidents_from_rows, pagerduty_ack
from streams.metrics import Metrics
from tests.unit.test_alerting import Topic

T0 = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


class Wall:
    def __init__(self) -> None:
        self.now = at(0)

    def __call__(self) -> datetime:
        return self.now


def harness() -> tuple[AlertPublisher, IncidentTracker, Wall, list[dict[str, list[Any]]], Metrics]:
    metrics = Metrics(CollectorRegistry())
    rows: list[dict[str, list[Any]]] = []
    wall = Wall()

    async def write(cols: dict[str, list[Any]]) -> None:
        rows.append(cols)

    tracker = IncidentTracker(write, metrics, merge_window_s=1800, clock=wall)
    publisher = AlertPublisher(None, Topic().send, "a", metrics, 300, clock=wall,
                               incidents=tracker)  # fmt: skip
    return publisher, tracker, wall, rows, metrics


def spec(name: str, severity: Any, **labels: str) -> AlertSpec:
    return AlertSpec(name, severity, labels, Annotations(summary=name))


async def test_related_alerts_of_one_tenant_form_one_incident_with_its_timeline() -> None:
    publisher, tracker, wall, rows, metrics = harness()
    p95 = spec("P95LatencyBreach", "critical", tenant_id="acme", service="api", route="/r")
    errors = spec("TenantErrorRateHigh", "high", tenant_id="acme")
    other = spec("TenantErrorRateHigh", "high", tenant_id="globex")
    wall.now = at(3)  # the breach began at 0, the alert is published 3 minutes later
    await publisher.fire(p95, 900, 500, at(2), starts_at=at(0))
    wall.now = at(6)
    await publisher.fire(errors, 0.07, 0.05, at(5), starts_at=at(4))  # availability
    await publisher.fire(other, 0.07, 0.05, at(5), starts_at=at(4))
    assert len(tracker.open) == 3  # different categories or tenants: separate incidents
    p95_incident = tracker.find("P95LatencyBreach", "acme")
    assert p95_incident is not None
    assert p95_incident.first_breach_at == at(0) and p95_incident.detected_at == at(3)
    # another performance alert of acme, overlapping: joins the P95 incident
    p99 = spec("P99LatencyElevated", "high", tenant_id="acme", service="api", route="/r")
    await publisher.fire(p99, 2000, 1500, at(7), starts_at=at(6))
    assert tracker.find("P99LatencyElevated", "acme") is p95_incident
    assert p95_incident.severity == "critical"
    wall.now = at(10)
    await tracker.acknowledge(p95_incident.id, "alice")
    wall.now = at(30)
    await publisher.resolve(p95, 100, 500, at(29))
    assert p95_incident.status == "acknowledged"  # P99 still firing
    wall.now = at(31)
    await publisher.resolve(p99, 100, 1500, at(30))
    assert p95_incident.status == "resolved" and p95_incident.id not in tracker.open
    assert p95_incident.seconds() == (180.0, 420.0, 1860.0)  # MTTD 3 m, MTTA 7 m, MTTR 31 m
    whats = [t["what"] for t in p95_incident.timeline]
    assert whats == [
        "first breach (P95LatencyBreach)", "opened: P95LatencyBreach published",
        "P99LatencyElevated joined", "acknowledged by alice", "P95LatencyBreach resolved",
        "P99LatencyElevated resolved", "resolved: every alert resolved",
    ]  # fmt: skip
    assert metrics.registry.get_sample_value("vigil_incident_mttr_seconds_count") == 1
    assert metrics.registry.get_sample_value("vigil_incident_mtta_seconds_sum") == 420.0
    # its last row is the resolved state; restoring the rows reopens only the others
    last = {k: v[-1] for k, v in rows[-1].items()}
    assert last["status"] == "resolved" and last["mttr_s"] == 1860.0
    restored = IncidentTracker(None, metrics)
    latest: dict[str, tuple[Any, ...]] = {}
    for cols in rows:
        for values in zip(*cols.values(), strict=True):
            latest[values[0]] = values
    restored.restore(incidents_from_rows(list(latest.values())))
    assert set(restored.open) == set(tracker.open)


async def test_an_alert_long_after_the_last_one_opens_a_new_incident() -> None:
    publisher, tracker, _, _, _ = harness()
    a = spec("ErrorRateSpike", "critical", tenant_id="acme", service="api", route="/r")
    b = spec("ThroughputDrop", "high", tenant_id="acme", service="api", route="/r")
    await publisher.fire(a, 1, 0.5, at(0))
    await publisher.fire(b, 1, 0.5, at(45), starts_at=at(45))  # 45 min later, a quiet
    assert len(tracker.open) == 2


def test_a_pagerduty_v3_acknowledgement_names_the_alert_and_tenant() -> None:
    # the shape of PagerDuty's v3 webhook (developer.pagerduty.com, "V3 Webhooks")
    payload = {
        "event": {
            "id": "01DEN2H6X1WMBNF4X4MLDV7Q7F",
            "event_type": "incident.acknowledged",
            "resource_type": "incident",
            "occurred_at": "2026-12-06T10:07:00.000Z",
            "agent": {"html_url": "https://acme.pagerduty.com/users/PLH1HKV",
                      "id": "PLH1HKV", "self": "https://api.pagerduty.com/users/PLH1HKV",
                      "summary": "Alice Oncall", "type": "user_reference"},
            "client": None,
            "data": {"id": "PGR0VU2", "type": "incident", "number": 2,
                     "status": "acknowledged", "incident_key": "d3640fbd41094207a1c11e58",
                     "title": "[FIRING:1] critical P95LatencyBreach (acme)",
                     "urgency": "high"},
        }
    }  # fmt: skip
    assert pagerduty_ack(payload) == (
        "P95LatencyBreach",
        "acme",
        "Alice Oncall",
        datetime(2026, 12, 6, 10, 7, tzinfo=UTC),
    )
    payload["event"]["event_type"] = "incident.resolved"  # type: ignore[index]
    assert pagerduty_ack(payload) is None


def test_alerts_carry_the_wall_clock_time_they_were_published() -> None:
    import asyncio

    publisher, _, wall, _, _ = harness()
    wall.now = at(99)
    alert = asyncio.run(publisher.fire(spec("XSSAttempts", "high", rule="x"), 9, 5, at(1)))
    assert isinstance(alert, Alert)
    assert alert.time == at(1) and alert.data.published_at == at(99)
