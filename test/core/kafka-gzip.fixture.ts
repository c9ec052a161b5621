// Run as a worker by kafka-gzip.test.ts: switches this thread's kafkajs to gzip in the thread, then
// reports whether kafkajs's gzip codec settles without a turn of the event loop (no thread-pool trip),
// the bytes it makes of `sample`, and, given brokers, publishes `messages` gzipped to `topic`.
import { parentPort, workerData } from 'node:worker_threads';
import kafkajs from 'kafkajs';
import { createKafka, createKafkaPublisher, gzipInCallingThread } from '../../core/kafka.ts';
import { createLogger } from '../../core/logger.ts';
import { settlesInMicrotasks } from './kafka-gzip-settles.ts';

const { brokers, topic, sample, messages } = workerData as { brokers?: string[]; topic?: string; sample: string; messages: string[] };

gzipInCallingThread();
const codec = kafkajs.CompressionCodecs[kafkajs.CompressionTypes.GZIP]();
const inThread = await settlesInMicrotasks(codec.compress({ buffer: Buffer.from(sample) }));
const compressed: Buffer = await codec.compress({ buffer: Buffer.from(sample) });

if (brokers && topic) {
  const logger = createLogger('silent');
  const publisher = createKafkaPublisher(createKafka({ brokers, clientId: 'gzip-fixture', logger }), { logger });
  await publisher.send(topic, messages.map((value, i) => ({ key: String(i), value: Buffer.from(value) })));
  await publisher.disconnect();
}
parentPort!.postMessage({ inThread, compressed });
