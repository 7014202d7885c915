-- Incidents gain the trace ids their alerts pointed at: an alert whose evidence names a
-- trace already in an open incident joins that incident, whatever its tenant or
-- category (one request that leaked PII and crossed tenants is one incident).
ALTER TABLE {database}.incidents
    ADD COLUMN IF NOT EXISTS trace_ids Array(String) AFTER firing;

-- Acknowledgements and manual resolutions received by a worker that does not track the
-- incident (each incident lives in the worker whose detectors raised its alerts). The
-- owner reads the requests for its open incidents every VIGIL_INCIDENT_POLL_S and
-- applies them (idempotently: an incident is acknowledged or resolved once).
CREATE TABLE IF NOT EXISTS {database}.incident_requests
(
    incident_id  String,
    action       LowCardinality(String),
    by           String,
    at           DateTime64(3, 'UTC'),
    received_by  String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (incident_id, at)
TTL toDateTime(at) + INTERVAL {aggregate_retention_days} DAY;
