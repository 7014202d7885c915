-- Canary verdicts per tenant (VIGIL_CANARY_PER_TENANT): tenant_id is '' for the verdict
-- of the service as a whole (every tenant's requests), else the tenant whose canary was
-- judged against its own baseline. It joins the sorting key so each is its own row.
ALTER TABLE {database}.canary_verdicts
    ADD COLUMN IF NOT EXISTS tenant_id LowCardinality(String) AFTER release,
    MODIFY ORDER BY (service, release, interval_start, tenant_id);
