/**
 * The GraphQL schema, assembled from one module per area (./graphql/*.ts). Each module holds its SDL and
 * resolvers; a resolver checks its arguments (./queries/params.ts), takes the caller's tenant
 * (./context.ts) and calls one query module (./queries/*.ts), where the SQL lives beside its row mapping.
 * Same-named types across modules (`type Query`, `type Mutation`) are merged.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import type { AlertWebhooks } from '../alerts/webhook-announcer.ts';
import type { ClosedBuckets } from './queries/closed-buckets.ts';
import { createSchema } from 'graphql-yoga';
import type { ApiContext } from './context.ts';
import * as alerts from './graphql/alerts.ts';
import * as analytics from './graphql/analytics.ts';
import * as audit from './graphql/audit.ts';
import * as me from './graphql/me.ts';
import * as costs from './graphql/costs.ts';
import { moneyTypeDefs } from './money.ts';

export const baseTypeDefs = /* GraphQL */ `
  # Times are ISO-8601 (RFC 3339) strings with a time zone, e.g. "2026-11-24T10:00:00Z"; times returned are
  # UTC with nanosecond precision. A range is [from, to): \`to\` defaults to now, \`from\` to an hour before \`to\`.
  # Aggregates come from rollups, so their range resolves to the whole buckets it overlaps. Durations are
  # milliseconds. Percentiles cover allowed calls only. Every answer is limited to the API key's tenant; a
  # \`tenant\` argument, where one is accepted, must name that tenant.

  "The least role an API key needs to select this field (roles: VIEWER < OPERATOR, BILLING < ADMIN)."
  directive @requires(role: Role!) on FIELD_DEFINITION

  enum Role {
    VIEWER
    OPERATOR
    BILLING
    ADMIN
  }
`;

const MODULES = [analytics, audit, me, costs, alerts];

export const typeDefs = [baseTypeDefs, moneyTypeDefs, ...MODULES.map((m) => m.typeDefs)];

export interface SchemaDependencies {
  clickhouse: ClickHouseClient;
  /** The aggregates' cache of closed time buckets; none when absent. */
  closedBuckets?: ClosedBuckets;
  /** Where a person's acknowledgement or resolution of an alert is announced; not announced when absent. */
  alertWebhooks?: AlertWebhooks;
}

export function createApiSchema({ clickhouse, closedBuckets, alertWebhooks }: SchemaDependencies) {
  return createSchema<ApiContext>({ typeDefs, resolvers: MODULES.map((m) => m.resolvers(clickhouse, { closedBuckets, alertWebhooks })) });
}
