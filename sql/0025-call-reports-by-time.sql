-- The writer's "is this call already known?" look-up (sql/0005, 0006), sorted time first.
--
-- call_reports_v1 was sorted by (tenant, trace_id, ...). A batch's look-up asks for a list of random
-- trace ids within a time window around the batch; sorted by trace id, every granule of the months
-- the window touches holds some of them, so the look-up read those months whole. On the 10M-event
-- bench set, 10,000 new calls' look-up took 118-135 ms (200-230 ms of CPU). Sorted by the hour first,
-- it reads the window's hours only: 25-42 ms (30-54 ms of CPU) for a window of two days.
--
-- The window (ingest/lookup-sql.ts, callTimeBounds): reports of one call are stamped at most its
-- duration apart (the span at its start, the audit record at its end), so the batch's timestamps
-- widened by its longest duration and a day for the clocks that stamped them.
--
-- Rows are never changed, only added: a row copied twice (one inserted while this migration runs)
-- changes no answer, the look-up asks which sources reported a call, not how many rows there are.
-- A writer older than this migration, still running against a shared server, fails its look-ups on
-- the missing call_reports_v1 and keeps its batches to retry, rather than counting calls twice.

-- The columns of call_reports_v1 (sql/0006); only the sort key changes.
CREATE TABLE IF NOT EXISTS call_reports_v2 {{on_cluster}} AS call_reports_v1
ENGINE = {{replicated}}ReplacingMergeTree
PARTITION BY toYYYYMM(timestamp)
ORDER BY (tenant, toStartOfHour(timestamp), trace_id, tool, source, event_id)
TTL toDateTime(timestamp) + INTERVAL {{retention_days}} DAY
SETTINGS non_replicated_deduplication_window = 1000;

CREATE MATERIALIZED VIEW IF NOT EXISTS call_reports_mv_v2 {{on_cluster}} TO call_reports_v2 AS
SELECT tenant, trace_id, tool, source, counted, event_id, report_id, timestamp
FROM audit_events_v1
WHERE trace_id != '';

-- The same columns, in the same order.
INSERT INTO call_reports_v2 SELECT * FROM call_reports_v1;

DROP VIEW IF EXISTS call_reports_mv_v1 {{on_cluster}};

-- Every row is in call_reports_v2 by now: lift the server's guard against dropping a large table
-- (max_table_size_to_drop, 50 GB by default) for this statement, or a large store could not start.
DROP TABLE IF EXISTS call_reports_v1 {{on_cluster}} SETTINGS max_table_size_to_drop = 0;
