import { pino, type Logger } from 'pino';

export type { Logger };

/** Structured JSON logs on stdout, one line per event. */
export function createLogger(level: string, name = 'mcp-analytics'): Logger {
  return pino({ name, level, base: { pid: process.pid } });
}
