// kafkajs 2.2.4 (its last release) checks a connection's pending requests after every answer and then
// arms a timer to check them again, even when none is pending and nothing is throttled: the delay,
// `throttledUntil - Date.now()`, is then -1 - now, which Node runs after 1 ms and, from Node 24, reports
// as a TimeoutNegativeWarning on stderr. So every broker connection woke its thread each millisecond for
// as long as it was open (tulios/kafkajs#1751; the fixes proposed upstream, #1755 and #1768, are not
// released). With nothing pending and no throttle there is nothing to check: no timer. A request queued
// later arms its own check (RequestQueue.push), and a throttle still gets its timer.
//
// Plain JavaScript, loaded for its effect by core/kafka.ts and by scripts/kafka.mjs (the test broker's
// probes), which runs without tsx.
import { createRequire } from 'node:module';

// A kafkajs whose request queue is laid out otherwise is left as it is: test/core/kafka-idle.test.ts
// says whether it still arms the timer.
const require = createRequire(import.meta.url);
const prototype = requestQueuePrototype();
const schedule = prototype?.scheduleCheckPendingRequests;

if (typeof schedule === 'function') {
  prototype.scheduleCheckPendingRequests = function scheduleCheckPendingRequests() {
    if (this.pending.length === 0 && this.throttledUntil <= Date.now()) return;
    schedule.call(this);
  };
}

function requestQueuePrototype() {
  try {
    return require('kafkajs/src/network/requestQueue/index.js').prototype;
  } catch (error) {
    if (error?.code === 'MODULE_NOT_FOUND') return undefined;
    throw error;
  }
}
