-- Costs by day and by week without the agent (api/queries/cost-lines.ts): the same sums as
-- cost_calls_1d_v1 and cost_calls_1w_v1 (0019, 0020) summed over agents. A report whose book has no
-- rule on an agent, and that neither groups nor filters by agent, needs the agent only to map a call to
-- a cost centre when its account has no mapping; it reads the other calls from these tables. With tens
-- of agents per account a week here has several times fewer rows than cost_calls_1w_v1 (on the 10M-event
-- bench data set 160k instead of 1.49M for the busiest tenant's week; 111k instead of 228k for a day).
--
-- Fed from the daily table (and the weekly from the daily here), so every call the daily table gets
-- reaches them too.
CREATE TABLE IF NOT EXISTS cost_calls_agentless_1d_v1 {{on_cluster}}
(
    tenant          LowCardinality(String),
    bucket          DateTime('UTC'),
    account_id      LowCardinality(String),
    service         LowCardinality(String),
    tool            LowCardinality(String),
    calls           SimpleAggregateFunction(sum, UInt64),
    duration_sum_ns SimpleAggregateFunction(sum, UInt64),
    reported_nanos  SimpleAggregateFunction(sum, Int64)
)
ENGINE = {{replicated}}AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant, bucket, account_id, service, tool)
TTL bucket + INTERVAL {{rollup_retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS cost_calls_agentless_1d_mv_v1 {{on_cluster}} TO cost_calls_agentless_1d_v1 AS
SELECT tenant, bucket, account_id, service, tool,
       sum(calls) AS calls, sum(duration_sum_ns) AS duration_sum_ns, sum(reported_nanos) AS reported_nanos
FROM cost_calls_1d_v1
GROUP BY tenant, bucket, account_id, service, tool;

CREATE TABLE IF NOT EXISTS cost_calls_agentless_1w_v1 {{on_cluster}} AS cost_calls_agentless_1d_v1
ENGINE = {{replicated}}AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant, bucket, account_id, service, tool)
TTL bucket + INTERVAL {{rollup_retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS cost_calls_agentless_1w_mv_v1 {{on_cluster}} TO cost_calls_agentless_1w_v1 AS
SELECT tenant, toDateTime(intDiv(toUnixTimestamp(bucket), 604800) * 604800, 'UTC') AS bucket, account_id, service, tool,
       sum(calls) AS calls, sum(duration_sum_ns) AS duration_sum_ns, sum(reported_nanos) AS reported_nanos
FROM cost_calls_agentless_1d_v1
GROUP BY tenant, bucket, account_id, service, tool;

-- The days and weeks stored before the views existed, copied once, each less what its table holds
-- already (the calls inserted since the views were created; see 0019).
INSERT INTO cost_calls_agentless_1d_v1 (tenant, bucket, account_id, service, tool, calls, duration_sum_ns, reported_nanos)
SELECT tenant, bucket, account_id, service, tool, toUInt64(sum(c)), toUInt64(sum(d)), sum(r)
FROM
(
    SELECT tenant, bucket, account_id, service, tool, toInt64(calls) AS c, toInt64(duration_sum_ns) AS d, reported_nanos AS r
    FROM cost_calls_1d_v1
    UNION ALL
    SELECT tenant, bucket, account_id, service, tool, -toInt64(calls), -toInt64(duration_sum_ns), -reported_nanos
    FROM cost_calls_agentless_1d_v1
)
GROUP BY tenant, bucket, account_id, service, tool
HAVING sum(c) > 0;

INSERT INTO cost_calls_agentless_1w_v1 (tenant, bucket, account_id, service, tool, calls, duration_sum_ns, reported_nanos)
SELECT tenant, bucket, account_id, service, tool, toUInt64(sum(c)), toUInt64(sum(d)), sum(r)
FROM
(
    SELECT tenant, toDateTime(intDiv(toUnixTimestamp(bucket), 604800) * 604800, 'UTC') AS bucket, account_id, service, tool,
           toInt64(calls) AS c, toInt64(duration_sum_ns) AS d, reported_nanos AS r
    FROM cost_calls_agentless_1d_v1
    UNION ALL
    SELECT tenant, bucket, account_id, service, tool, -toInt64(calls), -toInt64(duration_sum_ns), -reported_nanos
    FROM cost_calls_agentless_1w_v1
)
GROUP BY tenant, bucket, account_id, service, tool
HAVING sum(c) > 0;
