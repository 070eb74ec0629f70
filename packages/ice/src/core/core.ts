import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import {
  Attr,
  ErrorCode,
  Method,
  type RetransmitOptions,
  type StunMessage,
  TransactionTable,
  type TransportAddress,
  canonicalIp,
  checkIntegrity,
  decodeMessage,
  ipFamily,
  ipToBytes,
  shortTermKey,
  verifyFingerprint,
} from '@natkit/stun';
import { type Candidate, type LocalCandidate, TYPE_PREFERENCE, candidateFoundation, candidatePriority } from '../candidate.js';
import { type IceParameters, generateIceParameters, validateIceParameters } from '../formats/parameters.js';
import { IceError } from './errors.js';
import { buildCheck, buildError, buildIndication, buildSuccess } from './messages.js';
import { type Consent, Pair, Session, type Tx, localKey, remoteKey, sourceKey, toTransportAddress } from './pair.js';
import type { DropReason, IceAction, IceCoreOptions, IceState, IceStats, PairInfo } from './types.js';

const CANDIDATE_TYPES = new Set(['host', 'srflx', 'prflx', 'relay']);

/**
 * RFC 8445 section 8.3.1: after Completed an agent SHOULD go on generating triggered checks
 * for three seconds (the selected pair can still change when the peer nominates aggressively).
 */
const TRIGGERED_AFTER_COMPLETED_MS = 3000;

/**
 * How many nomination checks of a valid pair may time out before the pair fails, while the
 * peer's own checks keep arriving on it. A pair is nominated only once its own check
 * succeeded (RFC 8445 8.1.1); if its nomination check goes unanswered through all its
 * retransmissions (about 2.5 % of them with 20 % loss on each of the four hops of a relayed
 * path) but the peer is still checking on the pair (the controlled agent has usually
 * selected it and sends consent checks), that is bad luck, not a dead path: a fresh check
 * is sent. Without a check from the peer since the nomination began, the pair fails.
 */
const NOMINATION_ATTEMPTS = 3;

/**
 * The ICE agent (RFC 8445) without I/O: candidates and pairs are plain data, time is an
 * argument, and every input returns the actions to perform (datagrams to send, events).
 * The owner calls `handleTimeout(now)` when `nextTimeout()` passes. Nothing here touches a
 * socket, a timer or the clock.
 *
 * One data stream with `components` components; RFC 8445 full or lite agent; trickle ICE
 * (RFC 8838); consent freshness (RFC 7675); ICE restart (RFC 8445 section 9).
 */
export class IceCore {
  readonly options: Readonly<Required<Omit<IceCoreOptions, 'localParameters' | 'tieBreaker' | 'consent' | 'controlling'>>> & {
    consent: { intervalMs: number; expiryMs: number } | false;
  };
  readonly lite: boolean;
  readonly tieBreaker: bigint;
  private isControlling: boolean;
  private session: Session;
  /** The previous session's selected pairs, still carrying data during a restart. */
  private legacy: { session: Session; pairs: Map<number, Pair> } | undefined;
  private readonly locals: LocalCandidate[] = [];
  private readonly localByKey = new Map<string, LocalCandidate>();
  /** Checks and consent checks in flight: the STUN client's sans-I/O table (RFC 8489 6.2, 6.3). */
  private readonly txs = new TransactionTable<Tx>();
  private localEoc = false;
  private failed = false;
  private closed = false;
  private currentState: IceState = 'new';
  private nextCheckAt = Number.NEGATIVE_INFINITY;
  /** When a nomination (or, aggressive, the end of checking) may become possible by time alone. */
  private nominationWakeAt = Number.POSITIVE_INFINITY;
  /** When an agent without any pair gives up waiting for a peer-reflexive one. */
  private failureWakeAt = Number.POSITIVE_INFINITY;
  private pairIds = 0;
  private out: IceAction[] = [];
  private readonly random: () => number;
  private readonly randomBytes: (n: number) => Uint8Array;
  readonly stats: IceStats = {
    checksSent: 0,
    retransmissions: 0,
    requestsReceived: 0,
    responsesReceived: 0,
    consentRequestsSent: 0,
    keepalivesSent: 0,
    indicationsReceived: 0,
    roleConflicts: 0,
    errorsSent: {},
    dropped: {
      malformed: 0,
      rfc3489: 0,
      'not-binding': 0,
      'bad-fingerprint': 0,
      'unknown-transaction': 0,
      'unauthenticated-response': 0,
      'unknown-base': 0,
      'stale-ufrag': 0,
      'candidate-limit': 0,
      closed: 0,
    },
  };

  constructor(options: IceCoreOptions = {}) {
    const num = (name: string, v: number | undefined, def: number, min: number) => {
      const x = v ?? def;
      if (typeof x !== 'number' || !Number.isFinite(x) || x < min) throw new IceError('BAD_OPTION', `${name} must be a number of at least ${min}, not ${String(v)}`);
      return x;
    };
    const consent = options.consent === false ? false : { intervalMs: num('consent.intervalMs', options.consent?.intervalMs, 5000, 1), expiryMs: num('consent.expiryMs', options.consent?.expiryMs, 30_000, 1) };
    this.options = {
      lite: options.lite ?? false,
      // RFC 8445 section 14.2: Ta is configurable, but the checks of all of an implementation's
      // agents together MUST NOT go out more often than once every 5 ms: one agent's Ta is at
      // least that.
      ta: num('ta', options.ta, 50, 5),
      nomination: options.nomination ?? 'regular',
      maxPairs: num('maxPairs', options.maxPairs, 100, 1),
      maxRemoteCandidates: num('maxRemoteCandidates', options.maxRemoteCandidates, 100, 1),
      components: num('components', options.components, 1, 1),
      rtoMin: num('rtoMin', options.rtoMin, 500, 1),
      rc: num('rc', options.rc, 7, 1),
      rm: num('rm', options.rm, 16, 1),
      nominationPatience: num('nominationPatience', options.nominationPatience, 2, 1),
      consent,
      disconnectedAfterMs: num('disconnectedAfterMs', options.disconnectedAfterMs, 12_500, 1),
      keepaliveMs: num('keepaliveMs', options.keepaliveMs, 15_000, 1),
      random: options.random ?? Math.random,
      randomBytes: options.randomBytes ?? cryptoRandomBytes,
    };
    if (this.options.nomination !== 'regular' && this.options.nomination !== 'aggressive') {
      throw new IceError('BAD_OPTION', `nomination must be 'regular' or 'aggressive', not ${JSON.stringify(this.options.nomination)}`);
    }
    this.random = this.options.random;
    this.randomBytes = this.options.randomBytes;
    this.lite = this.options.lite;
    // RFC 8445 section 6.1.1: a lite agent is controlled (a full peer always controls it).
    this.isControlling = this.lite ? false : (options.controlling ?? true);
    this.tieBreaker = options.tieBreaker ?? Buffer.from(this.randomBytes(8)).readBigUInt64BE(0);
    if (typeof this.tieBreaker !== 'bigint' || this.tieBreaker < 0n || this.tieBreaker > 0xffffffffffffffffn) {
      throw new IceError('BAD_OPTION', 'tieBreaker must be a 64-bit unsigned bigint');
    }
    this.session = this.newSession(0, options.localParameters);
  }

  // -------------------------------------------------------------------------------------
  // What the owner reads

  get state(): IceState {
    return this.currentState;
  }

  get controlling(): boolean {
    return this.isControlling;
  }

  get localParameters(): IceParameters {
    return { ufrag: this.session.local.ufrag, pwd: this.session.local.pwd, ...(this.lite ? { lite: true } : {}) };
  }

  get remoteParameters(): IceParameters | undefined {
    return this.session.remote ? { ...this.session.remote } : undefined;
  }

  /** The ICE session number: 0, then one more at each restart. */
  get generation(): number {
    return this.session.generation;
  }

  get localCandidates(): LocalCandidate[] {
    return [...this.locals];
  }

