import { EventEmitter } from 'node:events';
import type { ConnectionOptions } from 'node:tls';
import {
  type Clock,
  type Family,
  type InterfaceAddress,
  type Network,
  type RetransmitOptions,
  StunClient,
  StunTransactionError,
  type TransportAddress,
  canonicalIp,
  formatAddress,
  ipFamily,
  nodeNetwork,
  realClock,
} from '@natkit/stun';
import { TurnClient } from '@natkit/turn';
import type { CandidateBase } from '../base.js';
import { type CandidateType, type LocalCandidate, TYPE_PREFERENCE, candidateFoundation, candidatePriority } from '../candidate.js';
import { LocalPreferences, orderAddresses, stripZone, usableAddresses } from './addresses.js';
import { HostBase, RelayBase } from './bases.js';
import { type IceServer, IceUrlError, type IceServerUrl, iceServerUrls, parseIceServerUrl } from './urls.js';

export interface GathererOptions {
  /** STUN and TURN servers, as RTCConfiguration.iceServers. Every one is used. */
  iceServers?: IceServer[];
  /** UDP sockets, interfaces and name lookups (default: the operating system's). TURN over TCP/TLS uses node:net/node:tls. */
  network?: Network;
  /** Time for timeouts and elapsed times (default: the real clock). */
  clock?: Clock;
  /** Component ID of the candidates (default 1). */
  component?: number;
  /** Address families to gather (default both). */
  families?: Family[];
  /** Loopback addresses (default: only when no other address is there). */
  includeLoopback?: boolean;
  /** IPv4 169.254/16 and IPv6 fe80::/10 addresses (default false). */
  includeLinkLocal?: boolean;
  /** Keeps only the interface addresses for which it returns true. */
  interfaceFilter?: (a: InterfaceAddress) => boolean;
  /** Binds only these local addresses (overrides the interface list and its filters). */
  addresses?: string[];
  /** 'relay' gathers relayed candidates only (RTCConfiguration.iceTransportPolicy). */
  policy?: 'all' | 'relay';
  /** How long each server gets, ms, DNS included (default 5000). A slow server never holds back the others. */
  serverTimeoutMs?: number;
  /** STUN/TURN retransmissions over UDP (RFC 8489 section 6.2.1; default RTO 500 ms). */
  retransmit?: RetransmitOptions;
  /** For stuns:/turns: (TLS): extra tls.connect options (ca, rejectUnauthorized, ...). */
  tls?: ConnectionOptions;
  /** SOFTWARE in STUN/TURN requests (default 'natkit'); false for none. */
  software?: string | false;
  /** TURN allocation lifetime to ask for, seconds (default: the server's). */
  turnLifetime?: number;
}

export type ServerErrorCode =
  | 'TIMEOUT' // no answer within serverTimeoutMs
  | 'AUTH_FAILED' // 401: wrong username or credential
  | 'FORBIDDEN' // 403
  | 'DNS' // the name did not resolve
  | 'UNREACHABLE' // connection refused, no route, or no local address of the server's family
  | 'TLS' // TLS handshake failed (certificate, protocol)
  | 'BAD_URL' // the URI does not parse (RFC 7064/7065)
  | 'MISSING_CREDENTIALS' // a TURN server without username/credential
  | 'ERROR_RESPONSE' // another STUN error code (437, 486, 508, ...): see errorCode
  | 'BAD_RESPONSE' // a success response without the address it must carry
  | 'REDIRECT_LOOP'
  | 'SKIPPED' // not used: a STUN server under policy 'relay'
  | 'CLOSED'; // the gatherer was closed before the server was done

export interface ServerError {
  code: ServerErrorCode;
  message: string;
  /** The STUN error code (401, 403, 486...) when the server answered with one. */
  errorCode?: number;
}

/** How one ICE server URL fared. */
export interface ServerOutcome {
  url: string;
  /** 'stun' for stun:/stuns:, 'turn' for turn:/turns:. */
  kind: 'stun' | 'turn';
  /** How the server was reached. */
  transport: 'udp' | 'tcp' | 'tls';
  /** The server's address (after DNS), once known. */
  server?: TransportAddress;
  /** At least one candidate (or, for stuns:, one mapped address) came from it. */
  ok: boolean;
  /** The candidates it gave (redundant ones left out, RFC 8445 section 5.1.3). */
  candidates: LocalCandidate[];
  /** Every mapped address it reported, by local address, including those pruned as redundant. */
  mapped: Array<{ local: TransportAddress; mapped: TransportAddress }>;
  /** Milliseconds from the start of gathering until this server was done. */
  elapsedMs: number;
  error?: ServerError;
}

