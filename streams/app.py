"""The Faust app: topics, the ingest agent, web views; built from one Settings object.

The agent is deliberately thin: the batch consumer (:mod:`streams.transport`) hands it
one event per fetched partition batch and :class:`streams.pipeline.IngestPipeline` does
the work. The app owns the ClickHouse engine (chDB allows one process per data
directory), so ``vigil query`` reaches it through ``/query`` on the local web port.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import faust
from prometheus_client import CollectorRegistry

from schemas.normalize import Pseudonymizer
from sinks.clickhouse import ClickHouseWriter, connect
from sinks.migrate import migrate
from streams.alerting import AlertPublisher, firing_alerts
from streams.detectors.analytics.health import AnalyticsHealth
from streams.detectors.canary.detector import CanaryConfig, CanaryJudge, CanarySource
from streams.detectors.canary.judge import JudgeConfig
from streams.detectors.canary.stats import Thresholds
from streams.detectors.funnel.detector import FunnelDetector
from streams.detectors.latency.detector import LatencyDetector
from streams.detectors.latency.sketch import gamma_for
from streams.detectors.latency.slo import load_rules
from streams.detectors.pii.guard import PiiAlerts, PiiGuard
from streams.detectors.pii.scanner import Scanner
from streams.detectors.security.detector import SecurityDetector, SecurityGroups
from streams.dlq import DeadLetters
from streams.gate import CommitGate
from streams.health import DetectorHealth
from streams.incidents import IncidentTracker, open_incidents, pending_requests
from streams.ingest import Ingestor
from streams.limits import JsonLimits
from streams.metrics import Metrics
from streams.pipeline import IngestPipeline
from streams.publish import Message, Publisher
from streams.settings import Settings
from streams.transport import BatchTransport, ConsumerHooks, SourceBatch
from streams.web import register_views, tenant_token_guard

log = logging.getLogger(__name__)
GROUPS = "security_groups"  # the groups stage's name in /healthz and the detector metrics


class Runtime:
    """Everything the agent needs once the engine is open; built in ``on_first_start``."""

    def __init__(self, settings: Settings, metrics: Metrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.pseudonymizer = Pseudonymizer(settings.hash_key_bytes)
        self.ready = asyncio.Event()
        self.writer: ClickHouseWriter | None = None
        self.pipeline: IngestPipeline | None = None
        #: where detectors publish their findings (firing/resolved, deduplicated)
        self.alerts: AlertPublisher | None = None
        self.rules = load_rules(settings.rules_file)  # a bad file fails at start
        self.latency: LatencyDetector | None = None
        self.pii_alerts: PiiAlerts | None = None
        self.security: SecurityDetector | None = None
        self.security_groups: SecurityGroups | None = None
        self.funnels: FunnelDetector | None = None
        self.analytics_health: AnalyticsHealth | None = None
        self.canary: CanarySource | None = None
        self.incidents: IncidentTracker | None = None
        self._requests_polled = 0.0
        self.canary_judge: CanaryJudge | None = None
        self.groups_gate = CommitGate()
        self.canary_gate = CommitGate()
        self.health = DetectorHealth(metrics, settings.detector_failure_threshold)

    async def open(self, app: VigilApp) -> None:
        s = self.settings
        client = await asyncio.to_thread(connect, s.resolved_clickhouse_url, s.clickhouse_database)
        applied = await asyncio.to_thread(
            migrate, client, s.clickhouse_database, s.retention_days, s.aggregate_retention_days
        )
        for m in applied:
            log.info("applied migration %03d_%s", m.version, m.name)
        self.writer = ClickHouseWriter(
            client,
            s.clickhouse_database,
            self.metrics,
            flush_rows=s.sink_flush_rows,
            flush_interval_s=s.sink_flush_interval_s,
            linger_s=s.sink_linger_s,
            max_buffer_rows=s.sink_max_buffer_rows,
            retry_initial_s=s.sink_retry_initial_s,
            retry_max_s=s.sink_retry_max_s,
        )
        self.writer.start()
        for name in (
            s.events_topic,
            s.dlq_topic,
            s.alerts_topic,
            s.security_groups_topic,
            s.canary_topic,
        ):
            await app.topic(name).maybe_declare()
        ingestor = Ingestor(
            self.pseudonymizer,
            s.max_message_bytes,
            int(s.max_future_skew_s * 1000),
            retention_ms=s.retention_days * 86_400_000,
            limits=JsonLimits(s.max_json_depth, s.max_json_items),
        )
        publisher = Publisher(
            app.send_raw,
            self.metrics,
            retry_initial_s=s.publish_retry_initial_s,
            retry_max_s=s.publish_retry_max_s,
        )
        self.alerts = AlertPublisher(
            self.writer,
            publisher,
            s.alerts_topic,
            self.metrics,
            s.alert_dedup_window_s,
            runbook_base=s.runbook_base_url,
            recurring_count=s.alert_recurring_count,
            recurring_window_s=s.alert_recurring_window_s,
            flap_max=s.alert_flap_max,
            flap_window_s=s.alert_flap_window_s,
        )
        self.alerts.restore(await asyncio.to_thread(firing_alerts, client, s.clickhouse_database))
        writer = self.writer

        async def write_incidents(columns: dict[str, list[Any]]) -> None:
            await writer.add({"incidents": columns})

        self.incidents = IncidentTracker(write_incidents, self.metrics, s.incident_merge_window_s)
        self.incidents.restore(
            await asyncio.to_thread(open_incidents, client, s.clickhouse_database)
        )
        self.alerts.incidents = self.incidents
        gate = CommitGate()
        self.latency = LatencyDetector(
            self.rules.slo,
            gamma_for(s.sketch_relative_accuracy),
            self.writer,
            self.alerts,
            gate,
            self.metrics,
            s.clickhouse_database,
            s.consumer_group,
        )
        if s.security_detection:
            self._start_security(s, self.alerts, publisher, gate)
        funnels = self.rules.funnels
        if s.funnel_detection and funnels.enabled and funnels.definitions:
            self.funnels = FunnelDetector(
                funnels,
                gamma_for(s.sketch_relative_accuracy),
                self.alerts,
                self.writer,
                self.metrics,
                s.clickhouse_database,
                gate=gate,
                consumer_group=s.consumer_group,
                checkpoint_interval_s=s.funnel_checkpoint_interval_s,
            )
        if s.canary_detection:
            self._start_canary(s, publisher, gate)
        if self.rules.analytics.enabled:
            self.analytics_health = AnalyticsHealth(self.rules.analytics, self.alerts, self.metrics)
        guard = None
        if s.pii_scan:
            scanner = await asyncio.to_thread(Scanner, s.hash_key_bytes, s.pii_engine)
            guard = PiiGuard(scanner, self.rules.pii, self.metrics)
            self.pii_alerts = PiiAlerts(
                self.alerts, self.rules.pii.quiet_period_s, s.clickhouse_database
            )
        dead_letters = DeadLetters(
            publisher,
            s.dlq_topic,
            self.pseudonymizer,
            self.metrics,
            s.dlq_max_payload_bytes,
            redact=guard.redact_payload if guard is not None else None,
        )
        self.pipeline = IngestPipeline(
            ingestor,
            self.writer,
            dead_letters,
            self.metrics,
            detectors=[
                d for d in (self.latency, self.security, self.funnels, self.canary) if d is not None
            ],
            gate=gate,
            guard=guard,
            pii_alerts=self.pii_alerts,
            health=self.health,
            observers=[self.analytics_health.observe] if self.analytics_health else [],
        )
        self.writer.on_rejected(self.pipeline.storage_rejected)
        writer = self.writer
        app.consumer_hooks = ConsumerHooks(
            stored_offsets=writer.stored_offsets,
            on_skipped=self.metrics.replay_skipped.inc,
        )
        self.ready.set()

    def _start_canary(self, s: Settings, publisher: Publisher, gate: CommitGate) -> None:
        """Both stages of the canary judge (``VIGIL_CANARY_DETECTION``)."""
        assert self.alerts is not None
        config = CanaryConfig(
            interval_ms=int(s.canary_interval_s * 1000),
            lateness_ms=int(s.canary_lateness_s * 1000),
            idle_timeout_ms=int(s.canary_idle_timeout_s * 1000),
            canary=s.canary_cohort,
            baseline=s.canary_baseline_cohort,
            services=self.rules.canary.services,
            per_tenant=s.canary_per_tenant,
            judge=JudgeConfig(
                thresholds=Thresholds(alpha=s.canary_alpha),
                min_requests=s.canary_min_requests,
                pass_score=s.canary_pass_score,
                marginal_score=s.canary_marginal_score,
                consecutive=s.canary_consecutive,
            ),
        )
        gamma = gamma_for(s.sketch_relative_accuracy)
        self.canary_judge = CanaryJudge(
            config,
            gamma,
            self.alerts,
            self.writer,
            self.metrics,
            s.clickhouse_database,
            gate=self.canary_gate,
        )
        self.health.register(self.canary_judge.name)
        topic = s.canary_topic

        async def forward(records: list[tuple[int, bytes]]) -> None:
            await publisher.publish(
                "canary",
                [Message(topic, None, value, [], partition) for partition, value in records],
            )

        self.canary = CanarySource(
            config, gamma, forward, s.topic_partitions, self.metrics, gate=gate
        )

    def _start_security(
        self, s: Settings, alerts: AlertPublisher, publisher: Publisher, gate: CommitGate
    ) -> None:
        """Both stages of the security detector (``VIGIL_SECURITY_DETECTION``)."""
        security = self.rules.security
        self.security_groups = SecurityGroups(
            security,
            alerts,
            self.writer,
            self.metrics,
            s.clickhouse_database,
            gate=self.groups_gate,
            consumer_group=s.consumer_group,
            checkpoint_interval_s=s.security_checkpoint_interval_s,
        )
        self.health.register(GROUPS)
        groups_topic = s.security_groups_topic

        async def forward(records: list[tuple[int, bytes]]) -> None:
            await publisher.publish(
                "security",
                [Message(groups_topic, None, value, [], partition) for partition, value in records],
            )

        self.security = SecurityDetector(
            security,
            alerts,
            self.writer,
            self.metrics,
            s.clickhouse_database,
            forward=forward,
            group_partitions=s.topic_partitions,
            gate=gate,
            consumer_group=s.consumer_group,
            checkpoint_interval_s=s.security_checkpoint_interval_s,
            idle_timeout_s=security.idle_timeout_seconds,
        )

    async def tick(self) -> None:
        """Close the windows the watermarks have passed (the window timer). A detector
        whose tick raises is counted like a failed batch and tried again next tick."""
        if self.latency is not None:
            try:
                await self.latency.tick()
            except Exception as exc:
                self.health.failed(self.latency.name, exc, "the window tick")
        if self.pii_alerts is not None:
            try:
                await self.pii_alerts.tick()
            except Exception as exc:
                self.health.failed("pii", exc, "the quiet-period tick")
        if self.security is not None:
            try:
                await self.security.tick()
            except Exception as exc:
                self.health.failed(self.security.name, exc, "the security window tick")
        if self.security_groups is not None:
            try:
                await self.security_groups.tick()
            except Exception as exc:
                self.health.failed(GROUPS, exc, "the security groups tick")
        if self.funnels is not None:
            try:
                await self.funnels.tick()
            except Exception as exc:
                self.health.failed(self.funnels.name, exc, "the funnel tick")
        if self.canary is not None:
            try:
                await self.canary.tick()
            except Exception as exc:
                self.health.failed(self.canary.name, exc, "the canary interval tick")
        if self.analytics_health is not None:
            try:
                await self.analytics_health.tick()
            except Exception as exc:
                self.health.failed(self.analytics_health.name, exc, "the analytics health tick")
        if self.incidents is not None and self.incidents.open and self.writer is not None:
            now = time.monotonic()
            if now - self._requests_polled >= self.settings.incident_poll_s:
                self._requests_polled = now
                try:
                    await self.incidents.apply_requests(
                        await pending_requests(
                            self.writer, self.settings.clickhouse_database,
                            sorted(self.incidents.open),
                        )
                    )  # fmt: skip
                except Exception as exc:
                    self.health.failed("incidents", exc, "applying incident requests")

    async def handle_groups(self, batch: SourceBatch, ack: Callable[[], None]) -> None:
        """A batch of the internal groups topic: the security rules grouped across
        tenants. Its commit waits for the stage's checkpoint (the gate's holder)."""
        written = self.groups_gate.track(batch.partition, batch.last_offset, ack)
        if self.security_groups is None:  # detection off: nothing is forwarded any more
            written()
            return
        try:
            await self.security_groups.process(batch)
        except Exception as exc:
            self.health.failed(
                GROUPS, exc, f"{batch.topic}[{batch.partition}]@{batch.first_offset}"
            )
        else:
            self.health.succeeded(GROUPS)
        written()

    async def handle_canary(self, batch: SourceBatch, ack: Callable[[], None]) -> None:
        """A batch of the internal canary partials topic: the judge. Its commit waits
        until the verdict rows of the intervals it fed are stored."""
        written = self.canary_gate.track(batch.partition, batch.last_offset, ack)
        judge = self.canary_judge
        if judge is None:
            written()
            return
        try:
            await judge.process(batch)
        except Exception as exc:
            self.health.failed(judge.name, exc, f"{batch.topic}[{batch.partition}]")
        else:
            self.health.succeeded(judge.name)
        written()

    async def close(self) -> None:
        if self.latency is not None:
            await self.latency.tick()  # write what is complete, with a checkpoint
        for stage in (self.security, self.security_groups, self.funnels):
            if stage is not None:
                await stage.close()
        if self.writer is not None:
            await self.writer.stop()


def tune_gc() -> None:
    """Keep the cyclic garbage collector off the hot path.

    The ingest path allocates millions of short-lived, acyclic objects (decoded dicts,
    events, column lists) that reference counting frees; with the default thresholds the
    collector still ran thousands of times per 200k events and its full passes rescanned
    every buffered row -- measured at 1.5-2.4 s of a 5-6 s run. Objects alive after start
    are frozen out of collection and the thresholds raised; cycles are still collected.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 50, 100)


