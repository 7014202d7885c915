-- Latency windows and SLO verdicts gain the deployment cohort as a key dimension where
-- events carry one (`baseline`, `canary`, ...): a key is (tenant_id, service, route,
-- cohort) and cohort = '' for traffic without release labels, so those keys, their
-- window ids and their queries are what they were. Sum over cohorts (sumMap of the
-- buckets) for a service's whole traffic. The new column joins the sorting key of
-- slo_samples so the verdicts of two cohorts of one window are two rows.
ALTER TABLE {database}.latency_windows
    ADD COLUMN IF NOT EXISTS cohort LowCardinality(String) AFTER route;
ALTER TABLE {database}.slo_samples
    ADD COLUMN IF NOT EXISTS cohort LowCardinality(String) AFTER route,
    MODIFY ORDER BY (tenant_id, service, route, rule, window_start, cohort);
