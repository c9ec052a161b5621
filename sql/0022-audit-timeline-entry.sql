-- A raw call as the API shows it, in one column of audit_timeline_v1 (api/queries/audit-rows.ts).
--
-- A page of the audit log, a session's calls and an event by id read a few rows of the timeline, and
-- what such a read costs the engine grows with the columns it reads, not with the rows: planning and
-- a stream per column, per part. On the 10M-event bench data set a page of 51 rows as 25 columns took
-- 8-9 ms, as its key columns and this one 4 ms.
--
-- `entry`: the columns a reader shows beside the row's key (event_id, timestamp, source, counted), as
-- a JSON array in the order audit-rows.ts's ENTRY_FIELDS lists them. Computed from the row's own
-- columns as it is inserted (the view audit_timeline_mv_v1 need not change); the rows stored before
-- this migration get theirs in the background (a mutation), and until then are computed as they are
-- read, so every read answers the same. The columns stay: filters and the aggregates' edges read them.
ALTER TABLE audit_timeline_v1 {{on_cluster}}
    ADD COLUMN IF NOT EXISTS entry String MATERIALIZED toJSONString(tuple(
        trace_id, otel_trace_id, otel_span_id, session_id, account_id, agent, agent_version, gateway, transport, service, tool,
        scopes_required, allowed, is_error, denied_reason, error, duration_ns, request_bytes, response_bytes, toString(cost_usd), attributes))
    CODEC(ZSTD(3));

ALTER TABLE audit_timeline_v1 {{on_cluster}} MATERIALIZE COLUMN entry;
