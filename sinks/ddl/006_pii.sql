-- Analytics properties, stored only after PII redaction (JSON text; '' for other kinds).
ALTER TABLE {database}.events ADD COLUMN IF NOT EXISTS properties String DEFAULT '' AFTER event_name;

-- One row per PII finding: where it was, what kind, how sure -- never the value. preview is
-- masked (j***@e***.com, ****-****-****-4242) and value_hmac is HMAC-SHA256 under
-- VIGIL_HASH_KEY, to correlate the same value across events without storing it.
CREATE TABLE IF NOT EXISTS {database}.pii_findings
(
    ts             DateTime64(3, 'UTC'),
    tenant_id      LowCardinality(String),
    kind           LowCardinality(String),
    event_name     LowCardinality(String),
    event_id       String,
    entity         LowCardinality(String),
    json_path      String,
    start          UInt32,
    end            UInt32,
    confidence     Float32,
    preview        String,
    value_hmac     String,
    src_topic      LowCardinality(String),
    src_partition  UInt32,
    src_offset     Int64,
    src_line       UInt32
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (tenant_id, entity, ts, event_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;