  get remoteCandidates(): Candidate[] {
    return [...this.session.remoteCandidates];
  }

  /** The checklist, highest priority first. */
  get checklist(): PairInfo[] {
    return this.session.pairs.map((p) => p.info());
  }

  get validPairs(): PairInfo[] {
    return this.session.valid.map((p) => p.info());
  }

  /** The selected pair of a component in the current session. */
  selectedPair(component = 1): PairInfo | undefined {
    return this.session.selected.get(component)?.info();
  }

  /** Whether both end-of-candidates have been seen (local gathering done, remote indication). */
  get endOfCandidates(): { local: boolean; remote: boolean } {
    return { local: this.localEoc, remote: this.session.remoteEoc };
  }

  /**
   * Where application data of a component goes now: the selected pair (or, during a restart,
   * the previous session's), or undefined when no pair is selected, consent has expired
   * (RFC 7675 section 5.1: stop sending), or the agent failed or closed.
   */
  dataPath(component = 1): { baseId: number; to: TransportAddress; pair: PairInfo } | undefined {
    const p = this.dataPair(component);
    return p ? { baseId: p.local.baseId, to: p.remoteAddress, pair: p.info() } : undefined;
  }

  /**
   * The data path for the per-datagram send: the same as `dataPath` without a snapshot (the
   * object is the pair's own and does not change), and it notes the send for keepalives
   * (RFC 8445 section 11: no keepalive while data flows).
   */
  route(now: number, component = 1): { readonly baseId: number; readonly to: TransportAddress } | undefined {
    const p = this.dataPair(component);
    if (!p) return undefined;
    p.lastSentAt = now;
    return p.route;
  }

  /**
   * True if a datagram from `from` arriving at base `baseId` comes from the peer: a remote
   * address of a valid pair, or one the peer's authenticated checks came from. Application
   * data from anywhere else is not the peer's.
   */
  isDataSource(baseId: number, from: TransportAddress): boolean {
    const k = sourceKey(baseId, from.address, from.port);
    if (this.session.sources.has(k) || this.legacy?.session.sources.has(k)) return true;
    if (from.family !== 'IPv6') return false;
    const c = sourceKey(baseId, canonicalIp(from.address), from.port);
    return this.session.sources.has(c) || this.legacy?.session.sources.has(c) === true;
  }

  /** When `handleTimeout` must next be called (ms, the clock of the `now` arguments), or undefined. */
  nextTimeout(): number | undefined {
    if (this.closed) return undefined;
    // Called after every input and wake-up: no closure or iterator, and the checklist scan
    // of hasCheckWork only when the next paced check would come before everything else.
    let t = this.txs.nextTimeout() ?? Number.POSITIVE_INFINITY;
    if (!this.failed) {
      t = Math.min(t, this.nominationWakeAt, this.failureWakeAt);
      for (const p of this.session.selected.values()) t = this.dataPairWake(p, t);
      if (this.legacy) for (const p of this.legacy.pairs.values()) t = this.dataPairWake(p, t);
      if (this.nextCheckAt < t && this.hasCheckWork()) t = this.nextCheckAt;
    }
    return t === Number.POSITIVE_INFINITY ? undefined : t;
  }

  /** `t`, or earlier if a pair carrying data needs a consent check, expiry, state change or keepalive. */
  private dataPairWake(p: Pair, t: number): number {
    const consent = this.options.consent;
    if (p.consent && !p.consent.expired && consent) {
      if (!this.lite) t = Math.min(t, p.consent.nextCheckAt);
      t = Math.min(t, p.consent.lastAnswerAt + consent.expiryMs);
      // The moment the state turns 'disconnected' (once it has, nothing more to wait for).
      if (this.currentState !== 'disconnected') t = Math.min(t, p.consent.lastAnswerAt + this.options.disconnectedAfterMs);
    }
    return Math.min(t, p.lastSentAt + this.options.keepaliveMs);
  }

  // -------------------------------------------------------------------------------------
  // Inputs

  /** A local candidate from gathering (trickle: any time). Its base must be able to send. */
  addLocalCandidate(candidate: LocalCandidate, now: number): IceAction[] {
    return this.run(now, () => {
      this.checkOpen();
      if (!CANDIDATE_TYPES.has(candidate.type) || candidate.type === 'prflx') {
        throw new IceError('BAD_CANDIDATE', `a local candidate must be host, srflx or relay, not ${JSON.stringify(candidate.type)}`);
      }
      if (typeof candidate.address !== 'string' || !ipFamily(candidate.address)) {
        throw new IceError('BAD_CANDIDATE', `local candidate address ${JSON.stringify(candidate.address)} is not an IP address`);
      }
      if (!Number.isInteger(candidate.baseId) || !candidate.base || typeof candidate.transport !== 'string') {
        throw new IceError('BAD_CANDIDATE', 'a local candidate needs a transport, a base and a baseId');
      }
      if (!Number.isInteger(candidate.component) || candidate.component < 1 || candidate.component > this.options.components) {
        throw new IceError('BAD_CANDIDATE', `local candidate component ${candidate.component} is not 1-${this.options.components}`);
      }
      const c: LocalCandidate = { ...candidate, transport: candidate.transport.toLowerCase() };
      const k = localKey(c);
      if (this.localByKey.has(k)) return;
      this.locals.push(c);
      this.localByKey.set(k, c);
      this.pairLocal(this.session, c);
    });
  }

  /** Local gathering is complete (RFC 8838 section 8.2). */
  endOfLocalCandidates(now: number): IceAction[] {
    return this.run(now, () => {
      this.localEoc = true;
    });
  }

  /**
   * The peer's ufrag and pwd (and whether it is ICE-lite). Setting new values once the peer's
   * are known means the peer restarted: this agent restarts too and returns a 'restart'
   * action with its new parameters, which the application must signal.
   */
  setRemoteParameters(parameters: IceParameters, now: number): IceAction[] {
    return this.run(now, () => {
      this.checkOpen();
      try {
        validateIceParameters(parameters);
      } catch (e) {
        throw new IceError('BAD_PARAMETERS', (e as Error).message, { cause: e });
      }
      let s = this.session;
      if (s.remote) {
        if (s.remote.ufrag === parameters.ufrag && s.remote.pwd === parameters.pwd) {
          if (parameters.lite !== undefined) s.remote.lite = parameters.lite;
          return;
        }
        // RFC 8445 section 9: new parameters from the peer are an ICE restart.
        this.restartSession(undefined);
        this.out.push({ type: 'restart', parameters: this.localParameters });
        s = this.session;
      }
      s.remote = { ufrag: parameters.ufrag, pwd: parameters.pwd, ...(parameters.lite ? { lite: true } : {}) };
      s.remoteKey = shortTermKey(parameters.pwd);
      // RFC 8445 section 6.1.1: with a lite peer, the full agent is controlling.
      if (parameters.lite && !this.lite && !this.isControlling) this.switchRole(true);
      if (s.pairs.length > 0) s.started = true;
    });
  }

  /**
   * A remote candidate (trickle: before or after checks start). Its address must be an IP
   * address (resolve mDNS names first). A candidate with a `ufrag` extension for another
   * session is ignored. Throws IceError BAD_CANDIDATE or TOO_MANY_CANDIDATES.
   */
  addRemoteCandidate(candidate: Candidate, now: number): IceAction[] {
    return this.run(now, () => {
      this.checkOpen();
      const c = this.checkRemote(candidate);
      const s = this.session;
      const ufrag = c.extensions?.find(([n]) => n === 'ufrag')?.[1];
      if (ufrag !== undefined && s.remote && ufrag !== s.remote.ufrag) return;
      const k = remoteKey(c.component, c.address, c.port);
      const known = s.remoteByKey.get(k);
      if (known) {
        // RFC 8838 section 11 / RFC 8445 7.3.1.3: a signalled candidate replaces the
        // peer-reflexive one learned from a check at the same address.
        if (known.type === 'prflx' && c.type !== 'prflx') {
          known.type = c.type;
          known.foundation = c.foundation;
          known.priority = c.priority;
          if (c.relatedAddress !== undefined) known.relatedAddress = c.relatedAddress;
          if (c.relatedPort !== undefined) known.relatedPort = c.relatedPort;
          this.reprioritise(s);
        }
        return;
      }
      if (s.remoteCandidates.length >= this.options.maxRemoteCandidates) {
        throw new IceError('TOO_MANY_CANDIDATES', `more than ${this.options.maxRemoteCandidates} remote candidates`);
      }
      s.remoteCandidates.push(c);
      s.remoteByKey.set(k, c);
      this.pairRemote(s, c);
      if (s.remote && s.pairs.length > 0) s.started = true;
    });
  }

