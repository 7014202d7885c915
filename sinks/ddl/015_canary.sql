-- Canary verdicts (streams/detectors/canary): one row per service, canary release and
-- event-time interval, written once every events partition has passed the interval.
--   verdict             the stage's verdict after this interval: Pass, Marginal, Fail,
--                       Inconclusive (Fail only after `consecutive` failing intervals)
--   interval_verdict    this interval alone; cumulative_verdict: the stage so far
--   score               0-100: share of passing metrics (a failing critical one: 0)
--   metrics             JSON: per metric outcome (Pass/High/Low/Nodata), canary and
--                       baseline figures, effect, statistic, p-value, test
--   *_keys / *_counts   the interval's latency sketch buckets (merge with vigilQuantile)
-- A replay writes the same row again (ReplacingMergeTree: query with FINAL).
CREATE TABLE IF NOT EXISTS {database}.canary_verdicts
(
    service             LowCardinality(String),
    release             LowCardinality(String),
    interval_start      DateTime64(3, 'UTC'),
    interval_end        DateTime64(3, 'UTC'),
    verdict             LowCardinality(String),
    interval_verdict    LowCardinality(String),
    cumulative_verdict  LowCardinality(String),
    score               Float64,
    cumulative_score    Float64,
    failing_run         UInt16,
    canary_requests     UInt64,
    canary_errors       UInt64,
    baseline_requests   UInt64,
    baseline_errors     UInt64,
    canary_keys         Array(Int16),
    canary_counts       Array(UInt64),
    baseline_keys       Array(Int16),
    baseline_counts     Array(UInt64),
    metrics             String,
    cumulative_metrics  String
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(interval_start)
ORDER BY (service, release, interval_start)
TTL toDateTime(interval_start) + INTERVAL {aggregate_retention_days} DAY;
