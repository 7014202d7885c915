-- Funnels (streams/detectors/funnel). A journey is one person's run through one funnel:
-- step-1 events no more than the funnel's window apart, from the first of them
-- (entered_at) to the window's end after the last (closes_at). Its level equals
-- ClickHouse's own windowFunnel over the events of that span (README, "Funnels").
-- Rows are rewritten as a journey moves (ReplacingMergeTree: query with FINAL):
--   level       deepest step reached (1..N)
--   reached_ms  per step, the event time (epoch ms) it was first reached; -1 = not reached
--   status      pending (window open), converted (last step reached), dropped (window
--               closed short of the last step): a person inside the window is never dropped
--   version     the partition's watermark when written (epoch ms)
-- user_id_hash is the producer's pseudonymous person key, never a raw user id.
CREATE TABLE IF NOT EXISTS {database}.funnel_progress
(
    tenant_id      LowCardinality(String),
    funnel         LowCardinality(String),
    user_id_hash   String,
    entered_at     DateTime64(3, 'UTC'),
    level          UInt8,
    reached_ms     Array(Int64),
    status         Enum8('pending' = 1, 'converted' = 2, 'dropped' = 3),
    closes_at      DateTime64(3, 'UTC'),
    src_partition  UInt32,
    version        Int64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(entered_at)
ORDER BY (tenant_id, funnel, user_id_hash, entered_at)
TTL toDateTime(entered_at) + INTERVAL {retention_days} DAY;

-- Cohorts: journeys by the hour / day they entered, per tenant and for all tenants
-- (tenant_id '*'). Each partition of the events topic writes its own partial row
-- (src_partition): sum over partitions, with FINAL. Arrays are per step (index 1 = step 1):
--   reached  journeys that reached the step (reached[1] = entered)
--   pending  journeys still inside their window whose level is the step
--   dropped  journeys whose window closed at that level (short of the last step)
--   ttc_p50_s / ttc_p95_s  time from the previous step to this one, seconds, from the
--            relative-error sketch (index 1 = step 2), of this row alone
--   ttc_keys / ttc_counts  that sketch's buckets per stage (index 1 = step 2), mergeable
--            across rows: vigilQuantile(0.95, sumMap(ttc_keys[1], ttc_counts[1]), any(gamma))
CREATE TABLE IF NOT EXISTS {database}.funnel_cohorts
(
    funnel         LowCardinality(String),
    grain          Enum8('hour' = 1, 'day' = 2),
    cohort         DateTime('UTC'),
    tenant_id      LowCardinality(String),
    src_partition  UInt32,
    entered        Int64,
    reached        Array(Int64),
    pending        Array(Int64),
    dropped        Array(Int64),
    ttc_p50_s      Array(Float64),
    ttc_p95_s      Array(Float64),
    ttc_keys       Array(Array(Int16)),
    ttc_counts     Array(Array(UInt64)),
    gamma          Float64,
    version        Int64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(cohort)
ORDER BY (funnel, grain, cohort, tenant_id, src_partition)
TTL cohort + INTERVAL {aggregate_retention_days} DAY;

-- Funnel events that arrived behind the partition's watermark: flagged, never applied
-- (the shared late policy). The exactness checks leave these out of windowFunnel.
CREATE TABLE IF NOT EXISTS {database}.funnel_late_events
(
    tenant_id      LowCardinality(String),
    event_id       String,
    event_name     LowCardinality(String),
    ts             DateTime64(3, 'UTC'),
    watermark      DateTime64(3, 'UTC'),
    src_partition  UInt32,
    src_offset     Int64,
    detected_at    DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toDate(ts)
ORDER BY (tenant_id, ts, event_id)
TTL toDateTime(ts) + INTERVAL {retention_days} DAY;

-- The funnel detector's position per partition: the offset its state reflects, the
-- watermark, the last judged mark and the firing stage alerts. A restarted worker
-- rebuilds the open journeys from the events table up to processed_offset.
CREATE TABLE IF NOT EXISTS {database}.funnel_checkpoints
(
    consumer_group     LowCardinality(String),
    topic              LowCardinality(String),
    partition          UInt32,
    processed_offset   Int64,
    state              String,
    written_at         DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(processed_offset)
ORDER BY (consumer_group, topic, partition)
TTL toDateTime(written_at) + INTERVAL 7 DAY;
