import { type ClientTransaction, type TransportAddress, canonicalIp, ipFamily } from '@natkit/stun';
import { type Candidate, type LocalCandidate, pairPriority } from '../candidate.js';
import type { IceParameters } from '../formats/parameters.js';
import type { PairInfo, PairState } from './types.js';

/** Internal state of the core: candidate pairs, transactions and ICE sessions (generations). */

/** Local candidates are told apart by base and transport address. */
export function localKey(c: { baseId: number; address: string; port: number }): string {
  return `${c.baseId}|${canonicalIp(c.address)}|${c.port}`;
}

/** Remote candidates by component and transport address (UDP only). */
export function remoteKey(component: number, address: string, port: number): string {
  return `${component}|${canonicalIp(address)}|${port}`;
}

/** Where packets from a remote address arrive: the base and the source. */
export function sourceKey(baseId: number, address: string, port: number): string {
  return `${baseId}|${address}|${port}`;
}

export function toTransportAddress(c: { address: string; port: number }): TransportAddress {
  return { family: ipFamily(c.address) ?? 'IPv4', address: c.address, port: c.port };
}

/** RFC 7675 consent (and RFC 8445 section 11 keepalive) state of a pair that carries data. */
export interface Consent {
  /** The last authenticated answer (or, for a lite agent, authenticated request). */
  lastAnswerAt: number;
  nextCheckAt: number;
  expired: boolean;
}

export class Pair {
  readonly local: LocalCandidate;
  readonly remote: Candidate;
  readonly component: number;
  readonly key: string;
  foundation: string;
  priority = 0n;
  state: PairState = 'frozen';
  /** In the checklist (pairs the agent checks); valid-only pairs (7.2.5.3.2) are not. */
  inChecklist = false;
  /** In the valid list. */
  valid = false;
  nominated = false;
  /** A checklist pair: the valid pair its successful check produced. */
  validPair: Pair | undefined;
  /** A valid pair: the checklist pair whose check produced it (nominations go on that one). */
  generating: Pair | undefined;
  /** Controlled agent: USE-CANDIDATE arrived before this pair succeeded (RFC 8445 7.3.1.5). */
  nominateOnSuccess = false;
  /** Controlling agent: a check with USE-CANDIDATE is queued or in flight (RFC 8445 8.1.1). */
  nominating = false;
  /** Controlling agent: nomination checks of this pair that timed out unanswered. */
  nominationTimeouts = 0;
  /** The last authenticated check from the peer for this pair (its remote, at its base). */
  lastRequestAt = Number.NEGATIVE_INFINITY;
  queued = false;
  /** The check in flight (not a cancelled one). */
  tx: Tx | undefined;
  rtt: number | undefined;
  /** Last time anything (check, consent, keepalive, data) was sent on this pair. */
  lastSentAt = Number.NEGATIVE_INFINITY;
  consent: Consent | undefined;

  constructor(
    readonly id: number,
    local: LocalCandidate,
    remote: Candidate,
  ) {
    this.local = local;
    this.remote = remote;
    this.component = local.component;
    this.key = Pair.keyOf(local, remote);
    this.foundation = `${local.foundation}:${remote.foundation}`;
    this.route = { baseId: local.baseId, to: toTransportAddress(remote) };
  }

  /** Pairs are told apart by their local and remote candidates' keys. */
  static keyOf(local: LocalCandidate, remote: Candidate): string {
    return `${localKey(local)}#${remoteKey(remote.component, remote.address, remote.port)}`;
  }

  /** RFC 8445 section 6.1.2.3: G is the controlling agent's candidate's priority. */
  updatePriority(controlling: boolean): void {
    this.foundation = `${this.local.foundation}:${this.remote.foundation}`;
    this.priority = controlling ? pairPriority(this.local.priority, this.remote.priority) : pairPriority(this.remote.priority, this.local.priority);
  }

  /** Where data for this pair goes: the base and the remote address (built once). */
  readonly route: { readonly baseId: number; readonly to: TransportAddress };

