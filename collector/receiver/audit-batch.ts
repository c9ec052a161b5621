/**
 * The body of `POST /v1/audit` → validated audit events, and the records refused with their reasons.
 * `application/json` is one record or an array of records; NDJSON (`application/x-ndjson`,
 * `application/jsonl`) is one record per non-empty line, and a line that is not JSON is one refused
 * record, not a refused request.
 */
import { normalizeAuditRecord, type AuditEvent } from '../../model/audit-event.ts';
import type { Issue } from '../../model/issues.ts';
import type { TimeWindow } from '../../model/time-window.ts';
import { HttpError } from './respond.ts';

export type AuditFormat = 'json' | 'ndjson';

export const AUDIT_FORMATS: Readonly<Record<string, AuditFormat>> = {
  'application/json': 'json',
  'application/x-ndjson': 'ndjson',
  'application/jsonl': 'ndjson',
};

export interface RejectedRecord {
  /** Position of the record in the array, or among the non-empty lines of NDJSON; from 0. */
  index: number;
  errors: Issue[];
}

export interface AuditBatch {
  events: AuditEvent[];
  rejected: RejectedRecord[];
}

export interface AuditBatchOptions {
  tenant: string;
  maxRecords: number;
  /** The timestamps accepted; unset: any. */
  timeWindow?: TimeWindow;
}

/** Throws HttpError 400 when a JSON body is not JSON at all, 413 over `maxRecords`. */
export function parseAuditBatch(body: Buffer, format: AuditFormat, options: AuditBatchOptions): AuditBatch {
  const text = stripBom(body.toString('utf8'));
  const records = format === 'json' ? jsonRecords(text) : ndjsonLines(text);
  if (records.length > options.maxRecords) {
    throw new HttpError(
      413,
      `too many records: ${records.length} in one request, over the limit of ${options.maxRecords} (RECEIVER_MAX_RECORDS); send smaller batches`,
      { limit: options.maxRecords },
    );
  }

  const batch: AuditBatch = { events: [], rejected: [] };
  const normalizeOptions = { tenant: options.tenant, timeWindow: options.timeWindow };
  for (let index = 0; index < records.length; index++) {
    let record = records[index];
    if (format === 'ndjson') {
      try {
        record = JSON.parse(record as string);
      } catch (error) {
        batch.rejected.push({ index, errors: [{ path: '', message: `line is not valid JSON: ${(error as Error).message}` }] });
        continue;
      }
    }
    const result = normalizeAuditRecord(record, normalizeOptions);
    if (result.ok) batch.events.push(result.value);
    else batch.rejected.push({ index, errors: result.issues });
  }
  return batch;
}

function jsonRecords(text: string): unknown[] {
  if (text.trim() === '') throw new HttpError(400, 'the body is empty; send a JSON audit record or an array of them');
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (error) {
    const hint = /\}[ \t\r]*\n\s*\{/.test(text) ? '; for one record per line, send Content-Type: application/x-ndjson' : '';
    throw new HttpError(400, `the body is not valid JSON: ${(error as Error).message}${hint}`);
  }
  if (Array.isArray(parsed)) return parsed;
  if (typeof parsed === 'object' && parsed !== null) return [parsed];
  throw new HttpError(400, `the body must be a JSON object (one audit record) or an array of them, not ${parsed === null ? 'null' : typeof parsed}`);
}

function ndjsonLines(text: string): string[] {
  return text.split('\n').filter((line) => /\S/.test(line));
}

function stripBom(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}
