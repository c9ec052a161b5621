-- Reads of raw audit records without FINAL (api/queries/audit-*.ts, trace.ts, session.ts).
--
-- audit_events_v1 is sorted by (tenant, event_id), and ClickHouse compares a UUID's low 64 bits
-- first, so within a day its rows are in no time order: a newest-first page read the whole tenant,
-- and FINAL (to show a call reported twice once) also turned off partition pruning. Its 50 rows of
-- a page lie in 50 granules of 8,192 rows each.
--
-- audit_timeline_v1: the same rows in time order (tenant, timestamp, event_id), every column the
-- API shows, so a page (newest first, after a cursor, filtered) reads a few granules in key order,
-- and a call found by one of its ids is read by its full key. Small granules (1,024 rows) in small
-- compressed blocks: a page's rows, or a key looked up, decompress little more than themselves.
-- This doubles what raw events take on disk, as a projection would.
CREATE TABLE IF NOT EXISTS audit_timeline_v1 {{on_cluster}}
(
    tenant          LowCardinality(String),
    timestamp       DateTime64(9, 'UTC'),
    event_id        UUID,
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
    counted         Bool
)
ENGINE = {{replicated}}MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant, timestamp, event_id)
TTL toDateTime(timestamp) + INTERVAL {{retention_days}} DAY
SETTINGS index_granularity = 1024, min_compress_block_size = 4096, max_compress_block_size = 32768,
         non_replicated_deduplication_window = 1000;

-- audit_lookup_v1: a call's event by one of its ids, in time order within each id. Kinds:
--   trace       the gateway's trace id (go-micro `mcp.trace_id`, the audit record's trace_id)
--   otel_trace  the OpenTelemetry trace id
--   session     the MCP session id
--   replaced    a call whose span fact was replaced by its audit record (sql/0005): the key is the
--               event_id both rows share; the span fact's row (source 'span', `counted`) is not shown.
-- An id's keys lie in one or two granules of 1,024 rows per part.
CREATE TABLE IF NOT EXISTS audit_lookup_v1 {{on_cluster}}
(
    tenant    LowCardinality(String),
    kind      Enum8('trace' = 1, 'otel_trace' = 2, 'session' = 3, 'replaced' = 4),
    key       String,
    timestamp DateTime64(9, 'UTC'),
    event_id  UUID,
    -- A row of a span fact (source 'span', counted): hidden when its call was replaced.
    span_fact Bool
)
ENGINE = {{replicated}}MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant, kind, key, timestamp, event_id)
TTL toDateTime(timestamp) + INTERVAL {{retention_days}} DAY
SETTINGS index_granularity = 1024, non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS audit_timeline_mv_v1 {{on_cluster}} TO audit_timeline_v1 AS
SELECT tenant, timestamp, event_id, trace_id, tool, service, account_id, scopes_required, allowed, denied_reason, duration_ns, error, is_error, agent, agent_version, session_id, gateway, transport, otel_trace_id, otel_span_id, request_bytes, response_bytes, cost_usd, attributes, source, counted
FROM audit_events_v1;

CREATE MATERIALIZED VIEW IF NOT EXISTS audit_lookup_mv_v1 {{on_cluster}} TO audit_lookup_v1 AS
SELECT tenant, CAST(k.1, 'Enum8(\'trace\' = 1, \'otel_trace\' = 2, \'session\' = 3, \'replaced\' = 4)') AS kind, k.2 AS key, timestamp, event_id, source = 'span' AND counted AS span_fact
FROM audit_events_v1
ARRAY JOIN arrayFilter(x -> x.2 != '', [('trace', trace_id), ('otel_trace', otel_trace_id), ('session', session_id), ('replaced', if(counted, '', toString(event_id)))]) AS k;

-- The rows stored before the views existed. A row inserted while this runs may be copied twice;
-- the reads skip a repeated (timestamp, event_id), so that changes no answer.
INSERT INTO audit_timeline_v1 (tenant, timestamp, event_id, trace_id, tool, service, account_id, scopes_required, allowed, denied_reason, duration_ns, error, is_error, agent, agent_version, session_id, gateway, transport, otel_trace_id, otel_span_id, request_bytes, response_bytes, cost_usd, attributes, source, counted)
SELECT tenant, timestamp, event_id, trace_id, tool, service, account_id, scopes_required, allowed, denied_reason, duration_ns, error, is_error, agent, agent_version, session_id, gateway, transport, otel_trace_id, otel_span_id, request_bytes, response_bytes, cost_usd, attributes, source, counted
FROM audit_events_v1;

INSERT INTO audit_lookup_v1 (tenant, kind, key, timestamp, event_id, span_fact)
SELECT tenant, CAST(k.1, 'Enum8(\'trace\' = 1, \'otel_trace\' = 2, \'session\' = 3, \'replaced\' = 4)') AS kind, k.2 AS key, timestamp, event_id, source = 'span' AND counted AS span_fact
FROM audit_events_v1
ARRAY JOIN arrayFilter(x -> x.2 != '', [('trace', trace_id), ('otel_trace', otel_trace_id), ('session', session_id), ('replaced', if(counted, '', toString(event_id)))]) AS k;
