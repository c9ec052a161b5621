-- A call's first row, replaced by the merge of both its reports, marked at its own key in
-- audit_timeline_v1, so that a page of the audit log tells what to hide from its own rows.
--
-- A call reported twice (its span and its audit record, in two batches) keeps its first row (counted)
-- and gains a merged row under the same event_id (not counted, sql/0005), stamped at the call's start.
-- A page must show the merged row and not the first one. When the two share (timestamp, event_id) the
-- merged row sorts just before the first one (the page orders `counted ASC` last) and the page sees it;
-- when the audit record came first, the merged row is stamped earlier, maybe far past the page, and the
-- page had to look each of its first rows up in audit_lookup_v1 ('replaced'): a second statement per
-- read. Now the writer stores, with the merged row, the key of the row it replaces (`replaces_at`, the
-- first row's timestamp: the event_id is the same), and a view writes a marker row there: source
-- 'replaced', not counted, no other column. A read in key order meets the marker just before the row
-- it hides; a read that stops on the marker goes on strictly after that key, past the hidden row.
--
-- Every other read of audit_timeline_v1 leaves markers out (source != 'replaced'); a page filtered on a
-- column other than time, session or trace still looks its first rows up in audit_lookup_v1 (a marker has
-- no column to match). The backfill below marks the merges stored before the view. A merge written after
-- it by a writer older than this migration (a rolling upgrade against a shared server: its inserts leave
-- `replaces_at` at its default) is not marked, and an unfiltered page would list its first row too.
ALTER TABLE audit_events_v1 {{on_cluster}} ADD COLUMN IF NOT EXISTS replaces_at DateTime64(9, 'UTC') DEFAULT timestamp AFTER report_id;

-- (In a subquery: an alias `timestamp` in the same SELECT would be what its WHERE compares.)
CREATE MATERIALIZED VIEW IF NOT EXISTS audit_timeline_replaced_mv_v1 {{on_cluster}} TO audit_timeline_v1 AS
SELECT tenant, replaced_at AS timestamp, event_id, 'replaced' AS source, false AS counted
FROM (SELECT tenant, event_id, replaces_at AS replaced_at FROM audit_events_v1 WHERE NOT counted AND replaces_at != timestamp);

-- The merged rows stored before the view existed: a marker at each first row they replace, where the
-- two keys differ. One written twice (a merge stored while this runs) changes no read: a marker only hides.
INSERT INTO audit_timeline_v1 (tenant, timestamp, event_id, source, counted)
SELECT tenant, timestamp, event_id, 'replaced', false
FROM audit_timeline_v1
WHERE counted
  AND (tenant, event_id) IN (SELECT tenant, event_id FROM audit_timeline_v1 WHERE NOT counted AND source != 'replaced')
  AND (tenant, timestamp, event_id) NOT IN (SELECT tenant, timestamp, event_id FROM audit_timeline_v1 WHERE NOT counted AND source != 'replaced');
