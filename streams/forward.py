"""``vigil forward``: the alerts topic delivered to Prometheus Alertmanager (API v2).

Vigil does not route notifications; Alertmanager does. The forwarder's job is to hand it
every alert reliably and to keep Alertmanager's view of what is firing true:

* It consumes ``vigil.alerts`` in its own consumer group (``<group>-forwarder``) and
  posts each batch to ``POST /api/v2/alerts`` of every URL in
  ``VIGIL_ALERTMANAGER_URL``. A batch counts as delivered once one of them accepted it
  (HA peers gossip; one that was down gets the firing ones with the next re-send).
  Offsets are committed only after that; until then it retries with exponential
  backoff and reads nothing new, so nothing is lost while Alertmanager is down.
* Alertmanager ends an alert by itself at its ``endsAt`` (or ``resolve_timeout`` after
  the last post without one). A firing alert is posted with ``endsAt`` = the last time
  its detector asserted it + ``VIGIL_FORWARD_STALE_AFTER_S`` and re-sent every
  ``VIGIL_FORWARD_RESEND_INTERVAL_S`` (so a restarted Alertmanager learns it again).
  Detectors re-assert a firing alert every ``VIGIL_ALERT_DEDUP_WINDOW_S``; one not
  re-asserted within the stale bound is no longer re-sent and ends by itself, so a lost
  resolution cannot leave it firing forever. A resolution is posted with ``endsAt`` =
  the time it resolved.
* A record on the alerts topic that is not a Vigil alert goes to the dead-letter topic
  with its provenance (``vigil.error.class: invalid_alert``) and is counted.

Metrics (``/metrics`` on ``VIGIL_FORWARD_PORT``): ``vigil_forward_*``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from pydantic import ValidationError

from schemas.alerts import Alert
from sinks.alertmanager import to_alertmanager
from streams.settings import Settings
from streams.silences import alertmanager_urls

log = logging.getLogger(__name__)

#: post(url, alerts) -> None, raising on anything but a 2xx answer
Post = Callable[[str, list[dict[str, Any]]], Awaitable[None]]


class ForwardMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.received = Counter(
            "vigil_forward_alerts_received_total",
            "Alert transitions read from the alerts topic, by status.",
            ["status"],
            registry=r,
        )
        self.posted = Counter(
            "vigil_forward_alerts_posted_total",
            "Alerts accepted by Alertmanager, by kind (transition: read from the topic; resend).",
            ["kind"],
            registry=r,
        )
        self.failures = Counter(
            "vigil_forward_post_failures_total",
            "Posts to one Alertmanager URL that failed (HTTP error, timeout, refused).",
            registry=r,
        )
        self.retries = Counter(
            "vigil_forward_retries_total",
            "Batches retried because no Alertmanager accepted them.",
            registry=r,
        )
        self.stale = Counter(
            "vigil_forward_stale_total",
            "Firing alerts no longer re-sent: their detector stopped asserting them.",
            registry=r,
        )
        self.invalid = Counter(
            "vigil_forward_invalid_total",
            "Records on the alerts topic that are not alerts (sent to the dead-letter topic).",
            registry=r,
        )
        self.firing = Gauge(
            "vigil_forward_firing_alerts",
            "Firing alerts the forwarder keeps re-sending.",
            registry=r,
        )
        self.last_success = Gauge(
            "vigil_forward_last_success_timestamp_seconds",
            "Unix time of the last post an Alertmanager accepted.",
            registry=r,
        )
        self.post_seconds = Histogram(
            "vigil_forward_post_seconds",
            "Time of one post to one Alertmanager.",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )


@dataclass(slots=True)
class _Firing:
    alert: Alert
    asserted: float  # wall time of the detector's last assertion (monotonic clock)


class AlertState:
    """What is firing, as the forwarder last heard it; pure (no I/O) and clocked by the
    caller so its rules are tested with explicit times."""

    def __init__(self, stale_after_s: float, resend_interval_s: float, public_url: str) -> None:
        self.stale_after_s = stale_after_s
        self.resend_interval_s = resend_interval_s
        self.public_url = public_url
        self.firing: dict[str, _Firing] = {}
        self.last_resend = 0.0

    def _ends(self, asserted: float, now_mono: float, now_wall: datetime) -> datetime:
        left = asserted + self.stale_after_s - now_mono
        return now_wall + timedelta(seconds=max(left, 0.0))

    def take(
        self, alerts: list[Alert], now_mono: float, now_wall: datetime
    ) -> list[dict[str, Any]]:
        """The API objects for newly read alerts; updates the firing set."""
        out: dict[str, dict[str, Any]] = {}
        for alert in alerts:
            fp = alert.data.fingerprint
            if alert.data.status == "firing":
                self.firing[fp] = _Firing(alert, now_mono)
                ends = self._ends(now_mono, now_mono, now_wall)
                out[fp] = to_alertmanager(alert, self.public_url, ends_at=ends)
            else:
                self.firing.pop(fp, None)
                out[fp] = to_alertmanager(alert, self.public_url)
        return list(out.values())

    def due(self, now_mono: float, now_wall: datetime) -> tuple[list[dict[str, Any]], int]:
        """Re-sends due now (every resend interval), and how many alerts went stale."""
        if now_mono - self.last_resend < self.resend_interval_s:
            return [], 0
        self.last_resend = now_mono
        stale = [fp for fp, f in self.firing.items() if now_mono - f.asserted >= self.stale_after_s]
        for fp in stale:
            del self.firing[fp]
        resend = [
            to_alertmanager(f.alert, self.public_url, self._ends(f.asserted, now_mono, now_wall))
            for f in self.firing.values()
        ]
        return resend, len(stale)


async def http_post(session: aiohttp.ClientSession, url: str, alerts: list[dict[str, Any]]) -> None:
    async with session.post(f"{url}/api/v2/alerts", json=alerts) as response:
        if response.status >= 300:
            body = (await response.text())[:300]
            raise RuntimeError(f"{url} answered {response.status}: {body}")


class Forwarder:
    def __init__(
        self,
        settings: Settings,
        metrics: ForwardMetrics,
        post: Post,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.urls = alertmanager_urls(settings.alertmanager_url)
        self._post = post
        self._sleep = sleep
        public = settings.public_url or f"http://127.0.0.1:{settings.web_port}"
        self.state = AlertState(
            settings.forward_stale_after_s, settings.forward_resend_interval_s, public
        )
        self.stopping = asyncio.Event()
        self.healthy = True

    async def deliver(self, alerts: list[dict[str, Any]], kind: str) -> bool:
        """Post ``alerts`` until one Alertmanager accepts them (True) or the forwarder is
        stopping (False); every URL is told."""
        if not alerts:
            return True
        delay = self.settings.forward_retry_initial_s
        while True:
            accepted = False
            for url in self.urls:
                started = time.perf_counter()
                try:
                    await asyncio.wait_for(
                        self._post(url, alerts), timeout=self.settings.forward_timeout_s
                    )
                    accepted = True
                except Exception as exc:
                    self.metrics.failures.inc()
                    log.warning("posting %d alert(s) to %s failed: %s", len(alerts), url, exc)
                finally:
                    self.metrics.post_seconds.observe(time.perf_counter() - started)
            if accepted:
                self.healthy = True
                self.metrics.posted.labels(kind=kind).inc(len(alerts))
                self.metrics.last_success.set(time.time())
                return True
            self.healthy = False
            self.metrics.retries.inc()
            if self.stopping.is_set():
                return False
            log.warning(
                "no Alertmanager accepted %d alert(s) (%s); retrying in %.1fs",
                len(alerts),
                ", ".join(self.urls),
                delay,
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), timeout=delay)
            delay = min(delay * 2, self.settings.forward_retry_max_s)

    async def handle(
        self, records: list[Any], dead_letter: Callable[[Any, str], Awaitable[None]]
    ) -> bool:
        """Parse and deliver one batch of records; True once delivered."""
        alerts: list[Alert] = []
        for record in records:
            try:
                alerts.append(Alert.model_validate_json(record.value))
            except (ValidationError, ValueError, TypeError) as exc:
                self.metrics.invalid.inc()
                await dead_letter(record, f"not a Vigil alert: {str(exc)[:200]}")
                continue
            self.metrics.received.labels(status=alerts[-1].data.status).inc()
        now = time.monotonic()
        payloads = self.state.take(alerts, now, datetime.now(UTC))
        ok = await self.deliver(payloads, "transition")
        self.metrics.firing.set(len(self.state.firing))
        return ok

    async def resend(self) -> None:
        payloads, stale = self.state.due(time.monotonic(), datetime.now(UTC))
        if stale:
            self.metrics.stale.inc(stale)
        self.metrics.firing.set(len(self.state.firing))
        await self.deliver(payloads, "resend")

    async def run(self, consumer: Any, producer: Any) -> None:
        """Consume, deliver, commit; re-send on the interval; until ``stopping``."""
        s = self.settings

        async def dead_letter(record: Any, message: str) -> None:
            headers = [
                ("vigil.error.class", b"invalid_alert"),
                ("vigil.error.message", message.encode()),
                ("vigil.source.topic", str(record.topic).encode()),
                ("vigil.source.partition", str(record.partition).encode()),
                ("vigil.source.offset", str(record.offset).encode()),
                ("vigil.source.timestamp", str(record.timestamp).encode()),
                ("vigil.dlq.timestamp", str(int(time.time() * 1000)).encode()),
                ("vigil.payload.size", str(len(record.value or b"")).encode()),
            ]
            await producer.send_and_wait(
                s.dlq_topic, value=record.value or b"", key=record.key, headers=headers
            )

        while not self.stopping.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            records = [r for rs in batch.values() for r in rs]
            if records:
                if not await self.handle(records, dead_letter):
                    return  # stopping before Alertmanager took them: not committed
                await consumer.commit()
                log.debug("committed %d record(s)", len(records))
            await self.resend()


def forward_app(forwarder: Forwarder) -> web.Application:
    async def metrics_view(request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(forwarder.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def health_view(request: web.Request) -> web.Response:
        body = {"alertmanager": forwarder.urls, "delivering": forwarder.healthy}
        return web.Response(body=orjson.dumps(body), content_type="application/json")

    app = web.Application()
    app.router.add_get("/metrics", metrics_view)
    app.router.add_get("/healthz", health_view)
    return app


async def run_forwarder(settings: Settings, ready: Callable[[int], None] | None = None) -> None:
    """The ``vigil forward`` process: until SIGINT/SIGTERM."""
    import signal

    from streams.kafka import ensure_topics, start_consumer, start_producer

    metrics = ForwardMetrics()
    timeout = aiohttp.ClientTimeout(total=settings.forward_timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def post(url: str, alerts: list[dict[str, Any]]) -> None:
            await http_post(session, url, alerts)

        forwarder = Forwarder(settings, metrics, post)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, forwarder.stopping.set)
        runner = web.AppRunner(forward_app(forwarder))
        await runner.setup()
        site = web.TCPSite(runner, settings.web_host, settings.forward_port)
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else settings.forward_port
        await ensure_topics(settings, [settings.alerts_topic, settings.dlq_topic])
        consumer = await start_consumer(
            settings,
            settings.alerts_topic,
            group_id=f"{settings.consumer_group}-forwarder",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        producer = await start_producer(settings)
        log.info(
            "forwarding %s to %s (metrics on :%d)",
            settings.alerts_topic,
            ", ".join(forwarder.urls),
            port,
        )
        if ready is not None:
            ready(port)
        try:
            await forwarder.run(consumer, producer)
        finally:
            await consumer.stop()
            await producer.stop()
            await runner.cleanup()
