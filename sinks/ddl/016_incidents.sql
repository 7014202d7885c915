-- Incidents (streams/incidents.py): alert transitions of one tenant and category that
-- overlap in time, with their timeline. One row per change (the newest `version` wins:
-- query with FINAL). Times: first_breach_at is event time (the earliest startsAt of its
-- alerts); detected_at, acknowledged_at and resolved_at are wall-clock times.
--   mttd_s = detected - first breach, mtta_s = acknowledged - detected,
--   mttr_s = resolved - first breach (NULL until it happens)
--   alerts   fingerprint -> alertname of every alert it held; firing: those firing now
--   timeline JSON list of {at, what}
CREATE TABLE IF NOT EXISTS {database}.incidents
(
    incident_id      String,
    tenant_id        LowCardinality(String),
    category         LowCardinality(String),
    status           LowCardinality(String),
    severity         LowCardinality(String),
    first_breach_at  DateTime64(3, 'UTC'),
    detected_at      DateTime64(3, 'UTC'),
    acknowledged_at  Nullable(DateTime64(3, 'UTC')),
    acknowledged_by  String,
    resolved_at      Nullable(DateTime64(3, 'UTC')),
    alerts           Map(String, String),
    alertnames       Array(String),
    firing           Array(String),
    mttd_s           Nullable(Float64),
    mtta_s           Nullable(Float64),
    mttr_s           Nullable(Float64),
    timeline         String,
    version          UInt32
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(detected_at)
ORDER BY (tenant_id, incident_id)
TTL toDateTime(detected_at) + INTERVAL {aggregate_retention_days} DAY;

-- Alerts gain the wall-clock time they were published (their `ts` is event time).
ALTER TABLE {database}.alerts
    ADD COLUMN IF NOT EXISTS published_at Nullable(DateTime64(3, 'UTC'));
