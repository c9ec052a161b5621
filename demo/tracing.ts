/**
 * The demo gateway's OpenTelemetry setup, as a gateway would have it: a tracer provider whose spans go
 * to the collector's span processor, and a context manager so the spans a tool opens (its database
 * query, its call to a payment provider) are children of the collector's `mcp.tool.call` span.
 *
 * The context manager is the few lines of `@opentelemetry/context-async-hooks` the demo needs
 * (AsyncLocalStorage), to keep that package out of the product's dependencies.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { context, ROOT_CONTEXT, trace, type Context, type ContextManager } from '@opentelemetry/api';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, type SpanProcessor } from '@opentelemetry/sdk-trace-base';

export class AsyncLocalStorageContextManager implements ContextManager {
  private readonly storage = new AsyncLocalStorage<Context>();

  active(): Context {
    return this.storage.getStore() ?? ROOT_CONTEXT;
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(ctx: Context, fn: F, thisArg?: ThisParameterType<F>, ...args: A): ReturnType<F> {
    return this.storage.run(ctx, () => fn.apply(thisArg, args));
  }

  bind<T>(ctx: Context, target: T): T {
    if (typeof target !== 'function') return target;
    const fn = target as unknown as (...args: unknown[]) => unknown;
    const manager = this;
    return function (this: unknown, ...args: unknown[]) {
      return manager.with(ctx, () => fn.apply(this, args));
    } as unknown as T;
  }

  enable(): this {
    return this;
  }

  disable(): this {
    this.storage.disable();
    return this;
  }
}

/** Installs the global context manager and tracer provider; returns the provider. */
export function setUpTracing(spanProcessor: SpanProcessor, serviceName: string): BasicTracerProvider {
  context.setGlobalContextManager(new AsyncLocalStorageContextManager());
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': serviceName, 'service.version': '0.1.0' }),
    spanProcessors: [spanProcessor],
  });
  trace.setGlobalTracerProvider(provider);
  return provider;
}
