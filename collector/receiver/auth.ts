/**
 * Who is sending: an API key (core/api-keys.ts) with role `ingest` (or `admin`) names the tenant; the
 * same store serves the GraphQL API. `INGEST_TOKENS` is its short form: each token an `ingest` key of its
 * tenant. Without any key the receiver serves the single tenant `default`, and only to this machine,
 * so an unconfigured receiver is never open to the network.
 */
import type { KeyStore } from '../../api/plugins/use-auth.ts';
import { createKeyStore, ingestKeysFromTokens } from '../../core/api-keys.ts';
import { DEFAULT_TENANT } from '../../model/audit-event.ts';
import { HttpError } from './respond.ts';

/** Roles whose keys may send. */
const SENDING_ROLES: ReadonlySet<string> = new Set(['ingest', 'admin']);

const BEARER = /^Bearer[ \t]+([^\s]+)[ \t]*$/i;
const LOOPBACK_V4 = /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;

/** 127.0.0.0/8, `::1`, and 127.x written as an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`). */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  if (address === '::1') return true;
  const v4 = address.toLowerCase().startsWith('::ffff:') ? address.slice(7) : address;
  return LOOPBACK_V4.test(v4);
}

/** The keys given as INGEST_TOKENS pairs (token → tenant), or as a store. */
export function ingestCredentials(keys: KeyStore | ReadonlyMap<string, string> | undefined): KeyStore | undefined {
  return keys instanceof Map ? createKeyStore(ingestKeysFromTokens(keys)) : (keys as KeyStore | undefined);
}

/**
 * The sender's tenant, or an HttpError: 401 (with `WWW-Authenticate`, RFC 6750) for a missing or
 * unknown key when keys are configured, 403 for a key whose role may not send, and 403 for a
 * non-loopback sender when no key is configured.
 */
export function authenticate(
  authorization: string | undefined,
  remoteAddress: string | undefined,
  credentials: KeyStore | ReadonlyMap<string, string> | undefined,
): string {
  const keys = ingestCredentials(credentials);
  if (keys === undefined || keys.size === 0) {
    if (isLoopback(remoteAddress)) return DEFAULT_TENANT;
    throw new HttpError(
      403,
      `no ingest tokens are configured, so only this machine may send (you are ${remoteAddress ?? 'unknown'}); ` +
        'configure INGEST_TOKENS=token=tenant,... and send Authorization: Bearer <token>',
    );
  }
  const token = authorization === undefined ? undefined : BEARER.exec(authorization)?.[1];
  if (token === undefined) {
    throw new HttpError(401, 'missing bearer token: send Authorization: Bearer <token>', {}, { 'WWW-Authenticate': 'Bearer' });
  }
  const caller = keys.lookup(token);
  if (caller === undefined) {
    throw new HttpError(401, 'unknown bearer token', {}, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
  }
  if (!SENDING_ROLES.has(caller.role)) {
    throw new HttpError(
      403,
      `the key ${JSON.stringify(caller.name)} has role ${caller.role}, which may not send; use a key with role ingest (npm run keys -- create --role ingest ...)`,
      {},
      { 'WWW-Authenticate': 'Bearer error="insufficient_scope"' },
    );
  }
  return caller.tenant;
}
