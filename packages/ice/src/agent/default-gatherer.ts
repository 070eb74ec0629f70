import { IceError } from '../core/errors.js';
import type { AgentGathererOptions, GathererLike } from './gatherer-like.js';

/**
 * The gatherer an IceAgent makes when none is given. The Gatherer of src/gather (ice-gather)
 * is not on this branch yet; until it is merged, pass `options.gatherer`.
 */
export function defaultGatherer(_options: AgentGathererOptions): GathererLike {
  throw new IceError('BAD_OPTION', 'no gatherer on this build: pass options.gatherer (the default Gatherer comes with src/gather)');
}
