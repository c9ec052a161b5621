/**
 * Establishes the caller of every GraphQL request from its `Authorization: Bearer <key>` header, before
 * anything executes. With keys configured, a missing or unknown key is UNAUTHENTICATED (HTTP 401).
 * With none configured, the API serves the single tenant `default` to loopback callers only, as the
 * receiver does without tokens.
 */
import type { IncomingMessage } from 'node:http';
import { createGraphQLError, type Plugin } from 'graphql-yoga';
import type { ApiContext, Caller } from '../context.ts';

/** The API keys the API accepts; `core/api-keys.ts` builds one from the keys file. */
export interface KeyStore {
  /** Number of keys configured; 0 means the loopback-only default tenant. */
  readonly size: number;
  /** The caller a presented secret belongs to (compared in constant time); undefined when none. */
  lookup(secret: string): Caller | undefined;
}

export const LOCAL_CALLER: Caller = Object.freeze({ tenant: 'default', role: 'admin', name: 'local' });

export function unauthenticated(message: string) {
  return createGraphQLError(message, { extensions: { code: 'UNAUTHENTICATED', http: { status: 401, headers: { 'WWW-Authenticate': 'Bearer' } } } });
}

export function bearerOf(header: string | null | undefined): string | undefined {
  const m = /^Bearer\s+(\S+)\s*$/i.exec(header ?? '');
  return m?.[1];
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}

/** Resolves the caller for one request; throws UNAUTHENTICATED. Shared by GraphQL and the HTTP exports. */
export function authenticate(keys: KeyStore | undefined, authorization: string | null | undefined, remoteAddress: string | undefined): Caller {
  if (!keys || keys.size === 0) {
    if (isLoopback(remoteAddress)) return LOCAL_CALLER;
    throw unauthenticated('No API keys are configured, so the API answers loopback callers only. Configure API_KEYS_FILE to serve other hosts.');
  }
  const secret = bearerOf(authorization);
  if (secret === undefined) throw unauthenticated('An API key is required: send it as `Authorization: Bearer <key>`.');
  const caller = keys.lookup(secret);
  if (!caller) throw unauthenticated('The API key is not known (revoked, or mistyped).');
  return caller;
}

export function useAuth(keys: KeyStore | undefined): Plugin<ApiContext & { req?: IncomingMessage }> {
  return {
    onContextBuilding({ context, extendContext }) {
      const caller = authenticate(keys, context.request.headers.get('authorization'), context.req?.socket.remoteAddress);
      extendContext({ caller });
    },
  };
}
