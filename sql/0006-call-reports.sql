-- Who reported each call, by trace: one narrow row per audit event with a trace id, sorted by
-- (tenant, trace_id, tool), so the ingest's "is this call already known?" look-up (an audit record and
-- an `mcp.tool.call` span of one call count once, see 0005) reads by primary key. Before this table
-- it scanned audit_events_v1's trace_id column over a ±1 day window around the batch: what it read grew
-- with a day's traffic, and an audit record and span more than a day apart were not paired. The same
-- look-up finds the reports stored under another report's event_id (report_id of the rows that are
-- not counted), which before took a scan of audit_events_v1's `counted` column, the whole table.
--
-- Fed by the view below at insert time; the rows already stored are copied once. Rows are never
-- changed, only added: a row copied twice (inserted while this migration ran) changes no answer, the
-- look-up asks which sources reported a call, not how many rows there are.
CREATE TABLE IF NOT EXISTS call_reports_v1 {{on_cluster}}
(
    tenant    LowCardinality(String),
    trace_id  String,
    tool      LowCardinality(String),
    source    LowCardinality(String),
    counted   Bool,
    event_id  UUID,
    report_id UUID,
    timestamp DateTime64(9, 'UTC')
)
ENGINE = {{replicated}}ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant, trace_id, tool, source, event_id)
TTL toDateTime(timestamp) + INTERVAL {{retention_days}} DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS call_reports_mv_v1 {{on_cluster}} TO call_reports_v1 AS
SELECT tenant, trace_id, tool, source, counted, event_id, report_id, timestamp
FROM audit_events_v1
WHERE trace_id != '';

INSERT INTO call_reports_v1 (tenant, trace_id, tool, source, counted, event_id, report_id, timestamp)
SELECT tenant, trace_id, tool, source, counted, event_id, report_id, timestamp
FROM audit_events_v1
WHERE trace_id != '';
