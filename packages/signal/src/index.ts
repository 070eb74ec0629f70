// @natkit/signal: signalserver (the libjingle tutorial's candidate-exchange pipe, rooms with
// a typed JSON protocol, limits, metrics, Redis for several instances) and its client.
export * from './errors.js';
export * from './protocol/messages.js';
export { LineSplitter } from './protocol/lines.js';
export { SignalCore, DEFAULT_LIMITS, type CoreOptions, type Limits, type CoreStats } from './core/core.js';
export { LocalDirectory } from './core/directory.js';
export { Driver, type DriverIo } from './core/driver.js';
export * from './core/types.js';
export { SignalServer, type SignalServerOptions, type LogFn } from './server/server.js';
export type { RedisOptions } from './server/redis.js';
export { signalMetrics } from './server/metrics.js';
export { SignalClient, type SignalClientOptions, type SignalClientEvents, type ReconnectOptions, type ClientState } from './client/client.js';
