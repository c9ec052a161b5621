/**
 * `GET /export/chargeback?period=2026-11&groupBy=costCentre,account&format=csv|json|focus`: the
 * chargeback statement of a billing period, for keys with role billing or admin. Errors are JSON
 * `{ "error": { "code", "message", "argument"? } }` with HTTP 400 (bad argument), 401 (no or unknown
 * key), 403 (role), 409 (a closed period asked at a finer grain than it was closed with).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { GraphQLError } from 'graphql';
import type { Logger } from '../core/logger.ts';
import { CONTENT_TYPE, FORMATS, parseGroupByList, writeStatement, type ExportFormat } from './chargeback-export.ts';
import { authenticate, type KeyStore } from './plugins/use-auth.ts';
import { readerOf } from './plugins/use-read-scheduling.ts';
import { roleAllows } from './plugins/use-roles.ts';
import { buildStatement, StatementError } from './queries/chargeback.ts';
import { parsePeriod } from './queries/closed-periods.ts';
import type { ReadClient } from './read-client.ts';

export const CHARGEBACK_PATH = '/export/chargeback';
const DEFAULT_GROUP_BY = 'costCentre,account';

function sendError(res: ServerResponse, status: number, code: string, message: string, argument?: string, headers: Record<string, string> = {}): void {
  const body = JSON.stringify({ error: { code, message, ...(argument && { argument }) } });
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'X-Content-Type-Options': 'nosniff', ...headers });
  res.end(body);
}

/**
 * `reads` is the API's read client: the export's statements wait in the caller's fair queue and carry
 * the statement time limit, as every GraphQL read does, so one key's exports cannot stall another's
 * dashboard.
 */
export function createChargebackHandler({ reads, keys, logger }: { reads: ReadClient; keys?: KeyStore; logger: Logger }) {
  return async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    if (req.method !== 'GET' && req.method !== 'HEAD') return sendError(res, 405, 'METHOD_NOT_ALLOWED', `${req.method} is not allowed; use GET`, undefined, { Allow: 'GET, HEAD' });
    let caller;
    try {
      caller = authenticate(keys, req.headers.authorization, req.socket.remoteAddress);
    } catch (error) {
      if (error instanceof GraphQLError) return sendError(res, 401, 'UNAUTHENTICATED', error.message, undefined, { 'WWW-Authenticate': 'Bearer' });
      throw error;
    }
    if (!roleAllows(caller.role, 'billing')) {
      return sendError(res, 403, 'FORBIDDEN', `the chargeback export needs a key with role billing (or admin); this key's role is ${caller.role}`);
    }

    const params = new URL(req.url ?? '/', 'http://x').searchParams;
    const period = parsePeriod(params.get('period'));
    if (!period) return sendError(res, 400, 'BAD_USER_INPUT', `period must be a month as YYYY-MM (1970-01 to 2261-12), got ${JSON.stringify(params.get('period'))}`, 'period');
    const groupByText = params.get('groupBy') ?? DEFAULT_GROUP_BY;
    const groupBy = parseGroupByList(groupByText);
    if (!groupBy) {
      return sendError(res, 400, 'BAD_USER_INPUT', `groupBy must be a comma-separated list of costCentre, account, agent, service, tool, day, month (each once), got ${JSON.stringify(groupByText)}`, 'groupBy');
    }
    const format = (params.get('format') ?? 'csv') as ExportFormat;
    if (!FORMATS.includes(format)) return sendError(res, 400, 'BAD_USER_INPUT', `format must be one of ${FORMATS.join(', ')}, got ${JSON.stringify(format)}`, 'format');

    let statement;
    try {
      const tenant = caller.tenant;
      statement = await reads.runAs(readerOf(caller), () => buildStatement(reads.client, tenant, period, groupBy));
    } catch (error) {
      if (error instanceof StatementError) return sendError(res, 409, error.code, error.message, 'groupBy');
      // The read queue's and the time limit's refusals: TOO_MANY_REQUESTS (429, Retry-After), QUERY_TIMEOUT.
      const code = error instanceof GraphQLError ? error.extensions.code : undefined;
      if (error instanceof GraphQLError && (code === 'TOO_MANY_REQUESTS' || code === 'QUERY_TIMEOUT')) {
        const http = error.extensions.http as { status?: number; headers?: Record<string, string> } | undefined;
        return sendError(res, http?.status ?? 503, code, error.message, undefined, http?.headers);
      }
      logger.error({ err: error }, 'chargeback export failed');
      return sendError(res, 500, 'INTERNAL_SERVER_ERROR', 'the chargeback could not be computed');
    }
    const extension = format === 'json' ? 'json' : 'csv';
    res.writeHead(200, {
      'Content-Type': CONTENT_TYPE[format],
      'Content-Disposition': `attachment; filename="chargeback-${period.label}${format === 'focus' ? '-focus' : ''}.${extension}"`,
      'Cache-Control': 'no-store',
      'X-Content-Type-Options': 'nosniff',
    });
    if (req.method === 'HEAD') return void res.end();
    try {
      await writeStatement(statement, format, res);
      res.end();
    } catch (error) {
      logger.error({ err: error }, 'writing the chargeback export failed');
      res.destroy();
    }
  };
}
