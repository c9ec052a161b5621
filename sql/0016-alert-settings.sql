-- Per-tenant alert settings (thresholds and minimum volumes per kind, webhook), the latest wins.
CREATE TABLE IF NOT EXISTS alert_settings_v1 {{on_cluster}}
(
    tenant      LowCardinality(String),
    settings    String,
    updated_by  String,
    updated_at  DateTime64(3, 'UTC')
)
ENGINE = {{replicated}}ReplacingMergeTree(updated_at)
ORDER BY tenant;

-- Silences: no new alert of this kind for this subject until `until`. The subject is its four parts.
CREATE TABLE IF NOT EXISTS alert_silences_v1 {{on_cluster}}
(
    tenant      LowCardinality(String),
    kind        LowCardinality(String),
    agent       String,
    tool        String,
    account_id  String,
    session_id  String,
    until       DateTime('UTC'),
    created_by  String,
    created_at  DateTime64(3, 'UTC')
)
ENGINE = {{replicated}}ReplacingMergeTree(created_at)
ORDER BY (tenant, kind, agent, tool, account_id, session_id);
