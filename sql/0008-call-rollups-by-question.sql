-- Rollups sized to the analytics questions (api/queries/*.ts). tool_calls_1m_v1 keys every minute by
-- agent × account × service × tool and barely compresses (about one row per call), so it answers no
-- faster than the raw table. These tables keep each call once per *dimension set* (`dims`), per hour
-- and per day, so each question reads the smallest set that holds the dimensions it groups and filters by:
--
--   dims 1  agent                       (overview, agentActivity, timeseries by agent)
--   dims 2  service, tool               (topServices, slowestTools, timeseries by service or tool)
--   dims 3  agent, service, tool        (distinct tools per agent; a filter across agent and tool)
--   dims 4  account                     (timeseries by account, a filter by account alone)
--   dims 5  agent, account              (distinct accounts per agent; no sketch: a high-cardinality set,
--                                        and a filter by account reads calls_by_account_v1 below)
--
-- A dimension outside the row's set is ''. Every set also keys the call's outcome (OK, ERROR, DENIED;
-- a denied call is DENIED whatever its error), so an outcome filter is a key condition. The hourly
-- table holds the sets 1, 2 and 4 only (3 and 5 would have nearly a row per call). A range reads whole
-- days from the daily table, whole hours at its edges from the hourly one, and the rest from
-- audit_events_v1 (api/queries/rollup-plan.ts), so answers are exact for any [from, to). Distinct
-- counts are counts of key values, hence exact. Percentiles merge DDSketches (quantileDD, relative
-- accuracy 0.01) of the durations of allowed calls: each answer is within 1% of the exact value at its
-- rank, and a sketch (a few hundred counters) merges in a fraction of a t-digest's time.
--
-- Granules of 256 rows: a question reads a few hundred to a few thousand rows of one set, and every
-- state in a granule it touches is read and decoded, so smaller granules read fewer sketches it drops.
--
-- Only `counted` rows are rolled up (a call reported twice is counted once, see 0005).
CREATE TABLE IF NOT EXISTS calls_1h_v1 {{on_cluster}}
(
    tenant          LowCardinality(String),
    dims            UInt8,
    bucket          DateTime('UTC'),
    agent           LowCardinality(String),
    service         LowCardinality(String),
    tool            LowCardinality(String),
    account_id      String,
    outcome         LowCardinality(String),
    calls           SimpleAggregateFunction(sum, UInt64),
    errors          SimpleAggregateFunction(sum, UInt64),
    denials         SimpleAggregateFunction(sum, UInt64),
    duration_sum_ns SimpleAggregateFunction(sum, UInt64),
    duration_max_ns SimpleAggregateFunction(max, UInt64),
    duration_sketch AggregateFunction(quantileDD(0.01, 0.5), UInt64),
    cost_usd_sum    SimpleAggregateFunction(sum, Decimal(38, 9)),
    priced_calls    SimpleAggregateFunction(sum, UInt64),
    first_seen      SimpleAggregateFunction(min, DateTime64(9, 'UTC')),
    last_seen       SimpleAggregateFunction(max, DateTime64(9, 'UTC'))
)
ENGINE = {{replicated}}AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant, dims, bucket, agent, service, tool, account_id, outcome)
TTL bucket + INTERVAL {{rollup_retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 1000, index_granularity = 256;

CREATE TABLE IF NOT EXISTS calls_1d_v1 {{on_cluster}} AS calls_1h_v1
ENGINE = {{replicated}}AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant, dims, bucket, agent, service, tool, account_id, outcome)
TTL bucket + INTERVAL {{rollup_retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 1000, index_granularity = 256;

-- Weeks (7 days from 1970-01-01, a Thursday): a month's range merges 4 weekly rows per group instead of
-- 30 daily ones. Fed from the daily table, so the daily backfill below fills it too.
CREATE TABLE IF NOT EXISTS calls_1w_v1 {{on_cluster}} AS calls_1h_v1
ENGINE = {{replicated}}AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant, dims, bucket, agent, service, tool, account_id, outcome)
TTL bucket + INTERVAL {{rollup_retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 1000, index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS calls_1w_mv_v1 {{on_cluster}} TO calls_1w_v1 AS
SELECT
    tenant,
    dims,
    toDateTime(intDiv(toUnixTimestamp(bucket), 604800) * 604800, 'UTC') AS bucket,
    agent,
    service,
    tool,
    account_id,
    outcome,
    sum(calls) AS calls,
    sum(errors) AS errors,
    sum(denials) AS denials,
    sum(duration_sum_ns) AS duration_sum_ns,
    max(duration_max_ns) AS duration_max_ns,
    quantileDDMergeState(0.01, 0.5)(duration_sketch) AS duration_sketch,
    sum(cost_usd_sum) AS cost_usd_sum,
    sum(priced_calls) AS priced_calls,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen
FROM calls_1d_v1
GROUP BY tenant, dims, bucket, agent, service, tool, account_id, outcome;

-- Quarters of a day (00, 06, 12, 18 UTC) of the hourly sets: a range's edges merge at most 3 of them and
-- 5 hours per side instead of up to 23 hours, and a series with a 6-hour step reads them whole. Fed from
-- the hourly table, so the hourly backfill below fills it too.
CREATE TABLE IF NOT EXISTS calls_6h_v1 {{on_cluster}} AS calls_1h_v1
ENGINE = {{replicated}}AggregatingMergeTree
PARTITION BY toYYYYMM(bucket)
ORDER BY (tenant, dims, bucket, agent, service, tool, account_id, outcome)
TTL bucket + INTERVAL {{rollup_retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 1000, index_granularity = 256;

CREATE MATERIALIZED VIEW IF NOT EXISTS calls_6h_mv_v1 {{on_cluster}} TO calls_6h_v1 AS
SELECT
    tenant,
    dims,
    toDateTime(intDiv(toUnixTimestamp(bucket), 21600) * 21600, 'UTC') AS bucket,
    agent,
    service,
    tool,
    account_id,
    outcome,
    sum(calls) AS calls,
    sum(errors) AS errors,
    sum(denials) AS denials,
    sum(duration_sum_ns) AS duration_sum_ns,
    max(duration_max_ns) AS duration_max_ns,
    quantileDDMergeState(0.01, 0.5)(duration_sketch) AS duration_sketch,
    sum(cost_usd_sum) AS cost_usd_sum,
    sum(priced_calls) AS priced_calls,
    min(first_seen) AS first_seen,
    max(last_seen) AS last_seen
FROM calls_1h_v1
GROUP BY tenant, dims, bucket, agent, service, tool, account_id, outcome;

CREATE MATERIALIZED VIEW IF NOT EXISTS calls_1h_mv_v1 {{on_cluster}} TO calls_1h_v1 AS
SELECT
    tenant,
    dims,
    toStartOfHour(timestamp) AS bucket,
    if(dims IN (1, 3, 5), agent, '') AS agent,
    if(dims IN (2, 3), service, '') AS service,
    if(dims IN (2, 3), tool, '') AS tool,
    if(dims IN (4, 5), account_id, '') AS account_id,
    multiIf(NOT allowed, 'DENIED', is_error, 'ERROR', 'OK') AS outcome,
    count() AS calls,
    countIf(is_error) AS errors,
    countIf(NOT allowed) AS denials,
    sumIf(duration_ns, allowed) AS duration_sum_ns,
    maxIf(duration_ns, allowed) AS duration_max_ns,
    quantileDDStateIf(0.01, 0.5)(duration_ns, allowed) AS duration_sketch,
    sum(toDecimal128(ifNull(cost_usd, 0), 9)) AS cost_usd_sum,
    countIf(cost_usd IS NOT NULL) AS priced_calls,
    min(timestamp) AS first_seen,
    max(timestamp) AS last_seen
FROM audit_events_v1
ARRAY JOIN [1, 2, 4] AS dims
WHERE counted
GROUP BY tenant, dims, bucket, agent, service, tool, account_id, outcome;

CREATE MATERIALIZED VIEW IF NOT EXISTS calls_1d_mv_v1 {{on_cluster}} TO calls_1d_v1 AS
SELECT
    tenant,
    dims,
    toDateTime(toStartOfDay(timestamp), 'UTC') AS bucket,
    if(dims IN (1, 3, 5), agent, '') AS agent,
    if(dims IN (2, 3), service, '') AS service,
    if(dims IN (2, 3), tool, '') AS tool,
    if(dims IN (4, 5), account_id, '') AS account_id,
    multiIf(NOT allowed, 'DENIED', is_error, 'ERROR', 'OK') AS outcome,
    count() AS calls,
    countIf(is_error) AS errors,
    countIf(NOT allowed) AS denials,
    sumIf(duration_ns, allowed) AS duration_sum_ns,
    maxIf(duration_ns, allowed) AS duration_max_ns,
    quantileDDStateIf(0.01, 0.5)(duration_ns, allowed AND dims != 5) AS duration_sketch,
    sum(toDecimal128(ifNull(cost_usd, 0), 9)) AS cost_usd_sum,
    countIf(cost_usd IS NOT NULL) AS priced_calls,
    min(timestamp) AS first_seen,
    max(timestamp) AS last_seen
FROM audit_events_v1
ARRAY JOIN [1, 2, 3, 4, 5] AS dims
WHERE counted
GROUP BY tenant, dims, bucket, agent, service, tool, account_id, outcome;

-- The calls stored before the views existed, copied once. A row inserted after a view was created went
-- through that view already (its ingested_at, the server's clock at insert, is not earlier than the
-- view's creation second), so it is not copied again: no call counts twice.
INSERT INTO calls_1h_v1
SELECT
    tenant,
    dims,
    toStartOfHour(timestamp) AS bucket,
    if(dims IN (1, 3, 5), agent, '') AS agent,
    if(dims IN (2, 3), service, '') AS service,
    if(dims IN (2, 3), tool, '') AS tool,
    if(dims IN (4, 5), account_id, '') AS account_id,
    multiIf(NOT allowed, 'DENIED', is_error, 'ERROR', 'OK') AS outcome,
    count() AS calls,
    countIf(is_error) AS errors,
    countIf(NOT allowed) AS denials,
    sumIf(duration_ns, allowed) AS duration_sum_ns,
    maxIf(duration_ns, allowed) AS duration_max_ns,
    quantileDDStateIf(0.01, 0.5)(duration_ns, allowed) AS duration_sketch,
    sum(toDecimal128(ifNull(cost_usd, 0), 9)) AS cost_usd_sum,
    countIf(cost_usd IS NOT NULL) AS priced_calls,
    min(timestamp) AS first_seen,
    max(timestamp) AS last_seen
FROM audit_events_v1
ARRAY JOIN [1, 2, 4] AS dims
WHERE counted
  AND ingested_at < (SELECT min(metadata_modification_time) FROM system.tables WHERE database = currentDatabase() AND name = 'calls_1h_mv_v1')
GROUP BY tenant, dims, bucket, agent, service, tool, account_id, outcome;

INSERT INTO calls_1d_v1
SELECT
    tenant,
    dims,
    toDateTime(toStartOfDay(timestamp), 'UTC') AS bucket,
    if(dims IN (1, 3, 5), agent, '') AS agent,
    if(dims IN (2, 3), service, '') AS service,
    if(dims IN (2, 3), tool, '') AS tool,
    if(dims IN (4, 5), account_id, '') AS account_id,
    multiIf(NOT allowed, 'DENIED', is_error, 'ERROR', 'OK') AS outcome,
    count() AS calls,
    countIf(is_error) AS errors,
    countIf(NOT allowed) AS denials,
    sumIf(duration_ns, allowed) AS duration_sum_ns,
    maxIf(duration_ns, allowed) AS duration_max_ns,
    quantileDDStateIf(0.01, 0.5)(duration_ns, allowed AND dims != 5) AS duration_sketch,
    sum(toDecimal128(ifNull(cost_usd, 0), 9)) AS cost_usd_sum,
    countIf(cost_usd IS NOT NULL) AS priced_calls,
    min(timestamp) AS first_seen,
    max(timestamp) AS last_seen
FROM audit_events_v1
ARRAY JOIN [1, 2, 3, 4, 5] AS dims
WHERE counted
  AND ingested_at < (SELECT min(metadata_modification_time) FROM system.tables WHERE database = currentDatabase() AND name = 'calls_1d_mv_v1')
GROUP BY tenant, dims, bucket, agent, service, tool, account_id, outcome;

-- The calls of each account, one narrow row per counted call, sorted by account: a question filtered by
-- an account reads that account's calls only (about 10,000 a month of 8 million for 800 accounts),
-- exact for any range and any other filter, instead of a rollup set that would have a row per call.
CREATE TABLE IF NOT EXISTS calls_by_account_v1 {{on_cluster}}
(
    tenant      LowCardinality(String),
    account_id  String,
    timestamp   DateTime64(9, 'UTC'),
    agent       LowCardinality(String),
    service     LowCardinality(String),
    tool        LowCardinality(String),
    allowed     Bool,
    is_error    Bool,
    duration_ns UInt64,
    cost_usd    Nullable(Decimal(18, 9))
)
ENGINE = {{replicated}}MergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant, account_id, timestamp)
TTL toDateTime(timestamp) + INTERVAL {{retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS calls_by_account_mv_v1 {{on_cluster}} TO calls_by_account_v1 AS
SELECT tenant, account_id, timestamp, agent, service, tool, allowed, is_error, duration_ns, cost_usd
FROM audit_events_v1
WHERE counted;

INSERT INTO calls_by_account_v1
SELECT tenant, account_id, timestamp, agent, service, tool, allowed, is_error, duration_ns, cost_usd
FROM audit_events_v1
WHERE counted
  AND ingested_at < (SELECT min(metadata_modification_time) FROM system.tables WHERE database = currentDatabase() AND name = 'calls_by_account_mv_v1');
