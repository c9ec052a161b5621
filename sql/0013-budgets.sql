-- Budgets per cost centre, account or agent and billing period (YYYY-MM), with thresholds in percent;
-- append-only, the latest row for (scope, key, period) is the budget. Threshold crossings are events,
-- recorded once each (the alerts read them).
CREATE TABLE IF NOT EXISTS budgets_v1 {{on_cluster}}
(
    tenant         LowCardinality(String),
    scope          Enum8('cost_centre' = 1, 'account' = 2, 'agent' = 3),
    key            String,
    period         String,
    amount_micros  Int64,
    thresholds     Array(UInt16),
    retired        Bool,
    changed_at     DateTime64(6, 'UTC'),
    changed_by     String
)
ENGINE = {{replicated}}MergeTree
ORDER BY (tenant, period, scope, key, changed_at);

CREATE TABLE IF NOT EXISTS budget_events_v1 {{on_cluster}}
(
    tenant          LowCardinality(String),
    scope           Enum8('cost_centre' = 1, 'account' = 2, 'agent' = 3),
    key             String,
    period          String,
    threshold       UInt16,
    budget_micros   Int64,
    -- The spend (priced + reported, exact micro-units) once the minute that crossed was counted.
    spend_micros    Int64,
    crossed_minute  DateTime('UTC'),
    recorded_at     DateTime64(6, 'UTC')
)
ENGINE = {{replicated}}ReplacingMergeTree(recorded_at)
ORDER BY (tenant, period, scope, key, threshold);
