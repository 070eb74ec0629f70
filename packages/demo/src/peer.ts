import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  type Candidate,
  Gatherer,
  type GathererOptions,
  IceAgent,
  type IceParameters,
  type IceServer,
  type IceState,
  type LocalCandidate,
  type SelectedPair,
} from '@natkit/ice';
import { type Clock, type InterfaceAddress, type NatReport, type TransportAddress, checkNat, formatAddress, realClock } from '@natkit/stun';
import type { DemoEvent, DemoPath, NatSummary, PathEnd, TimedEvent } from './events.js';
import { failureVerdict, natMeaning, pathMeaning } from './meaning.js';
import { decide, MAX_SESSION, sessionOf, sessionParameters } from './sessions.js';
import { type RemoteCandidate, Signalling, type SignallingOptions } from './signalling.js';

export interface NatCheckOptions {
  server: TransportAddress;
  /** How long one probe waits for an answer, ms (4 sends at doubling intervals). */
  timeoutMs: number;
  hairpin: boolean;
}

export interface P2pPeerOptions {
  signal: SignallingOptions;
  iceServers: IceServer[];
  /** 'relay': relayed candidates only (RTCConfiguration.iceTransportPolicy). */
  policy?: 'all' | 'relay';
  /** Which local addresses to gather on (see @natkit/ice's Gatherer). */
  addresses?: string[];
  includeLoopback?: boolean;
  interfaceFilter?: (a: InterfaceAddress) => boolean;
  families?: Array<'IPv4' | 'IPv6'>;
  tls?: GathererOptions['tls'];
  /** How long each STUN/TURN server gets while gathering, ms. */
  serverTimeoutMs?: number;
  /** The NAT check first (natcheck's library); undefined: skipped, with `natSkipped` saying why. */
  natCheck?: NatCheckOptions;
  natSkipped?: string;
  /** Between two random bytes: uniformly from min to max, ms. */
  intervalMs: { min: number; max: number };
  /** A session that has the peer's parameters and no path after this long has failed, ms. */
  connectTimeoutMs: number;
  /**
   * No answer to consent checks (RFC 7675) for this long: the path is broken and ICE
   * restarts, ms. Consent checks go every min(5 s, this / 2.5), so that two fit in.
   */
  disconnectedAfterMs: number;
  /** SOFTWARE in STUN/TURN requests. */
  software?: string;
  version?: string;
  clock?: Clock;
  random?: () => number;
  randomBytes?: (n: number) => Uint8Array;
}

export interface P2pPeerEvents {
  event: [event: TimedEvent];
}

/** One ICE session: an agent with its own parameters and candidates (see sessions.ts). */
interface Session {
  number: number;
  params: IceParameters;
  agent: IceAgent;
  remote?: IceParameters;
  createdAt: number;
  remoteAt?: number;
  connectedAt?: number;
  pair?: SelectedPair;
  timer?: unknown;
  turnErrors: string[];
  remoteEoc: boolean;
  /** Created after the peer left (rooms): its messages are held for the next peer. */
  afterPeerLeft: boolean;
  closing?: Promise<void>;
}

const relayTypes = (c: { type: string }) => c.type === 'relay';

/**
 * The libjingle tutorial's P2P client, rebuilt: reports the NAT it is behind, connects to
 * the signalling server, gathers (STUN and TURN servers as given), trickles its candidates
 * and adds the peer's, connects with ICE (RFC 8445), then sends a random byte at random
 * intervals over the path and reports what arrives. When the path breaks (consent lost,
 * RFC 7675) it goes back to exchanging candidates (an ICE restart, with candidates gathered
 * anew) and reports when it recovered and how long it took.
 *
 * Roles: in a room, the party that was there first (signalserver's `initiator`) is the
 * controlling agent; on the tutorial's plain pipe, which says nothing of the kind, both
 * start controlling and RFC 8445 section 7.3.1.1's tie-breakers settle it (the larger one
 * stays controlling), the way two agents that both think they initiated always do.
 *
 * Everything it has to say comes out as `event` (events.ts); run() resolves with the exit
 * status: 0 stopped, 1 failed (no path), 3 the signalling server cannot be reached.
 */
