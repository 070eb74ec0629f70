// @natkit/ice: the ICE (RFC 8445) agent: gathering, candidate formats, checks, nomination.
export * from './candidate.js';
export type * from './base.js';
export * from './gather/index.js';
