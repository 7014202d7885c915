-- Per-tenant API tokens (streams/tokens.py): never the token, only its keyed hash
-- (HMAC-SHA256 under VIGIL_HASH_KEY). One row per change: version 1 created, 2 revoked;
-- query with FINAL. Workers reload it every VIGIL_TOKEN_REFRESH_S when a request needs it.
CREATE TABLE IF NOT EXISTS {database}.api_tokens
(
    token_id    String,
    tenant_id   LowCardinality(String),
    token_hash  String,
    created_at  DateTime64(3, 'UTC'),
    expires_at  Nullable(DateTime64(3, 'UTC')),
    revoked_at  Nullable(DateTime64(3, 'UTC')),
    created_by  String,
    version     UInt32
)
ENGINE = ReplacingMergeTree(version)
ORDER BY token_id;
