import { Gatherer } from '../gather/gatherer.js';
import type { AgentGathererOptions, GathererLike } from './gatherer-like.js';

/** The gatherer an IceAgent makes when none is given: src/gather's Gatherer. */
export function defaultGatherer(options: AgentGathererOptions): GathererLike {
  return new Gatherer(options);
}
