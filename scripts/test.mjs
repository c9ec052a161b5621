#!/usr/bin/env node
// `npm test`: runs test/**/*.test.ts with node:test (via tsx) against one real
// Kafka broker shared by the whole run (see scripts/kafka.mjs).
//
//   npm test                         # every test file
//   npm test -- test/model ingest    # only files whose path contains one of the args
//
// KAFKA_TEST_BROKERS already set: that broker is used and none is started.
// No java/mvn: Kafka tests skip themselves (loud warning); with CI=true that is an error.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { findMissingTools, startBroker, stopBroker } from './kafka.mjs';

const ROOT_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const TEST_DIR = path.join(ROOT_DIR, 'test');
const SIGNAL_EXIT_CODES = { SIGINT: 130, SIGTERM: 143 };

function findTestFiles(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'node_modules' ? [] : findTestFiles(full);
    return entry.isFile() && entry.name.endsWith('.test.ts') ? [full] : [];
  });
}

function selectTestFiles(filters) {
  const files = findTestFiles(TEST_DIR)
    .map((file) => path.relative(ROOT_DIR, file).split(path.sep).join('/'))
    .sort();
  if (filters.length === 0) return files;
  const needles = filters.map((filter) =>
    path.relative(ROOT_DIR, path.resolve(filter)).split(path.sep).join('/'),
  );
  return files.filter((file) => needles.some((needle) => file.includes(needle)));
}

function warnKafkaSkipped(missing) {
  const line = '!'.repeat(78);
  console.error([
    line,
    `!! WARNING: ${missing.join(' and ')} not found on PATH.`,
    '!! Kafka integration tests will be SKIPPED: no broker can be started.',
    '!! Install OpenJDK 17+ and Maven 3 to run them (jars come from Maven Central),',
    '!! or point KAFKA_TEST_BROKERS at an existing broker.',
    line,
  ].join('\n'));
}

function runTests(files, env) {
  const args = ['--import', 'tsx', '--test', '--test-concurrency=1', '--test-timeout=300000', ...files];
  const child = spawn(process.execPath, args, { cwd: ROOT_DIR, env, stdio: 'inherit' });
  const exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve(code ?? SIGNAL_EXIT_CODES[signal] ?? 1));
    child.on('error', (error) => {
      console.error(`Cannot run node --test: ${error.message}`);
      resolve(1);
    });
  });
  return { child, exited };
}

async function main() {
  const files = selectTestFiles(process.argv.slice(2));
  if (files.length === 0) {
    console.error(`No test files under test/ match: ${process.argv.slice(2).join(' ') || '(none found)'}`);
    return 1;
  }

  const env = { ...process.env, KAFKAJS_NO_PARTITIONER_WARNING: '1' };
  let broker = null;
  let brokerStarting = false;
  let testRun = null;
  let interrupted = null;
  let stopping = null;

  // Stops the broker exactly once, whatever ends the run.
  const cleanup = () => {
    stopping ??= broker
      ? stopBroker(broker).catch((error) => console.error(`Stopping Kafka failed: ${error.message}`))
      : Promise.resolve();
    return stopping;
  };
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, async () => {
      interrupted = signal;
      testRun?.child.kill(signal);
      if (brokerStarting) return; // main() stops it as soon as startBroker() returns
      await cleanup();
      process.exit(SIGNAL_EXIT_CODES[signal]);
    });
  }

  if (env.KAFKA_TEST_BROKERS) {
    console.error(`Using the Kafka broker from KAFKA_TEST_BROKERS=${env.KAFKA_TEST_BROKERS}`);
  } else {
    const missing = findMissingTools();
    if (missing.length > 0) {
      warnKafkaSkipped(missing);
      if (process.env.CI === 'true') {
        console.error('CI=true: refusing to skip the Kafka integration tests.');
        return 1;
      }
    } else {
      const startedAt = Date.now();
      brokerStarting = true;
      try {
        broker = await startBroker();
      } catch (error) {
        console.error(`Could not start Kafka for the tests:\n${error.message}`);
        return 1;
      } finally {
        brokerStarting = false;
      }
      if (interrupted) {
        await cleanup();
        return SIGNAL_EXIT_CODES[interrupted];
      }
      env.KAFKA_TEST_BROKERS = broker.brokers;
      const seconds = ((Date.now() - startedAt) / 1000).toFixed(1);
      console.error(`Kafka ${broker.version} ready at ${broker.brokers} (started in ${seconds}s)`);
    }
  }

  try {
    testRun = runTests(files, env);
    return await testRun.exited;
  } finally {
    await cleanup();
  }
}

process.exitCode = await main();