export class P2pPeer extends EventEmitter<P2pPeerEvents> {
  private readonly clock: Clock;
  private readonly random: () => number;
  private readonly randomBytes: (n: number) => Uint8Array;
  private readonly startedAt: number;
  private signalling: Signalling | undefined;
  private controlling = true;
  private readonly sessions = new Set<Session>();
  private current: Session | undefined;
  private active: Session | undefined;
  private highest = 0;
  private everConnected = false;
  private breakAt: number | undefined;
  /** How long the path had been silent when the break was noticed (consent), ms. */
  private silentBefore: number | undefined;
  private retries = 0;
  private retryTimer: unknown;
  private sendTimer: unknown;
  private sent = 0;
  private received = 0;
  private ownNat: NatSummary | undefined;
  private peerNat: NatSummary | undefined;
  private peerSeen = false;
  private peerRelayOnly = false;
  private peerHere = false;
  private stopping: Promise<void> | undefined;
  private finished = false;
  private resolveRun!: (code: number) => void;
  private readonly done: Promise<number>;

  constructor(readonly options: P2pPeerOptions) {
    super();
    this.clock = options.clock ?? realClock;
    this.random = options.random ?? Math.random;
    this.randomBytes = options.randomBytes ?? cryptoRandomBytes;
    this.startedAt = this.clock.now();
    this.done = new Promise((r) => (this.resolveRun = r));
  }

  /** Runs until stop(), a failure, or a signalling server that cannot be reached; resolves with the exit status. */
  async run(): Promise<number> {
    const o = this.options;
    const servers = o.iceServers.flatMap((s) => (Array.isArray(s.urls) ? s.urls : [s.urls]));
    this.out({
      event: 'start',
      version: o.version ?? '0',
      signal: `${o.signal.host}:${o.signal.port}`,
      ...(o.signal.room !== undefined ? { room: o.signal.room } : {}),
      plain: o.signal.room === undefined,
      stun: servers.filter((u) => /^stuns?:/i.test(u)),
      turn: servers.filter((u) => /^turns?:/i.test(u)),
      relayOnly: o.policy === 'relay',
      interval: o.intervalMs.min === o.intervalMs.max ? `${o.intervalMs.min / 1000} s` : `${o.intervalMs.min / 1000}-${o.intervalMs.max / 1000} s`,
    });
    await this.checkNat();
    if (this.finished) return this.done;
    this.startSignalling();
    return this.done;
  }

  /** Closes every agent (sockets, TURN allocations) and leaves the signalling server. */
  stop(reason = 'stopped'): Promise<void> {
    return this.shutdown(reason, 0);
  }

  // -------------------------------------------------------------------------------------
  // Output

  private out(e: DemoEvent): void {
    const t = Math.round(this.clock.now() - this.startedAt) / 1000;
    this.emit('event', { ...e, t } as TimedEvent);
  }

  // -------------------------------------------------------------------------------------
  // 1. The NAT we are behind (RFC 5780 through natcheck's library)

