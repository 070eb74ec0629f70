import { EventEmitter } from 'node:events';
import {
  type Clock,
  type DatagramInfo,
  type DatagramSocket,
  ErrorCode,
  type Family,
  type Network,
  ServerError,
  type TransportAddress,
  canonicalIp,
  formatAddress,
  ipFamily,
  nodeNetwork,
  realClock,
} from '@natkit/stun';
import { StreamListener } from '@natkit/stun/internal';
import type { Registry } from 'prom-client';
import type { Allocation, ClientPath, RelaySocket } from './allocation.js';
import { type Authenticator, LongTermAuthenticator, NoAuthenticator, type UserEntry } from './auth.js';
import { type AllocateOutcome, type AllocateTicket, type CoreAction, RequestCore } from './core.js';
import { type DropReason, TurnCounters } from './counters.js';
import { DataPath } from './datapath.js';
import type { TurnEvent, TurnEventOf, TurnEventType } from './events.js';
import { turnMetrics } from './metrics.js';
import { TURN_DEFAULTS, type TurnServerOptions, resolveLimits } from './options.js';
import { PeerPolicy } from './policy.js';
import { LocalQuotas, type Quotas } from './quotas.js';
import { type RelayAllocator, RelayPorts } from './relayports.js';
import { AllocationTable } from './table.js';

export type { TurnServerOptions } from './options.js';

export interface TurnListening {
  transport: 'udp' | 'tcp' | 'tls';
  family: Family;
  address: string;
  port: number;
}

/** A TurnServer could not start (code CONFIG, LISTEN or RELAY_ADDRESS; see ServerError). */
export class TurnServerError extends ServerError {}

/** A UDP listening socket. */
interface UdpListener {
  index: number;
  socket: DatagramSocket;
  local: TransportAddress;
}

/**
 * The TURN relay (RFC 8656) as a Node adapter: it owns the sockets (UDP listeners through
 * the injected Network, TCP/TLS listeners, the relayed sockets through the relay
 * allocator) and the sweep timer, feeds what arrives to the request core (RequestCore,
 * sans-I/O) and the data path, and performs what they decide. Policy is pluggable and
 * secure by default: authenticator, peer policy, quotas, relay-address allocator; what
 * happens is told as events (see TurnEvent) and counted (TurnCounters, `metrics`).
 */
export class TurnServer extends EventEmitter {
  readonly listening: TurnListening[] = [];
  readonly counters = new TurnCounters();
  /** prom-client registry with the relay's metrics (read from `counters` when scraped). */
  readonly metrics: Registry;
  readonly core: RequestCore;
  readonly table: AllocationTable;
  readonly relays: RelayAllocator;
  readonly quotas: Quotas;
  private readonly dataPath: DataPath;
  private readonly opts: TurnServerOptions;
  private readonly clock: Clock;
  private readonly udp: UdpListener[] = [];
  private readonly streams: StreamListener[] = [];
  private sweepTimer: unknown;
  private closed = false;
  private drainWaiters: Array<(left: number) => void> = [];
  /** Failed-authentication log lines: at most authFailureLogRate a second, the rest counted as suppressed. */
  private authLog = { at: -Infinity, tokens: 0, suppressed: 0 };

  private constructor(opts: TurnServerOptions, relays: RelayAllocator, authenticator: Authenticator, policy: PeerPolicy | NonNullable<TurnServerOptions['peerPolicy']>) {
    super();
    this.opts = opts;
    this.clock = opts.clock ?? realClock;
    this.relays = relays;
    this.quotas =
      opts.quotas ??
      new LocalQuotas({
        userQuota: opts.userQuota ?? TURN_DEFAULTS.userQuota,
        totalQuota: opts.totalQuota ?? TURN_DEFAULTS.totalQuota,
      });
    this.core = new RequestCore({
      authenticator,
      peerPolicy: policy,
      limits: resolveLimits(opts),
      counters: this.counters,
      relayFamilies: () => this.relays.addresses,
      externalAddresses: opts.externalAddresses,
    });
    this.table = this.core.table;
    this.dataPath = new DataPath(this.counters, this.clock, (allocation, peer) => this.emitEvent({ type: 'relaying', allocation, peer }));
    this.metrics = turnMetrics(this);
    this.installLogging();
  }

  // ------------------------------------------------------------------------------------
  // What users and tests read

  get allocationCount(): number {
    return this.table.size;
  }

