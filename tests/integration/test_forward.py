"""`vigil forward` between the real broker and the real Alertmanager: delivered, re-sent,
resolved, and nothing lost while Alertmanager is down."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.alerts import Alert, AlertData, Annotations, Status
from streams.alerting import AlertSpec
from streams.alertmanager import AlertmanagerProcess, local_config
from streams.broker import EmbeddedBroker
from streams.kafka import ensure_topics
from streams.procs import free_port, spawn, stop
from tests.integration.kafka_helpers import produce

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def alert_json(spec: AlertSpec, status: Status, at: datetime) -> bytes:
    data = AlertData(
        fingerprint=spec.fingerprint,
        status=status,
        alertname=spec.alertname,
        severity=spec.severity,
        labels=spec.labels,
        routing=spec.routing,
        annotations=spec.annotations,
        value=1.0,
        threshold=0.5,
        starts_at=at,
        ends_at=at if status == "resolved" else None,
        evidence={"query": "SELECT 1"},
    )
    return Alert.build(data, at).to_json()


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310
        return json.loads(r.read()) if "json" in r.headers.get("Content-Type", "") else r.read()


def active(am: str) -> dict[str, dict[str, Any]]:
    return {a["labels"]["tenant_id"]: a for a in get(f"{am}/api/v2/alerts?active=true")}


def metric(port: int, name: str) -> float:
    text = get(f"http://127.0.0.1:{port}/metrics").decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and not line.startswith("#")
    )


def wait_for(check: Any, what: str, timeout_s: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what} (last: {last})")


def spec(tenant: str, name: str = "TenantErrorRateHigh") -> AlertSpec:
    return AlertSpec(name, "high", {"tenant_id": tenant}, Annotations(summary=f"5xx of {tenant}"))


async def test_every_alert_reaches_alertmanager_even_across_its_outage(
    broker: EmbeddedBroker, prefix: str, settings_for: Any, tmp_path: Path
) -> None:
    settings = settings_for(broker.bootstrap, prefix)
    await ensure_topics(settings, [settings.alerts_topic, settings.dlq_topic], partitions=2)
    config = tmp_path / "am.yml"
    config.write_text(local_config(tmp_path / "secrets"))
    am = AlertmanagerProcess(config, tmp_path / "am-data", tmp_path / "am.log")
    am.start()
    port = free_port()
    env = {
        **os.environ,
        "VIGIL_KAFKA_BOOTSTRAP": broker.bootstrap,
        "VIGIL_TOPIC_PREFIX": prefix,
        "VIGIL_CONSUMER_GROUP": f"{prefix}-group",
        "VIGIL_ALERTMANAGER_URL": am.url,
        "VIGIL_FORWARD_PORT": str(port),
        "VIGIL_FORWARD_RESEND_INTERVAL_S": "1",
        "VIGIL_FORWARD_RETRY_MAX_S": "1",
        "VIGIL_PUBLIC_URL": "http://vigil.example.com:6066",
        "VIGIL_DATA_DIR": str(tmp_path / "vigil"),
    }
    forwarder = spawn(
        [sys.executable, "-m", "streams.cli", "forward"], env=env, log=tmp_path / "fwd.log"
    )
    now = datetime.now(UTC)
    a, b, c, d = spec("a"), spec("b"), spec("c"), spec("d", "ClientErrorRateElevated")
    try:
        await produce(
            broker.bootstrap,
            settings.alerts_topic,
            [alert_json(a, "firing", now), alert_json(d, "firing", now)],
            [a.fingerprint.encode(), d.fingerprint.encode()],
        )
        seen = wait_for(lambda: set(active(am.url)) >= {"a", "d"}, "a and d in Alertmanager")
        assert seen
        posted = active(am.url)["a"]
        assert posted["labels"]["family"] == "errors"
        assert posted["labels"]["category"] == "availability"
        assert posted["generatorURL"] == f"http://vigil.example.com:6066/alerts/{a.fingerprint}"
        assert posted["annotations"]["evidence_query"] == "SELECT 1"
        # firing alerts carry an end ahead (last assertion + stale bound, 900 s by default)
        ends = datetime.fromisoformat(posted["endsAt"].replace("Z", "+00:00"))
        assert 600 < (ends - datetime.now(UTC)).total_seconds() <= 900

        am.stop()
        later = datetime.now(UTC)
        await produce(
            broker.bootstrap,
            settings.alerts_topic,
            [
                alert_json(b, "firing", later),
                alert_json(a, "resolved", later),
                b"not an alert",
                alert_json(c, "firing", later),
            ],
            [b.fingerprint.encode(), a.fingerprint.encode(), b"x", c.fingerprint.encode()],
        )
        wait_for(lambda: metric(port, "vigil_forward_retries_total") >= 2, "retries")
        assert metric(port, 'vigil_forward_alerts_posted_total{kind="transition"}') == 2

        am.start()  # a fresh Alertmanager: it remembers no alert
        tenants = wait_for(
            lambda: (t := set(active(am.url))) >= {"b", "c", "d"} and t, "b, c and d after"
        )
        # d was delivered before the outage and is re-sent; a's resolution went through
        assert tenants == {"b", "c", "d"}
        wait_for(
            lambda: metric(port, 'vigil_forward_alerts_posted_total{kind="transition"}') == 5,
            "five transitions accepted",
        )
        assert metric(port, "vigil_forward_invalid_total") == 1
        consumer = AIOKafkaConsumer(
            bootstrap_servers=broker.bootstrap, group_id=f"{prefix}-group-forwarder"
        )
        await consumer.start()
        try:
            parts = [TopicPartition(settings.alerts_topic, p) for p in (0, 1)]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:  # the commit follows the accepted post
                committed = sum([await consumer.committed(tp) or 0 for tp in parts])
                if committed == 6:
                    break
                await asyncio.sleep(0.2)
            assert committed == 6  # all six records, committed once Alertmanager took them
        finally:
            await consumer.stop()
        dead = AIOKafkaConsumer(
            settings.dlq_topic, bootstrap_servers=broker.bootstrap, auto_offset_reset="earliest"
        )
        await dead.start()
        try:
            record = await dead.getone()
            headers = dict(record.headers)
            assert headers["vigil.error.class"] == b"invalid_alert"
            assert headers["vigil.source.topic"] == settings.alerts_topic.encode()
            assert record.value == b"not an alert"
        finally:
            await dead.stop()
    finally:
        assert stop(forwarder, timeout_s=15) == 0, (tmp_path / "fwd.log").read_text()[-3000:]
        am.stop()