  private async checkNat(): Promise<void> {
    const nc = this.options.natCheck;
    if (!nc) {
      this.ownNat = { classic: 'Unknown' };
      this.out({ event: 'nat', skipped: this.options.natSkipped ?? 'no STUN server given', classic: 'Unknown', meaning: natMeaning('Unknown') });
      return;
    }
    // Sends at 0, rto, 3 rto, 7 rto; gives up 4 rto after the last: 11 rto in all (as natcheck).
    const rto = Math.max(10, Math.round(nc.timeoutMs / 11));
    let r: NatReport;
    try {
      r = await checkNat(nc.server, { retransmit: { rto, rc: 4, rm: 4 }, hairpin: nc.hairpin, ...(this.options.software ? { software: this.options.software } : {}) });
    } catch (err) {
      this.ownNat = { classic: 'Unknown' };
      this.out({ event: 'nat', skipped: `the NAT check failed: ${(err as Error).message}`, classic: 'Unknown', meaning: natMeaning('Unknown') });
      return;
    }
    this.ownNat = { classic: r.classic, ...(r.mapping ? { mapping: r.mapping } : {}), ...(r.filtering ? { filtering: r.filtering } : {}) };
    this.out({
      event: 'nat',
      server: formatAddress(nc.server),
      classic: r.classic,
      rfc5780: r.serverSupportsDiscovery,
      udpBlocked: r.udpBlocked,
      local: formatAddress(r.local),
      ...(r.mapped ? { mapped: formatAddress(r.mapped) } : {}),
      ...(r.natPresent !== undefined ? { natPresent: r.natPresent } : {}),
      ...(r.mapping ? { mapping: r.mapping } : {}),
      ...(r.filtering ? { filtering: r.filtering } : {}),
      ...(r.hairpinning !== undefined ? { hairpinning: r.hairpinning } : {}),
      ...(r.portPreservation !== undefined ? { portPreservation: r.portPreservation } : {}),
      meaning: natMeaning(r.udpBlocked ? 'UDP Blocked' : r.classic),
    });
  }

  // -------------------------------------------------------------------------------------
  // 2. The signalling server