export interface GatherReport {
  candidates: LocalCandidate[];
  servers: ServerOutcome[];
  /** Milliseconds from the start of gathering to end-of-candidates. */
  elapsedMs: number;
  /** Local addresses whose socket could not be bound, and why. */
  hostErrors: Array<{ address: string; message: string }>;
}

export interface GathererEvents {
  /** A candidate, the moment it is found (trickle, RFC 8838). */
  candidate: [candidate: LocalCandidate];
  /** One per server URL, success or failure, as soon as that server is done. */
  'server-done': [outcome: ServerOutcome];
  /** End of candidates (RFC 8838 section 4.4). */
  complete: [report: GatherReport];
  /** A relay base's allocation was lost after gathering (a refresh refused). */
  'base-closed': [base: CandidateBase, error: Error | undefined];
}

export const DEFAULT_SERVER_TIMEOUT_MS = 5000;

interface Job {
  index: number;
  url: string;
  entry: IceServer;
  parsed: IceServerUrl | undefined;
  badUrl: IceUrlError | undefined;
  server: TransportAddress | undefined;
  candidates: LocalCandidate[];
  mapped: ServerOutcome['mapped'];
  errors: ServerError[];
  done: boolean;
  ac: AbortController;
  timer: unknown;
  resolve: () => void;
  finished: Promise<void>;
}

/** The first system error code along an error's causes (ECONNREFUSED, ERR_TLS_CERT_ALTNAME_INVALID, ...). */
function causeCode(err: unknown): string | undefined {
  let e = (err as { cause?: unknown })?.cause;
  for (let i = 0; i < 5 && e; i++) {
    const c = (e as { code?: unknown }).code;
    if (typeof c === 'string') return c;
    e = (e as { cause?: unknown }).cause;
  }
  return undefined;
}

const TLS_ERROR = /^ERR_TLS|^ERR_SSL|CERT|SIGNATURE|SELF_SIGNED/;

/** A failure as a server outcome's error: the reason in words and a stable code. */
export function classifyServerError(err: unknown): ServerError {
  if (err instanceof IceUrlError) return { code: err.code === 'MISSING_CREDENTIALS' ? 'MISSING_CREDENTIALS' : 'BAD_URL', message: err.message };
  if (err instanceof StunTransactionError) {
    const base = { message: err.message, ...(err.errorCode !== undefined ? { errorCode: err.errorCode } : {}) };
    switch (err.code) {
      case 'TIMEOUT':
      case 'ABORTED':
        return { ...base, code: 'TIMEOUT' };
      case 'AUTH_FAILED':
        return { ...base, code: 'AUTH_FAILED', errorCode: err.errorCode ?? 401 };
      case 'ERROR_RESPONSE':
        if (err.errorCode === 401) return { ...base, code: 'AUTH_FAILED' };
        if (err.errorCode === 403) return { ...base, code: 'FORBIDDEN' };
        return { ...base, code: 'ERROR_RESPONSE' };
      case 'REDIRECT_LOOP':
        return { ...base, code: 'REDIRECT_LOOP' };
      case 'BAD_RESPONSE':
        return { ...base, code: 'BAD_RESPONSE' };
      default: {
        const c = causeCode(err);
        if (c && TLS_ERROR.test(c)) return { code: 'TLS', message: err.message };
        return { code: 'UNREACHABLE', message: err.message };
      }
    }
  }
  return { code: 'UNREACHABLE', message: (err as Error)?.message ?? String(err) };
}

/**
 * Gathers ICE candidates (RFC 8445 section 5.1.1) from every usable local address and every
 * configured STUN and TURN server, and trickles them (RFC 8838): host candidates first, then
 * each server-reflexive and relayed candidate the moment it arrives, one 'server-done' per
 * server URL, and 'complete' when every server is done or has had its time. The gatherer
 * owns the sockets and allocations (the candidate bases) until `close()`.
 */
