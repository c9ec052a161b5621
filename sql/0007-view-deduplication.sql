-- One INSERT into audit_events_v1 writes that table, then each materialized view's target
-- (tool_calls_1m_v1, call_reports_v1), and not atomically: a process killed between those writes
-- leaves the rollup without the block. The writer keeps each audit insert in a journal until it has
-- returned, and after a crash sends the same block again with the same deduplication token
-- (ingest/clickhouse-writer.ts). With `deduplicate_blocks_in_dependent_materialized_views`, each
-- table then skips the block it already has and takes the one it missed; for that, the views'
-- targets keep the ids of their recent blocks too, as audit_events_v1 does (replicated tables always do).
ALTER TABLE tool_calls_1m_v1 {{on_cluster}} MODIFY SETTING non_replicated_deduplication_window = 1000;
ALTER TABLE call_reports_v1 {{on_cluster}} MODIFY SETTING non_replicated_deduplication_window = 1000;