  private startSignalling(): void {
    const o = this.options;
    // Rooms: a ping on the signalling connection after 5 s of quiet, so that a NAT that forgot
    // its TCP mapping (the same NAT as the ICE path, often) is noticed within seconds.
    const sig = new Signalling({ ...o.signal, client: { pingInterval: 5000, ...o.signal.client } });
    this.signalling = sig;
    const server = `${o.signal.host}:${o.signal.port}`;
    sig.on('joined', ({ initiator, peer, reconnected }) => {
      if (reconnected) {
        this.out({ event: 'signal', state: 'rejoined', server, ...(o.signal.room !== undefined ? { room: o.signal.room } : {}) });
        // What was in flight when the connection broke may be lost (SignalClient): a session
        // that has not connected starts over.
        const cur = this.current;
        if (cur && !cur.connectedAt) this.restartLocal('signalling reconnected while candidates were being exchanged');
        return;
      }
      if (sig.plain) {
        this.controlling = true;
        this.out({ event: 'signal', state: 'connected', server });
      } else {
        this.controlling = initiator ?? true;
        this.out({ event: 'signal', state: 'joined', server, room: o.signal.room!, initiator: initiator ?? true, peer: peer ?? false });
        if (peer) this.peerArrived();
        this.sendNatReport();
      }
      if (!sig.plain && !peer) this.out({ event: 'waiting', for: 'peer' });
      if (sig.plain) this.out({ event: 'waiting', for: 'peer-candidates' });
      this.newSession(0, 'first');
    });
    sig.on('peer-joined', ({ resumed }) => {
      const before = this.peerSeen;
      this.peerArrived();
      this.out({ event: 'peer', state: resumed ? 'back' : 'joined' });
      const cur = this.current;
      if (!cur) return;
      if (cur.timer === undefined && !cur.connectedAt) this.armTimer(cur);
      if (resumed) {
        // It came back on a new connection: what we sent meanwhile may be lost.
        if (!cur.connectedAt) this.restartLocal('the peer reconnected to the signalling server');
      } else if (before && (cur.remote || !cur.afterPeerLeft)) {
        // A new peer: our session's messages went to the one before; start one for it.
        this.restartLocal('a new peer joined');
      }
    });
    sig.on('peer-left', ({ reason }) => {
      this.peerHere = false;
      this.out({ event: 'peer', state: 'left', reason });
      if (this.finished) return;
      const cur = this.current;
      if (this.active && this.active === cur && this.breakAt === undefined) {
        this.breakAt = this.clock.now();
        this.silentBefore = undefined;
        this.out({ event: 'disconnected', session: cur.number, reason: 'peer-left', detail: `the peer left the room (${reason})` });
      }
      // A peer that said bye or closed its connection is gone, and so is the path to it.
      if ((reason === 'bye' || reason === 'closed') && this.active) this.closeSession(this.active);
      // A fresh session (and our NAT report) whose messages the server holds for the next peer.
      if (cur && (cur.remote || !cur.afterPeerLeft)) this.restartLocal('the peer left; waiting for a peer', true);
      this.sendNatReport();
      if (!sig.plain) this.out({ event: 'waiting', for: 'peer' });
    });
    sig.on('parameters', (p) => this.onRemoteParameters(p));
    sig.on('candidate', (c) => this.onRemoteCandidate(c));
    sig.on('end-of-candidates', ({ ufrag }) => {
      const cur = this.current;
      if (!cur || (ufrag !== undefined && ufrag !== cur.remote?.ufrag)) return;
      cur.remoteEoc = true;
      try {
        cur.agent.endOfRemoteCandidates();
      } catch {
        // closed meanwhile
      }
    });
    sig.on('app', (data) => {
      // The peer gave up first (its --timeout, or ICE failed): the same checks failed here.
      const failed = (data as { failed?: { reason?: unknown } } | null)?.failed;
      if (failed) {
        if (!this.everConnected && this.current && !this.finished) this.sessionFailed(this.current, `the peer found no path either (${typeof failed.reason === 'string' ? failed.reason : 'no reason given'})`);
        return;
      }
      this.peerRelayOnly = (data as { relayOnly?: unknown } | null)?.relayOnly === true;
      const nat = (data as { nat?: unknown } | null)?.nat as Record<string, unknown> | undefined;
      if (nat && typeof nat.classic === 'string') {
        this.peerNat = { classic: nat.classic, ...(typeof nat.mapping === 'string' ? { mapping: nat.mapping } : {}), ...(typeof nat.filtering === 'string' ? { filtering: nat.filtering } : {}) };
        this.out({ event: 'peer-nat', nat: this.peerNat });
      }
    });
    sig.on('bad-input', ({ text, error }) => this.out({ event: 'warning', message: `not a candidate line from the peer, dropped: ${JSON.stringify(text)} (${error})` }));
    sig.on('warning', (message) => this.out({ event: 'warning', message: `signalling: ${message}` }));
    sig.on('reconnecting', ({ attempt, delay, error }) => {
      this.out({ event: 'signal', state: 'reconnecting', server, attempt, delayMs: delay, ...(error ? { error } : {}) });
      if (!sig.joinedOnce && attempt >= 3) {
        this.out({ event: 'error', message: `cannot reach the signalling server ${server}: ${error ?? 'no answer'}` });
        void this.shutdown('the signalling server cannot be reached', 3);
      }
    });
    sig.on('close', (err) => {
      if (this.stopping || this.finished) return;
      this.out({ event: 'error', message: `the signalling server closed the connection${err ? `: ${err.message}` : ''}` });
      void this.shutdown('signalling closed', 1);
    });
    sig.connect().catch(() => {
      // reported through 'close' / 'reconnecting'
    });
  }

  private peerArrived(): void {
    this.peerSeen = true;
    this.peerHere = true;
  }

  private sendNatReport(): void {
    if (this.ownNat) this.signalling?.sendApp({ nat: this.ownNat, relayOnly: this.options.policy === 'relay' });
  }

  // -------------------------------------------------------------------------------------
  // 3. Sessions (sessions.ts has the rule)