  /** The allocations now (for tests and operations). */
  allAllocations(): Allocation[] {
    return [...this.table.values()];
  }

  /** Drop counters by reason. */
  dropped(reason: DropReason): number {
    return this.counters.dropped[reason];
  }

  get authenticator(): Authenticator {
    return this.core.authenticator;
  }

  get userCount(): number | undefined {
    return this.core.authenticator.userCount;
  }

  get isDraining(): boolean {
    return this.core.draining;
  }

  liveCounts(): { permissions: number; channels: number } {
    return this.core.liveCounts(this.clock.now());
  }

  /** TCP/TLS connections open now. */
  get connections(): number {
    let n = 0;
    for (const l of this.streams) n += l.connections;
    return n;
  }

  override on<T extends TurnEventType>(event: T, listener: (e: TurnEventOf<T>) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this;
  override on(event: string | symbol, listener: (...args: any[]) => void): this {
    return super.on(event, listener);
  }

  private emitEvent(e: TurnEvent): void {
    this.emit(e.type, e);
  }

  private log(level: 'debug' | 'info' | 'warn', msg: string, fields?: Record<string, unknown>): void {
    this.opts.log?.(level, msg, fields);
  }

  /** The relay's log lines come from its events. */
  private installLogging(): void {
    if (!this.opts.log) return;
    const relayed = (a: Allocation) => Object.values(a.relays).map((r) => formatAddress(this.core.advertised(r!)));
    this.on('allocation-created', ({ allocation: a, lifetime }) =>
      this.log('info', 'allocation created', { id: a.id, user: a.username, client: `${a.client.transport} ${formatAddress(a.client.remote)}`, relayed: relayed(a), lifetime }),
    );
    this.on('allocation-deleted', ({ allocation: a, reason }) => this.log('info', 'allocation deleted', { id: a.id, user: a.username, why: reason, ...a.counters }));
    this.on('relaying', ({ allocation: a, peer }) => this.log('info', 'relaying', { id: a.id, user: a.username, client: formatAddress(a.client.remote), peer: formatAddress(peer) }));
    this.on('peer-refused', ({ allocation: a, peer, reason }) => this.log('info', 'peer refused', { id: a.id, user: a.username, peer: peer.address, reason }));
    this.on('auth-failure', (e) => this.logAuthFailure(e));
  }

  /**
   * A failed authentication is logged at warn level (a brute-force run must show), but at
   * most authFailureLogRate lines a second over all clients: the next line says how many
   * were left out. Every one is counted (natkit_turn_auth_failures_total).
   */
  private logAuthFailure(e: TurnEventOf<'auth-failure'>): void {
    const rate = this.opts.authFailureLogRate ?? TURN_DEFAULTS.authFailureLogRate;
    const now = this.clock.now();
    const l = this.authLog;
    l.tokens = Math.min(rate, l.tokens + ((now - l.at) / 1000) * rate);
    l.at = now;
    if (l.tokens < 1) {
      l.suppressed++;
      return;
    }
    l.tokens -= 1;
    const fields: Record<string, unknown> = { client: `${e.client.transport} ${formatAddress(e.client.remote)}`, user: e.username, code: e.code, reason: e.reason };
    if (l.suppressed > 0) fields.suppressed = l.suppressed;
    l.suppressed = 0;
    this.log('warn', 'authentication failed', fields);
  }

  // ------------------------------------------------------------------------------------
  // Start

  static async start(options: TurnServerOptions = {}): Promise<TurnServer> {
    // With port 0 the kernel picks the UDP port and TCP must get the same one, which some
    // other program may hold: try again with another.
    for (let attempt = 0; ; attempt++) {
      try {
        return await TurnServer.startOnce(options);
      } catch (err) {
        if ((options.port ?? TURN_DEFAULTS.port) !== 0 || (err as ServerError).errno !== 'EADDRINUSE' || attempt >= 20) throw err;
      }
    }
  }

  private static async startOnce(options: TurnServerOptions): Promise<TurnServer> {
    const network = options.network ?? nodeNetwork;
    const listen = (options.listen ?? TURN_DEFAULTS.listen).map((a) => {
      if (!ipFamily(a)) throw new TurnServerError('CONFIG', `listen address ${JSON.stringify(a)} is not an IP address`);
      return canonicalIp(a);
    });
    const relayAddresses = defaultRelayAddresses(listen, options.relayAddresses, network);
    if (!options.relayAllocator && !relayAddresses.IPv4 && !relayAddresses.IPv6) {
      throw new TurnServerError('CONFIG', 'no relay address: listen on a specific address or give relayAddresses (--relay-ip)');
    }
    for (const [f, a] of Object.entries(relayAddresses)) {
      if (ipFamily(a) !== f) throw new TurnServerError('CONFIG', `relay address ${a} is not ${f}`);
    }
    {
      // Bind each relay address once now, so an address this host does not have fails at
      // start and not as a 508 at the first Allocate.
      for (const [family, address] of Object.entries(options.relayAllocator?.addresses ?? relayAddresses) as Array<[Family, string]>) {
        let s: DatagramSocket;
        try {
          s = await network.createUdpSocket({ family, address, port: 0 });
        } catch (e) {
          const err = e as NodeJS.ErrnoException;
          const hint = err.code === 'EADDRNOTAVAIL' ? ' (it is not an address of this host)' : '';
          throw new TurnServerError('RELAY_ADDRESS', `cannot bind relay address ${address}: ${err.message}${hint}`, { cause: err });
        }
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
    }
    let relays: RelayAllocator;
    try {
      relays =
        options.relayAllocator ??
        new RelayPorts({
          min: options.relayPortMin ?? TURN_DEFAULTS.relayPortMin,
          max: options.relayPortMax ?? TURN_DEFAULTS.relayPortMax,
          addresses: relayAddresses,
          network,
          reservationMs: TURN_DEFAULTS.reservationMs,
        });
    } catch (err) {
      throw new TurnServerError('CONFIG', (err as Error).message);
    }
    // The server's own addresses: what it listens and relays on, what it advertises, and
    // every address of this host's interfaces (a wildcard listen means all of them).
    const interfaces = network.interfaces().map((i) => i.address.split('%')[0]!);
    const own = [...listen, ...Object.values(relays.addresses), ...Object.values(options.externalAddresses ?? {}), ...interfaces].filter(
      (a) => a !== '0.0.0.0' && a !== '::' && ipFamily(a) !== undefined,
    );
    let policy: PeerPolicy | NonNullable<TurnServerOptions['peerPolicy']>;
    try {
      policy = options.peerPolicy ?? new PeerPolicy({ allow: options.allowPeers, deny: options.denyPeers, ownAddresses: own });
    } catch (err) {
      throw new TurnServerError('CONFIG', (err as Error).message);
    }
    const authenticator =
      options.authenticator ??
      (options.auth === false
        ? new NoAuthenticator()
        : new LongTermAuthenticator({
            realm: options.realm ?? TURN_DEFAULTS.realm,
            users: options.users,
            secrets: options.secrets,
            restSeparator: options.restSeparator ?? TURN_DEFAULTS.restSeparator,
            requireUserhash: options.requireUserhash,
            nonceLifetimeMs: options.nonceLifetimeMs ?? TURN_DEFAULTS.nonceLifetimeMs,
            wallClock: options.wallClock,
          }));
    const server = new TurnServer(options, relays, authenticator, policy);
    try {
      const port = options.port ?? TURN_DEFAULTS.port;
      for (const address of listen) {
        let p = port;
        if (options.udp ?? true) p = await server.listenUdp(network, address, port);
        if (options.tcp ?? true) await server.listenStream('tcp', address, p);
        if (options.tls) await server.listenStream('tls', address, options.tls.port ?? TURN_DEFAULTS.tlsPort);
      }
    } catch (err) {
      await server.close();
      throw err instanceof ServerError && !(err instanceof TurnServerError) ? new TurnServerError(err.code, err.message, { cause: err.cause }) : err;
    }
    server.scheduleSweep();
    return server;
  }

  // ------------------------------------------------------------------------------------
  // Listeners

  private async listenUdp(network: Network, address: string, port: number): Promise<number> {
    const family = ipFamily(address)!;
    let socket: DatagramSocket;
    try {
      // Every client shares this socket: larger kernel buffers (1 MiB asked; the kernel caps
      // it at net.core.rmem_max/wmem_max) so bursts wait instead of being dropped.
      socket = await network.createUdpSocket({ family, address, port, recvBufferSize: 1 << 20, sendBufferSize: 1 << 20, reusePort: this.opts.reusePort });
    } catch (err) {
      throw new TurnServerError('LISTEN', `cannot listen on udp ${family === 'IPv6' ? `[${address}]` : address}:${port}: ${(err as Error).message}`, { cause: err });
    }
    const a = socket.address();
    const l: UdpListener = { index: this.udp.length, socket, local: { family, address: canonicalIp(a.address), port: a.port } };
    this.udp.push(l);
    this.listening.push({ transport: 'udp', family, address: l.local.address, port: a.port });
    socket.on('message', (buf, rinfo) => this.onUdp(l, buf, rinfo));
    socket.on('error', (err) => this.log('warn', 'UDP socket error', { error: err.message }));
    return a.port;
  }

  private async listenStream(transport: 'tcp' | 'tls', address: string, port: number): Promise<void> {
    const l = await StreamListener.listen({
      transport,
      address,
      port,
      tls: this.opts.tls,
      maxConnections: this.opts.maxConnections ?? TURN_DEFAULTS.maxConnections,
      maxConnectionsPerIp: this.opts.maxConnectionsPerIp ?? TURN_DEFAULTS.maxConnectionsPerIp,
      idleTimeoutMs: this.opts.idleTimeoutMs ?? TURN_DEFAULTS.idleTimeoutMs,
      acceptChannelData: true,
      exclusive: !this.opts.reusePort,
      accept: (conn) => {
        if (this.closed) return undefined;
        const path: ClientPath = { transport, stream: true, remote: conn.remote, local: conn.local, send: conn.send, via: conn };
        return {
          // The per-frame path: no closure per frame (see internalError for the catch).
          frame: (frame) => {
            try {
              if ((frame[0]! & 0xc0) === 0x40) this.dataPath.channelFromClient(this.table.streamLookup(conn), frame);
              else this.perform(this.core.message(frame, path, this.clock.now()));
            } catch (err) {
              this.internalError(err);
            }
          },
          // Idle clients without an allocation are closed; with one, its lifetime rules.
          idle: () => this.table.streamLookup(conn) === undefined,
          // The allocation lives as long as its connection (RFC 8656 section 7).
          closed: () => {
            const a = this.table.streamLookup(conn);
            if (a) this.perform(this.deleteActions(a, 'connection closed'));
          },
        };
      },
      dropped: (why) => {
        if (why === 'per_ip' || why === 'refused') this.counters.dropped.rate_limited++;
        else if (why === 'bad_framing') this.counters.dropped.malformed++;
      },
      warning: (err) => this.log('warn', `${transport} server error`, { error: err.message }),
    });
    this.streams.push(l);
    this.listening.push({ transport, family: l.local.family, address: l.local.address, port: l.local.port });
  }

  private deleteActions(a: Allocation, reason: string): CoreAction[] {
    const out: CoreAction[] = [];
    this.core.delete(a, reason, out);
    return out;
  }

  // ------------------------------------------------------------------------------------
  // The client-to-server direction

  private onUdp(l: UdpListener, buf: Buffer, rinfo: DatagramInfo): void {
    // A source port of 0 cannot be answered (Node's send throws on it): spoofed, drop it.
    if (rinfo.port === 0) {
      this.counters.dropped.malformed++;
      return;
    }
    // RFC 8656 section 12.4 / RFC 7983: first byte 64-127 is ChannelData. The per-packet path.
    if ((buf[0]! & 0xc0) === 0x40 && buf.length >= 4) {
      this.dataPath.channelFromClient(this.table.udpLookup(l.index, rinfo.address, rinfo.port), buf);
      return;
    }
    const socket = l.socket;
    const path: ClientPath = {
      transport: 'udp',
      stream: false,
      remote: { family: rinfo.family as Family, address: rinfo.address, port: rinfo.port },
      local: l.local,
      send: (data: Buffer) => socket.send(data, rinfo.port, rinfo.address),
      via: l.index,
    };
    try {
      this.perform(this.core.message(buf, path, this.clock.now()));
    } catch (err) {
      this.internalError(err);
    }
  }

  /**
   * A bug in the handling of one message costs that message, not the server: every byte
   * from the network is hostile, and one bad packet must not stop the process or disturb
   * other clients. Each message's handling is wrapped in a try/catch that lands here.
   */
  private internalError(err: unknown): void {
    this.counters.dropped.internal_error++;
    this.log('warn', 'internal error while handling a message', { error: (err as Error)?.stack ?? String(err) });
  }

  /** Does what the request core decided. */
  private perform(actions: CoreAction[]): void {
    for (const a of actions) {
      switch (a.type) {
        case 'reply':
          a.path.send(a.data);
          break;
        case 'indication': {
          const via = a.path.via;
          const alloc = typeof via === 'number' ? this.table.udpLookup(via, a.path.remote.address, a.path.remote.port) : this.table.streamLookup(via);
          this.dataPath.sendIndication(alloc, a.message);
          break;
        }
        case 'allocate':
          this.fulfil(a.ticket).catch((err: unknown) => {
            this.core.abandoned(a.ticket);
            this.internalError(err);
          });
          break;
        case 'deleted':
          for (const r of Object.values(a.allocation.relays)) this.relays.release(r!);
          this.quotas.release(a.allocation.anonymous ? undefined : a.allocation.username);
          this.emitEvent({ type: 'allocation-deleted', allocation: a.allocation, reason: a.reason });
          if (this.core.draining && this.table.size === 0) for (const w of this.drainWaiters.splice(0)) w(0);
          break;
        case 'event':
          this.emitEvent(a.event);
          break;
      }
    }
  }

  /**
   * An Allocate the core accepted: a quota slot, then the relayed socket(s) (RFC 8656
   * section 7.2 steps 8-10), and the outcome back to the core.
   */
  private async fulfil(t: AllocateTicket): Promise<void> {
    let outcome: AllocateOutcome;
    if (t.token) {
      outcome = await this.redeem(t);
    } else {
      const refused = await this.quotas.acquire({ username: t.username });
      if (refused) {
        outcome = { ok: false, ...refused };
      } else {
        outcome = await this.bindRelays(t);
        if (!outcome.ok) this.quotas.release(t.username);
      }
    }
    if (this.closed || (t.path.stream && (t.path.via as { socket?: { destroyed: boolean } }).socket?.destroyed)) {
      this.core.abandoned(t);
      if (outcome.ok) {
        for (const r of Object.values(outcome.relays)) this.relays.release(r!);
        this.quotas.release(t.username);
      }
      return;
    }
    this.perform(this.core.allocated(t, outcome, this.clock.now()));
    const alloc = this.table.get(t.key);
    if (outcome.ok && alloc) for (const r of Object.values(outcome.relays)) this.attachRelay(alloc, r!);
  }

  /**
   * RESERVATION-TOKEN (RFC 8656 section 7.2): the reserved socket, with its owner's quota
   * slot passing to this allocation (redeemed by the owner: the same slot).
   */
  private async redeem(t: AllocateTicket): Promise<AllocateOutcome> {
    const r = await this.relays.redeem(t.token!, this.clock.now());
    if (!r) return { ok: false, code: ErrorCode.InsufficientCapacity, reason: 'unknown or expired RESERVATION-TOKEN' };
    const owner = r.owner === '' ? undefined : r.owner;
    if (!r.relay) {
      this.quotas.release(owner);
      return { ok: false, code: ErrorCode.InsufficientCapacity, reason: 'the reserved port could not be had' };
    }
    const refused = await this.quotas.acquire({ username: t.username, redeeming: { owner } });
    if (refused) {
      // The reservation is spent either way: its port and its slot end here.
      this.relays.release(r.relay);
      this.quotas.release(owner);
      return { ok: false, ...refused };
    }
    r.relay.socket.on('error', (err) => this.relayError(err));
    return { ok: true, relays: { [r.relay.family]: r.relay } };
  }

  private async bindRelays(t: AllocateTicket): Promise<AllocateOutcome> {
    const relays: Partial<Record<Family, RelaySocket>> = {};
    let reservation: Buffer | undefined;
    const now = this.clock.now();
    if (t.reserve) {
      const pair = await this.relays.allocatePair(t.family, now, t.username ?? '');
      if (!pair) return { ok: false, code: ErrorCode.InsufficientCapacity, reason: 'no even port pair free' };
      relays[t.family] = pair.relay;
      reservation = pair.token;
      // The reserved port holds a quota slot of its own until it is redeemed or expires.
      this.quotas.reserve(t.username);
    } else {
      const r = await this.relays.allocate(t.family, t.even);
      if (!r) return { ok: false, code: ErrorCode.InsufficientCapacity, reason: 'no relay port free' };
      relays[t.family] = r;
    }
    let v6Error: number | undefined;
    if (t.additionalIPv6) {
      // RFC 8656 section 7.2 / RFC 6156: a second relayed address; if it cannot be had,
      // the allocation goes ahead with ADDRESS-ERROR-CODE saying why.
      const r6 = this.relays.addresses.IPv6 ? await this.relays.allocate('IPv6') : undefined;
      if (r6) relays.IPv6 = r6;
      else v6Error = this.relays.addresses.IPv6 ? ErrorCode.InsufficientCapacity : ErrorCode.AddressFamilyNotSupported;
    }
    for (const r of Object.values(relays)) r!.socket.on('error', (err) => this.relayError(err));
    return { ok: true, relays, reservation, v6Error };
  }

  /** Peer-to-client: datagrams arriving at a relayed address go to the data path. */
  private attachRelay(alloc: Allocation, relay: RelaySocket): void {
    const dataPath = this.dataPath;
    relay.socket.on('message', (buf, rinfo) => dataPath.fromPeer(alloc, buf, rinfo));
  }

  /** A send on a relayed socket failed (EMSGSIZE, ...): the datagram is lost, as UDP is. */
  private relayError(err: Error): void {
    this.counters.dropped.send_failed++;
    this.log('debug', 'relay socket error', { error: err.message });
  }

  // ------------------------------------------------------------------------------------
  // Lifetimes, reload, drain, close

  private scheduleSweep(): void {
    if (this.closed) return;
    this.sweepTimer = this.clock.setTimeout(() => {
      this.sweep();
      this.scheduleSweep();
    }, 1000);
  }

  /** Expires allocations, permissions, channels and reservations whose time is up. */
  sweep(): void {
    const now = this.clock.now();
    this.perform(this.core.sweep(now));
    for (const r of this.relays.sweep(now)) this.quotas.release(r.owner === '' ? undefined : r.owner);
  }

  /** Replaces users and REST secrets (SIGHUP); existing allocations stay. */
  reloadCredentials(users: Map<string, UserEntry>, secrets: string[]): void {
    const a = this.core.authenticator;
    if (!(a instanceof LongTermAuthenticator)) throw new TurnServerError('CONFIG', 'credentials can only be reloaded into the default LongTermAuthenticator');
    a.reload(users, secrets);
    this.log('info', 'credentials reloaded', { users: users.size, secrets: secrets.length });
  }

  /**
   * Stops taking new allocations (508) and resolves when the last allocation is gone or
   * `timeoutMs` has passed; returns how many were still there.
   */
  drain(timeoutMs: number): Promise<number> {
    this.core.draining = true;
    this.log('info', 'draining', { allocations: this.table.size, timeoutMs });
    if (this.table.size === 0) return Promise.resolve(0);
    return new Promise((resolve) => {
      const timer = this.clock.setTimeout(() => resolve(this.table.size), timeoutMs);
      this.drainWaiters.push((left) => {
        this.clock.clearTimeout(timer);
        resolve(left);
      });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.clock.clearTimeout(this.sweepTimer);
    // A drain still waiting ends now, with the number of allocations the close cuts.
    for (const w of this.drainWaiters.splice(0)) w(this.table.size);
    this.perform(this.core.deleteAll('server closing'));
    for (const r of this.relays.close()) this.quotas.release(r.owner === '' ? undefined : r.owner);
    const waits: Promise<void>[] = [];
    for (const l of this.udp) waits.push(new Promise((r) => l.socket.close(() => r())));
    for (const s of this.streams) waits.push(s.close());
    await Promise.all(waits);
  }
}

/**
 * Relay addresses: the ones given, then per family the first specific listen address;
 * listening on a wildcard only, the host's first non-internal, non-link-local address
 * of the family (as coturn picks one).
 */
export function defaultRelayAddresses(listen: readonly string[], given: Partial<Record<Family, string>> | undefined, network: Network): Partial<Record<Family, string>> {
  const out: Partial<Record<Family, string>> = { ...given };
  for (const a of listen) {
    const f = ipFamily(a)!;
    if (out[f] === undefined && a !== '0.0.0.0' && a !== '::') out[f] = a;
  }
  if (out.IPv4 === undefined && out.IPv6 === undefined) {
    const wild = new Set(listen.map((a) => ipFamily(a)));
    for (const f of ['IPv4', 'IPv6'] as const) {
      if (!wild.has(f)) continue;
      const i = network.interfaces().find((x) => x.family === f && !x.internal && !/^fe[89ab]/i.test(x.address));
      if (i) out[f] = i.address.split('%')[0]!;
    }
  }
  return out;
}
