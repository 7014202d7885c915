-- Whether a webhook call carried a signature at all (security.webhook_signature): the
-- WebhookSignatureMissing rule selects on it, so analysts and `vigil rules sql` can too.
-- 1 (the contract's default) for every other kind and for rows stored before.
ALTER TABLE {database}.events
    ADD COLUMN IF NOT EXISTS signature_provided UInt8 DEFAULT 1 AFTER signature_valid;