  private newSession(number: number, why: string, adopt?: IceParameters, afterPeerLeft = false): Session {
    const o = this.options;
    const params = sessionParameters(Math.min(number, MAX_SESSION), this.randomBytes);
    const consentMs = Math.min(5000, Math.round(o.disconnectedAfterMs / 2.5));
    const turnErrors: string[] = [];
    const agent = new IceAgent({
      controlling: this.controlling,
      localParameters: params,
      iceServers: o.iceServers,
      policy: o.policy ?? 'all',
      ...(o.addresses ? { addresses: o.addresses } : {}),
      ...(o.includeLoopback !== undefined ? { includeLoopback: o.includeLoopback } : {}),
      ...(o.interfaceFilter ? { interfaceFilter: o.interfaceFilter } : {}),
      ...(o.families ? { families: o.families } : {}),
      ...(o.serverTimeoutMs !== undefined ? { serverTimeoutMs: o.serverTimeoutMs } : {}),
      clock: this.clock,
      core: { disconnectedAfterMs: o.disconnectedAfterMs, consent: { intervalMs: consentMs } },
      gatherer: (go) => {
        const g = new Gatherer({ ...go, ...(o.tls ? { tls: o.tls } : {}), ...(o.software ? { software: o.software } : {}) });
        g.on('server-done', (outcome) => {
          if (this.finished) return;
          if (!outcome.ok && outcome.kind === 'turn') turnErrors.push(`${outcome.url}: ${outcome.error?.code ?? 'failed'}${outcome.error?.errorCode ? ` ${outcome.error.errorCode}` : ''}`);
          if (this.current?.agent === agent) {
            this.out({ event: 'server', session: number, url: outcome.url, ok: outcome.ok, ms: Math.round(outcome.elapsedMs), ...(outcome.error ? { error: `${outcome.error.code}: ${outcome.error.message}` } : {}) });
          }
        });
        return g;
      },
    });
    const s: Session = { number, params, agent, createdAt: this.clock.now(), turnErrors, remoteEoc: false, afterPeerLeft };
    const previous = this.current;
    this.sessions.add(s);
    this.current = s;
    this.highest = Math.max(this.highest, number);
    this.out({ event: 'session', session: number, ufrag: params.ufrag, role: this.controlling ? 'controlling' : 'controlled', why });
    // A session that never carried data is of no more use once another replaces it.
    if (previous && previous !== this.active) this.closeSession(previous);

    agent.on('candidate', (c) => this.onLocalCandidate(s, c));
    agent.on('gathering-complete', () => {
      if (s !== this.current || this.finished) return;
      this.signalling?.sendEndOfCandidates(s.params);
      const n = (t: string) => agent.localCandidates.filter((c) => c.type === t).length;
      this.out({ event: 'gathered', session: s.number, host: n('host'), srflx: n('srflx'), relay: n('relay'), ms: Math.round(this.clock.now() - s.createdAt) });
    });
    agent.on('state', (st) => this.onState(s, st));
    agent.on('selected-pair', (p) => this.onSelected(s, p));
    agent.on('data', (d) => this.onData(d));
    agent.on('role', (controlling) => {
      if (s === this.current) this.out({ event: 'role', session: s.number, role: controlling ? 'controlling' : 'controlled' });
    });
    agent.on('candidate-error', ({ candidate, error }) => this.out({ event: 'warning', message: `remote candidate ${candidate.address}:${candidate.port} dropped: ${error.message}` }));

    this.signalling?.sendParameters(params, this.sessions.size > 1 || number > 0);
    if (adopt) this.setRemote(s, adopt);
    else if (this.signalling?.plain ? this.peerSeen : this.peerHere) this.armTimer(s);
    agent.gather().catch((err: Error) => {
      if (this.finished || s.closing) return;
      this.out({ event: 'error', message: `gathering failed: ${err.message}` });
      void this.shutdown('gathering failed', 1);
    });
    return s;
  }

