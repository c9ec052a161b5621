-- A call reported both ways (an audit record and an `mcp.tool.call` span with the same trace id and
-- tool) is one call. When the audit record comes second, the writer stores it under the span fact's
-- event_id with `counted = false` and its own id in `report_id`: the raw table (FINAL) shows one row,
-- the audit record's, and the rollups, which count only `counted` rows, count the call once.
ALTER TABLE audit_events_v1 {{on_cluster}} ADD COLUMN IF NOT EXISTS counted Bool DEFAULT true AFTER source;
ALTER TABLE audit_events_v1 {{on_cluster}} ADD COLUMN IF NOT EXISTS report_id UUID DEFAULT event_id AFTER counted;
ALTER TABLE audit_events_v1 {{on_cluster}} ADD INDEX IF NOT EXISTS idx_report_id report_id TYPE bloom_filter(0.01) GRANULARITY 4;

DROP VIEW IF EXISTS tool_calls_1m_mv_v1 {{on_cluster}};

CREATE MATERIALIZED VIEW IF NOT EXISTS tool_calls_1m_mv_v1 {{on_cluster}} TO tool_calls_1m_v1 AS
SELECT
    tenant,
    toStartOfMinute(timestamp) AS minute,
    agent,
    account_id,
    service,
    tool,
    count() AS calls,
    countIf(is_error) AS errors,
    countIf(NOT allowed) AS denials,
    sum(duration_ns) AS duration_sum_ns,
    max(duration_ns) AS duration_max_ns,
    quantileTDigestStateIf(duration_ns, allowed) AS duration_digest,
    sum(request_bytes) AS request_bytes_sum,
    sum(response_bytes) AS response_bytes_sum,
    sum(toDecimal128(ifNull(cost_usd, 0), 9)) AS cost_usd_sum,
    countIf(cost_usd IS NOT NULL) AS priced_calls
FROM audit_events_v1
WHERE counted
GROUP BY tenant, minute, agent, account_id, service, tool;
