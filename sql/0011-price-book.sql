-- The price book and the cost-centre map, append-only: every change (a price set or retired, a mapping
-- set or removed) is one row with who made it and when; nothing is updated or deleted. A rule holds
-- from its effective_from until the next row for the same match (kind and match columns); for the
-- same match and effective_from, the row changed last wins. '' in a match column means "any".
CREATE TABLE IF NOT EXISTS price_book_v1 {{on_cluster}}
(
    tenant            LowCardinality(String),
    kind              Enum8('price' = 1, 'cost_centre' = 2),
    service           String,
    tool              String,
    account           String,
    agent             String,
    effective_from    DateTime64(3, 'UTC'),
    -- Prices in nano-units of the currency (10^-9 USD): exact for any price with up to 9 decimals.
    per_call_nanos    Int64,
    per_second_nanos  Int64,
    cost_centre       String,
    retired           Bool,
    changed_at        DateTime64(6, 'UTC'),
    changed_by        String,
    source            String,
    note              String
)
ENGINE = {{replicated}}MergeTree
ORDER BY (tenant, kind, changed_at);
