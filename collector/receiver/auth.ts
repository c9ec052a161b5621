/**
 * Who is sending: a bearer token names the tenant. Without configured tokens the receiver serves the
 * single tenant `default`, and only to this machine, so an unconfigured receiver is never open to the
 * network.
 */
import { DEFAULT_TENANT } from '../../model/audit-event.ts';
import { HttpError } from './respond.ts';

const BEARER = /^Bearer[ \t]+([^\s]+)[ \t]*$/i;
const LOOPBACK_V4 = /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;

/** 127.0.0.0/8, `::1`, and 127.x written as an IPv4-mapped IPv6 address (`::ffff:127.0.0.1`). */
export function isLoopback(address: string | undefined): boolean {
  if (address === undefined) return false;
  if (address === '::1') return true;
  const v4 = address.toLowerCase().startsWith('::ffff:') ? address.slice(7) : address;
  return LOOPBACK_V4.test(v4);
}

/**
 * The sender's tenant, or an HttpError: 401 (with `WWW-Authenticate`, RFC 6750) for a missing or
 * unknown token when tokens are configured, 403 for a non-loopback sender when they are not.
 */
export function authenticate(
  authorization: string | undefined,
  remoteAddress: string | undefined,
  tokens: ReadonlyMap<string, string> | undefined,
): string {
  if (tokens === undefined || tokens.size === 0) {
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
  const tenant = tokens.get(token);
  if (tenant === undefined) {
    throw new HttpError(401, 'unknown bearer token', {}, { 'WWW-Authenticate': 'Bearer error="invalid_token"' });
  }
  return tenant;
}
