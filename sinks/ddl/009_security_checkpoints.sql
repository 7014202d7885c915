-- The security detector's state per partition (streams/detectors/security/detector.py):
-- every correlation's open windows and episodes, as of processed_offset. Written at most
-- every VIGIL_SECURITY_CHECKPOINT_INTERVAL_S while the partition moves; commits stay
-- behind the newest one, and a restarted worker resumes from it. topic is the events
-- topic or the internal groups topic.
CREATE TABLE IF NOT EXISTS {database}.security_checkpoints
(
    consumer_group     LowCardinality(String),
    topic              LowCardinality(String),
    partition          UInt32,
    processed_offset   Int64,
    state              String CODEC(ZSTD(3)),
    written_at         DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(processed_offset)
ORDER BY (consumer_group, topic, partition)
TTL toDateTime(written_at) + INTERVAL 7 DAY;