  /** The peer signalled end-of-candidates (RFC 8838 section 13). */
  endOfRemoteCandidates(now: number): IceAction[] {
    return this.run(now, () => {
      this.session.remoteEoc = true;
    });
  }

  /**
   * A STUN message that arrived at base `baseId` from `from` (demultiplexed by the owner, RFC
   * 7983). Never throws: what is malformed, unauthenticated or unexpected is answered as RFC
   * 8489 says or dropped and counted in `stats.dropped`.
   */
  handleStun(baseId: number, data: Buffer, from: TransportAddress, now: number): IceAction[] {
    return this.run(now, () => {
      if (this.closed) return this.drop('closed');
      let msg: StunMessage;
      try {
        msg = decodeMessage(data);
      } catch {
        return this.drop('malformed');
      }
      if (msg.rfc3489) return this.drop('rfc3489');
      // RFC 8445 section 7: FINGERPRINT, when present, must match (it tells STUN from other data).
      if (msg.fingerprintAt >= 0 && !verifyFingerprint(msg)) return this.drop('bad-fingerprint');
      if (msg.method !== Method.Binding) return this.drop('not-binding');
      if (msg.isRequest()) this.onRequest(baseId, msg, from, now);
      else if (msg.isIndication()) this.stats.indicationsReceived++;
      else this.onResponse(baseId, msg, from, now);
    });
  }

  /** Time passed: retransmissions, paced checks, consent, keepalives. */
  handleTimeout(now: number): IceAction[] {
    return this.run(now, () => {});
  }

  /**
   * ICE restart (RFC 8445 section 9): new local parameters (generated unless given), a new
   * checklist once the peer's new parameters arrive. The selected pair keeps carrying data
   * (and consent checks) until the new session selects one. Remote candidates of the old
   * session are forgotten; local candidates are kept and must be signalled again.
   */
  restart(now: number, parameters?: { ufrag: string; pwd: string }): IceAction[] {
    return this.run(now, () => {
      this.checkOpen();
      this.restartSession(parameters);
    });
  }

  /**
   * A candidate base is gone: its socket closed, or its TURN allocation was lost (the
   * gatherer's 'base-closed'). Its local candidates and every pair on it leave the checklist,
   * the valid list and the triggered-check queue, and their checks are cancelled. A selected
   * pair on it can never be answered again, so its consent is lost at once (RFC 7675 section
   * 5.1: stop sending) instead of 30 s later: the session fails (a restart recovers), or,
   * during a restart, the previous session's pair stops carrying data.
   */
  baseClosed(baseId: number, now: number): IceAction[] {
    return this.run(now, () => {
      if (this.closed) return;
      for (let i = this.locals.length - 1; i >= 0; i--) {
        const l = this.locals[i]!;
        if (l.baseId !== baseId) continue;
        this.locals.splice(i, 1);
        this.localByKey.delete(localKey(l));
      }
      for (const t of [...this.txs.values()]) {
        const tx = t.context;
        if (tx.baseId !== baseId) continue;
        this.txs.cancel(t.id);
        if (tx.pair.tx === tx) tx.pair.tx = undefined;
      }
      const legacy = this.legacy;
      for (const s of legacy ? [this.session, legacy.session] : [this.session]) {
        for (const p of [...s.byKey.values()]) {
          if (p.local.baseId !== baseId) continue;
          if (p.inChecklist) this.removeFromChecklist(s, p);
          s.byKey.delete(p.key);
          if (p.valid) s.valid = s.valid.filter((q) => q !== p);
          if (p.nominating) s.nominating.delete(p.component);
          if (p.consent) p.consent.expired = true;
        }
      }
      if (legacy) {
        for (const [c, p] of legacy.pairs) if (p.local.baseId === baseId) legacy.pairs.delete(c);
        if (legacy.pairs.size === 0) this.legacy = undefined;
      }
      if ([...this.session.selected.values()].some((p) => p.local.baseId === baseId)) this.fail();
    });
  }

  /** Stops everything; later inputs are dropped. */
  close(now: number): IceAction[] {
    return this.run(now, () => {
      if (this.closed) return;
      this.closed = true;
      this.txs.clear();
      this.session.triggered = [];
      this.legacy = undefined;
    });
  }

  // -------------------------------------------------------------------------------------
  // Plumbing

  private run(now: number, fn: () => void): IceAction[] {
    this.out = [];
    try {
      fn();
    } catch (e) {
      // Inputs validate before they change anything: a refused input leaves no actions.
      this.out = [];
      throw e;
    }
    if (!this.closed) this.pump(now);
    this.refreshState(now);
    const out = this.out;
    this.out = [];
    return out;
  }

  private checkOpen(): void {
    if (this.closed) throw new IceError('CLOSED', 'the ICE agent is closed');
  }

  private drop(reason: DropReason): void {
    this.stats.dropped[reason]++;
  }

  private send(baseId: number, to: TransportAddress, data: Buffer): void {
    this.out.push({ type: 'send', baseId, to, data });
  }

  private newSession(generation: number, parameters?: { ufrag: string; pwd: string }): Session {
    const p = parameters ?? generateIceParameters(this.randomBytes);
    try {
      validateIceParameters(p);
    } catch (e) {
      throw new IceError('BAD_PARAMETERS', (e as Error).message, { cause: e });
    }
    return new Session(generation, { ufrag: p.ufrag, pwd: p.pwd }, shortTermKey(p.pwd));
  }

  private checkRemote(candidate: Candidate): Candidate {
    const bad = (why: string) => new IceError('BAD_CANDIDATE', `remote candidate ${candidate?.address}:${candidate?.port}: ${why}`);
    if (!candidate || typeof candidate !== 'object') throw new IceError('BAD_CANDIDATE', 'a remote candidate must be an object');
    if (typeof candidate.address !== 'string' || !ipFamily(candidate.address) || candidate.address.includes('%')) {
      throw bad('the address is not an IP address (resolve .local names first)');
    }
    // Checks go wherever a candidate says: never to "this host" or a multicast group.
    if (isUnspecifiedOrMulticast(candidate.address)) throw bad('the address is unspecified or multicast');
    if (!Number.isInteger(candidate.port) || candidate.port < 1 || candidate.port > 65535) throw bad('the port is not 1-65535');
    if (!Number.isInteger(candidate.component) || candidate.component < 1 || candidate.component > this.options.components) {
      throw bad(`the component is not 1-${this.options.components}`);
    }
    if (!Number.isInteger(candidate.priority) || candidate.priority < 1 || candidate.priority > 0xffffffff) throw bad('the priority is not 1 to 2^32-1');
    if (!CANDIDATE_TYPES.has(candidate.type)) throw bad(`the type ${JSON.stringify(candidate.type)} is not host, srflx, prflx or relay`);
    if (typeof candidate.foundation !== 'string' || candidate.foundation.length === 0) throw bad('the foundation is empty');
    if (typeof candidate.transport !== 'string') throw bad('the transport is missing');
    return { ...candidate, transport: candidate.transport.toLowerCase(), ...(candidate.extensions ? { extensions: candidate.extensions.map(([n, v]) => [n, v] as [string, string]) } : {}) };
  }

  // -------------------------------------------------------------------------------------
  // Forming the checklist (RFC 8445 section 6.1.2)

