/**
 * The ingest's own health in Prometheus text (`/metrics`): consumer lag, rows and rows/s, batch sizes,
 * insert latency, duplicates and dead letters. One registry per worker, no global state.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BatchOutcome } from './pipeline.ts';

export interface IngestMetrics {
  registry: Registry;
  observeBatch(outcome: BatchOutcome, seconds: number): void;
  observeLag(topic: string, partition: number, lag: string): void;
}

export function createIngestMetrics(): IngestMetrics {
  const registry = new Registry();
  const rows = new Counter({ name: 'ingest_rows_total', help: 'Rows stored in ClickHouse', labelNames: ['table'], registers: [registry] });
  const messages = new Counter({ name: 'ingest_messages_total', help: 'Messages consumed and stored or dead-lettered', registers: [registry] });
  const duplicates = new Counter({ name: 'ingest_duplicates_total', help: 'Rows not stored because they were already stored (redeliveries, repeats)', registers: [registry] });
  const deadLetters = new Counter({ name: 'ingest_dead_letters_total', help: 'Messages sent to the dead-letter store', registers: [registry] });
  const batchSize = new Histogram({
    name: 'ingest_batch_messages',
    help: 'Messages per stored batch',
    buckets: [1, 10, 100, 500, 1000, 2500, 5000, 10000, 25000],
    registers: [registry],
  });
  const latency = new Histogram({
    name: 'ingest_batch_store_seconds',
    help: 'Time to store one batch in ClickHouse, retries included',
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [registry],
  });
  const lag = new Gauge({ name: 'ingest_consumer_lag', help: 'Messages behind the partition high watermark', labelNames: ['topic', 'partition'], registers: [registry] });

  // rows/s over the last 10 s, for people reading /metrics without a Prometheus.
  const window: { at: number; rows: number }[] = [];
  new Gauge({
    name: 'ingest_rows_per_second',
    help: 'Rows stored per second over the last 10 seconds',
    registers: [registry],
    collect() {
      const since = Date.now() - 10_000;
      while (window.length > 0 && window[0]!.at < since) window.shift();
      this.set(window.reduce((sum, w) => sum + w.rows, 0) / 10);
    },
  });

  return {
    registry,
    observeBatch(outcome, seconds) {
      rows.inc({ table: 'audit_events_v1' }, outcome.auditRows);
      rows.inc({ table: 'spans_v1' }, outcome.spanRows);
      messages.inc(outcome.messages);
      duplicates.inc(outcome.duplicates);
      deadLetters.inc(outcome.deadLetters);
      batchSize.observe(outcome.messages);
      latency.observe(seconds);
      window.push({ at: Date.now(), rows: outcome.auditRows + outcome.spanRows });
    },
    observeLag(topic, partition, value) {
      lag.set({ topic, partition: String(partition) }, Number(value));
    },
  };
}
