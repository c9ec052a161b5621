-- Anomaly alerts, one row per alert, the latest version wins (read with FINAL). The alert id is
-- derived from (tenant, kind, subject, start of the window it first fired in), so two detector
-- processes that see the same anomaly in the same interval write the same id, and the table keeps one.
CREATE TABLE IF NOT EXISTS alerts_v1 {{on_cluster}}
(
    tenant          LowCardinality(String),
    alert_id        String,
    kind            LowCardinality(String),
    severity        LowCardinality(String),
    status          LowCardinality(String),
    agent           String,
    tool            String,
    account_id      String,
    session_id      String,
    window_start    DateTime('UTC'),
    window_end      DateTime('UTC'),
    last_fired_at   DateTime('UTC'),
    observed        Float64,
    expected        Float64,
    expected_low    Float64,
    expected_high   Float64,
    score           Float64,
    baseline        LowCardinality(String),
    sentence        String,
    acknowledged_by String,
    acknowledged_at Nullable(DateTime64(3, 'UTC')),
    resolved_by     String,
    resolved_at     Nullable(DateTime64(3, 'UTC')),
    updated_at      DateTime64(3, 'UTC')
)
ENGINE = {{replicated}}ReplacingMergeTree(updated_at)
PARTITION BY toYYYYMM(window_start)
ORDER BY (tenant, alert_id);

-- What happened to each alert, in order: opened, updated (each pass it still fires), escalated,
-- acknowledged, resolved. Keyed so that the same event written by two detectors is kept once.
CREATE TABLE IF NOT EXISTS alert_history_v1 {{on_cluster}}
(
    tenant    LowCardinality(String),
    alert_id  String,
    at        DateTime64(3, 'UTC'),
    action    LowCardinality(String),
    by        String,
    severity  LowCardinality(String),
    observed  Float64,
    score     Float64
)
ENGINE = {{replicated}}ReplacingMergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (tenant, alert_id, at, action);