  /** RFC 8445 6.1.2.2: same component, transport and address family (and link-local scope). */
  private canPair(l: LocalCandidate, r: Candidate): boolean {
    if (l.component !== r.component) return false;
    if (l.transport !== 'udp' || r.transport !== 'udp') return false;
    const lf = ipFamily(l.address);
    if (lf !== ipFamily(r.address)) return false;
    if (lf === 'IPv6' && isLinkLocal(l.address) !== isLinkLocal(r.address)) return false;
    return true;
  }

  /**
   * RFC 8445 6.1.2.4: a server-reflexive local candidate is replaced by its base, so its pairs
   * are the host candidate's; only when that host candidate is not there (a gatherer that
   * keeps host candidates to itself) is the srflx candidate paired, sending from its base.
   * Peer-reflexive local candidates are never paired (RFC 8445 7.2.5.3.1).
   */
  private pairsAsLocal(l: LocalCandidate): boolean {
    if (l.type === 'prflx') return false;
    if (l.type !== 'srflx') return true;
    return !this.locals.some((o) => o.baseId === l.baseId && o.type === 'host');
  }

  private pairLocal(s: Session, l: LocalCandidate): void {
    if (!this.pairsAsLocal(l)) return;
    // A host candidate arriving after its srflx candidate takes over the srflx's pairs.
    if (l.type === 'host') {
      for (const p of [...s.pairs]) {
        if (p.local.type === 'srflx' && p.local.baseId === l.baseId && p.state !== 'succeeded' && p.state !== 'in-progress') this.removeFromChecklist(s, p);
      }
    }
    for (const r of s.remoteCandidates) if (this.canPair(l, r)) this.addPair(s, l, r);
    this.limitPairs(s);
  }

  private pairRemote(s: Session, r: Candidate): void {
    for (const l of this.locals) if (this.pairsAsLocal(l) && this.canPair(l, r)) this.addPair(s, l, r);
    this.limitPairs(s);
  }

  /** Adds a pair to the checklist (RFC 8838 section 10: new pairs are frozen behind their foundation). */
  private addPair(s: Session, l: LocalCandidate, r: Candidate): Pair | undefined {
    if (s.checklistState === 'failed' || this.lite) return undefined;
    const existing = s.byKey.get(Pair.keyOf(l, r));
    if (existing) {
      if (!existing.inChecklist && s.checklistState === 'running') this.insert(s, existing, 'waiting');
      return existing;
    }
    const p = this.pairFor(s, l, r);
    // Once a pair is selected the checklist is done (RFC 8445 8.1.2): later candidates are
    // remembered, not checked.
    if (s.checklistState !== 'running') return p;
    this.insert(s, p, this.initialState(s, p));
    return p;
  }

  /**
   * RFC 8838 section 12 (and RFC 8445 6.1.2.6, of which it is the trickle form): a new pair is
   * Waiting if it heads its foundation (no pair of that foundation with a lower component,
   * or the same component and a higher priority: rule 1) or if a pair of its foundation has
   * already succeeded (rule 2); Frozen otherwise (rule 3).
   */
  private initialState(s: Session, p: Pair): 'waiting' | 'frozen' {
    let heads = true;
    for (const q of s.pairs) {
      if (q.foundation !== p.foundation) continue;
      if (q.state === 'succeeded') return 'waiting';
      if (q.component < p.component || (q.component === p.component && q.priority >= p.priority)) heads = false;
    }
    return heads ? 'waiting' : 'frozen';
  }

  /**
   * The session's pair of these two candidates; a new one is made with its priority, in
   * `state`, outside the checklist.
   */
  private pairFor(s: Session, local: LocalCandidate, remote: Candidate, state: Pair['state'] = 'frozen'): Pair {
    const key = Pair.keyOf(local, remote);
    let p = s.byKey.get(key);
    if (!p) {
      p = new Pair(++this.pairIds, local, remote);
      p.updatePriority(this.isControlling);
      p.state = state;
      s.byKey.set(key, p);
    }
    return p;
  }

  private insert(s: Session, p: Pair, state: Pair['state']): void {
    p.state = state;
    p.inChecklist = true;
    s.pairs.push(p);
    s.sort();
  }

  private removeFromChecklist(s: Session, p: Pair): void {
    p.inChecklist = false;
    s.pairs = s.pairs.filter((q) => q !== p);
    s.triggered = s.triggered.filter((q) => q !== p);
    p.queued = false;
  }

  /** RFC 8445 6.1.2.5: above the limit, the lowest-priority pairs that are not being checked go. */
  private limitPairs(s: Session): void {
    let excess = s.pairs.length - this.options.maxPairs;
    for (let i = s.pairs.length - 1; i >= 0 && excess > 0; i--) {
      const p = s.pairs[i]!;
      if (p.state === 'frozen' || p.state === 'waiting' || p.state === 'failed') {
        this.removeFromChecklist(s, p);
        s.byKey.delete(p.key);
        excess--;
      }
    }
  }

  private reprioritise(s: Session): void {
    for (const p of s.byKey.values()) p.updatePriority(this.isControlling);
    s.sort();
    s.sortValid();
  }

  private switchRole(controlling: boolean): void {
    if (this.isControlling === controlling) return;
    this.isControlling = controlling;
    this.stats.roleConflicts++;
    this.reprioritise(this.session);
    if (!controlling) {
      // A controlled agent does not nominate.
      for (const p of this.session.byKey.values()) p.nominating = false;
      this.session.nominating.clear();
    }
    this.out.push({ type: 'role', controlling });
  }

  // -------------------------------------------------------------------------------------
  // Sending checks (RFC 8445 sections 6.1.4 and 7.2)

  private hasCheckWork(): boolean {
    const s = this.session;
    if (!s.remote || this.lite || this.failed || this.closed) return false;
    if (s.triggered.length > 0) return true;
    if (s.checklistState !== 'running') return false;
    // Asked by nextTimeout after most inputs: a Waiting pair answers it without building the set of
    // busy foundations, which only a Frozen pair needs.
    let frozen = false;
    for (const p of s.pairs) {
      if (p.state === 'waiting') return true;
      if (p.state === 'frozen') frozen = true;
    }
    if (!frozen) return false;
    const busy = this.busyFoundations(s);
    return s.pairs.some((p) => p.state === 'frozen' && !busy.has(p.foundation));
  }

  private busyFoundations(s: Session): Set<string> {
    const busy = new Set<string>();
    for (const p of s.pairs) if (p.state === 'waiting' || p.state === 'in-progress') busy.add(p.foundation);
    return busy;
  }

  /** RFC 8445 6.1.4.2: the triggered-check queue first, then the best Waiting pair, unfreezing by foundation. */
  private nextCheck(s: Session): { pair: Pair; useCandidate: boolean } | undefined {
    const aggressive = this.isControlling && this.options.nomination === 'aggressive';
    while (s.triggered.length > 0) {
      const p = s.triggered.shift()!;
      p.queued = false;
      if (!p.inChecklist) continue;
      if (p.nominating) return { pair: p, useCandidate: true };
      if (p.state === 'waiting') return { pair: p, useCandidate: aggressive };
    }
    if (s.checklistState !== 'running') return undefined;
    let best = s.pairs.find((p) => p.state === 'waiting');
    if (!best) {
      const busy = this.busyFoundations(s);
      for (const p of s.pairs) {
        if (p.state === 'frozen' && !busy.has(p.foundation)) {
          p.state = 'waiting';
          busy.add(p.foundation);
        }
      }
      best = s.pairs.find((p) => p.state === 'waiting');
    }
    return best ? { pair: best, useCandidate: aggressive } : undefined;
  }

  private enqueueTriggered(s: Session, p: Pair, front = false): void {
    if (!p.inChecklist) this.insert(s, p, 'waiting');
    if (p.queued) {
      if (front) {
        s.triggered = s.triggered.filter((q) => q !== p);
        s.triggered.unshift(p);
      }
      return;
    }
    p.queued = true;
    if (front) s.triggered.unshift(p);
    else s.triggered.push(p);
  }