  private setRemote(s: Session, p: IceParameters): void {
    s.remote = p;
    s.remoteAt = this.clock.now();
    this.peerArrived();
    try {
      s.agent.setRemoteParameters(p);
    } catch (err) {
      this.out({ event: 'warning', message: `the peer's parameters were refused: ${(err as Error).message}` });
      return;
    }
    this.armTimer(s);
  }

  /**
   * The session's deadline (--timeout): with the peer's parameters, no path by then is a
   * failure; without them (our messages, or the peer's answer, lost on the way), start over.
   * Armed once the peer is there (rooms: in the room; plain: its first line has come).
   */
  private armTimer(s: Session): void {
    if (s.timer !== undefined) this.clock.clearTimeout(s.timer);
    const t = this.options.connectTimeoutMs;
    s.timer = this.clock.setTimeout(() => {
      s.timer = undefined;
      if (s !== this.current || s.connectedAt || this.finished) return;
      if (s.remote) this.sessionFailed(s, `no path within ${t / 1000} s of the peer's candidates`);
      else this.restartLocal(`no answer from the peer within ${t / 1000} s`);
    }, t);
  }

  /** The other peer's parameters: its session, which may be ours, a stale one, or a new one to follow. */
  private onRemoteParameters(p: IceParameters): boolean {
    const cur = this.current;
    if (!cur || this.finished) return false;
    const d = decide({ number: cur.number, remoteUfrag: cur.remote?.ufrag, highest: this.highest }, p.ufrag);
    this.highest = Math.max(this.highest, sessionOf(p.ufrag) ?? 0);
    switch (d.action) {
      case 'same':
        return true;
      case 'stale':
        return false;
      case 'accept':
        this.setRemote(cur, p);
        return true;
      case 'new-session': {
        if (this.active && this.active === cur && this.breakAt === undefined) {
          // We had a path, and the peer moved on: for it, the path broke.
          this.breakAt = this.clock.now();
          this.silentBefore = undefined;
          this.out({ event: 'disconnected', session: cur.number, reason: 'peer-restarted', detail: d.why === 'peer-replaced' ? 'another peer process took the place of ours' : 'the peer restarted ICE (it lost the path)' });
        }
        this.out({ event: 'restart', session: d.number, by: 'peer', why: d.why === 'peer-replaced' ? 'a different peer process answered' : 'the peer restarted ICE' });
        this.newSession(d.number, d.why, d.adopt ? p : undefined);
        return d.adopt;
      }
    }
  }

  private onRemoteCandidate({ candidate, parameters }: RemoteCandidate): void {
    if (this.finished) return;
    // Plain lines carry the session's parameters: a new ufrag is a new session of the peer.
    if (parameters?.pwd !== undefined && !this.onRemoteParameters({ ufrag: parameters.ufrag, pwd: parameters.pwd })) return;
    const cur = this.current;
    if (!cur) return;
    if (parameters && parameters.ufrag !== cur.remote?.ufrag) return; // another session's
    this.out({
      event: 'candidate',
      direction: 'remote',
      session: cur.number,
      type: candidate.type,
      protocol: candidate.transport,
      address: candidate.address,
      port: candidate.port,
      priority: candidate.priority,
      ...(candidate.relatedAddress !== undefined ? { relatedAddress: candidate.relatedAddress, relatedPort: candidate.relatedPort } : {}),
    });
    try {
      cur.agent.addRemoteCandidate(candidate);
    } catch (err) {
      this.out({ event: 'warning', message: `remote candidate ${candidate.address}:${candidate.port} refused: ${(err as Error).message}` });
    }
  }