GC_GEN0_THRESHOLD = 50_000
ENGINE_THREADS = 4


def use_engine_threads(loop: asyncio.AbstractEventLoop, nice: int) -> None:
    """Run the loop's blocking calls (``asyncio.to_thread``: INSERTs, queries, the engine
    opening) on threads ``nice`` steps below the loop's priority.

    On two busy cores the loop thread -- decoding, detectors, column building, all under
    the GIL -- is the critical path, and it shared the cores with the INSERT threads on
    equal terms. chDB starts its own worker threads from the calling thread, so they
    inherit the niceness too. Under saturation the loop is served first and INSERTs take
    the rest; when the buffer is full the loop waits (backpressure) and the INSERTs get the
    CPU. Measured on the ingest benchmark (c): 108.6k vs 101.5k events/s, 6 of 6
    alternating pairs. With CPU to spare it changes nothing.
    """
    if nice <= 0:
        return

    def lower_priority() -> None:
        try:  # Linux: per thread; raising one's own niceness needs no privilege
            tid = threading.get_native_id()  # started by the loop thread: its niceness
            os.setpriority(
                os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice)
            )
        except (AttributeError, OSError) as exc:  # pragma: no cover - other platforms
            log.warning("could not lower the engine threads' priority: %s", exc)

    loop.set_default_executor(
        ThreadPoolExecutor(
            ENGINE_THREADS, thread_name_prefix="vigil-engine", initializer=lower_priority
        )
    )


