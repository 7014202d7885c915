-- Validated events, one row per event (an NDJSON message yields one row per good line).
-- Raw user ids and IPs never reach this table: only keyed HMACs and network prefixes.
CREATE TABLE IF NOT EXISTS {database}.events
(
    tenant_id          LowCardinality(String),
    ts                 DateTime64(3, 'UTC'),
    event_id           String,
    kind               LowCardinality(String),
    service            LowCardinality(String),
    trace_id           String,
    span_id            String,
    schema_version     UInt16,
    method             LowCardinality(String),
    route              String,
    status             UInt16,
    duration_ms        Float64,
    user_id_hash       String,
    actor_tenant_id    LowCardinality(String),
    resource_tenant_id LowCardinality(String),
    ip_hash            String,
    ip_prefix          String,
    endpoint           String,
    provider           LowCardinality(String),
    reason             LowCardinality(String),
    error_code         LowCardinality(String),
    resource           String,
    action             LowCardinality(String),
    model              LowCardinality(String),
    operation          LowCardinality(String),
    attack_type        LowCardinality(String),
    field              String,
    event_name         LowCardinality(String),
    signature_valid    UInt8,
    blocked            UInt8,
    src_topic          LowCardinality(String),
    src_partition      UInt32,
    src_offset         Int64,
    src_line           UInt32,
    ingested_at        DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (tenant_id, kind, ts, event_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;
