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

const require = createRequire(import.meta.url);
const { prototype } = require('kafkajs/src/network/requestQueue/index.js');
const schedule = prototype.scheduleCheckPendingRequests;

prototype.scheduleCheckPendingRequests = function scheduleCheckPendingRequests() {
  if (this.pending.length === 0 && this.throttledUntil <= Date.now()) return;
  schedule.call(this);
};