  /** RFC 8445 7.1.1: PRIORITY is what a peer-reflexive candidate of this local candidate would get. */
  private prflxPriority(l: LocalCandidate): number {
    return candidatePriority(TYPE_PREFERENCE.prflx, (l.priority >>> 8) & 0xffff, l.component);
  }

  /** RFC 8445 section 14.3: RTO = MAX(500 ms, Ta * (Num-Waiting + Num-In-Progress)). */
  private checkRto(s: Session): number {
    let n = 0;
    for (const p of s.pairs) if (p.state === 'waiting' || p.state === 'in-progress') n++;
    return Math.max(this.options.rtoMin, this.options.ta * n);
  }

  private sendCheck(s: Session, pair: Pair, useCandidate: boolean, now: number): void {
    // RFC 8489 6.2.1 with the RTO of RFC 8445 14.3.
    const retransmit = { rto: this.checkRto(s), rc: this.options.rc, rm: this.options.rm };
    const previous = pair.tx;
    pair.tx = this.startTransaction(s, pair, 'check', useCandidate, retransmit, now);
    if (previous) this.cancelTx(previous);
    if (pair.state !== 'succeeded') pair.state = 'in-progress';
    s.started = true;
    this.stats.checksSent++;
  }

  /**
   * A Binding request on a pair, a check (RFC 8445 7.2.2) or a consent check (RFC 7675 5.1):
   * USERNAME "RFRAG:LFRAG", PRIORITY, the role, MESSAGE-INTEGRITY with the peer's password
   * (whose answer must be signed with it too, RFC 8445 7.2.5.1, RFC 8489 9.1.4), FINGERPRINT;
   * a fresh transaction id each time. Started on the transaction table and sent.
   */
  private startTransaction(s: Session, pair: Pair, kind: Tx['kind'], useCandidate: boolean, retransmit: RetransmitOptions, now: number): Tx {
    const id = Buffer.from(this.randomBytes(12));
    const priority = this.prflxPriority(pair.local);
    const request = buildCheck({
      transactionId: id,
      username: `${s.remote!.ufrag}:${s.local.ufrag}`,
      key: s.remoteKey!,
      priority,
      controlling: this.isControlling,
      tieBreaker: this.tieBreaker,
      useCandidate,
    });
    const tx = {
      kind,
      pair,
      session: s,
      baseId: pair.local.baseId,
      to: pair.remoteAddress,
      useCandidate,
      controlling: this.isControlling,
      priority,
      cancelled: false,
      sentAt: now,
      lastSentAt: now,
    } as Tx;
    tx.handle = this.txs.start(id, request, now, { retransmit, verifyKey: s.remoteKey!, context: tx });
    pair.lastSentAt = now;
    this.send(tx.baseId, tx.to, request);
    return tx;
  }

  /**
   * RFC 8445 7.3.1.4: a cancelled check is not retransmitted and its timeout is no failure,
   * but an answer within the transaction's lifetime still counts.
   */
  private cancelTx(tx: Tx): void {
    tx.cancelled = true;
    if (tx.pair.tx === tx) tx.pair.tx = undefined;
  }

  // -------------------------------------------------------------------------------------
  // The pump: everything time drives

  private pump(now: number): void {
    if (this.closed) return;
    this.runTransactions(now);
    this.runConsent(now);
    if (!this.failed) {
      this.nominationWakeAt = Number.POSITIVE_INFINITY;
      this.evaluateNomination(now);
      this.evaluateCompletion(this.session, now);
      // The pacing first (most wake-ups come before Ta); then nextCheck, which finds no pair
      // exactly when hasCheckWork would say there is none, without a scan of its own first.
      if (now >= this.nextCheckAt && this.session.remote && !this.lite) {
        const next = this.nextCheck(this.session);
        if (next) {
          this.sendCheck(this.session, next.pair, next.useCandidate, now);
          // RFC 8445 section 6.1.4.2: one new check every Ta.
          this.nextCheckAt = now + this.options.ta;
        }
      }
      this.failureWakeAt = Number.POSITIVE_INFINITY;
      this.evaluateFailure(now);
    }
  }

  private runTransactions(now: number): void {
    for (const a of this.txs.onTimeout(now)) {
      const tx = a.transaction.context;
      if (a.type === 'retransmit') {
        // A cancelled check waits out its transaction silently (RFC 8445 7.3.1.4).
        if (tx.cancelled) continue;
        this.stats.retransmissions++;
        tx.lastSentAt = now;
        tx.pair.lastSentAt = now;
        this.send(tx.baseId, tx.to, a.transaction.bytes);
      } else if (tx.kind === 'check' && !tx.cancelled && tx.session === this.session && tx.pair.tx === tx) {
        const p = tx.pair;
        if (p.nominating && tx.useCandidate && p.validPair?.valid && p.lastRequestAt >= tx.sentAt && ++p.nominationTimeouts < NOMINATION_ATTEMPTS) {
          p.tx = undefined;
          this.enqueueTriggered(tx.session, p, true);
        } else this.checkFailed(tx.session, p);
      }
    }
  }

  /** RFC 8445 7.2.5.2.x: a check that timed out or got an unrecoverable error fails its pair. */
  private checkFailed(s: Session, p: Pair): void {
    p.tx = undefined;
    p.state = 'failed';
    if (p.nominating) {
      p.nominating = false;
      s.nominating.delete(p.component);
    }
    // A pair that can no longer be reached leaves the valid list.
    const vp = p.validPair;
    if (vp && vp.valid) {
      vp.valid = false;
      s.valid = s.valid.filter((q) => q !== vp);
    }
  }

  /**
   * Regular nomination (RFC 8445 8.1.1) by the controlling agent: the best valid pair is
   * nominated as soon as no better pair can still succeed: every pair above it has
   * succeeded or failed, or is frozen behind a failed foundation, or has gone
   * `nominationPatience` sends unanswered (by default one full RTO). No per-type waits.
   */
  private evaluateNomination(now: number): void {
    const s = this.session;
    if (!this.isControlling || this.lite || s.checklistState !== 'running' || !s.remote) return;
    for (let c = 1; c <= this.options.components; c++) {
      if (s.selected.has(c) || s.nominating.has(c)) continue;
      const best = s.valid.find((p) => p.component === c);
      if (!best) continue;
      const settled = this.settled(s, c, best, now);
      if (settled !== true) {
        this.nominationWakeAt = Math.min(this.nominationWakeAt, settled);
        continue;
      }
      if (best.nominated) continue; // aggressive: already nominated by its own check
      const g = best.generating ?? best;
      if (!g.inChecklist) this.insert(s, g, 'succeeded');
      g.nominating = true;
      s.nominating.add(c);
      this.enqueueTriggered(s, g, true);
    }
  }

  /**
   * A better pair in progress is given up (for nomination only; its check goes on) once it
   * has been sent `nominationPatience` times and its last send has had twice the valid
   * pair's round-trip time to be answered. Returns true, or the time that happens.
   */
  private givenUp(q: Pair, best: Pair, now: number): true | number {
    const tx = q.tx;
    if (!tx || tx.handle.sends < this.options.nominationPatience) return tx?.handle.deadline ?? Number.POSITIVE_INFINITY;
    const at = tx.lastSentAt + 2 * (best.rtt ?? 0);
    return now >= at ? true : at;
  }

  /**
   * True when no pair of the component with a higher priority than `best` can still
   * succeed; otherwise the earliest time that may change by time alone (or Infinity).
   */
  private settled(s: Session, component: number, best: Pair, now: number): true | number {
    let wake = Number.POSITIVE_INFINITY;
    // Foundations with no hope left, for a frozen pair above `best`: built only when one is
    // met (this runs on every wake-up until nomination; most find none above `best`).
    let hopeless: Set<string> | undefined;
    let settled = true;
    for (const q of s.pairs) {
      if (q.component !== component || q === best.generating || q === best) continue;
      if (q.priority <= best.priority) break;
      if (q.state === 'succeeded' || q.state === 'failed') continue;
      if (q.state === 'in-progress') {
        const g = this.givenUp(q, best, now);
        if (g === true) continue;
        wake = Math.min(wake, g);
        settled = false;
        continue;
      }
      if (q.state === 'frozen') {
        hopeless ??= this.hopelessFoundations(s, best, now);
        if (hopeless.has(q.foundation)) continue;
      }
      settled = false;
    }
    return settled ? true : wake;
  }

