/**
 * What the collector's encoder thread spends per tool call (a script, not a test):
 *
 *   npm run bench -- collector-encode
 *
 * Ordinary recorded calls as the gateway's thread posts them (tool-call-wire.ts: slices of 1,000 calls,
 * 50 accounts and sessions, a client name and version), made into their spans' messages and audit
 * records by the encoder's own code (`createToolCallReader`), and the records encoded for Kafka
 * (`createPrepare`). Rounds of 20 slices; median and spread of the rounds.
 *
 * The raw limit beside it, in the same run: the OpenTelemetry serializer (`encodeTraceRequest`, the
 * SDK's protobuf encoding) on the very spans the collector's writer (`writeTraceRequest`) encodes, each
 * 64-span message timed with both, in turn.
 *
 * One thread, no Kafka, no worker: at 10,000 calls/s, each microsecond here is 10 ms of a core per
 * second beside the gateway (collector.bench.ts shows what that does to its p99).
 */
import os from 'node:os';
import type { Attributes } from '@opentelemetry/api';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { ToolCall } from '../collector/tool-call.ts';
import { createToolCallBatch } from '../collector/tool-call-spans.ts';
import { ToolCallWriter, type WireCalls } from '../collector/tool-call-wire.ts';
import { encodeTraceRequest } from '../model/otlp.ts';
import { writeTraceRequest } from '../model/otlp-span-writer.ts';
import { printTable, type Row } from './table.ts';
import { callEncoder, collectorRoute, recordedCall } from './tool-calls.ts';

const SLICE = 1_000;
const SLICES = 20;
const ROUNDS = 9;

const route = collectorRoute();
const client = { name: 'claude-desktop', version: '1.2.3' };

/** The `n`th call: 50 accounts and sessions, 20–26 ms. */
function call(n: number, start: number): ToolCall {
  return recordedCall(route, start, { transport: 'http', accountId: `acct-${n % 50}`, client, sessionId: `session-${n % 50}`, requestId: n + 2, durationMs: 20 + (n % 7), requestBytes: 120, responseBytes: 480 });
}

/** A slice of calls, as the gateway's thread posts it. */
function slice(writer: ToolCallWriter, from: number): WireCalls {
  writer.clear();
  const start = performance.now();
  for (let i = 0; i < SLICE; i++) writer.add(call(from + i, start + i / 10));
  return writer.take();
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const spread = (xs: number[]) => `${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)}`;

/** Microseconds per call, per round: the encoder's reader and prepare on posted slices. */
function encoding(): number[] {
  const writer = new ToolCallWriter(SLICE);
  const encode = callEncoder({ audit: 'audit', spans: 'spans' });
  const perCall: number[] = [];
  // Two rounds of warm-up (JIT), not kept.
  for (let round = 0; round < ROUNDS + 2; round++) {
    let elapsed = 0;
    for (let k = 0; k < SLICES; k++) {
      const wire = slice(writer, (round * SLICES + k) * SLICE);
      const started = performance.now();
      const { records, spans } = encode(wire);
      elapsed += performance.now() - started;
      if (records.length !== SLICE || spans.length === 0) throw new Error(`${SLICE} calls made ${records.length} records and ${spans.length} span messages`);
    }
    if (round >= 2) perCall.push((elapsed * 1000) / (SLICES * SLICE));
  }
  return perCall;
}

/** Microseconds per span, per round: the collector's writer and the serializer, on the same 64-span messages in turn. */
function writerAgainstSerializer(): { ours: number[]; theirs: number[] } {
  const ours: number[] = [];
  const theirs: number[] = [];
  let oursMs = 0;
  let theirsMs = 0;
  let spans = 0;
  const batch = createToolCallBatch({
    audit: () => undefined,
    exportSpans: (list: ReadableSpan[]) => {
      // The serializer gets the spans as the SDK hands them over: the recorded span's empty attribute
      // slots (which the writer skips) left out.
      const asSdk = list.map((span) => Object.create(span, { attributes: { value: definedOnly(span.attributes) } }) as ReadableSpan);
      const a = performance.now();
      const written = writeTraceRequest(list);
      const b = performance.now();
      const serialized = encodeTraceRequest(asSdk);
      const c = performance.now();
      if (Buffer.compare(written, Buffer.from(serialized.buffer, serialized.byteOffset, serialized.byteLength)) !== 0) throw new Error('the writer and the serializer wrote different bytes');
      oursMs += b - a;
      theirsMs += c - b;
      spans += list.length;
    },
    onError: fail,
  });
  for (let round = 0; round < ROUNDS + 2; round++) {
    oursMs = theirsMs = spans = 0;
    for (let k = 0; k < SLICES; k++) {
      const start = performance.now();
      for (let i = 0; i < SLICE; i++) batch.add(call((round * SLICES + k) * SLICE + i, start + i / 10));
      batch.flush();
    }
    if (round >= 2) {
      ours.push((oursMs * 1000) / spans);
      theirs.push((theirsMs * 1000) / spans);
    }
  }
  return { ours, theirs };
}

function definedOnly(attributes: Attributes): Attributes {
  const out: Attributes = {};
  for (const key in attributes) if (attributes[key] !== undefined) out[key] = attributes[key];
  return out;
}

function fail(error: unknown): never {
  throw error;
}

console.log(`node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model ?? '?'}), load average at start ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`);
const perCall = encoding();
const { ours, theirs } = writerAgainstSerializer();
const ratios = ours.map((x, k) => x / theirs[k]!);
const rows: Row[] = [
  [`encoder thread, per ordinary tool call: span, ids, audit record, record JSON (${ROUNDS} rounds of ${SLICES * SLICE} calls)`, `median ${median(perCall).toFixed(2)} µs (${spread(perCall)})`, '', ''],
  ['  span message, per span: the collector\'s writer', `median ${median(ours).toFixed(2)} µs (${spread(ours)})`, '', ''],
  ['  the same spans, the OpenTelemetry serializer (raw limit)', `median ${median(theirs).toFixed(2)} µs (${spread(theirs)})`, '', ''],
  ['  writer / serializer', `median ${median(ratios).toFixed(2)} (${spread(ratios)})`, '≤ 1', median(ratios) <= 1 ? 'PASS' : 'FAIL'],
];
printTable(rows);
