-- Costs by day (api/queries/cost-lines.ts). The price book is applied when a report is read, so a
-- back-dated price shows at once; for that the costs are read from rollups that keep every dimension
-- pricing and the cost-centre map match on (service, tool, account, agent) and nothing else: no
-- outcome, no sketches. A report prices each whole day in which no rule and no mapping of the tenant
-- changes from this table with the rule in force that day, and the rest minute by minute from
-- tool_calls_1m_v1, so its amounts equal those of the minute rollup alone, exactly.
--
-- Reported cost (the records' own cost_usd) is kept in integer nano-units: audit_events_v1 stores it
-- with 9 decimals, so nano-units are exact where micro-units would round.
--
-- Accounts are LowCardinality here (a tenant has thousands, not millions): the report looks up each
-- account's rules and cost centre once per distinct value instead of once per row.
--
-- Only `counted` rows are rolled up (a call reported twice is counted once, see 0005).
CREATE TABLE IF NOT EXISTS cost_calls_1d_v1 {{on_cluster}}
(
    tenant          LowCardinality(String),
    bucket          DateTime('UTC'),
    account_id      LowCardinality(String),
    agent           LowCardinality(String),
    service         LowCardinality(String),
    tool            LowCardinality(String),
    calls           SimpleAggregateFunction(sum, UInt64),
    duration_sum_ns SimpleAggregateFunction(sum, UInt64),
    reported_nanos  SimpleAggregateFunction(sum, Int64)
)
ENGINE = {{replicated}}AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant, bucket, account_id, agent, service, tool)
TTL bucket + INTERVAL {{rollup_retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS cost_calls_1d_mv_v1 {{on_cluster}} TO cost_calls_1d_v1 AS
SELECT
    tenant,
    toDateTime(toStartOfDay(timestamp), 'UTC') AS bucket,
    account_id,
    agent,
    service,
    tool,
    count() AS calls,
    sum(duration_ns) AS duration_sum_ns,
    sum(toInt64(toDecimal128(ifNull(cost_usd, 0), 9) * 1000000000)) AS reported_nanos
FROM audit_events_v1
WHERE counted
GROUP BY tenant, bucket, account_id, agent, service, tool;

-- The days stored before the view existed, copied once from the minute rollup: the very sums a report
-- priced minute by minute reads (the raw table keeps fewer days than the rollups, and a merge there
-- can replace a counted row by a second report of the same call). Calls inserted after the view was
-- created are in both tables already, so what is copied is the minute rollup less what this table
-- holds: each call once, without comparing clocks.
INSERT INTO cost_calls_1d_v1 (tenant, bucket, account_id, agent, service, tool, calls, duration_sum_ns, reported_nanos)
SELECT tenant, bucket, account_id, agent, service, tool, toUInt64(sum(c)), toUInt64(sum(d)), sum(r)
FROM
(
    SELECT tenant, toDateTime(toStartOfDay(minute), 'UTC') AS bucket, toString(account_id) AS account_id, toString(agent) AS agent,
           toString(service) AS service, toString(tool) AS tool,
           toInt64(calls) AS c, toInt64(duration_sum_ns) AS d, toInt64(cost_usd_sum * 1000000000) AS r
    FROM tool_calls_1m_v1
    UNION ALL
    SELECT tenant, bucket, toString(account_id), toString(agent), toString(service), toString(tool),
           -toInt64(calls), -toInt64(duration_sum_ns), -reported_nanos
    FROM cost_calls_1d_v1
)
GROUP BY tenant, bucket, account_id, agent, service, tool
HAVING sum(c) > 0;
