import { EventEmitter } from 'node:events';
import { type Clock, type Family, type Network, type TransportAddress, isStunMessage, nodeNetwork, realClock } from '@natkit/stun';
import type { CandidateBase } from '../base.js';
import type { Candidate, LocalCandidate } from '../candidate.js';
import { IceCore } from '../core/core.js';
import { IceError } from '../core/errors.js';
import { toTransportAddress } from '../core/pair.js';
import type { IceAction, IceCoreOptions, IceState, IceStats, PairInfo } from '../core/types.js';
import { addressKind, isEndOfCandidates, parseCandidateLine } from '../formats/candidate-line.js';
import type { IceParameters } from '../formats/parameters.js';
import { mdnsName } from '../mdns/dns.js';
import { MdnsError, MdnsResolver } from '../mdns/resolver.js';
import { Gatherer, type GathererOptions } from '../gather/gatherer.js';
import type { GathererLike } from './gatherer-like.js';

/** Every gathering option (the Gatherer's: servers, addresses, TLS, retransmissions, ...), and the agent's own. */
export interface IceAgentOptions extends Omit<GathererOptions, 'component'> {
  /** Start as the controlling agent (default true; a role conflict is repaired, RFC 8445 7.3.1.1). */
  controlling?: boolean;
  /** RFC 8445 section 14.2: ms between new checks. Default 50. */
  ta?: number;
  /** 'regular' (default, RFC 8445 8.1.1) or 'aggressive'. */
  nomination?: 'regular' | 'aggressive';
  /** Be an ICE-lite agent: host candidates only, answers checks, never sends them. */
  lite?: boolean;
  /** This agent's ufrag/pwd; generated when absent. */
  localParameters?: { ufrag: string; pwd: string };
  /** Timers and limits of the core (consent, disconnectedAfterMs, keepaliveMs, rtoMin, maxPairs, ...). */
  core?: Omit<IceCoreOptions, 'controlling' | 'ta' | 'nomination' | 'lite' | 'localParameters' | 'components'>;
  /**
   * The gatherer: an instance (the agent takes it over and closes it) or a factory given the
   * gathering options above. Default: a Gatherer with those options.
   */
  gatherer?: GathererLike | ((options: GathererOptions) => GathererLike);
  /** Resolving remote `.local` candidates (RFC 6762 one-shot queries); false turns it off. */
  mdns?: false | { timeoutMs?: number; server?: TransportAddress };
  /** How long a DNS lookup of another FQDN candidate may take, ms. Default 5000. */
  lookupTimeoutMs?: number;
}

/** The pair data goes over, as 'selected-pair' reports it. */
export interface SelectedPair {
  local: LocalCandidate;
  remote: Candidate;
  /** Round-trip time of the check that validated it, ms. */
  rtt?: number;
}

export interface IceAgentStats extends IceStats {
  dataSent: number;
  dataReceived: number;
  /** Application datagrams not sent (no selected pair, consent expired) or not delivered (unknown source). */
  dataDropped: { notConnected: number; unknownSource: number };
  /**
   * Remote candidates given up: a line that does not parse (CandidateLineError), a candidate
   * the agent refused (IceError: not usable, over the limit), a name that did not resolve.
   */
  remoteCandidatesDropped: { malformed: number; refused: number; unresolved: number };
  /** TURN channel bindings that failed (data then goes as Send indications). */
  channelBindFailures: number;
}

export interface IceAgentEvents {
  /** A local candidate to signal to the peer, the moment it is found (RFC 8838). */
  candidate: [candidate: LocalCandidate];
  /** Local end-of-candidates: signal it to the peer. */
  'gathering-complete': [];
  state: [state: IceState];
  'selected-pair': [pair: SelectedPair];
  /** Application data from the peer. */
  data: [data: Buffer, from: TransportAddress];
  /**
   * The peer restarted and this agent did too (RFC 8445 section 9): signal these parameters,
   * then the candidates and end-of-candidates that follow.
   */
  restart: [parameters: IceParameters];
  /** The role changed (role conflict, or a lite peer). */
  role: [controlling: boolean];
  /** A remote candidate was given up (its name did not resolve, or it was refused). */
  'candidate-error': [info: { candidate: Candidate; error: Error }];
}

