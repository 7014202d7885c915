-- One row per security alert episode (streams/detectors/security): written when it fires
-- (status 'firing') and again when it resolves; query with FINAL for one row per episode.
--   first_event  the first event of the first holding window
--   first_hold   end of the first holding window (when the alert fired)
--   last_hold    end of the last holding window; resolved_at = last_hold + quiet period
--   peak         largest count (or distinct count) of any holding window of the episode
-- Group values are pseudonymous (ip_hash, user_id_hash) or tenant / provider / route
-- names: never a raw IP or user id.
CREATE TABLE IF NOT EXISTS {database}.security_detections
(
    episode_id        String,
    alertname         LowCardinality(String),
    rule              LowCardinality(String),
    status            Enum8('firing' = 1, 'resolved' = 2),
    tenant_id         LowCardinality(String),
    group_key         String,
    labels            Map(String, String),
    first_event       DateTime64(3, 'UTC'),
    first_hold        DateTime64(3, 'UTC'),
    last_hold         DateTime64(3, 'UTC'),
    resolved_at       DateTime64(3, 'UTC'),
    peak              UInt64,
    threshold         UInt64,
    window_s          Float64,
    sample_event_ids  Array(String),
    fingerprint       String,
    version           UInt8       -- 1 firing, 2 resolved: FINAL keeps the resolution
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toDate(first_hold)
ORDER BY (alertname, group_key, first_hold, episode_id)
TTL toDateTime(first_hold) + INTERVAL {retention_days} DAY
SETTINGS non_replicated_deduplication_window = 10000;
