// @natkit/stun/cli: what natkit's binaries share (and yours may use): the strict flag
// parser, the logger, the metrics endpoint, and running on every core.
export * from './args.js';
export * from './log.js';
export * from './metrics.js';
export * from './workers.js';
