// Types of scripts/kafka.mjs for the TypeScript tests and benches.
export interface BrokerHandle {
  brokers: string;
  port: number;
  controllerPort: number;
  pid: number;
  dir: string;
  version: string;
}
export const DEFAULT_KAFKA_VERSION: string;
export function findMissingTools(options?: { version?: string }): string[];
export function ensureKafkaJars(version?: string): Promise<string>;
export function startBroker(options?: { version?: string; readyTimeoutMs?: number }): Promise<BrokerHandle>;
export function stopBroker(handle: BrokerHandle, options?: { timeoutMs?: number }): Promise<void>;
export function startBrokerProcess(handle: BrokerHandle, options?: { readyTimeoutMs?: number }): Promise<void>;
export function stopBrokerProcess(handle: BrokerHandle, options?: { signal?: NodeJS.Signals; timeoutMs?: number }): Promise<void>;
export function restartBroker(handle: BrokerHandle, options?: { signal?: NodeJS.Signals; timeoutMs?: number; readyTimeoutMs?: number }): Promise<BrokerHandle>;
export function isRunning(handle: BrokerHandle): boolean;