export class Gatherer extends EventEmitter<GathererEvents> {
  private readonly opts: GathererOptions;
  private readonly network: Network;
  private readonly clock: Clock;
  private readonly component: number;
  private readonly list: LocalCandidate[] = [];
  private readonly baseList: CandidateBase[] = [];
  /** The bases by id: the agent looks one up for every datagram it sends. */
  private readonly baseById = new Map<number, CandidateBase>();
  private readonly outcomes: ServerOutcome[] = [];
  private readonly hostErrors: GatherReport['hostErrors'] = [];
  private readonly inflight = new Set<Promise<unknown>>();
  private readonly jobs: Job[] = [];
  private prefs = new LocalPreferences([]);
  private nextBaseId = 1;
  private t0 = 0;
  private running: Promise<GatherReport> | undefined;
  private closing: Promise<void> | undefined;
  private state: 'new' | 'gathering' | 'complete' | 'closed' = 'new';

  constructor(options: GathererOptions = {}) {
    super();
    this.opts = options;
    this.network = options.network ?? nodeNetwork;
    this.clock = options.clock ?? realClock;
    this.component = options.component ?? 1;
    if (!Number.isInteger(this.component) || this.component < 1 || this.component > 256) throw new RangeError(`component ${this.component} is not 1-256`);
    for (const a of options.addresses ?? []) {
      if (!ipFamily(stripZone(a))) throw new TypeError(`addresses: ${JSON.stringify(a)} is not an IP address`);
    }
  }

  /** 'new', 'gathering', 'complete' (end-of-candidates), 'closed'. */
  get gatheringState(): 'new' | 'gathering' | 'complete' | 'closed' {
    return this.state;
  }

  /** Every candidate found so far, in the order emitted. */
  get candidates(): readonly LocalCandidate[] {
    return this.list;
  }

  /** Every base (host socket, TURN allocation) the gatherer holds. */
  get bases(): readonly CandidateBase[] {
    return this.baseList;
  }

  base(id: number): CandidateBase | undefined {
    return this.baseById.get(id);
  }

  /** Outcomes of the servers done so far. */
  get servers(): readonly ServerOutcome[] {
    return this.outcomes;
  }

  /** Starts gathering (once; later calls return the same promise); resolves at end-of-candidates. */
  gather(): Promise<GatherReport> {
    if (this.running) return this.running;
    if (this.state === 'closed') return Promise.reject(new Error('the gatherer is closed'));
    this.running = this.run();
    return this.running;
  }

  private isClosed(): boolean {
    return this.state === 'closed';
  }

  private elapsed(): number {
    return this.clock.now() - this.t0;
  }

  private report(): GatherReport {
    return { candidates: [...this.list], servers: [...this.outcomes], elapsedMs: this.elapsed(), hostErrors: [...this.hostErrors] };
  }

  private async run(): Promise<GatherReport> {
    this.state = 'gathering';
    this.t0 = this.clock.now();
    const policy = this.opts.policy ?? 'all';
    // The jobs, one per distinct URL, in configuration order.
    const seen = new Set<string>();
    for (const entry of this.opts.iceServers ?? []) {
      for (const url of iceServerUrls(entry)) {
        if (seen.has(url)) continue;
        seen.add(url);
        let parsed: IceServerUrl | undefined;
        let badUrl: IceUrlError | undefined;
        try {
          parsed = parseIceServerUrl(url);
          if ((parsed.scheme === 'turn' || parsed.scheme === 'turns') && (entry.username === undefined || entry.credential === undefined)) {
            throw new IceUrlError('MISSING_CREDENTIALS', url, 'a TURN server needs username and credential');
          }
        } catch (err) {
          if (!(err instanceof IceUrlError)) throw err;
          badUrl = err;
        }
        let resolve!: () => void;
        const finished = new Promise<void>((r) => (resolve = r));
        this.jobs.push({ index: this.jobs.length, url, entry, parsed, badUrl, server: undefined, candidates: [], mapped: [], errors: [], done: false, ac: new AbortController(), timer: undefined, resolve, finished });
      }
    }
    // Local addresses, in RFC 8421 order.
    const addresses = this.localAddresses();
    this.prefs = new LocalPreferences(addresses.map((a) => a.address));
    // Host sockets (not under policy 'relay': its relayed candidates come from TURN clients' own sockets).
    if (policy === 'all') {
      const bound = await Promise.all(
        addresses.map((a) =>
          this.network.createUdpSocket({ family: a.family, address: a.address }).then(
            (socket) => ({ a, socket }),
            (err: Error) => {
              this.hostErrors.push({ address: a.address, message: err.message });
              return undefined;
            },
          ),
        ),
      );
      for (const b of bound) {
        if (!b) continue;
        if (this.isClosed()) {
          b.socket.close();
          continue;
        }
        const la = b.socket.address();
        const address: TransportAddress = { family: b.a.family, address: stripZone(la.address), port: la.port };
        const base = new HostBase(this.nextBaseId++, address, b.socket, { network: this.network, clock: this.clock, retransmit: this.opts.retransmit, software: this.opts.software });
        this.addBase(base);
        this.addCandidate('host', base, address, undefined, undefined, undefined);
      }
    }
    if (this.isClosed()) return this.report();
    // Every server at once; each finishes on its own (answer, error or its own timeout).
    for (const job of this.jobs) this.track(this.runJob(job, addresses));
    await Promise.all(this.jobs.map((j) => j.finished));
    const report = this.report();
    // End-of-candidates, unless close() ended gathering first.
    if (!this.isClosed()) {
      this.state = 'complete';
      this.emit('complete', report);
    }
    return report;
  }