  /** Foundations of the pairs that failed, or whose check in progress `givenUp` on. */
  private hopelessFoundations(s: Session, best: Pair, now: number): Set<string> {
    const hopeless = new Set<string>();
    for (const q of s.pairs) {
      if (q.state === 'failed' || (q.state === 'in-progress' && this.givenUp(q, best, now) === true)) hopeless.add(q.foundation);
    }
    return hopeless;
  }

  /** The selected pair of each component: the nominated valid pair with the highest priority. */
  private updateSelection(s: Session, now: number): void {
    for (let c = 1; c <= this.options.components; c++) {
      const best = s.valid.find((p) => p.component === c && p.nominated);
      const cur = s.selected.get(c);
      if (!best || best === cur) continue;
      s.selected.set(c, best);
      best.consent = { lastAnswerAt: now, nextCheckAt: now + this.consentInterval(), expired: false };
      if (!Number.isFinite(best.lastSentAt)) best.lastSentAt = now;
      this.out.push({ type: 'selected-pair', pair: best.info() });
    }
    if (this.legacy && s === this.session && this.allSelected(s)) this.legacy = undefined;
    this.evaluateCompletion(s, now);
  }

  private allSelected(s: Session): boolean {
    for (let c = 1; c <= this.options.components; c++) if (!s.selected.has(c)) return false;
    return true;
  }

  /**
   * RFC 8445 8.1.2 (and 8.3 for lite): once every component has a selected pair, checking
   * ends: waiting and frozen pairs leave the checklist and the triggered-check queue, and a
   * check in progress stops retransmitting if its pair ranks below the selected pair of its
   * component. A controlled agent lets the checks of better pairs run on (the peer may
   * still nominate one: aggressive nomination, RFC 5245 peers such as libnice by default);
   * a controlling agent cancels them too, as it nominates no other pair. With aggressive
   * nomination the controlling agent first waits until no better pair can still succeed.
   */
  private evaluateCompletion(s: Session, now: number): void {
    if (s.checklistState !== 'running' || !this.allSelected(s)) return;
    if (this.isControlling && this.options.nomination === 'aggressive') {
      for (const [c, p] of s.selected) {
        const settled = this.settled(s, c, p, now);
        if (settled !== true) {
          this.nominationWakeAt = Math.min(this.nominationWakeAt, settled);
          return;
        }
      }
    }
    s.checklistState = 'completed';
    s.completedAt = now;
    for (const p of [...s.pairs]) {
      if (p.state === 'waiting' || p.state === 'frozen') this.removeFromChecklist(s, p);
      else if (p.state === 'in-progress' && p.tx && (this.isControlling || p.priority < s.selected.get(p.component)!.priority)) {
        this.cancelTx(p.tx);
        this.removeFromChecklist(s, p);
      }
    }
    for (const p of s.triggered) if (!p.nominating) p.queued = false;
    s.triggered = s.triggered.filter((p) => p.nominating);
  }

  /**
   * RFC 8445 8.1.2, RFC 8838 section 8: no pair left to try and no candidate to come. Two
   * waits, each as long as one check of the peer's can take (39.5 s by default): with no pair
   * at all (every remote candidate unusable, or none signalled), for the peer's checks to
   * bring peer-reflexive ones (RFC 8445 7.3.1.3); and a controlled agent with valid pairs,
   * for the controlling agent to nominate one, counted from the peer's last check (a peer
   * that has failed or gone never nominates, and the agent would wait forever).
   */
  private evaluateFailure(now: number): void {
    const s = this.session;
    if (this.failed || this.lite || !s.remote || s.selected.size > 0 || this.legacy) return;
    if (!this.localEoc || !s.remoteEoc) return;
    s.endOfCandidatesAt ??= now;
    if (s.triggered.length > 0 || s.nominating.size > 0) return;
    if (s.pairs.some((p) => p.state === 'frozen' || p.state === 'waiting' || p.state === 'in-progress')) return;
    let waitFrom: number | undefined;
    if (s.valid.length > 0 && !this.isControlling) waitFrom = Math.max(s.endOfCandidatesAt, s.lastPeerCheckAt);
    else if (s.byKey.size === 0) waitFrom = s.endOfCandidatesAt;
    if (waitFrom !== undefined) {
      const { rtoMin, rc, rm } = this.options;
      const at = waitFrom + rtoMin * (2 ** (rc - 1) - 1) + rm * rtoMin;
      if (now < at) {
        this.failureWakeAt = at;
        return;
      }
    }
    this.fail();
  }

  private fail(): void {
    this.failed = true;
    this.session.checklistState = 'failed';
    // Failure is final for the session (RFC 8445 8.1.2, RFC 7675 5.1): no answer is awaited.
    this.txs.clear();
    for (const p of this.session.byKey.values()) p.tx = undefined;
    this.session.triggered = [];
  }

  // -------------------------------------------------------------------------------------
  // Consent freshness (RFC 7675) and keepalives (RFC 8445 section 11)

  private consentInterval(): number {
    if (!this.options.consent) return Number.POSITIVE_INFINITY;
    // RFC 7675 section 5.1: randomised to 0.8-1.2 times the base period.
    return this.options.consent.intervalMs * (0.8 + 0.4 * this.random());
  }

  private dataPair(component: number): Pair | undefined {
    if (this.closed || this.failed) return undefined;
    const p = this.session.selected.get(component) ?? this.legacy?.pairs.get(component);
    return p && !p.consent?.expired ? p : undefined;
  }

  private *dataPairs(): Generator<Pair> {
    if (this.closed || this.failed) return;
    for (const p of this.session.selected.values()) yield p;
    if (this.legacy) for (const p of this.legacy.pairs.values()) yield p;
  }

  private runConsent(now: number): void {
    const consent = this.options.consent;
    for (const p of [...this.dataPairs()]) {
      const session = this.legacy?.pairs.get(p.component) === p ? this.legacy.session : this.session;
      const c = p.consent;
      if (c && !c.expired && consent) {
        if (now - c.lastAnswerAt >= consent.expiryMs) {
          // RFC 7675 section 5.1: consent expired; no more data on this pair.
          c.expired = true;
          this.consentExpired(session, p);
          continue;
        }
        if (!this.lite && now >= c.nextCheckAt) {
          this.sendConsent(session, p, now);
          c.nextCheckAt = now + this.consentInterval();
        }
      }
      if (now - p.lastSentAt >= this.options.keepaliveMs) {
        p.lastSentAt = now;
        this.stats.keepalivesSent++;
        this.send(p.local.baseId, p.remoteAddress, buildIndication(Buffer.from(this.randomBytes(12))));
      }
    }
  }

  /** RFC 7675 section 5.1: a consent check is a Binding request like a check, sent once. */
  private sendConsent(s: Session, p: Pair, now: number): void {
    if (!s.remote || !s.remoteKey) return;
    // RFC 7675 section 5.1: sent once; an answer to any consent request sent within the
    // consent lifetime counts, not only to the latest, so each waits that long.
    const expiry = this.options.consent ? this.options.consent.expiryMs : 30_000;
    this.startTransaction(s, p, 'consent', false, { rto: expiry, rc: 1, rm: 1 }, now);
    this.stats.consentRequestsSent++;
  }

  private consentExpired(s: Session, p: Pair): void {
    if (this.legacy && this.legacy.session === s) {
      this.legacy.pairs.delete(p.component);
      if (this.legacy.pairs.size === 0) this.legacy = undefined;
      return;
    }
    this.fail();
  }

  // -------------------------------------------------------------------------------------
  // Restart (RFC 8445 section 9)