/**
 * An ICE agent (RFC 8445) for Node.js: gathers candidates with a Gatherer, checks pairs with
 * the sans-I/O IceCore, keeps consent (RFC 7675), and carries application datagrams over the
 * selected pair, directly or through a TURN relay. Candidates trickle both ways (RFC 8838).
 *
 * ```ts
 * const agent = new IceAgent({ iceServers: [{ urls: 'stun:stun.example.org' }] });
 * agent.on('candidate', (c) => signal(formatCandidateLine(c)));
 * agent.on('gathering-complete', () => signal('end-of-candidates'));
 * agent.on('data', (d) => console.log(d.toString()));
 * await agent.gather();
 * agent.setRemoteParameters(peerParameters);     // { ufrag, pwd }
 * agent.addRemoteCandidate(line);                // each line from the peer
 * const pair = await agent.connect();
 * agent.send(Buffer.from('hello'));
 * await agent.close();
 * ```
 */
export class IceAgent extends EventEmitter<IceAgentEvents> {
  private readonly core: IceCore;
  private readonly clock: Clock;
  private readonly network: Network;
  private readonly gathererOptions: GathererOptions;
  private readonly gathererSource: IceAgentOptions['gatherer'];
  private gathererInstance: GathererLike | undefined;
  private gathering: Promise<void> | undefined;
  private gatheringDone = false;
  private readonly resolver: MdnsResolver | undefined;
  private readonly lookupTimeoutMs: number;
  /** Names of remote candidates being resolved for the current ICE session (generation). */
  private pendingResolutions = 0;
  /** The peer's end-of-candidates, held until those names are resolved. */
  private remoteEocWaiting = false;
  private timer: unknown;
  private timerAt: number | undefined;
  private closing: Promise<void> | undefined;
  private closed = false;
  private readonly wired = new Set<number>();
  /** Bases the gatherer reported closed ('base-closed'): their candidates are not signalled again. */
  private readonly deadBases = new Set<number>();
  private readonly channels = new Set<string>();
  private waiters: Array<{ resolve: (p: SelectedPair) => void; reject: (e: Error) => void }> = [];
  private readonly agentStats = {
    dataSent: 0,
    dataReceived: 0,
    dataDropped: { notConnected: 0, unknownSource: 0 },
    remoteCandidatesDropped: { malformed: 0, refused: 0, unresolved: 0 },
    channelBindFailures: 0,
  };

  constructor(options: IceAgentOptions = {}) {
    super();
    this.clock = options.clock ?? realClock;
    this.network = options.network ?? nodeNetwork;
    this.core = new IceCore({
      ...options.core,
      ...(options.controlling !== undefined ? { controlling: options.controlling } : {}),
      ...(options.ta !== undefined ? { ta: options.ta } : {}),
      ...(options.nomination !== undefined ? { nomination: options.nomination } : {}),
      ...(options.lite !== undefined ? { lite: options.lite } : {}),
      ...(options.localParameters ? { localParameters: options.localParameters } : {}),
      components: 1,
    });
    // Everything that is not the agent's own goes to the gatherer.
    const { controlling: _c, ta: _t, nomination: _n, lite, localParameters: _p, core: _o, gatherer: _g, mdns: _m, lookupTimeoutMs: _l, ...gathering } = options;
    this.gathererOptions = {
      ...gathering,
      // RFC 8445 section 2.5: a lite agent has host candidates only.
      ...(lite ? { iceServers: [] } : {}),
      network: this.network,
      clock: this.clock,
      component: 1,
    };
    this.gathererSource = options.gatherer;
    this.resolver = options.mdns === false ? undefined : new MdnsResolver({ network: this.network, clock: this.clock, ...options.mdns });
    this.lookupTimeoutMs = options.lookupTimeoutMs ?? 5000;
  }