  private localAddresses(): Array<{ address: string; family: Family }> {
    const families = this.opts.families ?? ['IPv4', 'IPv6'];
    let list: Array<{ address: string; family: Family }>;
    if (this.opts.addresses) {
      list = this.opts.addresses.map((a) => ({ address: a, family: ipFamily(stripZone(a))! })).filter((a) => families.includes(a.family));
    } else {
      list = usableAddresses(this.network.interfaces(), {
        families,
        includeLoopback: this.opts.includeLoopback,
        includeLinkLocal: this.opts.includeLinkLocal,
        interfaceFilter: this.opts.interfaceFilter,
      }).map((i) => ({
        // A link-local IPv6 address binds with its zone (the interface).
        address: i.family === 'IPv6' && i.address.toLowerCase().startsWith('fe80') && !i.address.includes('%') ? `${i.address}%${i.name}` : i.address,
        family: i.family,
      }));
    }
    return orderAddresses(list);
  }

  private addBase(base: CandidateBase): void {
    this.baseList.push(base);
    this.baseById.set(base.id, base);
  }

  private track<T>(p: Promise<T>): void {
    const q = p.catch(() => undefined);
    this.inflight.add(q);
    void q.finally(() => this.inflight.delete(q));
  }

  /** RFC 8445 section 5.1.3: a candidate is redundant if another has its transport address and base. */
  private redundant(address: TransportAddress, baseId: number): boolean {
    const ip = canonicalIp(address.address);
    return this.list.some((c) => c.baseId === baseId && c.port === address.port && canonicalIp(c.address) === ip);
  }

  private addCandidate(
    type: CandidateType,
    base: CandidateBase,
    address: TransportAddress,
    related: TransportAddress | undefined,
    job: Job | undefined,
    relay: { transport: 'udp' | 'tcp' | 'tls'; local: string } | undefined,
  ): LocalCandidate | undefined {
    if (this.redundant(address, base.id)) return undefined;
    const c = this.component;
    const serverIp = job?.server?.address;
    let localPref: number;
    let foundationTransport = 'udp';
    if (type === 'relay') {
      localPref = this.prefs.relayed(c, relay!.transport, job!.index, relay!.local);
      // RFC 8445 5.1.1.3 keys the foundation on the candidate's transport (UDP for every
      // relayed candidate); the transport to the TURN server is added so that relays over
      // UDP, TCP and TLS to one server are unfrozen and fail independently.
      if (relay!.transport !== 'udp') foundationTransport = `udp/${relay!.transport}`;
    } else {
      localPref = this.prefs.hostOrReflexive(type, c, base.address.address);
    }
    const cand: LocalCandidate = {
      foundation: candidateFoundation(type, type === 'relay' ? address.address : base.address.address, serverIp, foundationTransport),
      component: c,
      transport: 'udp',
      priority: candidatePriority(TYPE_PREFERENCE[type], localPref, c),
      address: address.address,
      port: address.port,
      type,
      ...(related ? { relatedAddress: related.address, relatedPort: related.port } : {}),
      base: base.address,
      baseId: base.id,
      ...(job ? { server: job.url } : {}),
      elapsedMs: this.elapsed(),
    };
    this.list.push(cand);
    job?.candidates.push(cand);
    this.emit('candidate', cand);
    return cand;
  }

