/**
 * Limits on the shape of every operation, checked before anything executes, with GraphQL Armor's envelop
 * plugins: tokens while parsing (5,000 nested braces stop at the 1,001st token), then depth, aliases,
 * directives and cost while validating. Each refusal is a GraphQL error with its own code, the limit,
 * and HTTP 400 whatever the caller accepts.
 *
 * The limits sit well above what the dashboard sends (its operation: 126 tokens today) and GraphiQL's
 * introspection (183 tokens; introspection is exempt from depth and cost), and far below the abuse
 * they stop: 500 aliases of `auditLog(limit: 1000)` in one request.
 */
import { EnvelopArmorPlugin } from '@escape.tech/graphql-armor';
import { GraphQLError, type ValidationContext } from 'graphql';
import { createGraphQLError, type Plugin } from 'graphql-yoga';

export const LIMITS = {
  /** Lexical tokens in the document (names, punctuation, values); Armor's default. */
  tokens: { n: 1000, code: 'TOO_MANY_TOKENS' },
  /** Nesting of selections, fragments included. */
  depth: { n: 10, code: 'QUERY_TOO_DEEP' },
  /** Aliased fields in one operation: each alias of a root field is one more ClickHouse query. */
  aliases: { n: 20, code: 'TOO_MANY_ALIASES' },
  /** Directives (`@include`, `@skip`, …) in one operation. */
  directives: { n: 20, code: 'TOO_MANY_DIRECTIVES' },
  /**
   * GraphQL Armor's cost: 1 per scalar, 2 per object, ×1.5 per level of depth, × `first`/`last` on a
   * list field. One `first: 500` page of 20 node fields costs ~40,000.
   */
  cost: { n: 50_000, code: 'QUERY_TOO_COSTLY' },
} as const;

export type LimitName = keyof typeof LIMITS;

const CODES = new Set<unknown>(Object.values(LIMITS).map((l) => l.code));

function refused(code: string, message: string, limit?: number): GraphQLError {
  return createGraphQLError(`${message} See "Limits" in the README.`, {
    extensions: { code, ...(limit !== undefined && { limit }), http: { status: 400 } },
  });
}

/** Armor's message ("Syntax Error: Query depth limit of 10 exceeded, found 12.") with our code. */
function refusal(limit: LimitName, armorError: GraphQLError): GraphQLError {
  return refused(LIMITS[limit].code, armorError.message.replace(/^Syntax Error: /, ''), LIMITS[limit].n);
}

/** Armor reports through these callbacks; the refusal is ours (propagateOnRejection: false). */
function reportTo(limit: LimitName) {
  return {
    propagateOnRejection: false,
    onReject: [(context: ValidationContext | null, error: GraphQLError) => context?.reportError(refusal(limit, error))],
  };
}

function armor(): Plugin {
  return EnvelopArmorPlugin({
    maxTokens: {
      n: LIMITS.tokens.n,
      // While parsing there is no validation context to report to: throwing stops the lexer.
      propagateOnRejection: false,
      onReject: [
        (_, error) => {
          throw refusal('tokens', error);
        },
      ],
    },
    maxDepth: { n: LIMITS.depth.n, ...reportTo('depth') },
    maxAliases: { n: LIMITS.aliases.n, ...reportTo('aliases') },
    maxDirectives: { n: LIMITS.directives.n, ...reportTo('directives') },
    costLimit: { maxCost: LIMITS.cost.n, ...reportTo('cost') },
  });
}

/**
 * graphql-js parses recursively. Within the token limit the stack holds in every case measured, but how
 * deep it can go depends on the stack left to the request: should it run out, the operation is refused
 * as too deep instead of answering 500.
 */
const parsedWithinStack: Plugin = {
  onParse({ parseFn, setParseFn }) {
    setParseFn((source, options) => {
      try {
        return parseFn(source, options);
      } catch (error) {
        if (error instanceof RangeError) throw refused(LIMITS.depth.code, 'The operation is nested too deeply to parse.');
        throw error;
      }
    });
  },
};

function errorsOf(result: unknown): readonly GraphQLError[] {
  if (Array.isArray(result)) return result.flatMap(errorsOf);
  return result && typeof result === 'object' && 'errors' in result && Array.isArray(result.errors) ? result.errors : [];
}

/**
 * Armor's plugins (tokens, depth, aliases, directives, cost) with our refusals; Armor's field-suggestion
 * blocking stays on too ("Did you mean …" is removed from validation messages).
 */
export function useLimits(): Plugin {
  return {
    onPluginInit({ addPlugin }) {
      addPlugin(armor());
      addPlugin(parsedWithinStack); // after Armor's, so it wraps Armor's parser
    },
    onResultProcess({ result }) {
      // Yoga marks parse and validation errors `spec` (after any plugin's hooks), which answers 200 to
      // `application/json` callers: a refused operation is a bad request whatever the caller accepts.
      for (const error of errorsOf(result)) {
        const extensions = error.extensions as { code?: unknown; http?: { spec?: boolean } };
        if (CODES.has(extensions.code) && extensions.http) extensions.http.spec = false;
      }
    },
  };
}
