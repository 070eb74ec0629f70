import type { TransportAddress } from '@natkit/stun';
import type { Candidate, LocalCandidate } from '../candidate.js';
import type { IceParameters } from '../formats/parameters.js';

/** RFC 8445 section 6.1.2.6: the states of a candidate pair. */
export type PairState = 'frozen' | 'waiting' | 'in-progress' | 'succeeded' | 'failed';

/**
 * The agent's state, as RTCIceTransport names them:
 * - new: no check yet.
 * - checking: checks are running and no pair is selected.
 * - connected: a pair is selected for every component (data flows); checks or
 *   end-of-candidates may still be outstanding.
 * - completed: connected, checking is over and both sides have signalled end-of-candidates.
 * - disconnected: the selected pair stopped answering consent checks (RFC 7675) for
 *   `disconnectedAfterMs`; consent has not expired yet, and an answer brings it back.
 * - failed: every pair failed and no candidates can come (RFC 8445 section 8.1.2, RFC 8838
 *   section 8), or consent expired (RFC 7675 section 5.1). Only a restart leaves it.
 * - closed: close() was called.
 */
export type IceState = 'new' | 'checking' | 'connected' | 'completed' | 'disconnected' | 'failed' | 'closed';

/** A candidate pair as the core shows it (a snapshot: plain data). */
export interface PairInfo {
  id: number;
  local: LocalCandidate;
  remote: Candidate;
  component: number;
  /** RFC 8445 section 6.1.2.3, computed with the current roles. */
  priority: bigint;
  state: PairState;
  /** In the valid list (RFC 8445 section 7.2.5.3.2). */
  valid: boolean;
  nominated: boolean;
  /** Round-trip time of the last successful check or consent check on this pair, ms. */
  rtt?: number;
}

/** What the owner of a core must do, in order. */
export type IceAction =
  /** Send one datagram out of a candidate base. */
  | { type: 'send'; baseId: number; to: TransportAddress; data: Buffer }
  | { type: 'state'; state: IceState }
  /** The pair application data now goes over (RFC 8445 section 8.1.1 selected pair). */
  | { type: 'selected-pair'; pair: PairInfo }
  /** The role changed after a conflict (RFC 8445 sections 7.3.1.1 and 7.2.5.1) or a lite peer. */
  | { type: 'role'; controlling: boolean }
  /** A peer-reflexive local candidate learned from a response (RFC 8445 7.2.5.3.1); not signalled. */
  | { type: 'local-prflx'; candidate: LocalCandidate }
  /** A peer-reflexive remote candidate learned from a request (RFC 8445 7.3.1.3). */
  | { type: 'remote-prflx'; candidate: Candidate }
  /**
   * The peer restarted (new ufrag/pwd) and so did this agent (RFC 8445 section 9): signal these
   * new local parameters and the local candidates again.
   */
  | { type: 'restart'; parameters: IceParameters };

/** Why a packet was dropped (counted in IceStats.dropped). */
export type DropReason =
  | 'malformed' // not a STUN message, or an attribute that does not decode
  | 'rfc3489' // no magic cookie
  | 'not-binding' // a STUN method other than Binding
  | 'bad-fingerprint' // FINGERPRINT present and wrong
  | 'unknown-transaction' // a response to nothing we sent (or sent too long ago)
  | 'unauthenticated-response' // a response whose MESSAGE-INTEGRITY does not match
  | 'unknown-base' // a request on a base with no local candidate
  | 'stale-ufrag' // a request for the peer's parameters we do not have (yet)
  | 'candidate-limit' // an authenticated check from a new address, answered, but maxRemoteCandidates is reached (no peer-reflexive candidate)
  | 'closed'; // arrived after close

export interface IceStats {
  checksSent: number;
  retransmissions: number;
  requestsReceived: number;
  responsesReceived: number;
  consentRequestsSent: number;
  keepalivesSent: number;
  indicationsReceived: number;
  roleConflicts: number;
  /** Error responses sent, by code (400, 401, 420, 487). */
  errorsSent: Record<number, number>;
  dropped: Record<DropReason, number>;
}

export interface IceCoreOptions {
  /**
   * Start as the controlling agent (RFC 8445 section 6.1.1: the initiator). Default true.
   * If both peers pick the same role the conflict is repaired (RFC 8445 section 7.3.1.1);
   * a full agent facing an ICE-lite peer is always controlling.
   */
  controlling?: boolean;
  /** This agent's parameters; generated (8-char ufrag, 24-char pwd) when absent. */
  localParameters?: { ufrag: string; pwd: string };
  /** Be an ICE-lite agent (RFC 8445 section 2.5): answer checks, never send them. Default false. */
  lite?: boolean;
  /** RFC 8445 section 7.1.1: the 64-bit tie-breaker; random by default. */
  tieBreaker?: bigint;
  /** RFC 8445 section 14.2: pacing of new checks, ms. Default 50, at least 5 (14.2's floor). */
  ta?: number;
  /**
   * Regular nomination (RFC 8445 section 8.1.1; default): the controlling agent nominates the
   * best valid pair once no better pair can still succeed. 'aggressive' (RFC 5245 section
   * 8.1.1.2): every check carries USE-CANDIDATE, and the selection moves to a better pair
   * while checks go on.
   */
  nomination?: 'regular' | 'aggressive';
  /** RFC 8445 section 6.1.2.5: the most pairs in the checklist. Default 100. */
  maxPairs?: number;
  /** Remote candidates accepted per ICE session. Default 100. */
  maxRemoteCandidates?: number;
  /** Number of components (RFC 8445 section 2); every one needs a selected pair. Default 1. */
  components?: number;
  /** RFC 8445 section 14.3: lower bound of the check RTO, ms. Default 500 (its minimum). */
  rtoMin?: number;
  /** RFC 8489 section 6.2.1 for checks: Rc (requests sent in all) and Rm. Defaults 7 and 16. */
  rc?: number;
  rm?: number;
  /**
   * A better pair still checking holds back the nomination of a valid one until its check
   * has been sent this many times unanswered (the first send and retransmissions at the RTO
   * schedule) and the last send has had twice the valid pair's round-trip time, or fails, or
   * succeeds. Default 2: a check unanswered for one full RTO (RFC 8445 14.3, 500 ms) and its
   * retransmission for two RTTs is presumed blocked. There is no per-candidate-type wait.
   */
  nominationPatience?: number;
  /** RFC 7675 consent freshness; false turns it off (keepalives still run). */
  consent?:
    | false
    | {
        /** Base period between consent checks, randomised to 0.8-1.2 times; default 5000 (RFC 7675 5.1). */
        intervalMs?: number;
        /** Consent expires this long after the last answer; default 30000 (RFC 7675 5.1). */
        expiryMs?: number;
      };
  /** State 'disconnected' after this long without an answer to a consent check. Default 12500. */
  disconnectedAfterMs?: number;
  /** RFC 8445 section 11: Tr, a Binding indication when nothing was sent for this long. Default 15000. */
  keepaliveMs?: number;
  /** Random numbers in [0, 1) (consent jitter). Default Math.random. */
  random?: () => number;
  /** Random bytes (transaction ids, tie-breaker, parameters). Default node:crypto. */
  randomBytes?: (n: number) => Uint8Array;
}
