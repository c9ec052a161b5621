-- Fewer parts under the tables read by key: a month no longer written to becomes one part.
--
-- A read by id (a trace's calls and spans, a session's keys, a call's replacement, an event at its
-- time) probes every part its partitions hold: the key's granule in each, whether or not the part has
-- the key. On the 10M-event bench data set calls_by_id_v1 had 11 parts, and reading one trace id
-- never read before took 5.4-5.7 ms; a copy of the same rows in 2 parts (one per month) 3.2-3.4 ms.
--
-- Once every part of a partition has gone an hour without change, ClickHouse merges them into one
-- (min_age_to_force_merge_seconds with min_age_to_force_merge_on_partition_only): each month is
-- rewritten once after its last write (again if a late row arrives in it). The month being written to
-- keeps the parts its merges leave, as before.
ALTER TABLE calls_by_id_v1 {{on_cluster}}
    MODIFY SETTING min_age_to_force_merge_seconds = 3600, min_age_to_force_merge_on_partition_only = 1;

ALTER TABLE trace_spans_v1 {{on_cluster}}
    MODIFY SETTING min_age_to_force_merge_seconds = 3600, min_age_to_force_merge_on_partition_only = 1;

ALTER TABLE audit_lookup_v1 {{on_cluster}}
    MODIFY SETTING min_age_to_force_merge_seconds = 3600, min_age_to_force_merge_on_partition_only = 1;

ALTER TABLE audit_timeline_v1 {{on_cluster}}
    MODIFY SETTING min_age_to_force_merge_seconds = 3600, min_age_to_force_merge_on_partition_only = 1;
