-- Reads of raw audit records without FINAL (api/queries/audit-*.ts, trace.ts, session.ts).
--
-- audit_events_v1 is sorted by (tenant, event_id), and ClickHouse compares a UUID's low 64 bits
-- first, so within a day its rows are in no time order: a newest-first page read the whole tenant,
-- and FINAL (to show a call reported twice once) also turned off partition pruning. Two narrow
-- tables, fed by views at insert time, answer the questions by primary key instead; the full rows
-- are then read from audit_events_v1 by (tenant, event_id) inside the page's time bounds.
--
-- audit_timeline_v1: a tenant's calls in time order, with the columns the audit log filters on, so
-- a page (newest first, after a cursor, filtered) reads a few granules in key order.
CREATE TABLE IF NOT EXISTS audit_timeline_v1 {{on_cluster}}
(
    tenant        LowCardinality(String),
    timestamp     DateTime64(9, 'UTC'),
    event_id      UUID,
    agent         LowCardinality(String),
    service       LowCardinality(String),
    tool          LowCardinality(String),
    account_id    String CODEC(ZSTD(1)),
    allowed       Bool,
    is_error      Bool,
    error         String CODEC(ZSTD(1)),
    denied_reason String CODEC(ZSTD(1)),
    counted       Bool
)
ENGINE = {{replicated}}MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant, timestamp, event_id)
TTL toDateTime(timestamp) + INTERVAL {{retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 1000;

-- audit_lookup_v1: a call's event by one of its ids, in time order within each id. Kinds:
--   trace       the gateway's trace id (go-micro `mcp.trace_id`, the audit record's trace_id)
--   otel_trace  the OpenTelemetry trace id
--   session     the MCP session id
--   replaced    a call whose span fact was replaced by its audit record (sql/0005): the key is the
--               event_id both rows share; the row that is `counted` is the span's and is not shown.
CREATE TABLE IF NOT EXISTS audit_lookup_v1 {{on_cluster}}
(
    tenant    LowCardinality(String),
    kind      Enum8('trace' = 1, 'otel_trace' = 2, 'session' = 3, 'replaced' = 4),
    key       String,
    timestamp DateTime64(9, 'UTC'),
    event_id  UUID,
    counted   Bool
)
ENGINE = {{replicated}}MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant, kind, key, timestamp, event_id)
TTL toDateTime(timestamp) + INTERVAL {{retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS audit_timeline_mv_v1 {{on_cluster}} TO audit_timeline_v1 AS
SELECT tenant, timestamp, event_id, agent, service, tool, account_id, allowed, is_error, error, denied_reason, counted
FROM audit_events_v1;

CREATE MATERIALIZED VIEW IF NOT EXISTS audit_lookup_mv_v1 {{on_cluster}} TO audit_lookup_v1 AS
SELECT tenant, CAST(k.1, 'Enum8(\'trace\' = 1, \'otel_trace\' = 2, \'session\' = 3, \'replaced\' = 4)') AS kind, k.2 AS key, timestamp, event_id, counted
FROM audit_events_v1
ARRAY JOIN arrayFilter(x -> x.2 != '', [('trace', trace_id), ('otel_trace', otel_trace_id), ('session', session_id), ('replaced', if(counted, '', toString(event_id)))]) AS k;

-- The rows stored before the views existed. A row inserted while this runs may be copied twice;
-- the reads skip a repeated (timestamp, event_id), so that changes no answer.
INSERT INTO audit_timeline_v1 (tenant, timestamp, event_id, agent, service, tool, account_id, allowed, is_error, error, denied_reason, counted)
SELECT tenant, timestamp, event_id, agent, service, tool, account_id, allowed, is_error, error, denied_reason, counted
FROM audit_events_v1;

INSERT INTO audit_lookup_v1 (tenant, kind, key, timestamp, event_id, counted)
SELECT tenant, CAST(k.1, 'Enum8(\'trace\' = 1, \'otel_trace\' = 2, \'session\' = 3, \'replaced\' = 4)') AS kind, k.2 AS key, timestamp, event_id, counted
FROM audit_events_v1
ARRAY JOIN arrayFilter(x -> x.2 != '', [('trace', trace_id), ('otel_trace', otel_trace_id), ('session', session_id), ('replaced', if(counted, '', toString(event_id)))]) AS k;
