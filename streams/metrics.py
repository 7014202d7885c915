"""Prometheus metrics, built on an injected registry (tests pass a fresh one).

Names follow DESIGN.md: ``vigil_`` prefix, base units, counters end in ``_total``, and
labels are bounded (event kind, DLQ reason, table, partition) -- never user or tenant ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.messages_consumed = Counter(
            "vigil_messages_consumed_total",
            "Kafka messages read from the events topic.",
            registry=registry,
        )
        self.bytes_consumed = Counter(
            "vigil_consumed_bytes_total",
            "Bytes of Kafka message values read from the events topic.",
            registry=registry,
        )
        self.events_consumed = Counter(
            "vigil_events_consumed_total",
            "Valid events decoded at the ingest boundary, by kind.",
            ["kind"],
            registry=registry,
        )
        self.events_invalid = Counter(
            "vigil_events_invalid_total",
            "Messages or NDJSON lines rejected at the ingest boundary, by reason.",
            ["reason"],
            registry=registry,
        )
        self.dlq_messages = Counter(
            "vigil_dlq_messages_total",
            "Messages published to the dead-letter topic.",
            registry=registry,
        )
        self.stage_errors = Counter(
            "vigil_stage_errors_total",
            "Records isolated and dead-lettered because a processing stage raised on them "
            "(decode, pii_guard, columns).",
            ["stage"],
            registry=registry,
        )
        self.detector_errors = Counter(
            "vigil_detector_errors_total",
            "Batches (or window ticks) a detector raised on; the events were stored anyway.",
            ["detector"],
            registry=registry,
        )
        self.publish_retries = Counter(
            "vigil_publish_retries_total",
            "Records whose publication failed and was retried, by purpose (dlq, alerts).",
            ["purpose"],
            registry=registry,
        )
        self.replay_skipped = Counter(
            "vigil_replay_skipped_messages_total",
            "Messages re-read after a restart whose results ClickHouse already held.",
            registry=registry,
        )
        self.sink_rows_written = Counter(
            "vigil_sink_rows_written_total",
            "Rows written to ClickHouse, by table.",
            ["table"],
            registry=registry,
        )
        self.sink_rows_buffered = Gauge(
            "vigil_sink_rows_buffered",
            "Rows waiting in the writer's buffer, by table.",
            ["table"],
            registry=registry,
        )
        self.sink_insert_failures = Counter(
            "vigil_sink_insert_failures_total",
            "Failed ClickHouse INSERT attempts (each is retried), by table.",
            ["table"],
            registry=registry,
        )
        self.sink_rows_rejected = Counter(
            "vigil_sink_rows_rejected_total",
            "Rows ClickHouse refused deterministically, isolated and dead-lettered, by table.",
            ["table"],
            registry=registry,
        )
        self.sink_insert_duration = Histogram(
            "vigil_sink_insert_duration_seconds",
            "Duration of successful ClickHouse INSERTs, by table.",
            ["table"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=registry,
        )
        self.last_event_timestamp = Gauge(
            "vigil_last_event_timestamp_seconds",
            "Event time (ts) of the newest event processed.",
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "vigil_consumer_lag_messages",
            "High watermark minus next offset to read, by events-topic partition.",
            ["partition"],
            registry=registry,
        )
        self.alerts_published = Counter(
            "vigil_alerts_published_total",
            "Alert transitions published to the alerts topic, by severity and status.",
            ["severity", "status"],
            registry=registry,
        )
        self.alerts_suppressed = Counter(
            "vigil_alerts_suppressed_total",
            "Repeated alert notifications suppressed inside the dedup window.",
            registry=registry,
        )
        # Incidents (streams/incidents.py): wall-clock seconds
        buckets = (30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 14400, 43200, 86400)
        self.incident_mttd = Histogram(
            "vigil_incident_mttd_seconds",
            "Time to detect: first breaching event to the incident's first alert published.",
            buckets=buckets,
            registry=registry,
        )
        self.incident_mtta = Histogram(
            "vigil_incident_mtta_seconds",
            "Time to acknowledge: first alert published to acknowledged.",
            buckets=buckets,
            registry=registry,
        )
        self.incident_mttr = Histogram(
            "vigil_incident_mttr_seconds",
            "Time to resolve: first breaching event to resolved.",
            buckets=buckets,
            registry=registry,
        )
        # Canary analysis (streams/detectors/canary)
        self.canary_late = Counter(
            "vigil_canary_late_events_total",
            "Cohort-labelled requests that arrived after their interval was sent to the judge.",
            registry=registry,
        )
        self.canary_verdicts = Counter(
            "vigil_canary_verdicts_total",
            "Interval verdicts of the canary judge, by stage verdict.",
            ["verdict"],
            registry=registry,
        )
        self.canary_score = Gauge(
            "vigil_canary_score",
            "The canary judge's latest score (0-100) per service and live release.",
            ["service", "release"],
            registry=registry,
        )
        self.tenant_api = Counter(
            "vigil_tenant_api_requests_total",
            "Requests bearing a tenant token or asking a tenant-scoped URL, by outcome (ok, "
            "missing, invalid, expired, revoked, forbidden).",
            ["outcome"],
            registry=registry,
        )
        self.console_denied = Counter(
            "vigil_console_denied_total",
            "Console and operator API requests refused for a missing or wrong token.",
            registry=registry,
        )
        self.webhook_alerts = Counter(
            "vigil_alertmanager_webhook_alerts_total",
            "Alerts Alertmanager handed back through the webhook receiver (recorded).",
            registry=registry,
        )
        self.webhook_rejected = Counter(
            "vigil_alertmanager_webhook_rejected_total",
            "Webhook calls that were not Alertmanager webhook payloads (version 4).",
            registry=registry,
        )
        self.alerts_held = Counter(
            "vigil_alerts_held_flapping_total",
            "Alerts held firing instead of resolving because they flap.",
            registry=registry,
        )
        # Latency windows and SLOs
        self.late_events = Counter(
            "vigil_late_events_total",
            "http.request events that arrived after their sample closed (stored flagged late).",
            registry=registry,
        )
        self.windows_closed = Counter(
            "vigil_latency_windows_closed_total",
            "Latency window rows produced, by resolution in seconds.",
            ["resolution"],
            registry=registry,
        )
        self.open_windows = Gauge(
            "vigil_latency_open_windows",
            "Open (sample, key) accumulators held in memory.",
            registry=registry,
        )
        self.watermark_lag = Gauge(
            "vigil_watermark_lag_seconds",
            "Wall clock minus the event-time watermark, by events-topic partition.",
            ["partition"],
            registry=registry,
        )
        self.slo_samples = Counter(
            "vigil_slo_samples_total",
            "SLO verdicts per rule and sample, by status (pass, fail, insufficient, no_data).",
            ["status"],
            registry=registry,
        )
        self.window_rebuilds = Counter(
            "vigil_window_rebuilds_total",
            "Times a partition's window state was restored from its checkpoint.",
            registry=registry,
        )
        # Security correlations
        self.security_late_events = Counter(
            "vigil_security_late_events_total",
            "Events older than the security watermark when they arrived (stored, not evaluated).",
            registry=registry,
        )
        self.security_active_groups = Gauge(
            "vigil_security_active_groups",
            "Groups (IP, tenant, provider, ...) with events or an episode in a window.",
            registry=registry,
        )
        # Funnels
        self.funnel_late_events = Counter(
            "vigil_funnel_late_events_total",
            "Funnel step events older than the partition's watermark (stored, not applied).",
            registry=registry,
        )
        self.funnel_open_journeys = Gauge(
            "vigil_funnel_open_journeys",
            "Journeys whose conversion window is still open, on this worker.",
            registry=registry,
        )
        self.funnel_persons = Gauge(
            "vigil_funnel_persons",
            "Persons with step events kept in memory (open journeys or recent events).",
            registry=registry,
        )
        self.funnel_stage_conversion = Gauge(
            "vigil_funnel_stage_conversion_ratio",
            "Latest judged conversion within the stage's expected time, platform-wide "
            "(journeys of this worker's partitions).",
            ["funnel", "stage"],
            registry=registry,
        )
        # Analytics health (declared per-tenant rate bounds only: bounded labels)
        self.analytics_rate_bound = Gauge(
            "vigil_analytics_rate_bound_per_second",
            "Declared event-rate bounds (rules file, analytics overrides), per second.",
            ["tenant_id", "event_name", "bound"],
            registry=registry,
        )
        self.analytics_declared_events = Counter(
            "vigil_analytics_declared_events_total",
            "Analytics events of the (tenant, event name) pairs with declared rate bounds.",
            ["tenant_id", "event_name"],
            registry=registry,
        )
        self.analytics_declared_tenant_events = Counter(
            "vigil_analytics_declared_tenant_events_total",
            "All events of the tenants with declared rate bounds (does it have traffic?).",
            ["tenant_id"],
            registry=registry,
        )
        self.pii_findings = Counter(
            "vigil_pii_findings_total",
            "PII found in events (stored redacted), by entity type.",
            ["entity"],
            registry=registry,
        )