  get remoteAddress(): TransportAddress {
    return this.route.to;
  }

  info(): PairInfo {
    const p: PairInfo = {
      id: this.id,
      local: this.local,
      remote: this.remote,
      component: this.component,
      priority: this.priority,
      state: this.state,
      valid: this.valid,
      nominated: this.nominated,
    };
    if (this.rtt !== undefined) p.rtt = this.rtt;
    return p;
  }
}

/** Highest priority first; then the lower component (RFC 8445 6.1.4.2); then age. */
export function comparePairs(a: Pair, b: Pair): number {
  if (a.priority !== b.priority) return a.priority > b.priority ? -1 : 1;
  return a.component - b.component || a.id - b.id;
}

/**
 * What the core keeps with each STUN transaction it runs on @natkit/stun's TransactionTable
 * (RFC 8489 timers and response matching, shared with StunClient): a connectivity check or
 * a consent check.
 */
export interface Tx {
  kind: 'check' | 'consent';
  pair: Pair;
  session: Session;
  baseId: number;
  to: TransportAddress;
  useCandidate: boolean;
  /** The role when it was sent (RFC 8445 7.2.5.1 compares it on a 487). */
  controlling: boolean;
  /** The PRIORITY sent: a peer-reflexive local candidate learned from the answer gets it. */
  priority: number;
  /**
   * RFC 8445 7.3.1.4: no more retransmissions, and its timeout is no failure, but an answer
   * within the transaction's lifetime still counts. It stays in the table until then.
   */
  cancelled: boolean;
  sentAt: number;
  /** The last (re)transmission. */
  lastSentAt: number;
  /** Its entry in the table (id, sends so far, next deadline). */
  handle: ClientTransaction<Tx>;
}

/**
 * One ICE session (RFC 8445 section 9: a restart begins a new one): the parameters of both
 * sides, the remote candidates, the checklist, the valid list and the selected pairs.
 */
export class Session {
  remote: IceParameters | undefined;
  remoteKey: Buffer | undefined;
  readonly remoteCandidates: Candidate[] = [];
  readonly remoteByKey = new Map<string, Candidate>();
  /** The checklist, highest priority first. */
  pairs: Pair[] = [];
  /** Every pair of the session, in the checklist or not. */
  readonly byKey = new Map<string, Pair>();
  valid: Pair[] = [];
  triggered: Pair[] = [];
  readonly selected = new Map<number, Pair>();
  /** Components with a nomination check queued or in flight. */
  readonly nominating = new Set<number>();
  /** Sources the peer's authenticated checks or valid pairs vouch for (application data). */
  readonly sources = new Set<string>();
  checklistState: 'running' | 'completed' | 'failed' = 'running';
  remoteEoc = false;
  /** When both sides' end-of-candidates were first known. */
  endOfCandidatesAt: number | undefined;
  /** The last authenticated check from the peer in this session. */
  lastPeerCheckAt = Number.NEGATIVE_INFINITY;
  /** When the checklist became Completed (RFC 8445 8.3.1 counts from there). */
  completedAt = Number.NEGATIVE_INFINITY;
  started = false;
  prflxCount = 0;

  constructor(
    readonly generation: number,
    readonly local: IceParameters,
    readonly localKey: Buffer,
  ) {}

  sort(): void {
    this.pairs.sort(comparePairs);
  }

  /** RFC 8445 7.2.5.3.2: adds a pair to the valid list, which is kept highest priority first. */
  addValid(p: Pair): void {
    if (p.valid) return;
    p.valid = true;
    // Binary insertion after the last pair of at least its priority: the list stays sorted
    // and stable without sorting it again on every success (thousands of pairs).
    const v = this.valid;
    let lo = 0;
    let hi = v.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (v[mid]!.priority >= p.priority) lo = mid + 1;
      else hi = mid;
    }
    v.splice(lo, 0, p);
  }

  sortValid(): void {
    this.valid.sort((a, b) => (a.priority > b.priority ? -1 : a.priority < b.priority ? 1 : 0));
  }
}