  private onLocalCandidate(s: Session, c: LocalCandidate): void {
    if (s !== this.current || this.finished || !this.signalling) return;
    let wire: string | undefined;
    try {
      wire = this.signalling.sendCandidate(c, s.params);
    } catch (err) {
      this.out({ event: 'warning', message: `candidate ${c.address}:${c.port} not sent: ${(err as Error).message}` });
      return;
    }
    this.out({
      event: 'candidate',
      direction: 'local',
      session: s.number,
      type: c.type,
      protocol: c.transport,
      address: c.address,
      port: c.port,
      priority: c.priority,
      ...(c.relatedAddress !== undefined ? { relatedAddress: c.relatedAddress, relatedPort: c.relatedPort } : {}),
      ...(this.signalling.plain ? { wire } : {}),
    });
  }

  private onState(s: Session, st: IceState): void {
    if (this.finished) return;
    if ((st === 'disconnected' || st === 'failed') && s === this.active && s === this.current && this.breakAt === undefined) {
      this.breakAt = this.clock.now();
      const ms = st === 'failed' ? 30_000 : this.options.disconnectedAfterMs;
      this.silentBefore = ms;
      this.out({
        event: 'disconnected',
        session: s.number,
        reason: st === 'failed' ? 'consent-expired' : 'consent',
        detail: `no answer to consent checks for ${ms / 1000} s (RFC 7675)`,
        silentMs: ms,
      });
      this.restartLocal('the path broke');
      return;
    }
    if (st === 'failed' && s === this.current && !s.connectedAt) this.sessionFailed(s, 'ICE failed: every candidate pair failed (RFC 8445)');
  }

  private onSelected(s: Session, p: SelectedPair): void {
    if (this.finished) return;
    s.pair = p;
    if (s.connectedAt !== undefined) {
      if (s === this.active) this.out({ event: 'path', session: s.number, path: this.describePath(s, p), ...(p.rtt !== undefined ? { rttMs: round(p.rtt) } : {}) });
      return;
    }
    if (s !== this.current) return;
    s.connectedAt = this.clock.now();
    if (s.timer !== undefined) this.clock.clearTimeout(s.timer);
    s.timer = undefined;
    const path = this.describePath(s, p);
    const meaning = pathMeaning(path, this.options.policy === 'relay' ? 'local' : this.peerRelayOnly ? 'peer' : undefined);
    this.active = s;
    this.retries = 0;
    if (!this.everConnected) {
      this.everConnected = true;
      this.out({ event: 'connected', session: s.number, path, ...(p.rtt !== undefined ? { rttMs: round(p.rtt) } : {}), iceMs: Math.round(s.connectedAt - Math.max(s.createdAt, s.remoteAt ?? s.createdAt)), meaning });
      this.scheduleSend();
    } else {
      const since = this.breakAt ?? s.createdAt;
      const recoveryMs = Math.round(s.connectedAt - since);
      const silent = this.silentBefore;
      this.breakAt = this.silentBefore = undefined;
      this.out({
        event: 'recovered',
        session: s.number,
        path,
        ...(p.rtt !== undefined ? { rttMs: round(p.rtt) } : {}),
        recoveryMs,
        ...(silent !== undefined ? { outageMs: recoveryMs + silent } : {}),
        meaning,
      });
    }
    for (const other of this.sessions) if (other !== s) this.closeSession(other);
  }

  private describePath(s: Session, p: SelectedPair): DemoPath {
    const end = (c: Candidate): PathEnd => ({ type: c.type, address: c.address, port: c.port, protocol: c.transport });
    const local = end(p.local);
    const remote = end(p.remote);
    // A peer-reflexive remote candidate at the address of one the peer signalled as relayed
    // is that relayed candidate (learned from its check before its line arrived).
    const remoteRelay = remote.type === 'relay' || s.agent.remoteCandidates.some((c) => relayTypes(c) && c.address === remote.address && c.port === remote.port);
    const localRelay = local.type === 'relay' || s.agent.localCandidates.some((c) => relayTypes(c) && c.baseId === p.local.baseId);
    return { local, remote, kind: localRelay || remoteRelay ? 'relayed' : 'direct' };
  }

