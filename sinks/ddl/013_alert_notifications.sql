-- Notifications Alertmanager handed back to Vigil through its webhook receiver
-- (POST /alertmanager/webhook, payload version 4): the low-severity alerts routed to the
-- `daily-report` receiver (Alertmanager has no digest), one row per alert per
-- notification. `fingerprint` is Vigil's (the alert's `fingerprint` annotation);
-- `am_fingerprint` is Alertmanager's own; `status` is the alert's in that notification.
CREATE TABLE IF NOT EXISTS {database}.alert_notifications
(
    received_at    DateTime64(3, 'UTC'),
    receiver       LowCardinality(String),
    group_key      String,
    status         LowCardinality(String),
    alertname      LowCardinality(String),
    severity       LowCardinality(String),
    tenant_id      LowCardinality(String),
    fingerprint    String,
    am_fingerprint String,
    labels         Map(String, String),
    summary        String,
    starts_at      DateTime64(3, 'UTC'),
    ends_at        Nullable(DateTime64(3, 'UTC'))
)
ENGINE = MergeTree
PARTITION BY toDate(received_at)
ORDER BY (receiver, alertname, received_at)
TTL toDateTime(received_at) + INTERVAL {retention_days} DAY;
