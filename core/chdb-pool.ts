/**
 * The embedded engine's connection for @clickhouse/client: one or more chDB connections to one data
 * directory, with query parameters written into the statement.
 *
 * chDB sends every parameterised statement of the process through one chain (chdb's index.js,
 * `globalParamChain`: its binder is not safe under parallel use), while statements without parameters
 * run in parallel on distinct connections. So the API's reads waited in line behind each other and behind
 * every other parameterised statement of the process. Here each `{name:Type}` placeholder becomes
 * `_CAST(<literal>, 'Type')`, what a ClickHouse server substitutes for it, and statements go to the
 * connection with the shortest line.
 *
 * A chDB connection is a session that runs one statement at a time, and settings passed with a call are
 * SET statements that hold for the session; each connection here runs its statements in the order they
 * were sent, and a call's settings are SET only when they differ from what its session already holds.
 */
import type { Readable } from 'node:stream';
import { createChdbConnection, type Connection } from 'chdb/connection';

type ChdbConnection = Connection<Readable>;
type Settings = Record<string, unknown>;

interface Member {
  connection: ChdbConnection;
  /** The last statement sent: the next one starts after it settles. */
  tail: Promise<unknown>;
  /** Statements sent and not yet settled. */
  queued: number;
  /** Settings this session holds (as sent), so they are not SET again. */
  settings: Map<string, string>;
}

export interface ChdbPoolOptions {
  path: string;
  /** Connections to the data directory (statements run in parallel across them). */
  connections: number;
  /** Statements every connection runs once before any other (USE, SET). */
  setup: string[];
}

export async function createChdbPool({ path, connections, setup }: ChdbPoolOptions): Promise<ChdbConnection> {
  if (!Number.isInteger(connections) || connections < 1) throw new RangeError(`connections must be a whole number ≥ 1, not ${connections}`);
  const members: Member[] = [];
  for (let i = 0; i < connections; i++) {
    // chdb types its Connection against @clickhouse/client-common, the client bundles its own copy.
    const connection = createChdbConnection({ path }) as unknown as ChdbConnection;
    for (const query of setup) await connection.command({ query });
    members.push({ connection, tail: Promise.resolve(), queued: 0, settings: new Map() });
  }

  /** Runs `call` on the connection with the fewest statements waiting, after those. */
  function run<P extends { query: string; query_params?: Record<string, unknown>; clickhouse_settings?: Settings }, R>(
    params: P,
    call: (connection: ChdbConnection, params: P) => Promise<R>,
  ): Promise<R> {
    const query = params.query_params ? inlineParameters(params.query, params.query_params) : params.query;
    const member = members.reduce((best, m) => (m.queued < best.queued ? m : best));
    member.queued++;
    const result = member.tail.then(() => {
      const changed = changedSettings(member, params.clickhouse_settings);
      return call(member.connection, { ...params, query, query_params: undefined, clickhouse_settings: changed }).then(
        (value) => {
          for (const [name, value_] of Object.entries(changed)) member.settings.set(name, String(value_));
          return value;
        },
        (error: unknown) => {
          // Whether the SETs ran before the statement failed is unknown: send them again next time.
          for (const name of Object.keys(changed)) member.settings.delete(name);
          throw error;
        },
      );
    });
    member.tail = result.then(
      () => undefined,
      () => undefined,
    ).finally(() => member.queued--);
    return result;
  }

  return {
    query: (params) => run(params, (c, p) => c.query(p)),
    command: (params) => run(params, (c, p) => c.command(p)),
    exec: (params) => run(params, (c, p) => c.exec(p)),
    insert: (params) => run(params, (c, p) => c.insert(p)),
    ping: (params) => members[0]!.connection.ping(params),
    close: async () => {
      await Promise.all(members.map((m) => m.tail));
      for (const m of members) await m.connection.close();
    },
  };
}

function changedSettings(member: Member, settings: Settings | undefined): Settings {
  const changed: Settings = {};
  for (const [name, value] of Object.entries(settings ?? {})) {
    if (value !== undefined && member.settings.get(name) !== String(value)) changed[name] = value;
  }
  return changed;
}

const PLACEHOLDER = /\{([A-Za-z_][A-Za-z0-9_]*):([^{}]+)\}/y;

/**
 * `sql` with each `{name:Type}` placeholder outside string literals, quoted names and comments replaced
 * by `_CAST(<the value as a literal>, 'Type')`. A placeholder without a value is an error, as it is for
 * a server (UNKNOWN_QUERY_PARAMETER).
 */
export function inlineParameters(sql: string, values: Record<string, unknown>): string {
  let out = '';
  let last = 0;
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    if (c === "'" || c === '"' || c === '`') {
      i = endOfQuoted(sql, i, c);
    } else if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end < 0 ? sql.length : end + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end < 0 ? sql.length : end + 2;
    } else if (c === '{') {
      PLACEHOLDER.lastIndex = i;
      const match = PLACEHOLDER.exec(sql);
      if (!match) {
        i++;
        continue;
      }
      const [text, name, type] = match as unknown as [string, string, string];
      if (!Object.hasOwn(values, name)) throw new Error(`Substitution \`${name}\` is not set (query parameter missing)`);
      out += `${sql.slice(last, i)}_CAST(${literal(values[name])}, ${quote(type.trim())})`;
      i += text.length;
      last = i;
    } else {
      i++;
    }
  }
  return out + sql.slice(last);
}

/** The index after the quoted text that starts at `start` (backslash escapes and doubled quotes). */
function endOfQuoted(sql: string, start: number, quoteChar: string): number {
  let i = start + 1;
  while (i < sql.length) {
    if (sql[i] === '\\') i += 2;
    else if (sql[i] === quoteChar) {
      if (sql[i + 1] === quoteChar) i += 2;
      else return i + 1;
    } else i++;
  }
  return i;
}

const ESCAPES: Record<string, string> = { '\\': '\\\\', "'": "\\'", '\0': '\\0', '\b': '\\b', '\f': '\\f', '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function quote(text: string): string {
  return `'${text.replace(/[\\'\0\b\f\n\r\t]/g, (c) => ESCAPES[c]!)}'`;
}

/** A ClickHouse literal of a parameter's value: the types the client's query parameters take. */
function literal(value: unknown): string {
  if (value === null || value === undefined) return 'NULL';
  if (typeof value === 'string') return quote(value);
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError(`query parameter is not a finite number: ${value}`);
    if (Number.isInteger(value) && !Number.isSafeInteger(value)) throw new TypeError(`query parameter ${value} is beyond ±2^53: pass a bigint or a string`);
    return String(value);
  }
  if (Array.isArray(value)) return `[${value.map(literal).join(', ')}]`;
  throw new TypeError(`query parameter of type ${Object.prototype.toString.call(value)} cannot be written as a literal`);
}
