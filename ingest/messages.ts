/** A message as the ingest sees it, from Kafka or from the in-process queue. */
export interface InboundMessage {
  topic: string;
  partition: number;
  /** Kafka offset as a decimal string (int64). */
  offset: string;
  key: Buffer | null;
  value: Buffer;
  headers: Record<string, string>;
}

/** A message the ingest could not use, with its original bytes, its coordinates and why. */
export interface DeadLetter {
  message: InboundMessage;
  reason: string;
}

/** Kafka headers (Buffer, string or arrays of them) as text; the first value of a repeated header. */
export function textHeaders(headers: Record<string, unknown> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(headers ?? {})) {
    const first = Array.isArray(value) ? value[0] : value;
    if (first !== undefined && first !== null) out[key] = Buffer.isBuffer(first) ? first.toString('utf8') : String(first);
  }
  return out;
}
