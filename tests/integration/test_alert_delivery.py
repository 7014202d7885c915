"""Alerts reach people: Vigil's alerts, delivered by the forwarder, through the real
Alertmanager running the shipped configuration (only its timings shortened) to local
stand-ins for Slack and PagerDuty (HTTP) and for e-mail (SMTP, aiosmtpd)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiosmtpd.controller import Controller
from prometheus_client import CollectorRegistry

from schemas.alerts import Alert, Annotations
from streams.alerting import AlertPublisher, AlertSpec
from streams.alertmanager import AlertmanagerProcess, local_config
from streams.forward import AlertState, Forwarder, ForwardMetrics, http_post
from streams.metrics import Metrics
from streams.procs import free_port
from streams.settings import load_settings

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


class Received:
    """What the stand-ins were sent: HTTP bodies by path, e-mails."""

    def __init__(self) -> None:
        self.http: list[tuple[str, dict[str, Any]]] = []
        self.mail: list[tuple[list[str], str]] = []

    def slack(self, channel: str) -> list[dict[str, Any]]:
        return [b for p, b in self.http if p == "/slack" and b.get("channel") == channel]

    def pagerduty(self) -> list[dict[str, Any]]:
        return [b for p, b in self.http if p == "/pagerduty"]


class _Smtp:
    def __init__(self, received: Received) -> None:
        self.received = received

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        subject = message_from_bytes(envelope.content).get("Subject", "")
        self.received.mail.append((list(envelope.rcpt_tos), str(subject)))
        return "250 OK"


@pytest.fixture
async def stand_ins(tmp_path: Path) -> AsyncIterator[tuple[Received, int, int]]:
    received = Received()

    async def record(request: web.Request) -> web.Response:
        received.http.append((request.path, await request.json()))
        return web.json_response({"status": "success", "message": "Event processed"}, status=202)

    app = web.Application()
    app.router.add_post("/{name}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    http_port = free_port()
    await web.TCPSite(runner, "127.0.0.1", http_port).start()
    smtp_port = free_port()
    smtp = Controller(_Smtp(received), hostname="127.0.0.1", port=smtp_port)
    smtp.start()
    yield received, http_port, smtp_port
    smtp.stop()
    await runner.cleanup()


def shortened(text: str) -> str:
    """The shipped configuration with only its timings shortened."""
    text = re.sub(r"group_wait: \S+", "group_wait: 1s", text)
    text = re.sub(r"group_interval: \S+", "group_interval: 2s", text)
    return re.sub(r"repeat_interval: \S+", "repeat_interval: 1h", text)


async def until(check: Callable[[], Any], what: str, timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        await asyncio.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def note(summary: str) -> Annotations:
    return Annotations(summary=summary)


async def test_critical_pages_inhibited_medium_does_not_silence_stops_resolution_arrives(
    stand_ins: tuple[Received, int, int], tmp_path: Path
) -> None:
    received, http_port, smtp_port = stand_ins
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    stand_in = f"http://127.0.0.1:{http_port}"
    (secrets / "slack-webhook-url").write_text(f"{stand_in}/slack")
    for category in ("security", "availability", "performance"):
        (secrets / f"pagerduty-{category}").write_text(f"key-{category}")
    (secrets / "smtp-password").write_text("unused")
    config = tmp_path / "alertmanager.yml"
    text = local_config(
        secrets,
        replace={
            "https://events.pagerduty.com/v2/enqueue": f"{stand_in}/pagerduty",
            "smtp.example.com:587": f"127.0.0.1:{smtp_port}",
            "smtp_require_tls: true": "smtp_require_tls: false",
            "  smtp_auth_username: vigil-alerts@example.com\n": "",
            "  smtp_auth_password_file: " + str(secrets / "smtp-password") + "\n": "",
        },
    )
    config.write_text(shortened(text))
    am = AlertmanagerProcess(config, tmp_path / "am-data", tmp_path / "am.log")
    am.start()

    # the alerts exactly as Vigil's publisher emits them
    published: list[Alert] = []

    async def capture(topic: str, key: bytes | None, value: bytes, headers: Any) -> Any:
        published.append(Alert.model_validate_json(value))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    publisher = AlertPublisher(None, capture, "alerts", Metrics(CollectorRegistry()), 300)
    settings = load_settings(alertmanager_url=am.url, public_url="http://vigil.test:6066")
    try:
        async with aiohttp.ClientSession() as session:

            async def post(url: str, alerts: list[dict[str, Any]]) -> None:
                await http_post(session, url, alerts)

            forwarder = Forwarder(settings, ForwardMetrics(CollectorRegistry()), post)
            state: AlertState = forwarder.state

            async def deliver() -> None:
                payloads = state.take(published, time.monotonic(), datetime.now(UTC))
                published.clear()
                assert await forwarder.deliver(payloads, "transition")

            now = datetime.now(UTC)
            api = {"service": "api", "route": "/v1/pay"}
            critical = AlertSpec(
                "ErrorRateSpike",
                "critical",
                {"tenant_id": "acme", **api},
                note("5xx 4 % on pay"),
            )
            # same family (errors) and tenant: inhibited while the critical fires
            inhibited = AlertSpec("TenantErrorRateHigh", "high", {"tenant_id": "acme"},
                                  note("5xx share of acme 6 %"))  # fmt: skip
            onboarding = {"tenant_id": "acme", "funnel": "onboarding"}
            medium = AlertSpec(
                "FunnelStageConversionLow", "medium", {**onboarding, "stage": "profile"},
                note("profile 60 %"),
            )  # fmt: skip
            crit_funnel = AlertSpec("FunnelStageConversionLow", "critical", {"tenant_id": "acme",
                                    "funnel": "onboarding", "stage": "email_verified"},
                                    note("email_verified 40 %"))  # fmt: skip
            # an attack from one IP (no tenant) over each tenant's failed-login spike
            brute = AlertSpec("BruteForceAttack", "critical", {"ip_hash": "ab12", "rule": "bf"},
                              note("failed logins from 203.0.113.0/24"))  # fmt: skip
            spike = AlertSpec("FailedLoginSpike", "high", {"tenant_id": "acme", "rule": "fl"},
                              note("failed logins of acme above 20"))  # fmt: skip
            # a bad release: the service's verdict pages, each tenant's is inhibited by it
            release = {"service": "web", "release": "2.8.0"}
            canary = AlertSpec("CanaryVerdictFail", "critical", release,
                               note("canary 2.8.0 of web fails"), auto_rollback=True)  # fmt: skip
            canary_acme = AlertSpec("CanaryVerdictFail", "critical",
                                    {**release, "tenant_id": "acme"},
                                    note("canary 2.8.0 for acme fails"),
                                    auto_rollback=True)  # fmt: skip
            for spec in (critical, inhibited, medium, crit_funnel, brute, spike, canary,
                         canary_acme):  # fmt: skip
                await publisher.fire(spec, 1.0, 0.5, now)
            await deliver()

            await until(lambda: len(received.pagerduty()) >= 4, "four PagerDuty pages")
            pages = received.pagerduty()
            keys = {p["routing_key"] for p in received.pagerduty()}
            # ErrorRateSpike is availability, and so is a business funnel; BruteForce security
            assert keys == {"key-availability", "key-security"}
            assert all(p["event_action"] == "trigger" for p in pages)
            summaries = " ".join(p["payload"]["summary"] for p in received.pagerduty())
            assert "ErrorRateSpike" in summaries and "(acme)" in summaries
            await until(
                lambda: "5xx 4 % on pay" in json.dumps(received.slack("#alerts-critical")),
                "ErrorRateSpike in #alerts-critical",
            )
            text = json.dumps(received.slack("#alerts-critical"))
            assert f"http://vigil.test:6066/alerts/{critical.fingerprint}" in text
            mails = await until(lambda: received.mail, "an e-mail")
            assert set(mails[0][0]) == {"oncall@example.com", "security@example.com"}
            await asyncio.sleep(4)  # two group intervals: anything else would have gone out
            everything = json.dumps(received.http)
            assert "5xx share of acme" not in everything  # inhibited by the critical
            assert "profile 60 %" not in everything  # medium of the funnel family: inhibited
            assert "failed logins of acme" not in everything  # under the tenant-less attack
            assert "canary 2.8.0 for acme" not in everything  # under the service's verdict
            assert "canary 2.8.0 of web fails" in json.dumps(received.pagerduty())
            assert not received.slack("#alerts-high") and not received.slack("#alerts-medium")
            rollup = received.slack("#alerts-rollup")
            assert rollup, "the cross-tenant roll-up channel got the critical alerts"
            assert len(received.pagerduty()) == 4  # paged once each, not again by the roll-up

            # a deployment window: silence globex's P95LatencyBreach, then it fires
            env = {**os.environ, "VIGIL_ALERTMANAGER_URL": am.url}
            silenced = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-m", "streams.cli", "silence", "add", "--match",
                 "alertname=P95LatencyBreach", "--match", "tenant_id=globex", "--for", "10m",
                 "--comment", "deploy 4.2", "--by", "test"],
                env=env, capture_output=True, text=True, check=False, cwd=ROOT,
            )  # fmt: skip
            assert silenced.returncode == 0, silenced.stderr
            muted = AlertSpec("P95LatencyBreach", "critical", {"tenant_id": "globex",
                              "service": "api", "route": "/v1/x"}, note("p95 900 ms"))  # fmt: skip
            globex = {"tenant_id": "globex", "service": "api", "route": "/v1/x"}
            control = AlertSpec("ErrorRateSpike", "critical", globex, note("5xx 3 % globex"))
            await publisher.fire(muted, 900, 500, now)
            await publisher.fire(control, 0.03, 0.01, now)
            await deliver()
            await until(lambda: len(received.pagerduty()) >= 5, "the control page")
            await asyncio.sleep(3)
            assert "p95 900 ms" not in json.dumps(received.http)  # silenced
            assert "P95LatencyBreach" not in json.dumps(received.pagerduty())

            # resolution: PagerDuty and Slack #alerts-critical have send_resolved on
            await publisher.resolve(critical, 0.001, 0.01, now + timedelta(seconds=5))
            await deliver()
            resolved = await until(
                lambda: [p for p in received.pagerduty() if p["event_action"] == "resolve"],
                "the PagerDuty resolve",
            )
            assert len(resolved) == 1 and "ErrorRateSpike" in resolved[0]["payload"]["summary"]
            await until(
                lambda: any(
                    "RESOLVED" in json.dumps(m) for m in received.slack("#alerts-critical")
                ),
                "the Slack resolution",
            )
    finally:
        am.stop()
