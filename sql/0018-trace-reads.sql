-- A trace by either of its ids (api/queries/trace.ts) in two point reads, one per table.
--
-- calls_by_id_v1: each call once per id a trace can be asked by, its gateway trace id (kind 'trace')
-- and its OpenTelemetry trace id (kind 'otel_trace'), sorted by (tenant, id): a trace's calls lie in
-- one granule of each part. Before, the calls' keys came from audit_lookup_v1 and their rows from
-- audit_timeline_v1, a set searched across every granule range it touched.
--
-- The call is one column, `call`: the fields the answer shows as a JSON array, in the order
-- api/queries/trace.ts's CALL_FIELDS lists them, without the id its key holds (trace_id on a 'trace'
-- row, otel_trace_id on an 'otel_trace' row: the reader puts it back) and without the time (its own
-- column). A point read costs a stream per column read, each a mark looked up and a block
-- decompressed per part: on the 10M-event data set the 25 columns of a call as columns cost ~10-12 ms
-- of CPU per look-up, as one column ~6 ms. As columns it would be smaller (84 bytes a row against
-- 132): rows sorted by a random id compress little, so what is not stored is what saves.
CREATE TABLE IF NOT EXISTS calls_by_id_v1 {{on_cluster}}
(
    tenant    LowCardinality(String),
    id        String CODEC(ZSTD(1)),
    kind      Enum8('trace' = 1, 'otel_trace' = 2),
    timestamp DateTime64(9, 'UTC') CODEC(ZSTD(1)),
    call      String CODEC(ZSTD(3))
)
ENGINE = {{replicated}}MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant, id)
TTL toDateTime(timestamp) + INTERVAL {{retention_days}} DAY
SETTINGS index_granularity = 256, min_compress_block_size = 4096, max_compress_block_size = 16384,
         non_replicated_deduplication_window = 1000;

-- trace_spans_v1: the spans of a trace as the answer shows them, sorted by (tenant, trace_id,
-- span_id): one trace, one granule of each part, read whatever day its spans started on, so spans
-- that arrive after their calls are found too. The span is one column, `span`: a JSON array in the
-- order trace.ts's SPAN_FIELDS lists (spans_v1 without its ids, start, scope and resource columns).
-- A span delivered twice collapses here as in spans_v1; until then the reader lists it once.
CREATE TABLE IF NOT EXISTS trace_spans_v1 {{on_cluster}}
(
    tenant     LowCardinality(String),
    trace_id   String CODEC(ZSTD(1)),
    span_id    String CODEC(ZSTD(1)),
    start_time DateTime64(9, 'UTC') CODEC(ZSTD(1)),
    span       String CODEC(ZSTD(3))
)
ENGINE = {{replicated}}ReplacingMergeTree
PARTITION BY toYYYYMM(start_time)
ORDER BY (tenant, trace_id, span_id)
TTL toDateTime(start_time) + INTERVAL {{retention_days}} DAY
SETTINGS index_granularity = 256, min_compress_block_size = 4096, max_compress_block_size = 16384,
         non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS calls_by_id_mv_v1 {{on_cluster}} TO calls_by_id_v1 AS
SELECT tenant, k.2 AS id, CAST(k.1, 'Enum8(\'trace\' = 1, \'otel_trace\' = 2)') AS kind, timestamp,
       toJSONString(tuple(toString(event_id), source, counted, if(k.1 = 'trace', '', gateway_trace_id), if(k.1 = 'otel_trace', '', otel_id),
           otel_span_id, session_id, account_id, agent, agent_version, gateway, transport, service, tool, scopes_required, allowed, is_error,
           denied_reason, error, duration_ns, request_bytes, response_bytes, toString(cost_usd), attributes)) AS call
FROM (SELECT *, trace_id AS gateway_trace_id, otel_trace_id AS otel_id FROM audit_events_v1)
ARRAY JOIN arrayFilter(x -> x.2 != '', [('trace', gateway_trace_id), ('otel_trace', otel_id)]) AS k;

CREATE MATERIALIZED VIEW IF NOT EXISTS trace_spans_mv_v1 {{on_cluster}} TO trace_spans_v1 AS
SELECT tenant, trace_id, span_id, start_time,
       toJSONString(tuple(parent_span_id, name, kind, service, duration_ns, status_code, status_message, attributes, events)) AS span
FROM spans_v1;

-- The rows stored before the views existed. A row inserted while this runs may be copied twice: the
-- reader lists a call once per event_id and a span once per span_id, so that changes no answer.
INSERT INTO calls_by_id_v1 (tenant, id, kind, timestamp, call)
SELECT tenant, k.2 AS id, CAST(k.1, 'Enum8(\'trace\' = 1, \'otel_trace\' = 2)') AS kind, timestamp,
       toJSONString(tuple(toString(event_id), source, counted, if(k.1 = 'trace', '', gateway_trace_id), if(k.1 = 'otel_trace', '', otel_id),
           otel_span_id, session_id, account_id, agent, agent_version, gateway, transport, service, tool, scopes_required, allowed, is_error,
           denied_reason, error, duration_ns, request_bytes, response_bytes, toString(cost_usd), attributes)) AS call
FROM (SELECT *, trace_id AS gateway_trace_id, otel_trace_id AS otel_id FROM audit_events_v1)
ARRAY JOIN arrayFilter(x -> x.2 != '', [('trace', gateway_trace_id), ('otel_trace', otel_id)]) AS k;

INSERT INTO trace_spans_v1 (tenant, trace_id, span_id, start_time, span)
SELECT tenant, trace_id, span_id, start_time,
       toJSONString(tuple(parent_span_id, name, kind, service, duration_ns, status_code, status_message, attributes, events)) AS span
FROM spans_v1;
