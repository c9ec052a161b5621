-- The API's cache of closed time buckets (api/queries/closed-buckets.ts).
--
-- call_writes_v1: one row per insert block and tenant of counted calls, saying when it was written
-- (this server's clock) and which call times it holds. A cached answer over whole past hours is still
-- right while no later write holds a call inside those hours; the API checks that in the statement that
-- reads the cached rows. Live traffic writes calls of the current hour, which no cache entry holds.
CREATE TABLE IF NOT EXISTS call_writes_v1 {{on_cluster}}
(
    tenant      LowCardinality(String),
    written_at  DateTime64(6, 'UTC'),
    earliest    DateTime64(9, 'UTC'),
    latest      DateTime64(9, 'UTC'),
    calls       UInt64
)
ENGINE = {{replicated}}MergeTree
ORDER BY (tenant, written_at)
TTL toDateTime(written_at) + INTERVAL 1 DAY;

CREATE MATERIALIZED VIEW IF NOT EXISTS call_writes_mv_v1 {{on_cluster}} TO call_writes_v1 AS
SELECT
    tenant,
    now64(6)       AS written_at,
    min(timestamp) AS earliest,
    max(timestamp) AS latest,
    count()        AS calls
FROM audit_events_v1
WHERE counted
GROUP BY tenant;

-- closed_buckets_v1: the cached rows themselves, the rollups' rows of a question's whole past hours
-- merged to the keys it groups by, under a random entry id the API process holds. On a cluster the rows
-- replicate like any table's; an entry read where its rows are not (yet) all there fails its row-count
-- check and is answered without the cache. Entries live at most 30 minutes in the API; the table drops
-- them after two hours.
CREATE TABLE IF NOT EXISTS closed_buckets_v1 {{on_cluster}}
(
    entry           UInt64,
    created         DateTime('UTC') DEFAULT now(),
    t               DateTime('UTC'),
    agent           LowCardinality(String),
    service         LowCardinality(String),
    tool            LowCardinality(String),
    account_id      String,
    outcome         LowCardinality(String),
    calls           UInt64,
    errors          UInt64,
    denials         UInt64,
    duration_sum_ns UInt64,
    duration_max_ns UInt64,
    duration_sketch AggregateFunction(quantileDD(0.01, 0.5), UInt64),
    cost_usd_sum    Decimal(38, 9),
    priced_calls    UInt64,
    first_seen      DateTime64(9, 'UTC'),
    last_seen       DateTime64(9, 'UTC')
)
ENGINE = {{replicated}}MergeTree
PARTITION BY toStartOfHour(created)
ORDER BY entry
TTL created + INTERVAL 2 HOUR
SETTINGS ttl_only_drop_parts = 1, index_granularity = 1024;
