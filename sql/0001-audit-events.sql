-- Raw audit events: one row per MCP tool call, as reported by a gateway's audit hook
-- (source 'audit') or derived from an `mcp.tool.call` span (source 'span').
--
-- Exactly once: the sort key is (tenant, event_id). event_id is a UUIDv7, time-ordered, so the key
-- also orders a tenant's events by time. ReplacingMergeTree collapses a row delivered twice; readers
-- that must be exact use FINAL. The ingest never inserts an event_id that is already stored, which is
-- what keeps the rollups (fed by materialized views at insert time) exact too.
CREATE TABLE IF NOT EXISTS audit_events_v1 {{on_cluster}}
(
    event_id        UUID,
    tenant          LowCardinality(String),
    timestamp       DateTime64(9, 'UTC'),
    trace_id        String,
    tool            LowCardinality(String),
    service         LowCardinality(String),
    account_id      String,
    scopes_required Array(LowCardinality(String)),
    allowed         Bool,
    denied_reason   String,
    duration_ns     UInt64,
    error           String,
    is_error        Bool,
    agent           LowCardinality(String),
    agent_version   LowCardinality(String),
    session_id      String,
    gateway         LowCardinality(String),
    transport       LowCardinality(String),
    otel_trace_id   String,
    otel_span_id    String,
    request_bytes   UInt64,
    response_bytes  UInt64,
    cost_usd        Nullable(Decimal(18, 9)),
    attributes      Map(LowCardinality(String), String),
    source          LowCardinality(String),
    ingested_at     DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_timestamp timestamp TYPE minmax GRANULARITY 1,
    INDEX idx_trace_id trace_id TYPE bloom_filter(0.01) GRANULARITY 4,
    INDEX idx_account account_id TYPE bloom_filter(0.01) GRANULARITY 4
)
ENGINE = {{replicated}}ReplacingMergeTree
PARTITION BY toDate(timestamp)
ORDER BY (tenant, event_id)
TTL toDateTime(timestamp) + INTERVAL {{retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 1000;
