-- Incidents name what joins alerts of several tenants into one (streams/incidents.py):
--   incident_keys  the causes their alerts named (evidence.incident_key), e.g.
--                  'release:web/2.8.0' for the canary verdicts of one release
--   tenants        the tenants of their alerts (a release's incident has tenant_id '' and
--                  lists here every tenant whose canary failed)
ALTER TABLE {database}.incidents
    ADD COLUMN IF NOT EXISTS incident_keys Array(String) AFTER trace_ids,
    ADD COLUMN IF NOT EXISTS tenants Array(String) AFTER incident_keys;
