-- Denied calls, one narrow row each, for the `denials` question: by reason, agent, tool, required scope
-- and over time. Denials are a small share of calls, so their rows are read as they are (exact for any
-- range, any filter) instead of being rolled up once per breakdown. Kept as long as the rollups.
-- Only `counted` rows (see 0005).
CREATE TABLE IF NOT EXISTS denied_calls_v1 {{on_cluster}}
(
    tenant          LowCardinality(String),
    timestamp       DateTime64(9, 'UTC'),
    agent           LowCardinality(String),
    service         LowCardinality(String),
    tool            LowCardinality(String),
    account_id      String,
    denied_reason   String,
    scopes_required Array(LowCardinality(String))
)
ENGINE = {{replicated}}MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant, timestamp)
TTL toDateTime(timestamp) + INTERVAL {{rollup_retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS denied_calls_mv_v1 {{on_cluster}} TO denied_calls_v1 AS
SELECT tenant, timestamp, agent, service, tool, account_id, denied_reason, scopes_required
FROM audit_events_v1
WHERE counted AND NOT allowed;

-- The denials stored before the view existed, copied once (see 0008 for why none is copied twice).
INSERT INTO denied_calls_v1
SELECT tenant, timestamp, agent, service, tool, account_id, denied_reason, scopes_required
FROM audit_events_v1
WHERE counted AND NOT allowed
  AND ingested_at < (SELECT min(metadata_modification_time) FROM system.tables WHERE database = currentDatabase() AND name = 'denied_calls_mv_v1');
