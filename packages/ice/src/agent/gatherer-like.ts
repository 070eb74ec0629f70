import type { CandidateBase } from '../base.js';
import type { LocalCandidate } from '../candidate.js';

/**
 * The part of the Gatherer (src/gather) the agent uses: trickled candidates, end of
 * candidates, the bases that send and receive, and close. Any object of this shape can
 * stand in for it (a test double, a gatherer over the virtual network).
 */
export interface GathererLike {
  /**
   * 'candidate' (a LocalCandidate, trickled), 'complete' (end-of-candidates) and 'base-closed'
   * (a CandidateBase that can no longer send or receive: a TURN allocation lost after gathering).
   */
  on(event: 'candidate' | 'complete' | 'base-closed', listener: (...args: any[]) => void): unknown;
  off(event: 'candidate' | 'complete' | 'base-closed', listener: (...args: any[]) => void): unknown;
  /** Starts gathering; resolves at end-of-candidates. */
  gather(): Promise<unknown>;
  readonly candidates: readonly LocalCandidate[];
  readonly bases: readonly CandidateBase[];
  base(id: number): CandidateBase | undefined;
  /** Closes every base (sockets, TURN allocations). */
  close(): Promise<void>;
}