  // -------------------------------------------------------------------------------------
  // What users read

  /** This agent's ufrag and pwd (RFC 8445 5.3): signal them to the peer. */
  get localParameters(): IceParameters {
    return this.core.localParameters;
  }

  get remoteParameters(): IceParameters | undefined {
    return this.core.remoteParameters;
  }

  get state(): IceState {
    return this.core.state;
  }

  get controlling(): boolean {
    return this.core.controlling;
  }

  /** Local candidates found so far (those of a base that closed left out). */
  get localCandidates(): readonly LocalCandidate[] {
    const all = this.gathererInstance?.candidates ?? [];
    return this.deadBases.size === 0 ? all : all.filter((c) => !this.deadBases.has(c.baseId));
  }

  get remoteCandidates(): Candidate[] {
    return this.core.remoteCandidates;
  }

  /** The selected pair of the current ICE session, if any. */
  get selectedPair(): SelectedPair | undefined {
    const p = this.core.selectedPair(1);
    return p ? toSelected(p) : undefined;
  }

  /** The checklist and the valid pairs, for diagnostics. */
  get pairs(): { checklist: PairInfo[]; valid: PairInfo[] } {
    return { checklist: this.core.checklist, valid: this.core.validPairs };
  }

  get stats(): IceAgentStats {
    return { ...this.core.stats, ...this.agentStats, dataDropped: { ...this.agentStats.dataDropped }, remoteCandidatesDropped: { ...this.agentStats.remoteCandidatesDropped } };
  }

  // -------------------------------------------------------------------------------------
  // What users call

  /**
   * Gathers local candidates; each is emitted as 'candidate' the moment it is found, then
   * 'gathering-complete'. Resolves at end-of-candidates. Calling it again returns the same promise.
   */
  gather(): Promise<void> {
    if (this.gathering) return this.gathering;
    if (this.closed) return Promise.reject(new IceError('CLOSED', 'the ICE agent is closed'));
    let g: GathererLike;
    try {
      g = this.gatherer();
    } catch (e) {
      return Promise.reject(e);
    }
    g.on('candidate', this.onLocalCandidate);
    g.on('complete', this.onGatheringComplete);
    g.on('base-closed', this.onBaseClosed);
    this.gathering = g.gather().then(
      () => this.onGatheringComplete(),
      (e: unknown) => {
        if (this.closed) return;
        throw e;
      },
    );
    return this.gathering;
  }

  /** The peer's ufrag and pwd (and `lite: true` for an ICE-lite peer). New ones mean the peer restarted. */
  setRemoteParameters(parameters: IceParameters): void {
    this.checkOpen();
    this.perform(this.core.setRemoteParameters(parameters, this.clock.now()));
  }

  /**
   * A remote candidate, as an object or as a line (`candidate:...`, `a=candidate:...`, the
   * bare value, or `a=end-of-candidates`), any time. A `.local` address is resolved by mDNS
   * first, another name by DNS; one that does not resolve is dropped (counted, and reported
   * as 'candidate-error'). Throws CandidateLineError for a malformed line and IceError for a
   * candidate the agent cannot use.
   */
  addRemoteCandidate(candidate: Candidate | string): void {
    this.checkOpen();
    let c: Candidate;
    if (typeof candidate === 'string') {
      if (isEndOfCandidates(candidate)) return this.endOfRemoteCandidates();
      try {
        c = parseCandidateLine(candidate);
      } catch (e) {
        this.agentStats.remoteCandidatesDropped.malformed++;
        throw e;
      }
    } else {
      c = candidate;
    }
    let actions: IceAction[];
    try {
      if (typeof c?.address === 'string' && addressKind(c.address) === 'fqdn') return this.resolveRemote(c);
      actions = this.core.addRemoteCandidate(c, this.clock.now());
    } catch (e) {
      this.agentStats.remoteCandidatesDropped.refused++;
      throw e;
    }
    this.perform(actions);
  }

