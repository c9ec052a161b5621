/**
 * Runs each operation's execution as its caller's, so every ClickHouse read its resolvers start waits
 * for that caller's turn in the fair read scheduler (../read-client.ts, ../read-scheduler.ts), and is
 * dropped while it waits if the request goes away. The caller is the API key (its tenant and name), or
 * the one loopback caller when no keys are configured.
 */
import type { Plugin } from 'graphql-yoga';
import type { ApiContext, Caller } from '../context.ts';
import { ANONYMOUS, type ReadClient } from '../read-client.ts';

export function readerOf(caller: Caller | undefined): string {
  return caller ? `${caller.tenant}/${caller.name}` : ANONYMOUS;
}

export function useReadScheduling(reads: Pick<ReadClient, 'runAs'>): Plugin<ApiContext> {
  return {
    onExecute({ executeFn, setExecuteFn }) {
      setExecuteFn((args) => {
        const context = args.contextValue as ApiContext & { request?: Request };
        return reads.runAs(readerOf(context.caller), () => executeFn(args), context.request?.signal);
      });
    },
  };
}