  private finish(job: Job, error?: ServerError): void {
    if (job.done) return;
    job.done = true;
    this.clock.clearTimeout(job.timer);
    const p = job.parsed;
    const outcome: ServerOutcome = {
      url: job.url,
      kind: p ? (p.scheme.startsWith('turn') ? 'turn' : 'stun') : job.url.toLowerCase().startsWith('turn') ? 'turn' : 'stun',
      transport: p?.transport ?? 'udp',
      ...(job.server ? { server: job.server } : {}),
      // A candidate, or a mapped address (a server-reflexive one pruned as redundant because
      // there is no NAT, or a stuns: mapping), from at least one local address.
      ok: job.candidates.length > 0 || job.mapped.length > 0,
      candidates: job.candidates,
      mapped: job.mapped,
      elapsedMs: this.elapsed(),
    };
    if (!outcome.ok) outcome.error = error ?? job.errors[0] ?? { code: 'TIMEOUT', message: 'no answer' };
    this.outcomes.push(outcome);
    this.emit('server-done', outcome);
    job.resolve();
  }

  private async runJob(job: Job, addresses: Array<{ address: string; family: Family }>): Promise<void> {
    if (job.badUrl) return this.finish(job, classifyServerError(job.badUrl));
    const p = job.parsed!;
    const isTurn = p.scheme === 'turn' || p.scheme === 'turns';
    if (!isTurn && (this.opts.policy ?? 'all') === 'relay') {
      return this.finish(job, { code: 'SKIPPED', message: 'not used: policy relay gathers relayed candidates only' });
    }
    const timeoutMs = this.opts.serverTimeoutMs ?? DEFAULT_SERVER_TIMEOUT_MS;
    job.timer = this.clock.setTimeout(() => {
      const where = job.server ? ` (${formatAddress(job.server)})` : '';
      this.finish(job, job.errors[0] ?? { code: 'TIMEOUT', message: `no answer from ${p.transport} ${p.host}${where} within ${timeoutMs} ms` });
      job.ac.abort();
    }, timeoutMs);
    // Names through the network's resolver (RFC 7064/7065: a host name is resolved to addresses).
    let resolved: Array<{ address: string; family: Family }>;
    if (p.literal) resolved = [{ address: p.host, family: ipFamily(p.host)! }];
    else {
      try {
        resolved = await this.network.lookup(p.host);
      } catch (err) {
        return this.finish(job, { code: 'DNS', message: `cannot resolve ${p.host}: ${(err as Error).message}` });
      }
      if (resolved.length === 0) return this.finish(job, { code: 'DNS', message: `${p.host} has no addresses` });
    }
    if (job.done) return;
    // One server address per family we gather from (the first the resolver gave).
    const byFamily = new Map<Family, string>();
    for (const r of resolved) if (!byFamily.has(r.family)) byFamily.set(r.family, canonicalIp(r.address));
    const first = resolved.find((r) => addresses.some((a) => a.family === r.family)) ?? resolved[0]!;
    job.server = { family: first.family, address: canonicalIp(first.address), port: p.port };
    const usable = addresses.filter((a) => byFamily.has(a.family));
    if (usable.length === 0) {
      const fams = [...byFamily.keys()].join(' or ');
      return this.finish(job, { code: 'UNREACHABLE', message: `no local ${fams} address to reach ${p.host} from` });
    }
    const attempts: Array<Promise<void>> = [];
    if (p.scheme === 'stun') {
      for (const base of this.baseList) {
        if (!(base instanceof HostBase) || !byFamily.has(base.address.family)) continue;
        attempts.push(this.stunAttempt(job, base, byFamily.get(base.address.family)!));
      }
    } else if (p.scheme === 'stuns') {
      for (const fam of new Set(usable.map((a) => a.family))) {
        attempts.push(this.stunsAttempt(job, usable.find((a) => a.family === fam)!.address, byFamily.get(fam)!));
      }
    } else {
      for (const a of usable) attempts.push(this.turnAttempt(job, a.address, byFamily.get(a.family)!));
    }
    if (attempts.length === 0) {
      return this.finish(job, { code: 'UNREACHABLE', message: `no local socket of the family of ${p.host} (binding failed)` });
    }
    await Promise.all(attempts);
    this.finish(job);
  }

