import type { Clock, Family, InterfaceAddress, Network } from '@natkit/stun';
import type { CandidateBase } from '../base.js';
import type { LocalCandidate } from '../candidate.js';

/** An ICE server as RTCConfiguration.iceServers has it (RFC 7064/7065 URIs). */
export interface IceServerConfig {
  urls: string | string[];
  username?: string;
  credential?: string;
}

/** What the agent passes to the gatherer it makes (/work/notes/ice-contract.md). */
export interface AgentGathererOptions {
  iceServers?: IceServerConfig[];
  network?: Network;
  clock?: Clock;
  component?: number;
  families?: Family[];
  includeLoopback?: boolean;
  includeLinkLocal?: boolean;
  interfaceFilter?: (a: InterfaceAddress) => boolean;
  addresses?: string[];
  policy?: 'all' | 'relay';
  serverTimeoutMs?: number;
}

/**
 * The part of the Gatherer (src/gather) the agent uses: trickled candidates, end of
 * candidates, the bases that send and receive, and close. Any object of this shape can
 * stand in for it (a test double, a gatherer over the virtual network).
 */
export interface GathererLike {
  /** 'candidate' (a LocalCandidate, trickled) and 'complete' (end-of-candidates). */
  on(event: 'candidate' | 'complete', listener: (...args: any[]) => void): unknown;
  off(event: 'candidate' | 'complete', listener: (...args: any[]) => void): unknown;
  /** Starts gathering; resolves at end-of-candidates. */
  gather(): Promise<unknown>;
  readonly candidates: readonly LocalCandidate[];
  readonly bases: readonly CandidateBase[];
  base(id: number): CandidateBase | undefined;
  /** Closes every base (sockets, TURN allocations). */
  close(): Promise<void>;
}
