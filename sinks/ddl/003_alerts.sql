-- Every alert transition (firing, resolved) published to the alerts topic.
CREATE TABLE IF NOT EXISTS {database}.alerts
(
    tenant_id    LowCardinality(String),
    ts           DateTime64(3, 'UTC'),
    alert_id     String,
    fingerprint  String,
    status       LowCardinality(String),
    alertname    LowCardinality(String),
    severity     LowCardinality(String),
    labels       Map(String, String),
    summary      String,
    description  String,
    runbook_url  String,
    value        Float64,
    threshold    Float64,
    starts_at    DateTime64(3, 'UTC'),
    ends_at      Nullable(DateTime64(3, 'UTC')),
    evidence     String
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (tenant_id, alertname, fingerprint, ts)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;
