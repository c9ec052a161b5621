-- Messages the ingest could not decode or validate, kept with their original bytes, coordinates and
-- reason when the pipeline runs without Kafka (with Kafka they go to the dead-letter topic).
CREATE TABLE IF NOT EXISTS dead_letters_v1 {{on_cluster}}
(
    id          UUID DEFAULT generateUUIDv7(),
    received_at DateTime64(3, 'UTC') DEFAULT now64(3),
    topic       LowCardinality(String),
    partition   Int32,
    offset      String,
    key         String,
    value       String,
    headers     Map(String, String),
    reason      String,
    replayed_at Nullable(DateTime64(3, 'UTC'))
)
ENGINE = {{replicated}}MergeTree
PARTITION BY toYYYYMM(received_at)
ORDER BY (received_at, id)
TTL toDateTime(received_at) + INTERVAL {{retention_days}} DAY;
