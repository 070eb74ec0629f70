// @natkit/turn: the TURN (RFC 8656) relay server and client.
export * from './codec/attributes.js';
export * from './codec/channeldata.js';
export * from './server/policy.js';
export * from './server/auth.js';
export * from './server/allocation.js';
export * from './server/relayports.js';
export * from './server/metrics.js';
export * from './server/server.js';
export * from './client/schedule.js';
export * from './client/client.js';
