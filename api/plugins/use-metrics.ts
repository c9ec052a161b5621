/**
 * The API's own figures for `/metrics` (Prometheus text), in the process's one registry: GraphQL
 * requests and their latency per root field, errors per code, and the read scheduler's queue.
 *
 * Labels are bounded and carry nothing of a tenant's: `field` is a root field of the schema's Query
 * type (or `none` when no operation ran: a refused or malformed request), never the client-chosen
 * operation name or alias; `code` is an error code the server chose. An operation selecting several
 * root fields counts once under each, with the whole operation's latency.
 */
import { Kind, type DocumentNode, type GraphQLSchema, type SelectionSetNode } from 'graphql';
import type { Plugin } from 'graphql-yoga';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import type { ReadScheduler } from '../read-scheduler.ts';

export const NO_FIELD = 'none';
const INTROSPECTION = new Set(['__schema', '__type', '__typename']);
const CODE = /^[A-Z][A-Z0-9_]{0,63}$/;

export interface MetricsOptions {
  registry: Registry;
  scheduler?: ReadScheduler;
  /** The lane of the work requests leave running (read-client.ts, detached). */
  background?: ReadScheduler;
}

/** Root fields an operation selects, by their schema names (aliases and fragments resolved), sorted. */
export function rootFields(schema: GraphQLSchema, document: DocumentNode, operationName?: string | null): string[] {
  const operations = document.definitions.filter((d) => d.kind === Kind.OPERATION_DEFINITION);
  const operation = operationName ? operations.find((o) => o.name?.value === operationName) : operations.length === 1 ? operations[0] : undefined;
  if (!operation) return [];
  const root = operation.operation === 'query' ? schema.getQueryType() : operation.operation === 'mutation' ? schema.getMutationType() : schema.getSubscriptionType();
  const known = root?.getFields() ?? {};
  const fragments = new Map(document.definitions.flatMap((d) => (d.kind === Kind.FRAGMENT_DEFINITION ? [[d.name.value, d] as const] : [])));
  const names = new Set<string>();
  const seen = new Set<string>();
  const collect = (set: SelectionSetNode) => {
    for (const selection of set.selections) {
      if (selection.kind === Kind.FIELD) {
        const name = selection.name.value;
        if (Object.hasOwn(known, name) || INTROSPECTION.has(name)) names.add(name);
      } else if (selection.kind === Kind.INLINE_FRAGMENT) {
        collect(selection.selectionSet);
      } else if (!seen.has(selection.name.value)) {
        seen.add(selection.name.value);
        const fragment = fragments.get(selection.name.value);
        if (fragment) collect(fragment.selectionSet);
      }
    }
  };
  collect(operation.selectionSet);
  return [...names].sort();
}

interface Errorish {
  extensions?: { code?: unknown };
}

function errorsOf(result: unknown): Errorish[] {
  if (Array.isArray(result)) return result.flatMap(errorsOf);
  if (result && typeof result === 'object' && 'errors' in result && Array.isArray(result.errors)) return result.errors as Errorish[];
  return [];
}

export function useMetrics({ registry, scheduler, background }: MetricsOptions): Plugin {
  const registers = [registry];
  const requests = new Counter({ name: 'api_graphql_requests_total', help: 'GraphQL requests, per root field selected', labelNames: ['field'], registers });
  const errors = new Counter({ name: 'api_graphql_errors_total', help: 'GraphQL errors answered, per error code', labelNames: ['code'], registers });
  const latency = new Histogram({
    name: 'api_graphql_request_duration_seconds',
    help: 'Time from a GraphQL request read to its result, per root field selected',
    labelNames: ['field'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers,
  });
  /** A gauge read when /metrics is scraped. */
  const gauge = (name: string, help: string, value: () => number) =>
    new Gauge({
      name,
      help,
      registers,
      collect(this: Gauge) {
        this.set(value());
      },
    });
  if (scheduler) {
    gauge('api_reads_running', 'ClickHouse reads running now', () => scheduler.running);
    new Counter({
      name: 'api_reads_cancelled_total',
      help: 'ClickHouse reads dropped unrun because their request went away while they waited',
      registers,
      collect(this: Counter) {
        this.reset();
        this.inc(scheduler.cancelled);
      },
    });
    gauge('api_reads_queued', 'ClickHouse reads waiting for their turn, all callers', () => scheduler.queued());
  }
  if (background) {
    gauge('api_background_reads_running', 'ClickHouse reads running now for work requests left running (cache fills)', () => background.running);
    gauge('api_background_reads_queued', 'ClickHouse reads of work requests left running (cache fills) waiting for their turn', () => background.queued());
  }

  const started = new WeakMap<object, number>();
  const fieldsOf = new WeakMap<object, string[]>();

  return {
    onParams({ request }) {
      started.set(request, performance.now());
    },
    onExecute({ args }) {
      const request = (args.contextValue as { request?: object }).request;
      if (request) fieldsOf.set(request, rootFields(args.schema, args.document, args.operationName));
    },
    onResultProcess({ request, result }) {
      const at = started.get(request);
      if (at === undefined) return; // GraphiQL's page, or already counted
      started.delete(request);
      const seconds = (performance.now() - at) / 1000;
      const fields = fieldsOf.get(request) ?? [];
      for (const field of fields.length > 0 ? fields : [NO_FIELD]) {
        requests.inc({ field });
        latency.observe({ field }, seconds);
      }
      for (const error of errorsOf(result)) {
        const code = error.extensions?.code;
        errors.inc({ code: typeof code === 'string' && CODE.test(code) ? code : 'INTERNAL_SERVER_ERROR' });
      }
    },
  };
}
