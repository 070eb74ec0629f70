// @natkit/stun: the STUN codec (pure), credentials, client transactions, the binding
// server and RFC 5780 NAT behaviour discovery.
export * from './errors.js';
export * from './codec/constants.js';
export * from './codec/ip.js';
export * from './codec/attributes.js';
export * from './codec/message.js';
export * from './codec/encode.js';
export * from './codec/integrity.js';
export { crc32 } from './codec/crc32.js';
export * from './credentials/prep.js';
export * from './credentials/keys.js';
export * from './net/clock.js';
export * from './net/framing.js';
export * from './net/network.js';
export * from './client/transaction.js';
export * from './client/transactions.js';
export * from './client/flow.js';
export * from './client/client.js';
export * from './server/ratelimit.js';
export * from './server/binding.js';
export * from './server/server.js';
export * from './server/metrics.js';
export * from './nat/discovery.js';
export * from './nat/prober.js';
export * from './nat/lifetime.js';
export * from './nat/lifetime-prober.js';
