-- The next input offset per source partition whose result is already stored. Filled by
-- materialized views in the same INSERT as the rows themselves, so after a crash the
-- worker skips what ClickHouse already holds instead of writing it twice.
CREATE TABLE IF NOT EXISTS {database}.ingest_offsets
(
    topic       LowCardinality(String),
    partition   UInt32,
    next_offset SimpleAggregateFunction(max, Int64)
)
ENGINE = AggregatingMergeTree
ORDER BY (topic, partition);

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.ingest_offsets_from_events
TO {database}.ingest_offsets
AS SELECT src_topic AS topic, src_partition AS partition, max(src_offset) + 1 AS next_offset
FROM {database}.events
GROUP BY topic, partition;

CREATE MATERIALIZED VIEW IF NOT EXISTS {database}.ingest_offsets_from_dead_letters
TO {database}.ingest_offsets
AS SELECT src_topic AS topic, src_partition AS partition, max(src_offset) + 1 AS next_offset
FROM {database}.dead_letters
GROUP BY topic, partition;
