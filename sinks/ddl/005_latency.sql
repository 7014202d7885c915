-- Latency windows: one row per resolution, window, key and source partition.
-- A key is (tenant_id, service, route); service = route = '*' is the whole tenant.
-- resolution_s: panes (10), samples (30), rollups (60, 300); late = 1 rows hold events
-- that arrived after their sample closed (several such rows may exist per window).
-- bucket_keys / bucket_counts are the log-bucket sketch: merge any set of rows with
-- sumMap(bucket_keys, bucket_counts) and read a quantile with vigilQuantile (below).
-- Percentile columns of a row with count = 0 are 0 (no data). written_at - window_end is
-- how long after its end a window was stored (grace + timer + flush).
CREATE TABLE IF NOT EXISTS {database}.latency_windows
(
    tenant_id          LowCardinality(String),
    service            LowCardinality(String),
    route              String,
    resolution_s       UInt32,
    window_start       DateTime64(3, 'UTC'),
    window_end         DateTime64(3, 'UTC'),
    late               UInt8,
    window_id          String,
    src_partition      UInt32,
    count              UInt64,
    c2xx               UInt64,
    c3xx               UInt64,
    c4xx               UInt64,
    c5xx               UInt64,
    error_rate         Float64,
    client_error_rate  Float64,
    throughput_rps     Float64,
    p50_ms             Float64,
    p90_ms             Float64,
    p95_ms             Float64,
    p99_ms             Float64,
    max_ms             Float64,
    gamma              Float64,
    bucket_keys        Array(Int16),
    bucket_counts      Array(UInt64),
    written_at         DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(window_start)
ORDER BY (tenant_id, service, route, resolution_s, window_start, late, window_id)
TTL toDateTime(window_start) + INTERVAL {aggregate_retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- One verdict per SLO rule, key and sample: pass, fail, insufficient (too few events to
-- decide) or no_data (no events); hits and lower_bound are in 007_slo_evidence.sql.
-- Compliance of a rule = pass / (pass + fail). Availability burn-rate rules have
-- sli = 'burn_rate' (value = burn rate over the rule's long window, threshold = factor).
CREATE TABLE IF NOT EXISTS {database}.slo_samples
(
    tenant_id      LowCardinality(String),
    service        LowCardinality(String),
    route          String,
    window_start   DateTime64(3, 'UTC'),
    window_end     DateTime64(3, 'UTC'),
    rule           LowCardinality(String),
    sli            LowCardinality(String),
    op             LowCardinality(String),
    value          Float64,
    threshold      Float64,
    status         Enum8('pass' = 1, 'fail' = 2, 'no_data' = 3),
    count          UInt64,
    src_partition  UInt32
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(window_start)
ORDER BY (tenant_id, service, route, rule, window_start)
TTL toDateTime(window_start) + INTERVAL {aggregate_retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- Where each partition's windows stood when its rows were last written: the offsets it
-- processed, the first offset an open window still needs (commits stay behind it), the
-- watermark and the SLO streaks. A restarted worker resumes from the newest one.
CREATE TABLE IF NOT EXISTS {database}.window_checkpoints
(
    consumer_group     LowCardinality(String),
    topic              LowCardinality(String),
    partition          UInt32,
    processed_offset   Int64,
    safe_offset        Int64,
    watermark_ms       Int64,
    max_ts_ms          Int64,
    closed_through_ms  Int64,
    state              String,
    written_at         DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = MergeTree
ORDER BY (consumer_group, topic, partition, processed_offset, watermark_ms)
TTL toDateTime(written_at) + INTERVAL 7 DAY
SETTINGS non_replicated_deduplication_window = 10000;

-- Quantile q of merged sketch buckets m = sumMap(bucket_keys, bucket_counts), for a
-- sketch of growth factor g (the gamma column): the representative of the bucket holding
-- rank ceil(q * n), as the stream computes it. Bucket -32768 holds durations of 0.
CREATE FUNCTION IF NOT EXISTS vigilQuantile AS (q, m, g) ->
    if(arraySum(m.2) = 0, nan,
       if((m.1)[arrayFirstIndex(c -> c >= greatest(1, ceil(q * arraySum(m.2) - 1e-9)), arrayCumSum(m.2))] = -32768,
          0,
          2 * pow(g, (m.1)[arrayFirstIndex(c -> c >= greatest(1, ceil(q * arraySum(m.2) - 1e-9)), arrayCumSum(m.2))]) / (g + 1)));