class VigilApp(faust.App):  # type: ignore[misc]
    consumer_hooks: ConsumerHooks
    fetch_max_wait_ms: int  # read by the consumer thread (streams.transport)
    runtime: Runtime

    def _new_transport(self) -> Any:
        return BatchTransport(self.conf.broker_consumer, self)

    async def on_first_start(self) -> None:
        # before the engine opens: chDB's threads are started from these threads
        use_engine_threads(asyncio.get_running_loop(), self.runtime.settings.engine_nice)
        self.runtime.settings.data_dir.mkdir(parents=True, exist_ok=True)
        await super().on_first_start()
        await self.runtime.open(self)
        tune_gc()

    async def on_stop(self) -> None:
        await super().on_stop()
        await self.runtime.close()

    async def send_raw(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> Any:
        """Enqueue one record; returns the delivery future (await it for the ack)."""
        return await self.producer.send(topic, key, value, partition, None, headers)


def _credentials(settings: Settings) -> Any:
    context = None
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
        )
    if settings.kafka_security_protocol.startswith("SASL"):
        password = settings.kafka_sasl_password
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=password.get_secret_value() if password else None,
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def create_app(settings: Settings, registry: CollectorRegistry | None = None) -> VigilApp:
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    app = VigilApp(
        settings.consumer_group,
        broker=[f"kafka://{host}" for host in settings.kafka_bootstrap.split(",")],
        broker_credentials=_credentials(settings),
        processing_guarantee="at_least_once",
        store="memory://",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication,
        topic_disable_leader=True,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=settings.session_timeout_s,
        broker_rebalance_timeout=settings.rebalance_timeout_s,
        broker_heartbeat_interval=min(3.0, settings.session_timeout_s / 3),
        broker_max_poll_records=settings.fetch_max_records,
        broker_commit_interval=settings.commit_interval_s,
        consumer_max_fetch_size=8 * 1024 * 1024,
        stream_buffer_maxsize=16,
        # Acks are held until the windows that need a batch are closed (streams.gate):
        # waiting for every message to be acked on stop or rebalance would wait for
        # windows that cannot close any more. Unacked records are simply re-read.
        stream_wait_empty=False,
        web_enabled=True,
        web_bind=settings.web_host,
        web_host=settings.web_host,
        web_port=settings.web_port,
        # tenant tokens read their tenant's two URLs and nothing else (streams/web.py)
        web_application_options={"middlewares": [tenant_token_guard(metrics)]},
        datadir=str(settings.data_dir / "faust"),
        autodiscover=False,
    )
    app.runtime = Runtime(settings, metrics)
    app.consumer_hooks = ConsumerHooks()
    app.fetch_max_wait_ms = settings.fetch_max_wait_ms
    runtime = app.runtime

    events = app.topic(
        settings.events_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )
    for name in (settings.dlq_topic, settings.alerts_topic):
        app.topic(
            name, key_serializer="raw", value_serializer="raw", partitions=settings.topic_partitions
        )
    canary = app.topic(
        settings.canary_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )
    groups = app.topic(
        settings.security_groups_topic,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )

    @app.agent(events, name="vigil.ingest")  # type: ignore[untyped-decorator]
    async def ingest(stream: Any) -> None:
        await runtime.ready.wait()
        assert runtime.pipeline is not None
        async for event in stream.noack().events():
            await runtime.pipeline.handle_safely(event.value, event.ack)

    @app.agent(groups, name="vigil.security-groups")  # type: ignore[untyped-decorator]
    async def security_groups(stream: Any) -> None:
        await runtime.ready.wait()
        async for event in stream.noack().events():
            await runtime.handle_groups(event.value, event.ack)

    @app.agent(canary, name="vigil.canary-judge")  # type: ignore[untyped-decorator]
    async def canary_judge(stream: Any) -> None:
        await runtime.ready.wait()
        async for event in stream.noack().events():
            await runtime.handle_canary(event.value, event.ack)

    @app.on_partitions_assigned.connect  # type: ignore[untyped-decorator]
    async def on_assigned(sender: Any, assigned: set[Any], **_: Any) -> None:
        if runtime.canary is not None:
            try:
                total = app.consumer.topic_partitions(settings.events_topic)
            except Exception:
                total = None
            runtime.canary.assigned(
                [tp.partition for tp in assigned if tp.topic == settings.events_topic], total
            )
        if runtime.security is not None:
            try:  # the events topic's real partition count (it may predate the settings)
                total = app.consumer.topic_partitions(settings.events_topic)
            except Exception:
                total = None
            runtime.security.assigned(
                [tp.partition for tp in assigned if tp.topic == settings.events_topic], total
            )
        if runtime.latency is not None:
            runtime.latency.prefetch(
                settings.events_topic,
                [tp.partition for tp in assigned if tp.topic == settings.events_topic],
            )

    @app.on_partitions_revoked.connect  # type: ignore[untyped-decorator]
    async def on_revoked(sender: Any, revoked: set[Any], **_: Any) -> None:
        for tp in revoked:
            if tp.topic == settings.canary_topic:
                if runtime.canary_judge is not None:
                    runtime.canary_judge.forget(tp.partition)
                continue
            if runtime.canary is not None and tp.topic == settings.events_topic:
                runtime.canary.forget(tp.partition)
            if tp.topic == settings.security_groups_topic:
                if runtime.security_groups is not None:
                    runtime.security_groups.forget(tp.partition)
                continue
            if tp.topic != settings.events_topic:
                continue
            if runtime.security is not None:
                runtime.security.forget(tp.partition)
            if runtime.latency is not None:
                runtime.latency.forget(tp.partition)
            if runtime.funnels is not None:
                runtime.funnels.forget(tp.partition)
            if runtime.pipeline is not None:
                runtime.pipeline.forget(tp.partition)

    @app.timer(settings.window_tick_s)  # type: ignore[untyped-decorator]
    async def close_windows() -> None:
        if runtime.ready.is_set():
            await runtime.tick()

    register_views(app, settings, metrics)
    return app
