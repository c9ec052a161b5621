-- Spans: OTLP spans flattened to rows, from OTLP/HTTP or from the `otlp_spans` topic.
-- Sorted by trace so that a whole trace is one contiguous read; a span delivered twice collapses.
CREATE TABLE IF NOT EXISTS spans_v1 {{on_cluster}}
(
    tenant              LowCardinality(String),
    trace_id            String,
    span_id             String,
    parent_span_id      String,
    name                LowCardinality(String),
    kind                LowCardinality(String),
    service             LowCardinality(String),
    scope_name          LowCardinality(String),
    scope_version       LowCardinality(String),
    start_time          DateTime64(9, 'UTC'),
    duration_ns         UInt64,
    status_code         LowCardinality(String),
    status_message      String,
    attributes          Map(LowCardinality(String), String),
    resource_attributes Map(LowCardinality(String), String),
    events              Array(Tuple(time DateTime64(9, 'UTC'), name String, attributes Map(String, String))),
    ingested_at         DateTime64(3, 'UTC') DEFAULT now64(3),
    INDEX idx_start_time start_time TYPE minmax GRANULARITY 1,
    INDEX idx_name name TYPE set(1024) GRANULARITY 4
)
ENGINE = {{replicated}}ReplacingMergeTree
PARTITION BY toDate(start_time)
ORDER BY (tenant, trace_id, span_id)
TTL toDateTime(start_time) + INTERVAL {{retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 1000;
