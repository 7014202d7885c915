"""Incidents with explicit times: grouping by tenant, category and overlap, and by shared
trace ids; timeline; MTTD / MTTA / MTTR; acknowledgement by hand, from a PagerDuty v3
webhook and from requests stored by another worker."""

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


def restart(rows: list[dict[str, list[Any]]]) -> IncidentTracker:
    """A new tracker restored from the newest stored row of each incident."""
    latest: dict[str, tuple[Any, ...]] = {}
    for cols in rows:
        for values in zip(*cols.values(), strict=True):
            latest[values[0]] = values
    restored = IncidentTracker(None, Metrics(CollectorRegistry()))
    restored.restore(incidents_from_rows(list(latest.values())))
    return restored


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


async def test_alerts_sharing_a_trace_are_one_incident_across_tenants_and_categories() -> None:
    publisher, tracker, wall, rows, _ = harness()
    leak = spec("PIILeakageDetected", "critical", tenant_id="acme", entity="email")
    crossed = spec("CrossTenantAccess", "critical", tenant_id="globex", actor="u")
    unrelated = spec("CrossTenantAccess", "critical", tenant_id="globex", actor="v")
    await publisher.fire(leak, 1, 0, at(1), {"trace_ids": ["t-1", "t-2"]}, starts_at=at(1))
    wall.now = at(2)
    await publisher.fire(crossed, 1, 0, at(2), {"trace_ids": ["t-9", "t-2"]}, starts_at=at(2))
    await publisher.fire(unrelated, 1, 0, at(2), {"trace_ids": ["t-7"]}, starts_at=at(2))
    one = tracker.find("PIILeakageDetected", "acme")
    assert one is not None and tracker.find("CrossTenantAccess", "") is not None
    assert set(one.alerts.values()) == {"PIILeakageDetected", "CrossTenantAccess"}
    assert one.trace_ids == {"t-1", "t-2", "t-9"}
    assert "CrossTenantAccess joined (shared trace t-2)" in [t["what"] for t in one.timeline]
    assert len(tracker.open) == 2  # the access in another trace is its own incident
    # the trace ids are stored, and a restart groups by them again
    restored = restart(rows)
    assert restored.open[one.id].trace_ids == one.trace_ids
    again = spec("PIILeakageDetected", "critical", tenant_id="hooli", entity="phone")
    restored_pub = AlertPublisher(None, Topic().send, "a", Metrics(CollectorRegistry()), 300,
                                  clock=wall, incidents=restored)  # fmt: skip
    await restored_pub.fire(again, 1, 0, at(3), {"trace_ids": ["t-9"]}, starts_at=at(3))
    assert len(restored.open[one.id].alerts) == 3 and len(restored.open) == 2


async def test_requests_received_elsewhere_are_applied_once_by_the_owner() -> None:
    publisher, tracker, wall, _, metrics = harness()
    p95 = spec("P95LatencyBreach", "critical", tenant_id="acme", service="api", route="/r")
    wall.now = at(1)
    await publisher.fire(p95, 900, 500, at(1), starts_at=at(0))
    incident = tracker.find("P95LatencyBreach", "acme")
    assert incident is not None
    requests = [
        ("inc-of-another-worker", "ack", "carol", at(2)),
        (incident.id, "ack", "bob", at(4)),
        (incident.id, "ack", "dave", at(5)),  # second ack: the first one stands
    ]
    changed = await tracker.apply_requests(requests)
    assert [i.id for i in changed] == [incident.id]
    assert incident.acknowledged_by == "bob" and incident.acknowledged_at == at(4)
    version = incident.version
    assert await tracker.apply_requests(requests) == []  # polled again: nothing new
    assert incident.version == version
    assert metrics.registry.get_sample_value("vigil_incident_mtta_seconds_sum") == 180.0
    await tracker.apply_requests([(incident.id, "resolve", "bob", at(9))])
    assert incident.status == "resolved" and not tracker.open


async def test_a_release_failing_for_several_tenants_is_one_incident_of_the_release() -> None:
    publisher, tracker, wall, rows, _ = harness()
    key = {"incident_key": "release:web/2.8.0"}
    service_wide = spec("CanaryVerdictFail", "critical", service="web", release="2.8.0")
    acme = spec("CanaryVerdictFail", "critical", service="web", release="2.8.0", tenant_id="acme")
    globex = spec("CanaryVerdictFail", "critical", service="web", release="2.8.0",
                  tenant_id="globex")  # fmt: skip
    errors = spec("TenantErrorRateHigh", "high", tenant_id="acme")  # acme's own, earlier
    await publisher.fire(errors, 0.07, 0.05, at(0), starts_at=at(0))
    wall.now = at(2)
    await publisher.fire(acme, 0, 75, at(2), key, starts_at=at(1))
    await publisher.fire(service_wide, 0, 75, at(2), key, starts_at=at(1))
    await publisher.fire(globex, 0, 75, at(2), key, starts_at=at(1))
    # another release of the same service is another cause
    other = spec("CanaryVerdictFail", "critical", service="web", release="2.9.0")
    await publisher.fire(other, 0, 75, at(2), {"incident_key": "release:web/2.9.0"},
                         starts_at=at(1))  # fmt: skip
    one = tracker.find("CanaryVerdictFail", "globex")
    assert one is not None and tracker.find("CanaryVerdictFail", "acme") is one
    # acme's canary joined acme's open availability incident; the release's key brought
    # the service-wide verdict and globex's into it
    assert set(one.alerts.values()) == {"TenantErrorRateHigh", "CanaryVerdictFail"}
    assert len(one.alerts) == 4 and one.tenants == {"acme", "globex"}
    assert one.keys == {"release:web/2.8.0"}
    assert "CanaryVerdictFail joined (shared release:web/2.8.0)" in [
        t["what"] for t in one.timeline
    ]
    assert len(tracker.open) == 2
    second = next(i for i in tracker.open.values() if i is not one)
    assert second.tenant_id == "" and second.keys == {"release:web/2.9.0"}  # nobody's
    # stored with its keys and tenants: after a restart the release still groups
    restored = restart(rows)
    assert restored.open[one.id].tenants == {"acme", "globex"}
    hooli = spec("CanaryVerdictFail", "critical", service="web", release="2.8.0",
                 tenant_id="hooli")  # fmt: skip
    restored_pub = AlertPublisher(None, Topic().send, "a", Metrics(CollectorRegistry()), 300,
                                  clock=wall, incidents=restored)  # fmt: skip
    await restored_pub.fire(hooli, 0, 75, at(3), key, starts_at=at(3))
    assert restored.find("CanaryVerdictFail", "hooli") is restored.open[one.id]
    assert len(restored.open) == 2
