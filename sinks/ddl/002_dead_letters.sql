-- Every message (or NDJSON line) sent to the dead-letter topic, without its bytes:
-- the payload may hold personal data, so only its size and a keyed HMAC are kept.
CREATE TABLE IF NOT EXISTS {database}.dead_letters
(
    ts            DateTime64(3, 'UTC'),
    reason        LowCardinality(String),
    message       String,
    size_bytes    UInt32,
    value_hmac    String,
    src_topic     LowCardinality(String),
    src_partition UInt32,
    src_offset    Int64,
    src_line      UInt32,
    src_timestamp DateTime64(3, 'UTC')
)
ENGINE = MergeTree
PARTITION BY toDate(ts)
ORDER BY (reason, src_topic, src_partition, src_offset, src_line)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;
