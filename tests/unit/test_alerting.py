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
    assert {a["data"]["fingerprint"] for a in sent} == {
        alert_fingerprint("P95LatencyBreach", LABELS)
    }
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
                "annotations": {"summary": "s"},
                "value": 1,
                "threshold": 2,
                "startsAt": T0,
                "endsAt": T0 + timedelta(minutes=1),
            },
        }
    )
    posted = to_alertmanager(alert)
    assert posted["labels"] == {
        "alertname": "ErrorRateSpike",
        "severity": "critical",
        "tenant_id": "a",
    }
    assert posted["annotations"]["summary"] == "s"
    assert posted["startsAt"] == "2026-01-02T03:04:05Z"
    assert posted["endsAt"] == "2026-01-02T03:05:05Z"


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
