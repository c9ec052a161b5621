-- Costs by week (7 days from 1970-01-01, a Thursday), as cost_calls_1d_v1 (0019) by day: a month's
-- report prices 4 weekly rows per service, tool, account and agent where the daily table has up to 30.
-- A week in which the tenant's book changes is read by day and minute instead (api/queries/cost-plan.ts).
-- Fed from the daily table, so every call the daily table gets reaches it too.
CREATE TABLE IF NOT EXISTS cost_calls_1w_v1 {{on_cluster}} AS cost_calls_1d_v1
ENGINE = {{replicated}}AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant, bucket, account_id, agent, service, tool)
TTL bucket + INTERVAL {{rollup_retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS cost_calls_1w_mv_v1 {{on_cluster}} TO cost_calls_1w_v1 AS
SELECT
    tenant,
    toDateTime(intDiv(toUnixTimestamp(bucket), 604800) * 604800, 'UTC') AS bucket,
    account_id,
    agent,
    service,
    tool,
    sum(calls) AS calls,
    sum(duration_sum_ns) AS duration_sum_ns,
    sum(reported_nanos) AS reported_nanos
FROM cost_calls_1d_v1
GROUP BY tenant, bucket, account_id, agent, service, tool;

-- The weeks stored before the view existed, copied once from the daily table less what this table
-- holds already (the calls inserted since the view was created; see 0019).
INSERT INTO cost_calls_1w_v1 (tenant, bucket, account_id, agent, service, tool, calls, duration_sum_ns, reported_nanos)
SELECT tenant, bucket, account_id, agent, service, tool, toUInt64(sum(c)), toUInt64(sum(d)), sum(r)
FROM
(
    SELECT tenant, toDateTime(intDiv(toUnixTimestamp(bucket), 604800) * 604800, 'UTC') AS bucket, account_id, agent, service, tool,
           toInt64(calls) AS c, toInt64(duration_sum_ns) AS d, reported_nanos AS r
    FROM cost_calls_1d_v1
    UNION ALL
    SELECT tenant, bucket, account_id, agent, service, tool, -toInt64(calls), -toInt64(duration_sum_ns), -reported_nanos
    FROM cost_calls_1w_v1
)
GROUP BY tenant, bucket, account_id, agent, service, tool
HAVING sum(c) > 0;
