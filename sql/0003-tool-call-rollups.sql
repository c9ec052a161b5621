-- Per-minute rollups of tool calls per tenant × agent × account × service × tool, kept
-- {{rollup_retention_days}} days. Fed at insert time by the materialized view below; read with
-- sum() and quantileTDigestMerge(level)(duration_digest) grouped by the key.
CREATE TABLE IF NOT EXISTS tool_calls_1m_v1 {{on_cluster}}
(
    tenant              LowCardinality(String),
    minute              DateTime('UTC'),
    agent               LowCardinality(String),
    account_id          String,
    service             LowCardinality(String),
    tool                LowCardinality(String),
    calls               SimpleAggregateFunction(sum, UInt64),
    errors              SimpleAggregateFunction(sum, UInt64),
    denials             SimpleAggregateFunction(sum, UInt64),
    duration_sum_ns     SimpleAggregateFunction(sum, UInt64),
    duration_max_ns     SimpleAggregateFunction(max, UInt64),
    duration_digest     AggregateFunction(quantileTDigest, UInt64),
    request_bytes_sum   SimpleAggregateFunction(sum, UInt64),
    response_bytes_sum  SimpleAggregateFunction(sum, UInt64),
    cost_usd_sum        SimpleAggregateFunction(sum, Decimal(38, 9)),
    priced_calls        SimpleAggregateFunction(sum, UInt64)
)
ENGINE = {{replicated}}AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (tenant, minute, agent, account_id, service, tool)
TTL minute + INTERVAL {{rollup_retention_days}} DAY;

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
GROUP BY tenant, minute, agent, account_id, service, tool;
