// @natkit/ice: the ICE (RFC 8445) agent: gathering, candidate formats, checks, nomination.
export * from './candidate.js';
export type * from './base.js';
export * from './gather/index.js';
export * from './formats/errors.js';
export * from './formats/candidate-line.js';
export * from './formats/parameters.js';
export * from './formats/jingle.js';
export * from './core/errors.js';
export type * from './core/types.js';
export * from './core/core.js';
export * from './mdns/resolver.js';
export type * from './agent/gatherer-like.js';
export * from './agent/agent.js';
