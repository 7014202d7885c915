"""One frozen settings object, read once from VIGIL_* environment variables.

Build it in ``main`` with :func:`load_settings` and pass it down; nothing reads the
environment anywhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.errors import ConfigError

DEV_HASH_KEY = "vigil-embedded-development-key-not-for-production"


class Settings(BaseSettings):
    """All of Vigil's configuration. Every field maps to ``VIGIL_<FIELD_NAME>``."""

    model_config = SettingsConfigDict(env_prefix="VIGIL_", frozen=True, extra="ignore")

    mode: Literal["embedded", "production"] = "embedded"
    data_dir: Path = Path(".vigil")

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    broker_port: int = Field(default=0, ge=0, le=65535)  # `vigil up`'s broker; 0 = any free
    # `vigil up` warns when its embedded broker (which keeps every message in memory and
    # never trims it) holds this share of the machine's memory
    broker_memory_warn_share: float = Field(default=0.25, gt=0, le=1)
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "SCRAM-SHA-512"
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    topic_prefix: str = "vigil"
    topic_partitions: int = Field(default=4, ge=1)
    topic_replication: int = Field(default=1, ge=1)
    consumer_group: str = "vigil"
    session_timeout_s: float = Field(default=10.0, gt=0)
    rebalance_timeout_s: float = Field(default=10.0, gt=0)
    fetch_max_records: int = Field(default=20_000, ge=1)
    # How long the broker may hold a fetch that finds no new data. The consumer keeps one
    # fetch in flight per broker, so a partition drained meanwhile waits this long for its
    # next fetch; Faust's 1.5 s stalled the tail of a burst by up to that much.
    fetch_max_wait_ms: int = Field(default=100, ge=0, le=60_000)
    commit_interval_s: float = Field(default=2.8, gt=0)

    # ClickHouse
    clickhouse_url: str | None = None  # default: chdb://<data_dir>/clickhouse
    clickhouse_database: str = "vigil"
    retention_days: int = Field(default=90, ge=1)
    aggregate_retention_days: int = Field(default=400, ge=1)  # latency_windows, slo_samples

    # Sink
    sink_flush_rows: int = Field(default=10_000, ge=1)
    sink_flush_interval_s: float = Field(default=1.0, gt=0)
    sink_linger_s: float = Field(default=0.2, gt=0)  # flush early once input pauses this long
    sink_max_buffer_rows: int = Field(default=100_000, ge=1)
    sink_retry_initial_s: float = Field(default=0.2, gt=0)
    sink_retry_max_s: float = Field(default=30.0, gt=0)
    # Niceness of the threads that talk to ClickHouse (and of chDB's own threads, which
    # inherit it): when the CPU is saturated the consumer loop, which everything else
    # waits on, is served first; the INSERTs use what is left. 0 = same as the loop.
    engine_nice: int = Field(default=10, ge=0, le=19)

    # Ingest
    max_message_bytes: int = Field(default=1_048_576, ge=1024)
    # Limits on one JSON document (a message, or one NDJSON line): nesting depth and the
    # number of members + elements it holds. Above them the record is dead-lettered
    # (``too_deep`` / ``too_many_items``) before anything decodes it.
    max_json_depth: int = Field(default=64, ge=2, le=512)
    max_json_items: int = Field(default=10_000, ge=16)
    max_future_skew_s: float = Field(default=3600.0, ge=0)
    hash_key: SecretStr | None = None
    pii_scan: bool = True  # off: analytics properties are not stored at all
    pii_engine: Literal["hyperscan", "re2", "re"] = "hyperscan"

    # Dead letters and publishing. A dead letter's payload is redacted, then cut to this
    # many bytes (header ``vigil.payload.truncated``); the embedded broker does not report
    # its message limit, so this setting is the authority and stays well under Kafka's
    # default 1 MiB. Publishing (dead letters, alerts) is retried with backoff while the
    # stream waits; it never crashes the worker.
    dlq_max_payload_bytes: int = Field(default=262_144, ge=1024, le=900_000)
    publish_retry_initial_s: float = Field(default=0.2, gt=0)
    publish_retry_max_s: float = Field(default=30.0, gt=0)
    # A detector failing this many batches in a row is reported on /healthz (degraded).
    detector_failure_threshold: int = Field(default=3, ge=1)

    # Alerts, windows, rules
    alert_dedup_window_s: float = Field(default=300.0, ge=0)
    # Where runbooks live (a wiki or the repository's docs/runbooks URL); every alert's
    # runbook_url is this + "/<AlertName>.md". Empty: the path in the repository.
    runbook_base_url: str = ""
    # Alertmanager API base URL(s), comma-separated (an HA pair: every one is told);
    # `vigil silence` talks to it
    alertmanager_url: str = "http://127.0.0.1:9093"
    # Incidents (streams/incidents.py): an alert joins an open incident of its tenant and
    # category whose alerts were active within this many seconds of its start.
    incident_merge_window_s: float = Field(default=1800.0, gt=0)
    # Acknowledgements sent to a worker that does not track the incident are stored as
    # requests; the owner applies those of its open incidents this often.
    incident_poll_s: float = Field(default=2.0, gt=0)
    # Escalation (streams/alerting.py): the same alert starting this many times within
    # the window raises AlertRecurring one level up; an alert resolved more than
    # flap_max times within the flap window is held firing (annotation `flapping`).
    alert_recurring_count: int = Field(default=3, ge=2)
    alert_recurring_window_s: float = Field(default=1800.0, gt=0)
    alert_flap_max: int = Field(default=3, ge=1)
    alert_flap_window_s: float = Field(default=3600.0, gt=0)
    # Forwarder (`vigil forward`, streams/forward.py): alerts topic -> Alertmanager.
    # Firing alerts are re-sent every resend interval (well inside Alertmanager's
    # resolve_timeout, 5m) with endsAt = last assertion + stale_after: an alert its
    # detector has not re-asserted (reminders come every alert_dedup_window_s) for
    # stale_after is no longer re-sent and so ends in Alertmanager by itself.
    forward_resend_interval_s: float = Field(default=60.0, gt=0)
    forward_stale_after_s: float = Field(default=900.0, gt=0)
    forward_retry_initial_s: float = Field(default=0.5, gt=0)
    forward_retry_max_s: float = Field(default=30.0, gt=0)
    forward_timeout_s: float = Field(default=10.0, gt=0)
    forward_port: int = Field(default=6067, ge=0, le=65535)  # its /metrics and /healthz
    # Where people open an alert's evidence (generatorURL: <public_url>/alerts/<fp>):
    # the worker's web address as seen from a browser. Empty: http://127.0.0.1:<web_port>
    public_url: str = ""
    rules_file: Path | None = None  # default: the packaged streams/rules.default.yaml
    window_tick_s: float = Field(default=1.0, gt=0)  # how often windows are closed
    # Security and tenant-isolation rules (the rules file's security section); off: no
    # security detection at all (the groups topic stays idle), e.g. to measure its cost.
    security_detection: bool = True
    # How often (at most) each partition's security windows are checkpointed to
    # ClickHouse; commits wait for the checkpoint, so a restart re-reads at most this much.
    security_checkpoint_interval_s: float = Field(default=5.0, gt=0)
    # Canary analysis (streams/detectors/canary): http.request events carrying `cohort`
    # (these names) are compared per service and canary release, per interval and over
    # the stage; Fail after `canary_consecutive` failing intervals. Off: no partials.
    canary_detection: bool = True
    canary_interval_s: float = Field(default=60.0, ge=1)
    canary_lateness_s: float = Field(default=30.0, ge=0)
    canary_idle_timeout_s: float = Field(default=30.0, gt=0)
    canary_cohort: str = "canary"
    canary_baseline_cohort: str = "baseline"
    canary_min_requests: int = Field(default=50, ge=1)
    canary_consecutive: int = Field(default=2, ge=1)
    canary_pass_score: float = Field(default=95.0, ge=0, le=100)
    canary_marginal_score: float = Field(default=75.0, ge=0, le=100)
    canary_alpha: float = Field(default=0.001, gt=0, lt=0.5)
    # Also judge each tenant's canary against that tenant's own baseline (rows, API
    # `tenant=`, alerts with tenant_id); the service-wide verdict is unchanged.
    canary_per_tenant: bool = False
    # Funnels (the rules file's funnels section); off: no funnel state, rows or alerts.
    funnel_detection: bool = True
    # How often (at most) each partition's funnel position is checkpointed; commits wait
    # for it, and a restart rebuilds the open journeys from the events stored up to it.
    funnel_checkpoint_interval_s: float = Field(default=5.0, gt=0)
    sketch_relative_accuracy: float = Field(default=0.01, gt=0, lt=0.5)

    # Web (metrics, health, local query endpoint)
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=6066, ge=0, le=65535)
    # The console (/console, /api/v1/overview; `vigil serve` in production): documents are
    # rebuilt from ClickHouse at most this often, whatever the number of viewers. With a
    # token, pages and operator APIs need `Authorization: Bearer <token>` (or the cookie
    # set by /console/login); `vigil serve` refuses to start without one.
    console_refresh_s: float = Field(default=10.0, gt=0)
    console_token: SecretStr | None = None
    # Per-tenant API tokens (vigil token create): how often a worker reloads them when a
    # request needs it -- the most a revocation takes to reach every worker.
    token_refresh_s: float = Field(default=2.0, gt=0)
    # PagerDuty v3 webhook (POST /pagerduty/webhook): the subscription's signing secret.
    # With it, only requests whose X-PagerDuty-Signature holds a matching v1 HMAC-SHA256
    # of the body are read; without it, production mode refuses every request (anyone
    # reaching the port could acknowledge incidents) and embedded mode accepts unsigned ones.
    pagerduty_webhook_secret: SecretStr | None = None
    # Alertmanager's webhook (POST /alertmanager/webhook: the low alerts of the daily
    # report): the bearer token its http_config sends (secret file vigil-webhook-token).
    # Without it, production refuses every notification; embedded reads them (`vigil up`
    # sets one for its own Alertmanager).
    alertmanager_webhook_token: SecretStr | None = None

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @model_validator(mode="after")
    def _production_needs_secrets(self) -> Settings:
        if self.mode == "production":
            if self.hash_key is None or not self.hash_key.get_secret_value():
                raise ValueError(
                    "VIGIL_HASH_KEY must be set in production mode: it keys the HMAC that "
                    "pseudonymises user ids; generate one with `openssl rand -hex 32`"
                )
            if self.clickhouse_url is None:
                raise ValueError(
                    "VIGIL_CLICKHOUSE_URL must be set in production mode, e.g. "
                    "https://user:password@clickhouse:8443/vigil"
                )
        if self.kafka_security_protocol.startswith("SASL") and not self.kafka_sasl_username:
            raise ValueError(
                "VIGIL_KAFKA_SASL_USERNAME and VIGIL_KAFKA_SASL_PASSWORD are required when "
                f"VIGIL_KAFKA_SECURITY_PROTOCOL={self.kafka_security_protocol}"
            )
        return self

    # Derived names -------------------------------------------------------------------
    @property
    def events_topic(self) -> str:
        return f"{self.topic_prefix}.events"

    @property
    def dlq_topic(self) -> str:
        return f"{self.topic_prefix}.events.dlq"

    @property
    def alerts_topic(self) -> str:
        return f"{self.topic_prefix}.alerts"

    @property
    def canary_topic(self) -> str:
        """Internal: per-partition canary partials, keyed by service (the judge's input)."""
        return f"{self.topic_prefix}.canary.partials"

    @property
    def security_groups_topic(self) -> str:
        """Internal: events of security rules grouped across tenants, keyed by group."""
        return f"{self.topic_prefix}.security.groups"

    @property
    def resolved_clickhouse_url(self) -> str:
        if self.clickhouse_url:
            return self.clickhouse_url
        return f"chdb://{(self.data_dir / 'clickhouse').resolve()}"

    @property
    def hash_key_bytes(self) -> bytes:
        if self.hash_key is not None and self.hash_key.get_secret_value():
            return self.hash_key.get_secret_value().encode()
        return DEV_HASH_KEY.encode()


def load_settings(**overrides: object) -> Settings:
    """Read the environment once; raise :class:`ConfigError` naming the bad variable."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            name = f"VIGIL_{loc.upper()}" if loc else "settings"
            lines.append(f"{name}: {err['msg']}")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(lines)) from None
