/**
 * Retry as a wrapper: jittered exponential backoff until a deadline or an abort. Whether an error is
 * worth retrying is decided from its type and code, never from its message.
 */
import { ClickHouseError } from '@clickhouse/client';
import { sleep } from '../core/sleep.ts';

export interface RetryOptions {
  initialDelayMs?: number;
  maxDelayMs?: number;
  /** Give up after this long (the last error is thrown). Infinity: until aborted. */
  deadlineMs?: number;
  signal?: AbortSignal;
  isRetryable: (error: unknown) => boolean;
  onRetry?: (error: unknown, attempt: number, delayMs: number) => void;
}

export async function retry<T>(operation: () => Promise<T>, options: RetryOptions): Promise<T> {
  const { initialDelayMs = 100, maxDelayMs = 10_000, deadlineMs = Infinity, signal } = options;
  const deadline = Date.now() + deadlineMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await operation();
    } catch (error) {
      if (!options.isRetryable(error) || signal?.aborted) throw error;
      const ceiling = Math.min(maxDelayMs, initialDelayMs * 2 ** (attempt - 1));
      const delayMs = Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
      if (Date.now() + delayMs > deadline) throw error;
      options.onRetry?.(error, attempt, delayMs);
      await sleep(delayMs, signal);
    }
  }
}

/**
 * ClickHouse error codes that mean "these rows can never be inserted as they are": retrying cannot
 * help, the rows must be set aside. Everything else (network errors, timeouts, too many parts,
 * memory limits, a server restarting) is transient.
 */
const PERMANENT_CLICKHOUSE_CODES = new Set([
  6, // CANNOT_PARSE_TEXT
  26, // CANNOT_PARSE_QUOTED_STRING
  27, // CANNOT_PARSE_INPUT_ASSERTION_FAILED
  38, // CANNOT_PARSE_DATE
  41, // CANNOT_PARSE_DATETIME
  53, // TYPE_MISMATCH
  69, // ARGUMENT_OUT_OF_BOUND
  70, // CANNOT_CONVERT_TYPE
  72, // CANNOT_PARSE_NUMBER
  117, // INCORRECT_DATA
  131, // TOO_LARGE_STRING_SIZE
  321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
  376, // CANNOT_PARSE_UUID
  407, // DECIMAL_OVERFLOW
]);

export function isPermanentInsertError(error: unknown): boolean {
  return isClickHouseError(error) && PERMANENT_CLICKHOUSE_CODES.has(Number(error.code));
}

/**
 * An error ClickHouse answered with. From a server it is `@clickhouse/client`'s ClickHouseError; the
 * embedded engine's connection (chdb/connection) throws `@clickhouse/client-common`'s, a class of the
 * same name and shape that `instanceof` does not recognise (the client ships its own copy).
 */
function isClickHouseError(error: unknown): error is ClickHouseError {
  return error instanceof ClickHouseError || (error instanceof Error && error.constructor.name === 'ClickHouseError' && 'code' in error);
}

export function isTransientInsertError(error: unknown): boolean {
  return !isPermanentInsertError(error);
}
