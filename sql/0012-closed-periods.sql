-- Closed billing periods: closing stores the period's chargeback snapshot (the finest lines, as JSON)
-- and its SHA-256; every export of a closed period is rendered from it, so it never changes. A reopen is
-- another row (with its reason); the latest row of a period says whether it is closed. Append-only.
CREATE TABLE IF NOT EXISTS closed_periods_v1 {{on_cluster}}
(
    tenant        LowCardinality(String),
    period        String,
    action        Enum8('close' = 1, 'reopen' = 2),
    snapshot      String,
    sha256        String,
    at            DateTime64(6, 'UTC'),
    by            String,
    reason        String
)
ENGINE = {{replicated}}MergeTree
ORDER BY (tenant, period, at);
