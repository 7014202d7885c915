-- Security events that arrived behind their watermark (streams/detectors/security): a
-- late event is not judged (its windows are decided), so it is flagged here, one row per
-- rule it matches, never silently dropped. Replays write the same rows (ReplacingMergeTree).
--   rule / alertname  the correlation it would have counted for (cross_tenant: the
--                     built-in CrossTenantAccess)
--   group_key         the group it belongs to (pseudonymous values, as security_detections)
--   tenant_id         "" when the event was late in the groups stage (rules grouped
--                     across tenants), where the forwarded record carries no tenant
--   watermark         how far event time had come when it arrived: ts < watermark
CREATE TABLE IF NOT EXISTS {database}.security_late_events
(
    rule          LowCardinality(String),
    alertname     LowCardinality(String),
    tenant_id     LowCardinality(String),
    group_key     String,
    event_id      String,
    ts            DateTime64(3, 'UTC'),
    watermark     DateTime64(3, 'UTC'),
    detected_at   DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (rule, group_key, ts, event_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY;