  private restartLocal(why: string, afterPeerLeft = false): void {
    if (this.finished) return;
    if (this.retryTimer !== undefined) this.clock.clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const number = Math.min(MAX_SESSION, Math.max(this.current?.number ?? 0, this.highest) + 1);
    this.out({ event: 'restart', session: number, by: 'local', why });
    this.newSession(number, why, undefined, afterPeerLeft);
  }

  /** A session that found no path: the first one decides (the verdict); later ones are tried again. */
  private sessionFailed(s: Session, reason: string): void {
    if (this.finished) return;
    if (!this.everConnected) {
      const remoteRelays = s.agent.remoteCandidates.filter(relayTypes).length;
      const localRelays = s.agent.localCandidates.filter(relayTypes).length;
      const turnServers = this.options.iceServers.flatMap((x) => (Array.isArray(x.urls) ? x.urls : [x.urls])).filter((u) => /^turns?:/i.test(u)).length;
      const v = failureVerdict({ localRelays, remoteRelays, turnServers, turnErrors: s.turnErrors, ...(this.ownNat ? { ownNat: this.ownNat.classic } : {}), ...(this.peerNat ? { peerNat: this.peerNat.classic } : {}) });
      this.out({ event: 'failed', session: s.number, reason, ...v });
      // Rooms: the peer hears it before our bye, so it gives its verdict too (not a wait for a new peer).
      this.signalling?.sendApp({ failed: { reason } });
      void this.shutdown('no path', 1);
      return;
    }
    const inMs = Math.min(30_000, 1000 * 2 ** this.retries);
    this.retries++;
    this.out({ event: 'retry', session: s.number, reason, inMs });
    this.retryTimer = this.clock.setTimeout(() => {
      this.retryTimer = undefined;
      if (s === this.current && !s.connectedAt) this.restartLocal(`session ${s.number} found no path`);
    }, inMs);
  }

  private closeSession(s: Session): void {
    if (s.closing) return;
    if (s.timer !== undefined) this.clock.clearTimeout(s.timer);
    s.timer = undefined;
    if (this.active === s) this.active = undefined;
    s.closing = s.agent.close().finally(() => this.sessions.delete(s));
  }

  // -------------------------------------------------------------------------------------
  // 4. Bytes at random intervals (the tutorial: random() % 256, sleep(random() % 15 + 1))

  private scheduleSend(): void {
    if (this.finished) return;
    const { min, max } = this.options.intervalMs;
    const ms = min + this.random() * (max - min);
    this.sendTimer = this.clock.setTimeout(() => {
      this.sendTimer = undefined;
      const a = this.active;
      if (a && !this.finished) {
        const byte = this.randomBytes(1)[0]!;
        let ok = false;
        try {
          ok = a.agent.send(Buffer.of(byte));
        } catch {
          ok = false;
        }
        if (ok) {
          this.sent++;
          this.out({ event: 'sent', byte, sent: this.sent });
        }
      }
      this.scheduleSend();
    }, ms);
  }

  private onData(d: Buffer): void {
    if (this.finished || d.length === 0) return;
    this.received++;
    this.out({ event: 'data', byte: d[0]!, bytes: d.length, received: this.received });
  }

  // -------------------------------------------------------------------------------------

  private shutdown(reason: string, code: number): Promise<void> {
    this.stopping ??= this.close(reason, code);
    return this.stopping;
  }

  private async close(reason: string, code: number): Promise<void> {
    this.finished = true;
    for (const t of [this.sendTimer, this.retryTimer]) if (t !== undefined) this.clock.clearTimeout(t);
    this.sendTimer = this.retryTimer = undefined;
    for (const s of this.sessions) this.closeSession(s);
    const closing = [...this.sessions].map((s) => s.closing);
    await Promise.allSettled([...closing, this.signalling?.close()]);
    this.out({ event: 'stopped', reason, sent: this.sent, received: this.received });
    this.resolveRun(code);
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
