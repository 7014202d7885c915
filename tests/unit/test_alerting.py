from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from schemas.alerts import Alert, Annotations, alert_fingerprint
from sinks.alertmanager import to_alertmanager
from streams.alerting import AlertPublisher, AlertSpec
from streams.metrics import Metrics

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
LABELS = {"tenant_id": "acme", "route": "/v1/x"}
NOTE = Annotations(summary="p95 above 500 ms", runbook_url="https://runbooks/p95")


class Topic:
    """Records what the publisher sends; stands in for the alerts topic in unit tests."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []

    async def send(
        self, topic: str, key: bytes | None, value: bytes, headers: list[tuple[str, bytes]]
    ) -> Any:
        self.sent.append((topic, key, value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def alerts(self) -> list[dict[str, Any]]:
        return [orjson.loads(v) for _, _, v in self.sent]


@pytest.fixture
def topic() -> Topic:
    return Topic()


@pytest.fixture
def publisher(topic: Topic, metrics: Metrics) -> AlertPublisher:
    return AlertPublisher(None, topic.send, "vigil.alerts", metrics, dedup_window_s=300)


def test_fingerprint_is_stable_and_label_order_free() -> None:
    a = alert_fingerprint("P95LatencyBreach", {"tenant_id": "acme", "route": "/x"})
    b = alert_fingerprint("P95LatencyBreach", {"route": "/x", "tenant_id": "acme"})
    assert a == b
    assert a != alert_fingerprint("P95LatencyBreach", {"tenant_id": "globex", "route": "/x"})
    assert a != alert_fingerprint("ErrorRateSpike", {"tenant_id": "acme", "route": "/x"})


async def test_fire_dedup_remind_resolve(
    publisher: AlertPublisher, topic: Topic, metrics: Metrics
) -> None:
    spec = AlertSpec("P95LatencyBreach", "critical", LABELS, NOTE)
    assert await publisher.fire(spec, 812.0, 500.0, at=T0) is not None
    assert publisher.is_firing(spec)
    assert await publisher.fire(spec, 820.0, 500.0, at=T0 + timedelta(seconds=30)) is None
    assert await publisher.fire(spec, 830.0, 500.0, at=T0 + timedelta(seconds=299)) is None
    reminder = await publisher.fire(spec, 840.0, 500.0, at=T0 + timedelta(seconds=301))
    assert reminder is not None
    assert reminder.data.evidence["suppressed_repeats"] == 2
    resolved = await publisher.resolve(spec, 300.0, 500.0, at=T0 + timedelta(seconds=400))
    assert resolved is not None
    assert not publisher.is_firing(spec)
    assert await publisher.resolve(spec, 300.0, 500.0, at=T0 + timedelta(seconds=500)) is None

    sent = topic.alerts()
    assert [a["data"]["status"] for a in sent] == ["firing", "firing", "resolved"]
    assert {a["data"]["fingerprint"] for a in sent} == {spec.fingerprint}
    routing = sent[0]["data"]["routing"]
    assert routing == {
        "alertname": "P95LatencyBreach",
        "severity": "critical",
        "category": "performance",
        "family": "latency",
        "tenant_id": "acme",
        "auto_rollback": "false",
    }
    assert spec.fingerprint == alert_fingerprint("P95LatencyBreach", {**routing, **LABELS})
    # the routing labels never change over the alert's life
    assert all(a["data"]["routing"] == routing for a in sent)
    assert all(k == sent[0]["data"]["fingerprint"].encode() for _, k, _ in topic.sent)
    assert sent[2]["data"]["startsAt"] == sent[0]["data"]["startsAt"]
    assert sent[2]["data"]["endsAt"] is not None
    assert metrics.registry.get_sample_value("vigil_alerts_suppressed_total") == 2
    assert (
        metrics.registry.get_sample_value(
            "vigil_alerts_published_total", {"severity": "critical", "status": "firing"}
        )
        == 2
    )


async def test_cloudevents_shape_and_deterministic_id(
    publisher: AlertPublisher, topic: Topic
) -> None:
    await publisher.fire(
        AlertSpec("ErrorRateSpike", "high", {"tenant_id": "a"}, NOTE), 1.0, 0.5, at=T0
    )
    [event] = topic.alerts()
    assert event["specversion"] == "1.0"
    assert event["type"] == "io.vigil.alert.firing"
    assert event["datacontenttype"] == "application/json"
    assert set(event["data"]) >= {
        "fingerprint",
        "status",
        "alertname",
        "severity",
        "labels",
        "annotations",
        "value",
        "threshold",
        "startsAt",
        "endsAt",
        "evidence",
    }
    again = Alert.build(Alert.model_validate(event).data, T0)
    assert again.id == event["id"]


def test_alertmanager_mapping() -> None:
    alert = Alert.model_validate(
        {
            "id": "1",
            "type": "io.vigil.alert.resolved",
            "subject": "fp",
            "time": T0,
            "data": {
                "fingerprint": "fp",
                "status": "resolved",
                "alertname": "ErrorRateSpike",
                "severity": "critical",
                "labels": {"tenant_id": "a"},
                "routing": {"family": "errors", "category": "availability"},
                "annotations": {"summary": "s", "flapping": "held"},
                "value": 1,
                "threshold": 2,
                "startsAt": T0,
                "endsAt": T0 + timedelta(minutes=1),
                "evidence": {"query": "SELECT 1"},
            },
        }
    )
    posted = to_alertmanager(alert, "https://vigil.example.com/")
    assert posted["labels"] == {
        "alertname": "ErrorRateSpike",
        "severity": "critical",
        "tenant_id": "a",
        "family": "errors",
        "category": "availability",
    }
    assert posted["annotations"]["summary"] == "s"
    assert posted["annotations"]["flapping"] == "held"
    assert posted["annotations"]["evidence_query"] == "SELECT 1"
    assert posted["generatorURL"] == "https://vigil.example.com/alerts/fp"
    assert posted["startsAt"] == "2026-01-02T03:04:05.000000Z"
    # a resolved alert ends at its resolution whatever end the forwarder proposes
    assert posted["endsAt"] == "2026-01-02T03:05:05.000000Z"
    later = to_alertmanager(alert, ends_at=T0 + timedelta(hours=1))
    assert later["endsAt"] == "2026-01-02T03:05:05.000000Z"


def test_pagerduty_mapping_triggers_then_resolves_on_the_fingerprint() -> None:
    from sinks.alertmanager import to_pagerduty

    data = {
        "fingerprint": "fp",
        "alertname": "ErrorRateSpike",
        "severity": "high",
        "labels": {"tenant_id": "a"},
        "annotations": {"summary": "s"},
        "value": 1,
        "threshold": 2,
        "startsAt": T0,
    }
    firing = Alert.model_validate(
        {
            "id": "1",
            "type": "io.vigil.alert.firing",
            "subject": "fp",
            "time": T0,
            "data": {**data, "status": "firing"},
        }
    )
    resolved = Alert.model_validate(
        {
            "id": "2",
            "type": "io.vigil.alert.resolved",
            "subject": "fp",
            "time": T0,
            "data": {**data, "status": "resolved", "endsAt": T0},
        }
    )
    trigger, resolve = to_pagerduty(firing, "rk"), to_pagerduty(resolved, "rk")
    assert (trigger["event_action"], resolve["event_action"]) == ("trigger", "resolve")
    assert trigger["dedup_key"] == resolve["dedup_key"] == "fp"
    assert trigger["payload"]["severity"] == "error"
    assert trigger["routing_key"] == "rk"


def _at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


async def test_an_alert_starting_three_times_in_30_minutes_raises_alert_recurring_one_level_up(
    topic: Topic, metrics: Metrics
) -> None:
    publisher = AlertPublisher(None, topic.send, "a", metrics, dedup_window_s=300, flap_max=10)
    spec = AlertSpec("TenantErrorRateHigh", "high", {"tenant_id": "acme"}, NOTE)
    for start in (0, 10):  # two starts: no escalation
        await publisher.fire(spec, 0.1, 0.05, _at(start))
        await publisher.resolve(spec, 0.0, 0.05, _at(start + 2))
    assert not [a for a in topic.alerts() if a["data"]["alertname"] == "AlertRecurring"]
    await publisher.fire(spec, 0.1, 0.05, _at(29))  # third start inside 30 minutes
    recurring = [a["data"] for a in topic.alerts() if a["data"]["alertname"] == "AlertRecurring"]
    assert [r["status"] for r in recurring] == ["firing"]
    assert recurring[0]["severity"] == "critical"  # one level above high
    assert recurring[0]["routing"]["category"] == "availability"  # the source's category
    assert recurring[0]["routing"]["tenant_id"] == "acme"
    assert recurring[0]["labels"]["source_fingerprint"] == spec.fingerprint
    # the source alert's own labels and severity never changed
    source = [a["data"] for a in topic.alerts() if a["data"]["alertname"] == spec.alertname]
    assert {s["severity"] for s in source} == {"high"}
    assert {s["fingerprint"] for s in source} == {spec.fingerprint}
    # resolves once the source is resolved and its last start left the window
    await publisher.resolve(spec, 0.0, 0.05, _at(31))
    await publisher.fire(AlertSpec("XSSAttempts", "high", {"rule": "x"}, NOTE), 9, 5, _at(58))
    assert [
        a["data"]["status"] for a in topic.alerts() if a["data"]["alertname"] == "AlertRecurring"
    ] == ["firing"]
    await publisher.fire(AlertSpec("XSSAttempts", "high", {"rule": "x"}, NOTE), 9, 5, _at(59.5))
    recurring = [a["data"] for a in topic.alerts() if a["data"]["alertname"] == "AlertRecurring"]
    assert [r["status"] for r in recurring] == ["firing", "resolved"]
    # three starts spread over more than 30 minutes: no escalation
    other = AlertSpec("TenantErrorRateHigh", "high", {"tenant_id": "globex"}, NOTE)
    for start in (100, 116, 132):
        await publisher.fire(other, 0.1, 0.05, _at(start))
        await publisher.resolve(other, 0.0, 0.05, _at(start + 1))
    assert len([a for a in topic.alerts() if a["data"]["alertname"] == "AlertRecurring"]) == 2


async def test_a_flapping_alert_is_held_firing_with_an_annotation_then_resolves_when_quiet(
    topic: Topic, metrics: Metrics
) -> None:
    publisher = AlertPublisher(
        None, topic.send, "a", metrics, dedup_window_s=300, flap_max=3, flap_window_s=3600,
        recurring_count=100,
    )  # fmt: skip
    spec = AlertSpec("UnauthorizedSpike", "high", {"route": "/login", "rule": "r"}, NOTE)
    for k in range(3):  # three fire/resolve cycles: each resolution goes out
        await publisher.fire(spec, 20, 10, _at(10 * k))
        await publisher.resolve(spec, 0, 10, _at(10 * k + 5))
    assert [a["data"]["status"] for a in topic.alerts()] == ["firing", "resolved"] * 3
    await publisher.fire(spec, 20, 10, _at(30))
    held = await publisher.resolve(spec, 0, 10, _at(35))  # the 4th within the hour
    assert held is None and publisher.is_held(spec)
    last = topic.alerts()[-1]["data"]
    assert last["status"] == "firing" and "resolved more than 3 times" in last[
        "annotations"]["flapping"]  # fmt: skip
    sent = len(topic.sent)
    await publisher.fire(spec, 20, 10, _at(40))  # back within the hold: no new page
    await publisher.resolve(spec, 0, 10, _at(41))
    assert all(a["data"]["status"] == "firing" for a in topic.alerts()[sent:])
    assert metrics.registry.get_sample_value("vigil_alerts_held_flapping_total") == 1
    # quiet for an hour after the last resolution: the held alert resolves
    other = AlertSpec("XSSAttempts", "high", {"rule": "x"}, NOTE)
    await publisher.fire(other, 9, 5, _at(100))
    assert publisher.is_held(spec)
    await publisher.fire(other, 9, 5, _at(102))
    assert not publisher.is_firing(spec)
    resolved = [a["data"] for a in topic.alerts() if a["data"]["fingerprint"] == spec.fingerprint]
    assert resolved[-1]["status"] == "resolved"
    assert resolved[-1]["endsAt"].startswith(_at(101).strftime("%Y-%m-%dT%H:%M"))
    assert {r["fingerprint"] for r in resolved} == {spec.fingerprint}


async def test_alerts_firing_before_a_restart_still_resolve(topic: Topic, metrics: Metrics) -> None:
    spec = AlertSpec("P95LatencyBreach", "critical", LABELS, NOTE)
    publisher = AlertPublisher(None, topic.send, "a", metrics, dedup_window_s=300)
    assert await publisher.resolve(spec, 1, 2, _at(5)) is None  # unknown: nothing to resolve
    publisher.restore({spec.fingerprint: (_at(0), _at(1))})
    assert await publisher.fire(spec, 900, 500, _at(3)) is None  # inside the dedup window
    resolved = await publisher.resolve(spec, 1, 2, _at(9))
    assert resolved is not None and resolved.data.starts_at == _at(0)


async def test_escalation_history_is_bounded_however_many_alerts_went_by(
    topic: Topic, metrics: Metrics
) -> None:
    publisher = AlertPublisher(None, topic.send, "a", metrics, dedup_window_s=300)
    for k in range(500):
        spec = AlertSpec("TenantErrorRateHigh", "high", {"tenant_id": f"t{k}"}, NOTE)
        await publisher.fire(spec, 0.1, 0.05, _at(0))
        await publisher.resolve(spec, 0.0, 0.05, _at(1))
    assert len(publisher._history) == 500
    quiet = AlertSpec("XSSAttempts", "high", {"rule": "x"}, NOTE)
    await publisher.fire(quiet, 9, 5, _at(200))  # two hours on: every history has aged out
    assert len(publisher._history) <= 1
