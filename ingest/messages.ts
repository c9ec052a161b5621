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
