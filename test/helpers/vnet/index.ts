// The virtual network: an in-memory internet with NAT routers of every RFC 4787 behaviour,
// links with delay and loss, driven by a manual clock. See network.ts for the overview.
export * from './clock.js';
export * from './rng.js';
export * from './core.js';
export * from './host.js';
export * from './nat.js';
export * from './network.js';
export * from './lab.js';
export * from './prober.js';
export * from './predict.js';
export * from './servers.js';
