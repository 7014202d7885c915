-- The release and deployment cohort that served an event (optional on every kind: ''
-- when the producer did not say). Canary analysis compares the `canary` cohort with the
-- `baseline` one per service and release.
ALTER TABLE {database}.events
    ADD COLUMN IF NOT EXISTS release LowCardinality(String) DEFAULT '' AFTER span_id,
    ADD COLUMN IF NOT EXISTS cohort LowCardinality(String) DEFAULT '' AFTER release;