  /** The peer signalled end-of-candidates (RFC 8838 section 13). */
  endOfRemoteCandidates(): void {
    this.checkOpen();
    if (this.pendingResolutions > 0) {
      this.remoteEocWaiting = true;
      return;
    }
    this.perform(this.core.endOfRemoteCandidates(this.clock.now()));
  }

  /**
   * Resolves with the selected pair once one is (at once if it already is); rejects with
   * IceError FAILED if ICE fails, CLOSED if the agent closes. Starts gathering if nobody did.
   */
  connect(): Promise<SelectedPair> {
    if (this.closed) return Promise.reject(new IceError('CLOSED', 'the ICE agent is closed'));
    const sel = this.selectedPair;
    if (sel && this.core.dataPath(1)) return Promise.resolve(sel);
    if (this.core.state === 'failed') return Promise.reject(new IceError('FAILED', 'ICE failed'));
    if (!this.gathering) this.gather().catch(() => {});
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /**
   * Sends one datagram of application data over the selected pair (through the TURN relay
   * for a relayed pair). Returns false, sending nothing, when no pair is selected or consent
   * has expired (RFC 7675 section 5.1). Throws IceError CLOSED after close().
   */
  send(data: Uint8Array): boolean {
    this.checkOpen();
    const route = this.core.route(this.clock.now(), 1);
    const base = route && this.gathererInstance?.base(route.baseId);
    if (!route || !base) {
      this.agentStats.dataDropped.notConnected++;
      return false;
    }
    base.send(data, route.to);
    this.agentStats.dataSent++;
    return true;
  }

  /**
   * ICE restart (RFC 8445 section 9): new local parameters, returned for signalling; the local
   * candidates are emitted again right after (then 'gathering-complete'). Data keeps flowing
   * on the selected pair until the new session selects one.
   */
  restart(): IceParameters {
    this.checkOpen();
    this.perform(this.core.restart(this.clock.now()));
    this.announceAgain();
    return this.core.localParameters;
  }

  /** Closes the sockets, TURN allocations and timers. Idempotent. */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  // -------------------------------------------------------------------------------------
  // Inside

  private checkOpen(): void {
    if (this.closed) throw new IceError('CLOSED', 'the ICE agent is closed');
  }

  private gatherer(): GathererLike {
    if (this.gathererInstance) return this.gathererInstance;
    const src = this.gathererSource;
    this.gathererInstance = typeof src === 'function' ? src(this.gathererOptions) : (src ?? new Gatherer(this.gathererOptions));
    return this.gathererInstance;
  }

  private readonly onLocalCandidate = (c: LocalCandidate): void => {
    if (this.closed) return;
    const base = this.gathererInstance?.base(c.baseId);
    if (base) this.wire(base);
    try {
      this.perform(this.core.addLocalCandidate(c, this.clock.now()));
    } catch {
      // A candidate the core cannot pair (it refuses with a reason); it is still signalled.
    }
    this.emit('candidate', c);
  };

  private readonly onGatheringComplete = (): void => {
    if (this.closed || this.gatheringDone) return;
    this.gatheringDone = true;
    // Bases without candidates of their own (none today) still need wiring.
    for (const b of this.gathererInstance?.bases ?? []) this.wire(b);
    this.perform(this.core.endOfLocalCandidates(this.clock.now()));
    this.emit('gathering-complete');
  };

  /**
   * A base is gone (a TURN allocation lost: its refresh refused, its connection closed): its
   * pairs go, and a selected pair on it fails the agent at once rather than after 30 s of
   * unanswered consent checks (restart() then gathers a new path).
   */
  private readonly onBaseClosed = (base: CandidateBase): void => {
    if (this.closed || this.deadBases.has(base.id)) return;
    this.deadBases.add(base.id);
    this.perform(this.core.baseClosed(base.id, this.clock.now()));
  };

  private wire(base: CandidateBase): void {
    if (this.wired.has(base.id)) return;
    this.wired.add(base.id);
    const id = base.id;
    base.onPacket = (data, from) => this.onPacket(id, data, from);
  }

  /**
   * RFC 7983 demultiplexing: a first byte of 0-3 that starts a STUN message (magic cookie,
   * length that fits) is ICE's; everything else is the application's. ChannelData (64-79)
   * never reaches an ICE socket: the relay base unwraps it before `onPacket`.
   */
  private onPacket(baseId: number, data: Buffer, from: TransportAddress): void {
    if (this.closed) return;
    if (data.length > 0 && data[0]! < 4 && isStunMessage(data)) {
      this.perform(this.core.handleStun(baseId, data, from, this.clock.now()));
      return;
    }
    if (!this.core.isDataSource(baseId, from)) {
      this.agentStats.dataDropped.unknownSource++;
      return;
    }
    this.agentStats.dataReceived++;
    this.emit('data', data, from);
  }

  private perform(actions: IceAction[]): void {
    try {
      this.performAll(actions);
    } finally {
      // Even if a listener throws, the core's next deadline stays on the clock.
      this.schedule();
    }
  }

  private performAll(actions: IceAction[]): void {
    for (const a of actions) {
      switch (a.type) {
        case 'send': {
          const base = this.gathererInstance?.base(a.baseId);
          base?.send(a.data, a.to);
          break;
        }
        case 'state':
          this.emit('state', a.state);
          if (a.state === 'failed' || a.state === 'closed') {
            const err = a.state === 'failed' ? new IceError('FAILED', 'ICE failed: no candidate pair works, or consent expired') : new IceError('CLOSED', 'the ICE agent was closed');
            const w = this.waiters;
            this.waiters = [];
            for (const x of w) x.reject(err);
          }
          break;
        case 'selected-pair': {
          const sel = toSelected(a.pair);
          this.bindChannel(a.pair);
          this.emit('selected-pair', sel);
          const w = this.waiters;
          this.waiters = [];
          for (const x of w) x.resolve(sel);
          break;
        }
        case 'role':
          this.emit('role', a.controlling);
          break;
        case 'restart':
          this.emit('restart', a.parameters);
          this.announceAgain();
          break;
        default:
          break;
      }
    }
  }

  /** RFC 8656 section 12: once a relayed pair is selected, data goes as ChannelData. */
  private bindChannel(p: PairInfo): void {
    if (p.local.type !== 'relay') return;
    const base = this.gathererInstance?.base(p.local.baseId);
    const k = `${p.local.baseId}|${p.remote.address}|${p.remote.port}`;
    if (!base?.bindChannel || this.channels.has(k)) return;
    this.channels.add(k);
    base.bindChannel(toTransportAddress(p.remote)).catch(() => {
      this.agentStats.channelBindFailures++;
      this.channels.delete(k);
    });
  }

  /** After a restart the peer needs every local candidate again (RFC 8445 section 9, RFC 8838). */
  private announceAgain(): void {
    // Names still resolving belong to the previous session: the new one neither waits for
    // them nor inherits an end-of-candidates held back for them.
    this.pendingResolutions = 0;
    this.remoteEocWaiting = false;
    queueMicrotask(() => {
      if (this.closed) return;
      for (const c of this.gathererInstance?.candidates ?? []) if (!this.deadBases.has(c.baseId)) this.emit('candidate', c);
      if (this.gatheringDone) this.emit('gathering-complete');
    });
  }

  private schedule(): void {
    const at = this.closed ? undefined : this.core.nextTimeout();
    if (at === this.timerAt && (at === undefined || this.timer !== undefined)) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = at;
    if (at === undefined) return;
    this.timer = this.clock.setTimeout(this.onTimer, Math.max(0, at - this.clock.now()));
  }

  private readonly onTimer = (): void => {
    this.timer = undefined;
    this.timerAt = undefined;
    if (this.closed) return;
    this.perform(this.core.handleTimeout(this.clock.now()));
  };

  /**
   * Resolves a remote candidate's name (mDNS for .local, DNS otherwise) and adds what it
   * resolves to. A peer cannot make the agent resolve more names at once than it may have
   * remote candidates (IceError TOO_MANY_CANDIDATES, as the core says for addresses), and a
   * name adds at most one address of each family: a browser registers one name per address
   * (draft-ietf-mmusic-mdns-ice-candidates), and a hostile answer listing many addresses must
   * not fill the remote candidate limit or spray checks.
   */
  private resolveRemote(c: Candidate): void {
    const limit = this.core.options.maxRemoteCandidates;
    if (this.pendingResolutions + this.core.remoteCandidates.length >= limit) {
      throw new IceError('TOO_MANY_CANDIDATES', `more than ${limit} remote candidates (names being resolved included)`);
    }
    const generation = this.core.generation;
    const name = c.address;
    this.pendingResolutions++;
    const lookup: Promise<Array<{ family: Family; address: string }>> = mdnsName(name) !== undefined
      ? this.resolver
        ? this.resolver.resolve(name)
        : Promise.reject(new MdnsError('UNREACHABLE', 'mDNS resolution is turned off (options.mdns: false)'))
      : this.lookupName(name);
    lookup
      .then(
        (addresses) => {
          if (this.closed || generation !== this.core.generation) return;
          const families = new Set<Family>();
          for (const a of addresses) {
            if (families.has(a.family)) continue;
            families.add(a.family);
            try {
              this.perform(this.core.addRemoteCandidate({ ...c, address: a.address }, this.clock.now()));
            } catch (e) {
              this.agentStats.remoteCandidatesDropped.refused++;
              this.emit('candidate-error', { candidate: c, error: e as Error });
            }
          }
          if (addresses.length === 0) this.agentStats.remoteCandidatesDropped.unresolved++;
        },
        (err: Error) => {
          if (this.closed || generation !== this.core.generation) return;
          this.agentStats.remoteCandidatesDropped.unresolved++;
          this.emit('candidate-error', { candidate: c, error: err });
        },
      )
      .finally(() => {
        if (this.closed || generation !== this.core.generation) return;
        this.pendingResolutions--;
        if (this.pendingResolutions === 0 && this.remoteEocWaiting) {
          this.remoteEocWaiting = false;
          this.perform(this.core.endOfRemoteCandidates(this.clock.now()));
        }
      });
  }

  /** DNS for a candidate with a name other than .local (RFC 8839 allows an FQDN), with a timeout. */
  private lookupName(name: string): Promise<Array<{ family: Family; address: string }>> {
    return new Promise((resolve, reject) => {
      const t = this.clock.setTimeout(() => reject(new IceError('BAD_CANDIDATE', `DNS lookup of ${name} took longer than ${this.lookupTimeoutMs} ms`)), this.lookupTimeoutMs);
      this.network.lookup(name).then(
        (a) => {
          this.clock.clearTimeout(t);
          resolve(a);
        },
        (e: Error) => {
          this.clock.clearTimeout(t);
          reject(new IceError('BAD_CANDIDATE', `${name} does not resolve: ${e.message}`, { cause: e }));
        },
      );
    });
  }

  private async shutdown(): Promise<void> {
    if (!this.closed) this.perform(this.core.close(this.clock.now()));
    this.closed = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    const g = this.gathererInstance;
    if (g) {
      g.off('candidate', this.onLocalCandidate);
      g.off('complete', this.onGatheringComplete);
      g.off('base-closed', this.onBaseClosed);
      for (const b of g.bases) if (this.wired.has(b.id)) b.onPacket = undefined;
    }
    await Promise.allSettled([this.resolver?.close(), g?.close(), this.gathering]);
  }
}

function toSelected(p: PairInfo): SelectedPair {
  const s: SelectedPair = { local: p.local, remote: p.remote };
  if (p.rtt !== undefined) s.rtt = p.rtt;
  return s;
}
