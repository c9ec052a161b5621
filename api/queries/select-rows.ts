/**
 * Runs one parameter-bound SELECT and validates every row it returns against the query's row schema:
 * a row that does not have the shape the mapping expects is a bug (or a schema drift) and fails loudly,
 * instead of reaching a client as `undefined`.
 */
import type { ClickHouseClient } from '@clickhouse/client';
import { z } from 'zod';

/** UInt64 arrives as a JSON number or, with `output_format_json_quote_64bit_integers`, as a string. */
export const count = z.coerce.number().pipe(z.number().int().nonnegative());
/** A Float64 that ClickHouse writes as null when it is NaN (e.g. a quantile of no values). */
export const maybeFloat = z.number().nullable();

export async function selectRows<T extends z.ZodType>(
  clickhouse: ClickHouseClient,
  name: string,
  query: string,
  params: Record<string, unknown>,
  row: T,
): Promise<Array<z.output<T>>> {
  const result = await clickhouse.query({ query, query_params: params, format: 'JSONEachRow' });
  const rows = await result.json<unknown>();
  const parsed = z.array(row).safeParse(rows);
  if (!parsed.success) {
    throw new Error(`query ${name} returned rows of an unexpected shape: ${z.prettifyError(parsed.error)}`);
  }
  return parsed.data;
}
