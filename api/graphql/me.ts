/** Who is asking: the API key's tenant, role and name, so a client (the dashboard) can show it. */
import type { ClickHouseClient } from '@clickhouse/client';
import { tenantOf, type ApiContext } from '../context.ts';

export const typeDefs = /* GraphQL */ `
  type Query {
    "The API key of this request. Without configured keys, a loopback caller is tenant \\"default\\", role ADMIN, name \\"local\\"."
    me: Me! @requires(role: VIEWER)
  }

  type Me {
    tenant: String!
    role: Role!
    "The key's name in the keys file."
    name: String!
  }
`;

export function resolvers(_clickhouse: ClickHouseClient) {
  return {
    Query: {
      me: (_: unknown, _args: unknown, ctx: ApiContext) => {
        const tenant = tenantOf(ctx);
        return { tenant, role: ctx.caller!.role.toUpperCase(), name: ctx.caller!.name };
      },
    },
  };
}
