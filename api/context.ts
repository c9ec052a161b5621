/**
 * Who is asking, as every resolver sees it. The caller is established once per request, before any
 * resolver runs (api/plugins/use-auth.ts); resolvers take the tenant from here and pass it as the first
 * argument of their query module, so tenant isolation is visible in every signature.
 */
import { createGraphQLError } from 'graphql-yoga';
import { parseTenant } from './queries/params.ts';

/** Roles of an API key, weakest first. `ingest` keys write through the receiver and read nothing. */
export const ROLES = ['ingest', 'viewer', 'operator', 'billing', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export interface Caller {
  tenant: string;
  role: Role;
  /** The key's name, for logs and "who changed what"; `local` for the loopback caller without keys. */
  name: string;
}

export interface ApiContext {
  caller?: Caller;
}

/**
 * The tenant a resolver reads: the caller's. A `tenant` argument is accepted only when it names the
 * caller's own tenant (older clients still send one); any other tenant is refused, never answered.
 */
export function tenantOf(context: ApiContext, tenantArgument?: string | null): string {
  const caller = context.caller;
  if (!caller) throw createGraphQLError('An API key is required: send it as `Authorization: Bearer <key>`.', { extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } } });
  if (tenantArgument != null && parseTenant(tenantArgument) !== caller.tenant) {
    throw createGraphQLError(`This key belongs to tenant ${JSON.stringify(caller.tenant)}; it cannot read tenant ${JSON.stringify(tenantArgument)}.`, {
      extensions: { code: 'FORBIDDEN', http: { status: 403 } },
    });
  }
  return caller.tenant;
}
