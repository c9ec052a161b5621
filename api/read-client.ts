/**
 * The ClickHouse client the API's resolvers get: the same `ClickHouseClient` interface, so query modules
 * and `selectRows` are unchanged, but every `query` and `command` it runs (commands: the aggregates'
 * cache fills, api/queries/closed-buckets.ts)
 *  - waits for its caller's turn in the fair read scheduler (./read-scheduler.ts), the caller being the
 *    one whose GraphQL operation is executing (`runAs`, set by ./plugins/use-read-scheduling.ts), and
 *    leaves the queue unrun when that request goes away first;
 *  - carries ClickHouse's per-statement time limit, `max_execution_time`, and its threads, `max_threads`;
 *  - when that limit fires (ClickHouse error 159, TIMEOUT_EXCEEDED, decided by code) answers the GraphQL
 *    error QUERY_TIMEOUT instead of a masked "Unexpected error.".
 * Reads outside any operation (none today) share one queue, ANONYMOUS.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import type { ClickHouseClient } from '@clickhouse/client';
import { createGraphQLError } from 'graphql-yoga';
import { errorCode, withStatements } from '../core/clickhouse.ts';
import type { ReadScheduler } from './read-scheduler.ts';

export const ANONYMOUS = '';
/** ClickHouse's TIMEOUT_EXCEEDED: a statement ran longer than its `max_execution_time`. */
export const TIMEOUT_EXCEEDED = 159;

export interface ReadClientOptions {
  scheduler: ReadScheduler;
  /** The lane of `detached` work, beside `scheduler`'s reads; `scheduler` when omitted. */
  background?: ReadScheduler;
  /** Longest one statement may run in ClickHouse, in milliseconds. */
  timeoutMs: number;
  /** Threads ClickHouse gives one statement (`max_threads`); its own default (the cores) when omitted. */
  threads?: number;
}

export interface ReadClient {
  /** Pass this wherever a query module expects a ClickHouseClient. */
  client: ClickHouseClient;
  /**
   * Runs `work`; every read it starts, however deep in its async calls, is scheduled as `caller`'s,
   * and dropped while it waits once `signal` (the request's) aborts.
   */
  runAs<T>(caller: string, work: () => T, signal?: AbortSignal): T;
  /**
   * Runs `work` not bound to the current request, for reads that outlive it, as a caller of its own
   * (`<caller>#background`) in the `background` lane: a fill of the aggregates' cache (one statement of
   * up to ~200 ms on the 10M-event set) then never holds a place the requests' reads wait for, nor jumps
   * ahead of another caller's background work.
   */
  detached<T>(work: () => T): T;
}

export function queryTimeout(timeoutMs: number) {
  return createGraphQLError(`The query took longer than the API allows one statement to run (${timeoutMs} ms); ask for a shorter range or fewer rows.`, {
    extensions: { code: 'QUERY_TIMEOUT', limit: timeoutMs },
  });
}


export function createReadClient(clickhouse: ClickHouseClient, { scheduler, background = scheduler, timeoutMs, threads }: ReadClientOptions): ReadClient {
  const readerOf = new AsyncLocalStorage<{ caller: string; signal?: AbortSignal; detached?: true }>();
  const settings = {
    // Seconds, fractions allowed. On the embedded engine each setting is a SET before the statement
    // that holds for the client's session: bin/start.ts gives the API a client of its own.
    max_execution_time: timeoutMs / 1000,
    // From a server, an error while the result streams would arrive inside a 200 body, not as a
    // coded error: the server answers once the statement is done (results here are small).
    wait_end_of_query: 1,
    // The engine compiles an expression (JIT) after its third use by default, so the compile lands on
    // some caller's third or fourth request. The API's statement shapes are few and repeated, and the
    // compiled cache is process-wide: compile on first use, the request that meets a shape first pays.
    min_count_to_compile_expression: '0',
    min_count_to_compile_aggregate_expression: '0',
    // The API's reads are a few granules each (rollups, cached buckets, look-ups by key) and several run
    // at once: a statement split over every core pays the threads' start and merge for little to split,
    // and takes cores another read is waiting for.
    ...(threads === undefined ? {} : { max_threads: threads }),
  } as const;

  const scheduled = <T>(run: () => Promise<T>): Promise<T> => {
    const reader = readerOf.getStore();
    return (reader?.detached ? background : scheduler).run(
      reader?.caller ?? ANONYMOUS,
      async () => {
        try {
          return await run();
        } catch (error) {
          if (errorCode(error) === TIMEOUT_EXCEEDED) throw queryTimeout(timeoutMs);
          throw error;
        }
      },
      reader?.signal,
    );
  };
  const query: ClickHouseClient['query'] = (params) =>
    scheduled(() => clickhouse.query({ ...params, clickhouse_settings: { ...settings, ...params.clickhouse_settings } })) as ReturnType<ClickHouseClient['query']>;
  const command: ClickHouseClient['command'] = (params) =>
    scheduled(() => clickhouse.command({ ...params, clickhouse_settings: { ...settings, ...params.clickhouse_settings } }));

  const client = withStatements(clickhouse, { query, command });

  return {
    client,
    runAs: (caller, work, signal) => readerOf.run({ caller, signal }, work),
    detached: (work) => readerOf.run({ caller: `${readerOf.getStore()?.caller ?? ANONYMOUS}#background`, detached: true }, work),
  };
}