  /** A Binding request out of the host socket itself, so the mapping is that socket's (RFC 8445 5.1.1.2). */
  private async stunAttempt(job: Job, base: HostBase, serverIp: string): Promise<void> {
    const p = job.parsed!;
    try {
      const r = await base.stun.binding({ address: serverIp, port: p.port, transport: 'udp' }, { signal: job.ac.signal, retransmit: this.opts.retransmit });
      if (job.done) return;
      job.mapped.push({ local: base.address, mapped: r.mapped });
      this.addCandidate('srflx', base, r.mapped, base.address, job, undefined);
    } catch (err) {
      if (!job.done) job.errors.push(classifyServerError(err));
    }
  }

  /**
   * stuns: (STUN over TLS, RFC 7064): a Binding over TLS shows the server works, but its
   * mapping is a TCP one, which no UDP candidate can use: reported, not a candidate.
   */
  private async stunsAttempt(job: Job, local: string, serverIp: string): Promise<void> {
    const p = job.parsed!;
    const client = new StunClient({ clock: this.clock, network: this.network, bindAddress: local, software: this.opts.software });
    try {
      const r = await client.binding(
        { address: serverIp, port: p.port, transport: 'tls', servername: p.literal ? undefined : p.host, tls: this.opts.tls },
        { signal: job.ac.signal },
      );
      if (!job.done) job.mapped.push({ local: r.local, mapped: r.mapped });
    } catch (err) {
      if (!job.done) job.errors.push(classifyServerError(err));
    } finally {
      await client.close();
    }
  }

  /** An allocation from one local address (RFC 8656 section 7.1) over UDP, TCP or TLS to the server. */
  private async turnAttempt(job: Job, local: string, serverIp: string): Promise<void> {
    const p = job.parsed!;
    let client: TurnClient;
    try {
      client = await TurnClient.allocate({
        server: { address: serverIp, port: p.port, transport: p.transport, servername: p.literal ? undefined : p.host, tls: this.opts.tls },
        username: job.entry.username!,
        password: job.entry.credential!,
        network: this.network,
        clock: this.clock,
        bindAddress: local,
        retransmit: this.opts.retransmit,
        software: this.opts.software,
        lifetime: this.opts.turnLifetime,
        signal: job.ac.signal,
      });
    } catch (err) {
      if (!job.done) job.errors.push(classifyServerError(err));
      return;
    }
    if (job.done || this.isClosed()) {
      // Too late (timed out or closed meanwhile): give the allocation back.
      await client.close();
      return;
    }
    const base = new RelayBase(this.nextBaseId++, client, client.local ?? { family: ipFamily(stripZone(local))!, address: stripZone(local), port: 0 });
    base.onClosed = (err) => this.emit('base-closed', base, err);
    this.addBase(base);
    this.addCandidate('relay', base, base.address, client.mapped, job, { transport: p.transport, local });
  }

  /** Stops gathering, closes every socket and deletes every allocation (Refresh with LIFETIME 0). */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const wasGathering = this.state === 'gathering';
      this.state = 'closed';
      for (const job of this.jobs) {
        if (!job.done) this.finish(job, { code: 'CLOSED', message: 'the gatherer was closed before the server was done' });
        job.ac.abort();
      }
      // Attempts under way end (aborted) and give back anything they got.
      while (this.inflight.size) await Promise.all([...this.inflight]);
      await Promise.allSettled(this.baseList.map((b) => b.close()));
      if (wasGathering) await this.running?.catch(() => undefined);
    })();
    return this.closing;
  }
}

/**
 * The one-call form: gathers with `options`, closes everything, and returns every
 * candidate (type, address, related address, server, elapsed time) and every server's
 * outcome (or its error).
 */
export async function gatherCandidates(options: GathererOptions = {}): Promise<GatherReport> {
  const g = new Gatherer(options);
  try {
    return await g.gather();
  } finally {
    await g.close();
  }
}
