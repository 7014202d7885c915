-- Statistical SLO decisions (streams/stats.py): a sample fails a rule only when it shows
-- the breach at the rule's confidence; too small a sample is 'insufficient'.
--   hits        events on the breaching side: 5xx for error_rate, 4xx for
--               client_error_rate, events above the threshold for a percentile rule,
--               failed requests over the long window for a burn rate
--   lower_bound one-sided lower confidence bound of hits / count (a burn rate for
--               burn-rate rules), computed when the observed value breaches; 0 otherwise
ALTER TABLE {database}.slo_samples
    MODIFY COLUMN status Enum8('pass' = 1, 'fail' = 2, 'no_data' = 3, 'insufficient' = 4);
ALTER TABLE {database}.slo_samples ADD COLUMN IF NOT EXISTS hits UInt64 DEFAULT 0 AFTER count;
ALTER TABLE {database}.slo_samples
    ADD COLUMN IF NOT EXISTS lower_bound Float64 DEFAULT 0 AFTER hits;