  private restartSession(parameters: { ufrag: string; pwd: string } | undefined): void {
    const old = this.session;
    const next = this.newSession(old.generation + 1, parameters);
    // The old selected pairs keep carrying data (and consent) until the new session selects.
    const live = new Map<number, Pair>();
    for (const [c, p] of old.selected) if (p.consent && !p.consent.expired && !this.failed) live.set(c, p);
    if (live.size > 0) this.legacy = { session: old, pairs: live };
    else if (this.legacy && this.legacy.pairs.size === 0) this.legacy = undefined;
    for (const t of [...this.txs.values()]) {
      if (t.context.session === old && t.context.kind === 'check') this.txs.cancel(t.id);
    }
    old.triggered = [];
    // Peer-reflexive local candidates belong to the old session's checks.
    for (let i = this.locals.length - 1; i >= 0; i--) {
      const l = this.locals[i]!;
      if (l.type === 'prflx') {
        this.locals.splice(i, 1);
        this.localByKey.delete(localKey(l));
      }
    }
    this.session = next;
    this.failed = false;
    this.nextCheckAt = Number.NEGATIVE_INFINITY;
  }

  // -------------------------------------------------------------------------------------
  // Requests (RFC 8445 section 7.3)

  private replyError(baseId: number, to: TransportAddress, msg: StunMessage, code: number, key?: Buffer, unknown?: readonly number[]): void {
    this.stats.errorsSent[code] = (this.stats.errorsSent[code] ?? 0) + 1;
    this.send(baseId, to, buildError(Buffer.from(msg.transactionId), code, key, unknown));
  }

  /** The host or relayed candidate whose base a packet arrived at. */
  private candidateOfBase(baseId: number): LocalCandidate | undefined {
    for (const l of this.locals) if (l.baseId === baseId && (l.type === 'host' || l.type === 'relay')) return l;
    for (const l of this.locals) if (l.baseId === baseId && l.type !== 'prflx') return l;
    return undefined;
  }

  private onRequest(baseId: number, msg: StunMessage, from: TransportAddress, now: number): void {
    this.stats.requestsReceived++;
    // RFC 8489 section 9.1.3 (short-term credentials): USERNAME and MESSAGE-INTEGRITY are
    // required (400 without them); an unknown username or a wrong integrity gets 401.
    let username: string | undefined;
    try {
      username = msg.get(Attr.Username);
    } catch {
      return this.replyError(baseId, from, msg, ErrorCode.BadRequest);
    }
    if (username === undefined || (msg.integrityAt < 0 && msg.integritySha256At < 0)) {
      return this.replyError(baseId, from, msg, ErrorCode.BadRequest);
    }
    const colon = username.indexOf(':');
    const lfrag = colon < 0 ? username : username.slice(0, colon);
    const rfrag = colon < 0 ? '' : username.slice(colon + 1);
    let s = this.session;
    let legacy = false;
    if (lfrag !== s.local.ufrag) {
      if (this.legacy && lfrag === this.legacy.session.local.ufrag) {
        s = this.legacy.session;
        legacy = true;
      } else {
        return this.replyError(baseId, from, msg, ErrorCode.Unauthorized);
      }
    }
    const integrity = checkIntegrity(msg, s.localKey);
    if (integrity !== 'sha1' && integrity !== 'sha256') return this.replyError(baseId, from, msg, ErrorCode.Unauthorized);
    // RFC 8489 section 6.3.1: unknown comprehension-required attributes.
    if (msg.unknownRequired.length > 0) return this.replyError(baseId, from, msg, ErrorCode.UnknownAttribute, s.localKey, msg.unknownRequired);
    let priority: number | undefined;
    let controllingTb: bigint | undefined;
    let controlledTb: bigint | undefined;
    let useCandidate = false;
    try {
      priority = msg.get(Attr.Priority);
      controllingTb = msg.get(Attr.IceControlling);
      controlledTb = msg.get(Attr.IceControlled);
      useCandidate = msg.has(Attr.UseCandidate.type);
    } catch {
      return this.replyError(baseId, from, msg, ErrorCode.BadRequest, s.localKey);
    }
    // RFC 8445 section 7.1.1: PRIORITY and one role attribute are mandatory in a check.
    if (priority === undefined || priority === 0 || (controllingTb === undefined && controlledTb === undefined)) {
      return this.replyError(baseId, from, msg, ErrorCode.BadRequest, s.localKey);
    }

    // RFC 8445 section 7.3.1.1: role conflicts.
    if (!legacy) {
      if (this.isControlling && controllingTb !== undefined) {
        if (this.tieBreaker >= controllingTb) return this.replyError(baseId, from, msg, ErrorCode.RoleConflict, s.localKey);
        this.switchRole(false);
      } else if (!this.isControlling && controlledTb !== undefined) {
        if (this.tieBreaker >= controlledTb && !this.lite) this.switchRole(true);
        else return this.replyError(baseId, from, msg, ErrorCode.RoleConflict, s.localKey);
      }
    }

    // RFC 8445 section 7.3.1.2: the success response, XOR-MAPPED-ADDRESS the source.
    this.send(baseId, from, buildSuccess(Buffer.from(msg.transactionId), from, s.localKey));

    const local = this.candidateOfBase(baseId);
    if (!local) return this.drop('unknown-base');
    if (legacy) {
      // Consent checks from the peer on the old pair during a restart: answered, nothing more.
      s.sources.add(sourceKey(baseId, from.address, from.port));
      return;
    }
    // A request for other remote parameters than ours: the peer restarted and we have not
    // heard its new parameters yet. Answered (it authenticated with our password) but no
    // pair is made from it.
    if (s.remote && rfrag !== s.remote.ufrag) return this.drop('stale-ufrag');

    // RFC 8445 section 7.3.1.3: a source that is no known candidate is a peer-reflexive one.
    const rk = remoteKey(local.component, from.address, from.port);
    let remote = s.remoteByKey.get(rk);
    if (!remote) {
      if (s.remoteCandidates.length >= this.options.maxRemoteCandidates) return this.drop('candidate-limit');
      remote = {
        foundation: `prflx${++s.prflxCount}`,
        component: local.component,
        transport: 'udp',
        priority,
        address: from.address,
        port: from.port,
        type: 'prflx',
      };
      s.remoteCandidates.push(remote);
      s.remoteByKey.set(rk, remote);
      this.out.push({ type: 'remote-prflx', candidate: { ...remote } });
    }
    s.started = true;
    s.lastPeerCheckAt = now;
    s.sources.add(sourceKey(baseId, from.address, from.port));
    if (from.family === 'IPv6') s.sources.add(sourceKey(baseId, canonicalIp(from.address), from.port));

    if (this.lite) return this.liteRequest(s, local, remote, useCandidate, now);

    // RFC 8445 section 7.3.1.4: the triggered check.
    const pair = this.pairFor(s, local, remote);
    pair.lastRequestAt = now;
    const nominate = useCandidate && !this.isControlling;
    // After Completed: a nomination, and for three seconds any check, still triggers one (8.3.1).
    const lingering = nominate || now - s.completedAt < TRIGGERED_AFTER_COMPLETED_MS;
    const checking = s.checklistState === 'running' || (s.checklistState === 'completed' && lingering && pair.state !== 'succeeded');
    if (checking && s.checklistState !== 'failed') {
      switch (pair.state) {
        case 'succeeded':
          if (!pair.inChecklist && s.checklistState === 'running') this.insert(s, pair, 'succeeded');
          break;
        case 'in-progress':
          if (pair.tx) this.cancelTx(pair.tx);
          pair.state = 'waiting';
          this.enqueueTriggered(s, pair);
          break;
        default:
          if (pair.inChecklist) pair.state = 'waiting';
          this.enqueueTriggered(s, pair);
          break;
      }
    }
    // RFC 8445 section 7.3.1.5: USE-CANDIDATE at the controlled agent.
    if (nominate) {
      if (pair.state === 'succeeded' && pair.validPair) {
        pair.validPair.nominated = true;
        this.updateSelection(s, now);
      } else {
        pair.nominateOnSuccess = true;
      }
    }
  }

  /**
   * A lite agent (RFC 8445 sections 2.5 and 8.2) sends no checks: an authenticated check
   * makes its pair valid, USE-CANDIDATE selects it, and the full peer's checks (its consent
   * checks once connected) are the lite agent's evidence of consent.
   */
  private liteRequest(s: Session, local: LocalCandidate, remote: Candidate, useCandidate: boolean, now: number): void {
    const pair = this.pairFor(s, local, remote);
    pair.lastRequestAt = now;
    if (!pair.valid) {
      pair.state = 'succeeded';
      pair.generating = pair;
      pair.validPair = pair;
      s.addValid(pair);
    }
    if (pair.consent) pair.consent.lastAnswerAt = now;
    if (useCandidate && !pair.nominated) {
      pair.nominated = true;
      this.updateSelection(s, now);
    }
  }

  // -------------------------------------------------------------------------------------
  // Responses (RFC 8445 section 7.2.5)

  private onResponse(baseId: number, msg: StunMessage, from: TransportAddress, now: number): void {
    // RFC 8445 7.2.5 / RFC 8489 9.1.4: matched by transaction id, signed with the peer's password.
    const m = this.txs.match(msg, now);
    if (m.kind === 'unmatched') return this.drop('unknown-transaction');
    if (m.kind === 'dropped') return this.drop(m.reason === 'fingerprint' ? 'bad-fingerprint' : 'unauthenticated-response');
    const tx = m.transaction.context;
    this.stats.responsesReceived++;
    const s = tx.session;
    const pair = tx.pair;
    const current = s === this.session || (this.legacy?.session === s && tx.kind === 'consent');
    // A late answer does not revive a failed session (RFC 8445 8.1.2: failure is final).
    if (!current || (this.failed && tx.kind === 'check')) return;

    // RFC 8445 7.2.5.2.1: the answer must come from where the request went, to where it
    // came from; otherwise the pair fails.
    const symmetric = baseId === tx.baseId && from.port === tx.to.port && canonicalIp(from.address) === canonicalIp(tx.to.address);

    if (tx.kind === 'consent') {
      if (msg.isSuccess() && symmetric && pair.consent && !pair.consent.expired) {
        pair.consent.lastAnswerAt = now;
        pair.rtt = now - tx.sentAt;
      }
      return;
    }

    if (pair.tx === tx) pair.tx = undefined;
    if (!symmetric) return this.checkFailed(s, pair);

    if (msg.isError()) {
      let code: number | undefined;
      try {
        code = msg.get(Attr.ErrorCode)?.code;
      } catch {
        code = undefined;
      }
      if (code === ErrorCode.RoleConflict) {
        // RFC 8445 7.2.5.1: switch role (unless that already happened since the request),
        // then check the pair again.
        if (tx.controlling === this.isControlling) this.switchRole(!tx.controlling);
        if (s.checklistState !== 'failed') {
          if (pair.state !== 'succeeded') pair.state = 'waiting';
          if (pair.nominating && !this.isControlling) pair.nominating = false;
          this.enqueueTriggered(s, pair);
        }
        return;
      }
      // RFC 8445 7.2.5.2.4: any other error is unrecoverable for the pair.
      return this.checkFailed(s, pair);
    }

    // RFC 8445 7.2.5.3.1: the mapped address, maybe a new peer-reflexive local candidate.
    let mapped: TransportAddress | undefined;
    try {
      mapped = msg.get(Attr.XorMappedAddress);
    } catch {
      mapped = undefined;
    }
    if (!mapped) return this.checkFailed(s, pair);
    let local = this.localFor(pair.local.baseId, mapped);
    if (!local) {
      local = {
        foundation: candidateFoundation('prflx', pair.local.base.address, undefined, 'udp'),
        component: pair.local.component,
        transport: 'udp',
        priority: tx.priority,
        address: mapped.address,
        port: mapped.port,
        type: 'prflx',
        relatedAddress: pair.local.base.address,
        relatedPort: pair.local.base.port,
        base: pair.local.base,
        baseId: pair.local.baseId,
      };
      this.locals.push(local);
      this.localByKey.set(localKey(local), local);
      this.out.push({ type: 'local-prflx', candidate: { ...local } });
    }

    // RFC 8445 7.2.5.3.2: the valid pair: the local candidate the mapped address names and
    // the remote the check went to: this pair, another pair of the checklist, or a new one.
    const vp = this.pairFor(s, local, pair.remote, 'succeeded');
    pair.state = 'succeeded';
    // From the latest send: an answer to a retransmitted check cannot say which send it
    // answers (Karn), and timing it from the first would add the RTO.
    pair.rtt = now - tx.lastSentAt;
    pair.validPair = vp;
    vp.generating = pair;
    vp.rtt = pair.rtt;
    s.addValid(vp);
    s.sources.add(sourceKey(vp.local.baseId, vp.remote.address, vp.remote.port));
    s.sources.add(sourceKey(vp.local.baseId, canonicalIp(vp.remote.address), vp.remote.port));

    // RFC 8445 7.2.5.3.3: success unfreezes the pairs of the same foundation.
    for (const q of s.pairs) if (q.state === 'frozen' && q.foundation === pair.foundation) q.state = 'waiting';

    // RFC 8445 7.2.5.3.4 / 8.1.1 and 7.3.1.5: nomination.
    if ((tx.useCandidate && tx.controlling && this.isControlling) || (pair.nominateOnSuccess && !this.isControlling)) {
      vp.nominated = true;
      pair.nominateOnSuccess = false;
    }
    if (pair.nominating) {
      pair.nominating = false;
      s.nominating.delete(pair.component);
    }
    // The selected pair's own checks count as consent too (RFC 7675 section 5.1).
    if (vp.consent && !vp.consent.expired) vp.consent.lastAnswerAt = now;
    this.updateSelection(s, now);
  }

  /** The local candidate at this base with this transport address (the first one added). */
  private localFor(baseId: number, a: TransportAddress): LocalCandidate | undefined {
    return this.localByKey.get(localKey({ baseId, address: a.address, port: a.port }));
  }

  // -------------------------------------------------------------------------------------
  // State (RTCIceTransportState semantics)

  private refreshState(now: number): void {
    const next = this.computeState(now);
    // As RTCIceTransport does, 'completed' always follows 'connected', even when both are
    // reached at once (end-of-candidates already in when the pair is selected).
    if (next === 'completed' && (this.currentState === 'new' || this.currentState === 'checking')) {
      this.currentState = 'connected';
      this.out.push({ type: 'state', state: 'connected' });
    }
    if (next !== this.currentState) {
      this.currentState = next;
      this.out.push({ type: 'state', state: next });
    }
  }

  private computeState(now: number): IceState {
    if (this.closed) return 'closed';
    if (this.failed) return 'failed';
    const s = this.session;
    const disconnected = (p: Pair) => !!this.options.consent && !!p.consent && now - p.consent.lastAnswerAt >= this.options.disconnectedAfterMs;
    if (this.allSelected(s)) {
      for (const p of s.selected.values()) if (disconnected(p)) return 'disconnected';
      return s.checklistState === 'completed' && this.localEoc && s.remoteEoc ? 'completed' : 'connected';
    }
    if (this.legacy) {
      for (const p of this.legacy.pairs.values()) if (disconnected(p)) return 'disconnected';
      return 'connected';
    }
    return s.started ? 'checking' : 'new';
  }
}

/** 0.0.0.0, ::, 224.0.0.0/4 (and the reserved space above it), ff00::/8. */
function isUnspecifiedOrMulticast(address: string): boolean {
  const b = ipToBytes(address);
  if (b.every((x) => x === 0)) return true;
  return b.length === 4 ? b[0]! >= 224 : b[0] === 0xff;
}

/** fe80::/10. */
function isLinkLocal(address: string): boolean {
  return /^fe[89ab]/i.test(address);
}
