import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import * as tls from 'node:tls';
import {
  Attr,
  BindingService,
  type Clock,
  type DatagramInfo,
  type DatagramSocket,
  ERROR_REASONS,
  ErrorCode,
  type Family,
  MessageBuilder,
  MessageClass,
  Method,
  type Network,
  RateLimiter,
  StreamFramer,
  type StunMessage,
  type TransportAddress,
  canonicalIp,
  decodeMessage,
  formatAddress,
  ipFamily,
  nodeNetwork,
  realClock,
  softwareText,
  verifyFingerprint,
} from '@natkit/stun';
import { TRANSPORT_UDP, TurnAttr, turnServerRegistry } from '../codec/attributes.js';
import { MAX_CHANNEL, MIN_CHANNEL } from '../codec/channeldata.js';
import { Allocation, type ClientPath, type RelaySocket } from './allocation.js';
import { CredentialStore, type UserEntry } from './auth.js';
import { Metrics } from './metrics.js';
import { PeerPolicy } from './policy.js';
import { RelayPorts } from './relayports.js';

export interface TurnServerOptions {
  /** Addresses to listen on (default 0.0.0.0). */
  listen?: string[];
  /** UDP and TCP port (default 3478; 0 picks a free one). */
  port?: number;
  udp?: boolean;
  tcp?: boolean;
  /** TLS with this certificate and key (PEM); default port 5349. */
  tls?: { cert: string | Buffer; key: string | Buffer; port?: number };
  /** Where relay sockets bind, per family (default: the first specific listen address). */
  relayAddresses?: Partial<Record<Family, string>>;
  /** The address to advertise in XOR-RELAYED-ADDRESS when the relay sits behind 1:1 NAT. */
  externalAddresses?: Partial<Record<Family, string>>;
  relayPortMin?: number;
  relayPortMax?: number;
  realm?: string;
  /** Long-term credential users (users file and flags). */
  users?: Map<string, UserEntry>;
  /** TURN REST API shared secrets. */
  secrets?: string[];
  restSeparator?: string;
  /** Set the nonce's username-anonymity bit: clients must send USERHASH. */
  requireUserhash?: boolean;
  /** Authentication (default on). Off only for closed test networks. */
  auth?: boolean;
  /** Peer ranges to allow despite the default denials, and more to deny. */
  allowPeers?: string[];
  denyPeers?: string[];
  /** Allocations per user (486 past it) and in all (508); permissions and channels per allocation (508). */
  userQuota?: number;
  totalQuota?: number;
  maxPermissions?: number;
  maxChannels?: number;
  /**
   * Accept channel numbers 0x4000-0x7FFF as RFC 5766 did (coturn's own client still picks
   * them). Off by default: RFC 8656 section 12 narrowed the range to 0x4000-0x4FFF.
   */
  legacyChannels?: boolean;
  /** RFC 8656 section 7.2: default 600 s, and at most 3600 s. */
  defaultLifetime?: number;
  maxLifetime?: number;
  /** Error answers per second to one source for unauthenticated requests over UDP (default 50, burst twice that). */
  errorRate?: number;
  software?: string | false;
  nonceLifetimeMs?: number;
  maxConnections?: number;
  /** TCP/TLS connections from one IP address at once (default 64); more are closed. */
  maxConnectionsPerIp?: number;
  idleTimeoutMs?: number;
  clock?: Clock;
  /**
   * The network UDP sockets are opened on, listening and relayed (default: the operating
   * system's); also where the host's interface addresses come from, which the peer policy
   * refuses. TCP and TLS listeners always use node:net and node:tls.
   */
  network?: Network;
  /** Unix time in ms for REST credential expiry (default Date.now). */
  wallClock?: () => number;
  /** Structured log events. */
  log?: (level: 'debug' | 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => void;
}

export interface TurnListening {
  transport: 'udp' | 'tcp' | 'tls';
  family: Family;
  address: string;
  port: number;
}

/** A UDP listening socket and the allocations made through it, by client IP then port. */
interface UdpListener {
  socket: DatagramSocket;
  local: TransportAddress;
  allocs: Map<string, Map<number, Allocation>>;
}

interface StreamConn {
  socket: net.Socket;
  path: ClientPath;
  allocation: Allocation | undefined;
}

type DropReason =
  | 'not_stun'
  | 'malformed'
  | 'bad_fingerprint'
  | 'oversized'
  | 'no_allocation'
  | 'no_permission'
  | 'no_channel'
  | 'rate_limited'
  | 'unknown_attribute'
  | 'unexpected'
  | 'send_failed'
  | 'internal_error';

const DROP_REASONS: DropReason[] = ['not_stun', 'malformed', 'bad_fingerprint', 'oversized', 'no_allocation', 'no_permission', 'no_channel', 'rate_limited', 'unknown_attribute', 'unexpected', 'send_failed', 'internal_error'];

/** Largest UDP payload an IPv4 datagram carries. */
const MAX_UDP_PAYLOAD = 65507;

export class TurnServerError extends Error {}

/**
 * The TURN relay (RFC 8656): UDP, TCP and TLS towards clients, UDP relays, long-term
 * credentials and the REST API secret, secure by default (peer policy, quotas,
 * rate-limited unauthenticated errors), Prometheus metrics, reload and drain.
 */
export class TurnServer extends EventEmitter {
  readonly listening: TurnListening[] = [];
  readonly metrics = new Metrics();
  readonly credentials: CredentialStore;
  readonly policy: PeerPolicy;
  private readonly opts: TurnServerOptions;
  private readonly clock: Clock;
  private readonly relays: RelayPorts;
  private readonly limiter: RateLimiter;
  private readonly udp: UdpListener[] = [];
  private readonly streamServers: net.Server[] = [];
  private readonly conns = new Set<StreamConn>();
  private readonly connsPerIp = new Map<string, number>();
  /** Every allocation by its 5-tuple key. */
  private readonly allocations = new Map<string, Allocation>();
  private readonly pending = new Map<string, string>();
  private readonly perUser = new Map<string, number>();
  private readonly binding: BindingService;
  private readonly software: string | undefined;
  private nextId = 1;
  private sweepTimer: unknown;
  private closed = false;
  private draining = false;
  private drainWaiters: Array<(left: number) => void> = [];
  private readonly drops: Record<DropReason, { inc: (n?: number) => void; get: () => number }>;
  private readonly c: {
    allocationsTotal: { inc: (n?: number) => void; get: () => number };
    toPeerPackets: { inc: (n?: number) => void; get: () => number };
    toPeerBytes: { inc: (n?: number) => void; get: () => number };
    toClientPackets: { inc: (n?: number) => void; get: () => number };
    toClientBytes: { inc: (n?: number) => void; get: () => number };
    authFailures: { inc: (n?: number) => void; get: () => number };
    requests: Map<string, { inc: (n?: number) => void; get: () => number }>;
    errors: Map<number, { inc: (n?: number) => void; get: () => number }>;
  };

  private constructor(opts: TurnServerOptions, relays: RelayPorts, policy: PeerPolicy) {
    super();
    this.opts = opts;
    this.clock = opts.clock ?? realClock;
    this.relays = relays;
    this.policy = policy;
    this.credentials = new CredentialStore({
      realm: opts.realm ?? 'natkit',
      users: opts.users,
      secrets: opts.secrets,
      restSeparator: opts.restSeparator,
      requireUserhash: opts.requireUserhash,
      nonceLifetimeMs: opts.nonceLifetimeMs,
      wallClock: opts.wallClock,
    });
    // Every client starts with an unauthenticated Allocate that gets a 401, and many clients
    // can share one NAT's address: the default allows 50 per second (burst 100) per source,
    // which still bounds what the server reflects at a spoofed victim to a few kB/s.
    const errorRate = opts.errorRate ?? 50;
    const errorBurst = Math.max(20, errorRate * 2);
    this.limiter = new RateLimiter({ ratePerSecond: errorRate, burst: errorBurst });
    this.software = opts.software === false ? undefined : softwareText(opts.software ?? 'natkit');
    this.binding = new BindingService([undefined], { software: opts.software, errorRate, errorBurst });
    const m = this.metrics;
    this.drops = Object.fromEntries(
      DROP_REASONS.map((r) => [r, m.counter('natkit_turn_dropped_total', 'Packets dropped, by reason', { reason: r })]),
    ) as TurnServer['drops'];
    this.c = {
      allocationsTotal: m.counter('natkit_turn_allocations_created_total', 'Allocations created'),
      toPeerPackets: m.counter('natkit_turn_relayed_packets_total', 'Packets relayed', { direction: 'to_peer' }),
      toClientPackets: m.counter('natkit_turn_relayed_packets_total', 'Packets relayed', { direction: 'to_client' }),
      toPeerBytes: m.counter('natkit_turn_relayed_bytes_total', 'Application bytes relayed', { direction: 'to_peer' }),
      toClientBytes: m.counter('natkit_turn_relayed_bytes_total', 'Application bytes relayed', { direction: 'to_client' }),
      authFailures: m.counter('natkit_turn_auth_failures_total', 'Requests refused for credentials (401, 438, 441)'),
      requests: new Map(),
      errors: new Map(),
    };
    m.gauge('natkit_turn_allocations', 'Allocations now', () => this.allocations.size);
    m.gauge('natkit_turn_permissions', 'Permissions now', () => {
      const now = this.clock.now();
      let n = 0;
      for (const a of this.allocations.values()) n += a.livePermissions(now);
      return n;
    });
    m.gauge('natkit_turn_channels', 'Channel bindings now', () => {
      let n = 0;
      for (const a of this.allocations.values()) n += a.channels.size;
      return n;
    });
    m.gauge('natkit_turn_users', 'Users in the credential store', () => this.credentials.userCount);
    m.gauge('natkit_turn_draining', '1 while draining for shutdown', () => (this.draining ? 1 : 0));
  }

  private count(name: string): void {
    let c = this.c.requests.get(name);
    if (!c) this.c.requests.set(name, (c = this.metrics.counter('natkit_turn_requests_total', 'Requests received, by method', { method: name })));
    c.inc();
  }

  private countError(code: number): void {
    let c = this.c.errors.get(code);
    if (!c) this.c.errors.set(code, (c = this.metrics.counter('natkit_turn_error_responses_total', 'Error responses sent, by code', { code: String(code) })));
    c.inc();
  }

  /** Drop counters by reason. */
  dropped(reason: DropReason): number {
    return this.drops[reason].get();
  }

  get allocationCount(): number {
    return this.allocations.size;
  }

  /** The allocations now (for tests and operations). */
  allAllocations(): Allocation[] {
    return [...this.allocations.values()];
  }

  private log(level: 'debug' | 'info' | 'warn', msg: string, fields?: Record<string, unknown>): void {
    this.opts.log?.(level, msg, fields);
  }

  static async start(options: TurnServerOptions = {}): Promise<TurnServer> {
    // With port 0 the kernel picks the UDP port and TCP must get the same one, which some
    // other program may hold: try again with another.
    for (let attempt = 0; ; attempt++) {
      try {
        return await TurnServer.startOnce(options);
      } catch (err) {
        if ((options.port ?? 3478) !== 0 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 20) throw err;
      }
    }
  }

  private static async startOnce(options: TurnServerOptions): Promise<TurnServer> {
    const listen = (options.listen ?? ['0.0.0.0']).map((a) => {
      if (!ipFamily(a)) throw new TurnServerError(`listen address ${JSON.stringify(a)} is not an IP address`);
      return canonicalIp(a);
    });
    const relayAddresses: Partial<Record<Family, string>> = { ...options.relayAddresses };
    for (const a of listen) {
      const f = ipFamily(a)!;
      if (relayAddresses[f] === undefined && a !== '0.0.0.0' && a !== '::') relayAddresses[f] = a;
    }
    if (!relayAddresses.IPv4 && !relayAddresses.IPv6) {
      throw new TurnServerError('no relay address: listen on a specific address or give relayAddresses (--relay-ip)');
    }
    for (const [f, a] of Object.entries(relayAddresses)) {
      if (ipFamily(a) !== f) throw new TurnServerError(`relay address ${a} is not ${f}`);
    }
    const network = options.network ?? nodeNetwork;
    // Bind each relay address once now, so an address this host does not have fails at
    // start and not as a 508 at the first Allocate.
    for (const [family, address] of Object.entries(relayAddresses) as Array<[Family, string]>) {
      let s: DatagramSocket;
      try {
        s = await network.createUdpSocket({ family, address, port: 0 });
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        const hint = err.code === 'EADDRNOTAVAIL' ? ' (it is not an address of this host)' : '';
        throw new TurnServerError(`cannot bind relay address ${address}: ${err.message}${hint}`);
      }
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
    const relays = new RelayPorts({ min: options.relayPortMin, max: options.relayPortMax, addresses: relayAddresses, network });
    // The server's own addresses: what it listens and relays on, what it advertises, and
    // every address of this host's interfaces (a wildcard listen means all of them).
    const interfaces = network.interfaces().map((i) => i.address.split('%')[0]!);
    const own = [...listen, ...Object.values(relayAddresses), ...Object.values(options.externalAddresses ?? {}), ...interfaces].filter(
      (a) => a !== '0.0.0.0' && a !== '::' && ipFamily(a) !== undefined,
    );
    let policy: PeerPolicy;
    try {
      policy = new PeerPolicy({ allow: options.allowPeers, deny: options.denyPeers, ownAddresses: own });
    } catch (err) {
      throw new TurnServerError((err as Error).message);
    }
    const server = new TurnServer(options, relays, policy);
    try {
      const port = options.port ?? 3478;
      for (const address of listen) {
        let p = port;
        if (options.udp ?? true) p = await server.listenUdp(network, address, port);
        if (options.tcp ?? true) await server.listenStream('tcp', address, p);
        if (options.tls) await server.listenStream('tls', address, options.tls.port ?? 5349);
      }
    } catch (err) {
      await server.close();
      throw err;
    }
    server.scheduleSweep();
    return server;
  }

  // ------------------------------------------------------------------------------------
  // Listeners

  private async listenUdp(network: Network, address: string, port: number): Promise<number> {
    const family = ipFamily(address)!;
    // Every client shares this socket: larger kernel buffers (1 MiB asked; the kernel caps
    // it at net.core.rmem_max/wmem_max) so bursts wait instead of being dropped.
    const socket = await network.createUdpSocket({ family, address, port, recvBufferSize: 1 << 20, sendBufferSize: 1 << 20 });
    const a = socket.address();
    const l: UdpListener = { socket, local: { family, address: canonicalIp(a.address), port: a.port }, allocs: new Map() };
    this.udp.push(l);
    this.listening.push({ transport: 'udp', family, address: l.local.address, port: a.port });
    socket.on('message', (buf, rinfo) => this.onUdp(l, buf, rinfo));
    socket.on('error', (err) => this.log('warn', 'UDP socket error', { error: err.message }));
    return a.port;
  }

  private async listenStream(transport: 'tcp' | 'tls', address: string, port: number): Promise<void> {
    const family = ipFamily(address)!;
    const onConn = (sock: net.Socket) => this.onConnection(sock, transport, family);
    const srv =
      transport === 'tls' ? tls.createServer({ cert: this.opts.tls!.cert, key: this.opts.tls!.key }, onConn) : net.createServer(onConn);
    srv.maxConnections = this.opts.maxConnections ?? 4096;
    srv.on('error', (err) => this.log('warn', `${transport} server error`, { error: err.message }));
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ host: address, port, exclusive: true }, () => {
        srv.off('error', reject);
        resolve();
      });
    });
    this.streamServers.push(srv);
    const a = srv.address() as net.AddressInfo;
    this.listening.push({ transport, family, address: canonicalIp(a.address), port: a.port });
  }

  private onConnection(sock: net.Socket, transport: 'tcp' | 'tls', family: Family): void {
    if (this.closed) {
      sock.destroy();
      return;
    }
    const ip = canonicalIp(sock.remoteAddress ?? '0.0.0.0');
    const already = this.connsPerIp.get(ip) ?? 0;
    if (already >= (this.opts.maxConnectionsPerIp ?? 64)) {
      this.drops.rate_limited.inc();
      sock.destroy();
      return;
    }
    this.connsPerIp.set(ip, already + 1);
    sock.setNoDelay(true);
    const conn: StreamConn = {
      socket: sock,
      allocation: undefined,
      path: {
        transport,
        stream: true,
        remote: { family: (sock.remoteFamily as Family) ?? family, address: canonicalIp(sock.remoteAddress ?? '0.0.0.0'), port: sock.remotePort ?? 0 },
        local: { family, address: canonicalIp(sock.localAddress ?? '0.0.0.0'), port: sock.localPort ?? 0 },
        send: (data) => {
          if (!sock.destroyed) sock.write(data);
        },
      },
    };
    this.conns.add(conn);
    const idle = this.opts.idleTimeoutMs ?? 60_000;
    // Idle clients without an allocation are closed; with one, the allocation's lifetime rules.
    sock.setTimeout(idle, () => {
      if (!conn.allocation) sock.destroy();
    });
    const framer = new StreamFramer({ acceptChannelData: true });
    sock.on('data', (chunk: Buffer) => {
      try {
        framer.push(chunk, (frame) => this.guard(() => this.onClientFrame(frame, conn.path, conn, undefined)));
      } catch {
        // RFC 8656 section 6.2 / RFC 8489 6.2.2: a stream out of step cannot be recovered.
        this.drops.malformed.inc();
        sock.destroy();
      }
    });
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      this.conns.delete(conn);
      const n = (this.connsPerIp.get(ip) ?? 1) - 1;
      if (n <= 0) this.connsPerIp.delete(ip);
      else this.connsPerIp.set(ip, n);
      // RFC 8656 section 3.? (TCP): the allocation lives as long as its connection.
      if (conn.allocation) this.deleteAllocation(conn.allocation, 'connection closed');
    });
  }

  // ------------------------------------------------------------------------------------
  // The client-to-server direction

  private onUdp(l: UdpListener, buf: Buffer, rinfo: DatagramInfo): void {
    // A source port of 0 cannot be answered (Node's send throws on it): spoofed, drop it.
    if (rinfo.port === 0) {
      this.drops.malformed.inc();
      return;
    }
    // RFC 8656 section 12.4 / RFC 7983: first byte 64-79 is ChannelData. The per-packet path.
    if ((buf[0]! & 0xc0) === 0x40 && buf.length >= 4) {
      const alloc = l.allocs.get(rinfo.address)?.get(rinfo.port);
      if (!alloc) {
        this.drops.no_allocation.inc();
        return;
      }
      this.channelToPeer(alloc, buf);
      return;
    }
    this.guard(() => this.onClientFrame(buf, undefined, undefined, { l, rinfo }));
  }

  /**
   * Runs the handling of one message so that a bug in it costs that message, not the
   * server: every byte from the network is hostile, and one bad packet must not stop the
   * process or disturb other clients.
   */
  private guard(fn: () => unknown): void {
    try {
      const r = fn();
      if (r instanceof Promise) r.catch((err: unknown) => this.internalError(err));
    } catch (err) {
      this.internalError(err);
    }
  }

  private internalError(err: unknown): void {
    this.drops.internal_error.inc();
    this.log('warn', 'internal error while handling a message', { error: (err as Error)?.stack ?? String(err) });
  }

  /** ChannelData from the client (RFC 8656 section 12.6). */
  private channelToPeer(alloc: Allocation, buf: Buffer): void {
    const len = buf.readUInt16BE(2);
    if (4 + len > buf.length) {
      this.drops.malformed.inc();
      return;
    }
    // A stream frame can carry more than a UDP datagram can (65535 > 65507).
    if (len > MAX_UDP_PAYLOAD) {
      this.drops.oversized.inc();
      return;
    }
    const ch = alloc.channels.get(buf.readUInt16BE(0));
    const now = this.clock.now();
    if (!ch || ch.expiresAt <= now || alloc.expiresAt <= now) {
      this.drops.no_channel.inc();
      return;
    }
    if (!alloc.permitted(ch.peer.address, now)) {
      this.drops.no_permission.inc();
      return;
    }
    const relay = alloc.relays[ch.peer.family];
    if (!relay) {
      this.drops.no_allocation.inc();
      return;
    }
    // No send callback: without one Node tries a synchronous send first (uv_udp_try_send)
    // instead of queueing a request; a failed relayed datagram is simply lost, as UDP is.
    relay.socket.send(buf.subarray(4, 4 + len), ch.peer.port, ch.peer.address);
    alloc.counters.toPeerPackets++;
    alloc.counters.toPeerBytes += len;
    this.c.toPeerPackets.inc();
    this.c.toPeerBytes.inc(len);
  }

  /**
   * A STUN message (or, on streams, ChannelData) from a client. For UDP `udp` carries the
   * listener and the source; for streams `conn`.
   */
  private onClientFrame(
    buf: Buffer,
    streamPath: ClientPath | undefined,
    conn: StreamConn | undefined,
    udp: { l: UdpListener; rinfo: DatagramInfo } | undefined,
  ): Promise<void> | void {
    if (conn && (buf[0]! & 0xc0) === 0x40) {
      if (!conn.allocation) {
        this.drops.no_allocation.inc();
        return;
      }
      this.channelToPeer(conn.allocation, buf);
      return;
    }
    if (buf.length < 20 || (buf[0]! & 0xc0) !== 0) {
      this.drops.not_stun.inc();
      return;
    }
    let msg: StunMessage;
    try {
      msg = decodeMessage(buf, { registry: turnServerRegistry });
    } catch {
      this.drops.malformed.inc();
      return;
    }
    if (msg.fingerprintAt >= 0 && !verifyFingerprint(msg)) {
      this.drops.bad_fingerprint.inc();
      return;
    }
    const path: ClientPath =
      streamPath ??
      (() => {
        const { l, rinfo } = udp!;
        return {
          transport: 'udp',
          stream: false,
          remote: { family: rinfo.family as Family, address: rinfo.address, port: rinfo.port },
          local: l.local,
          send: (data: Buffer) => l.socket.send(data, rinfo.port, rinfo.address),
        };
      })();
    const now = this.clock.now();
    if (msg.cls === MessageClass.Indication) {
      if (msg.method !== Method.Send) this.drops.unexpected.inc();
      else if (!validated(msg)) this.drops.malformed.inc();
      else this.onSend(msg, path, conn, udp, now);
      return;
    }
    if (msg.cls !== MessageClass.Request) {
      this.drops.unexpected.inc();
      return;
    }
    if (msg.method === Method.Binding) {
      // The STUN Binding service answers on the TURN ports too (TURN extends STUN; ICE
      // agents send their server-reflexive Binding requests to the TURN server).
      this.count('binding');
      if (udp) {
        const reply = this.binding.handleDatagram(buf, path.remote, 0, now);
        if (reply) udp.l.socket.send(reply.data, reply.port, reply.address);
      } else {
        const reply = this.binding.handleStream(buf, path.remote, now);
        if (reply) path.send(reply);
      }
      return;
    }
    const ctx = { msg, path, conn, udp, now, fingerprint: msg.fingerprintAt >= 0 };
    if (msg.unknownRequired.length > 0) {
      // RFC 8489 section 6.3.1 (DONT-FRAGMENT lands here: RFC 8656 section 7.2 step 4).
      this.drops.unknown_attribute.inc();
      this.reject(ctx, ErrorCode.UnknownAttribute, undefined, undefined, (b) => b.add(Attr.UnknownAttributes, [...msg.unknownRequired]));
      return;
    }
    // Every known attribute is decoded once here, so a malformed one is a 400 in one place
    // and the handlers below read values without guarding each read.
    try {
      msg.validate();
    } catch (err) {
      this.reject(ctx, ErrorCode.BadRequest, undefined, (err as Error).message);
      return;
    }
    switch (msg.method) {
      case Method.Allocate:
        this.count('allocate');
        return this.onAllocate(ctx);
      case Method.Refresh:
        this.count('refresh');
        this.onRefresh(ctx);
        return;
      case Method.CreatePermission:
        this.count('create_permission');
        this.onCreatePermission(ctx);
        return;
      case Method.ChannelBind:
        this.count('channel_bind');
        this.onChannelBind(ctx);
        return;
      default:
        this.count('other');
        this.reject(ctx, ErrorCode.BadRequest, undefined, 'unknown method');
    }
  }

  // ------------------------------------------------------------------------------------
  // Answers

  private answer(
    ctx: Ctx,
    cls: number,
    key: Buffer | undefined,
    integrity: 'sha1' | 'sha256' | undefined,
    add?: (b: MessageBuilder) => void,
  ): Buffer {
    const b = new MessageBuilder(ctx.msg.method, cls, ctx.msg.transactionId);
    add?.(b);
    if (this.software) b.add(Attr.Software, this.software);
    const out = b.encode({ integrity: key ? { key, algorithm: integrity ?? 'sha1' } : undefined, fingerprint: ctx.fingerprint });
    ctx.path.send(out);
    return out;
  }

  /**
   * An error answer. With `auth` (the request authenticated), it is signed; without, it is
   * rate-limited per source (unauthenticated error answers must not be a reflector).
   */
  private reject(ctx: Ctx, code: number, auth?: { key: Buffer; integrity: 'sha1' | 'sha256' }, reason?: string, add?: (b: MessageBuilder) => void): void {
    // Over UDP an unauthenticated error answer could be reflected at a spoofed source, so
    // they are rate-limited per source. Over TCP/TLS the handshake proved the source, and a
    // client never retransmits there (RFC 8489 section 6.2.2): a dropped 401 would stall it
    // for the whole transaction timeout, so streams are not limited (connections per IP are).
    if (!auth && !ctx.path.stream && !this.limiter.take(ctx.path.remote.address, ctx.now)) {
      this.drops.rate_limited.inc();
      return;
    }
    this.countError(code);
    // ERROR-CODE reasons must be fewer than 128 characters (RFC 8489 section 14.8).
    const full = reason ? `${ERROR_REASONS[code] ?? 'Error'}: ${reason}` : (ERROR_REASONS[code] ?? 'Error');
    const phrase = full.length > 120 ? `${full.slice(0, 117)}...` : full;
    this.answer(ctx, MessageClass.ErrorResponse, auth?.key, auth?.integrity, (b) => {
      b.add(Attr.ErrorCode, { code, reason: phrase });
      add?.(b);
    });
  }

  /** Authenticates a request; on failure answers it and returns undefined. */
  private authenticate(ctx: Ctx): { username: string; key: Buffer; integrity: 'sha1' | 'sha256' } | undefined {
    if (this.opts.auth === false) return { username: '', key: Buffer.alloc(0), integrity: 'sha1' };
    const r = this.credentials.authenticate(ctx.msg, ctx.path.remote.address, ctx.now);
    if (r.ok) return r;
    if (r.code === ErrorCode.Unauthorized || r.code === ErrorCode.StaleNonce) {
      // A first request without credentials is the normal start, not a failure.
      if (ctx.msg.integrityAt >= 0 || ctx.msg.integritySha256At >= 0) this.c.authFailures.inc();
    }
    this.log('debug', 'request refused', { code: r.code, reason: r.reason, client: formatAddress(ctx.path.remote) });
    this.reject(ctx, r.code, undefined, r.code === ErrorCode.Unauthorized ? undefined : r.reason, r.challenge ? (b) => this.credentials.challenge(b, ctx.path.remote.address, ctx.now) : undefined);
    return undefined;
  }

  private signed(auth: { key: Buffer; integrity: 'sha1' | 'sha256' }): { key: Buffer | undefined; integrity: 'sha1' | 'sha256' } {
    return this.opts.auth === false ? { key: undefined, integrity: 'sha1' } : auth;
  }

  private key5(path: ClientPath): string {
    return `${path.transport}|${path.local.address}|${path.local.port}|${path.remote.address}|${path.remote.port}`;
  }

  /** The allocation this request belongs to, checking it is the same user (441). */
  private allocationFor(ctx: Ctx, auth: { username: string; key: Buffer; integrity: 'sha1' | 'sha256' }): Allocation | undefined {
    const alloc = this.allocations.get(this.key5(ctx.path));
    const sig = this.signed(auth);
    if (!alloc || alloc.expiresAt <= ctx.now) {
      this.reject(ctx, ErrorCode.AllocationMismatch, sig.key ? auth : undefined, 'no allocation for this 5-tuple');
      return undefined;
    }
    // RFC 8656 section 5: requests about an allocation must come from the user who made it.
    if (this.opts.auth !== false && alloc.username !== auth.username) {
      this.c.authFailures.inc();
      this.reject(ctx, ErrorCode.WrongCredentials, auth, 'the allocation belongs to another user');
      return undefined;
    }
    return alloc;
  }

  private lifetimeMs(requested: number | undefined): number {
    // RFC 8656 section 7.2: min(requested, max), but never below the default.
    const def = this.opts.defaultLifetime ?? 600;
    const max = this.opts.maxLifetime ?? 3600;
    const want = requested === undefined ? def : Math.min(requested, max);
    return Math.max(want, def) * 1000;
  }

  // ------------------------------------------------------------------------------------
  // Allocate (RFC 8656 section 7.2)

  private async onAllocate(ctx: Ctx): Promise<void> {
    const auth = this.authenticate(ctx);
    if (!auth) return;
    const sig = this.signed(auth);
    const key = this.key5(ctx.path);
    const tid = ctx.msg.transactionId.toString('hex');
    let existing = this.allocations.get(key);
    // An allocation whose lifetime ran out before the sweep got to it is gone already.
    if (existing && existing.expiresAt <= ctx.now) {
      this.deleteAllocation(existing, 'expired');
      existing = undefined;
    }
    if (existing) {
      // Step 2: a retransmitted Allocate gets the same answer; any other is a mismatch.
      if (existing.createdBy === tid && existing.response) ctx.path.send(existing.response);
      else this.reject(ctx, ErrorCode.AllocationMismatch, sig.key ? auth : undefined, 'an allocation already exists for this 5-tuple');
      return;
    }
    const inProgress = this.pending.get(key);
    if (inProgress !== undefined) {
      if (inProgress !== tid) this.reject(ctx, ErrorCode.AllocationMismatch, sig.key ? auth : undefined, 'an allocation is being made for this 5-tuple');
      return;
    }
    const s = sig.key ? auth : undefined;
    if (this.draining) {
      this.reject(ctx, ErrorCode.InsufficientCapacity, s, 'the server is shutting down');
      return;
    }
    const m = ctx.msg;
    const transport = m.get(TurnAttr.RequestedTransport);
    const reqFamily = m.get(TurnAttr.RequestedAddressFamily);
    const addFamily = m.get(TurnAttr.AdditionalAddressFamily);
    const even = m.get(TurnAttr.EvenPort);
    const token = m.get(TurnAttr.ReservationToken);
    const lifetime = m.get(TurnAttr.Lifetime);
    // Step 3: REQUESTED-TRANSPORT is required, and only UDP is relayed.
    if (transport === undefined) return this.reject(ctx, ErrorCode.BadRequest, s, 'REQUESTED-TRANSPORT is missing');
    if (transport !== TRANSPORT_UDP) return this.reject(ctx, ErrorCode.UnsupportedTransportProtocol, s, 'only UDP (17) is relayed');
    // Steps 5-7: the token excludes EVEN-PORT and the family attributes; the two family
    // attributes exclude each other; ADDITIONAL-ADDRESS-FAMILY can only ask for IPv6.
    if (token && (even || reqFamily || addFamily)) return this.reject(ctx, ErrorCode.BadRequest, s, 'RESERVATION-TOKEN with EVEN-PORT or an address family');
    if (reqFamily && addFamily) return this.reject(ctx, ErrorCode.BadRequest, s, 'REQUESTED-ADDRESS-FAMILY with ADDITIONAL-ADDRESS-FAMILY');
    if (addFamily === 'IPv4') return this.reject(ctx, ErrorCode.BadRequest, s, 'ADDITIONAL-ADDRESS-FAMILY must be IPv6');
    const family: Family = reqFamily ?? 'IPv4';
    if (!this.relays.addresses[family] && !token) {
      return this.reject(ctx, ErrorCode.AddressFamilyNotSupported, s, `no ${family} relay address`);
    }
    // Quotas.
    // Quotas; a reserved port (EVEN-PORT with R) counts as an allocation until redeemed.
    this.relays.sweep(ctx.now);
    const userCount = this.perUser.get(auth.username) ?? 0;
    // Redeeming one's own reservation turns it into this allocation: do not count it twice.
    const redeeming = token && this.relays.ownerOf(token) !== undefined ? 1 : 0;
    const ownRedeem = redeeming && this.relays.ownerOf(token!) === auth.username ? 1 : 0;
    if (this.opts.auth !== false && userCount + this.relays.reservedBy(auth.username) - ownRedeem >= (this.opts.userQuota ?? 10)) {
      return this.reject(ctx, ErrorCode.AllocationQuotaReached, s, `at most ${this.opts.userQuota ?? 10} allocations per user`);
    }
    if (this.allocations.size + this.pending.size + this.relays.reservedCount - redeeming >= (this.opts.totalQuota ?? 1000)) {
      return this.reject(ctx, ErrorCode.InsufficientCapacity, s, 'the server is full');
    }
    this.pending.set(key, tid);
    const relays: Partial<Record<Family, RelaySocket>> = {};
    let reservation: Buffer | undefined;
    let v6Error: number | undefined;
    try {
      if (token) {
        const r = this.relays.redeem(token, ctx.now);
        if (!r) return this.reject(ctx, ErrorCode.InsufficientCapacity, s, 'unknown or expired RESERVATION-TOKEN');
        relays[r.family] = r;
      } else if (even?.reserve) {
        const pair = await this.relays.allocatePair(family, ctx.now, auth.username);
        if (!pair) return this.reject(ctx, ErrorCode.InsufficientCapacity, s, 'no even port pair free');
        relays[family] = pair.relay;
        reservation = pair.token;
      } else {
        const r = await this.relays.allocate(family, even !== undefined);
        if (!r) return this.reject(ctx, ErrorCode.InsufficientCapacity, s, 'no relay port free');
        relays[family] = r;
      }
      if (addFamily === 'IPv6') {
        // RFC 8656 section 7.2 / RFC 6156: a second relayed address; if it cannot be had,
        // the allocation goes ahead with ADDRESS-ERROR-CODE saying why.
        const r6 = this.relays.addresses.IPv6 ? await this.relays.allocate('IPv6') : undefined;
        if (r6) relays.IPv6 = r6;
        else v6Error = this.relays.addresses.IPv6 ? ErrorCode.InsufficientCapacity : ErrorCode.AddressFamilyNotSupported;
      }
    } finally {
      this.pending.delete(key);
    }
    if (this.closed || (ctx.conn && ctx.conn.socket.destroyed)) {
      for (const r of Object.values(relays)) this.relays.release(r!);
      return;
    }
    const alloc = new Allocation({
      id: this.nextId++,
      key,
      client: ctx.path,
      username: auth.username,
      hmacKey: auth.key,
      integrity: auth.integrity,
      relays,
      now: ctx.now,
      lifetimeMs: this.lifetimeMs(lifetime),
      createdBy: tid,
    });
    this.allocations.set(key, alloc);
    this.perUser.set(auth.username, userCount + 1);
    if (ctx.conn) ctx.conn.allocation = alloc;
    else {
      const l = ctx.udp!.l;
      let byPort = l.allocs.get(ctx.path.remote.address);
      if (!byPort) l.allocs.set(ctx.path.remote.address, (byPort = new Map()));
      byPort.set(ctx.path.remote.port, alloc);
    }
    for (const r of Object.values(relays)) this.attachRelay(alloc, r!);
    this.c.allocationsTotal.inc();
    const advertised = (r: RelaySocket): TransportAddress => ({ family: r.family, address: this.opts.externalAddresses?.[r.family] ?? r.address, port: r.port });
    alloc.response = this.answer(ctx, MessageClass.SuccessResponse, sig.key, sig.integrity, (b) => {
      for (const r of Object.values(relays)) b.add(TurnAttr.XorRelayedAddress, advertised(r!));
      if (v6Error !== undefined) b.add(TurnAttr.AddressErrorCode, { family: 'IPv6', code: v6Error, reason: ERROR_REASONS[v6Error]! });
      b.add(TurnAttr.Lifetime, Math.round((alloc.expiresAt - ctx.now) / 1000));
      if (reservation) b.add(TurnAttr.ReservationToken, reservation);
      b.add(Attr.XorMappedAddress, ctx.path.remote);
    });
    this.log('info', 'allocation created', {
      id: alloc.id,
      user: auth.username,
      client: `${ctx.path.transport} ${formatAddress(ctx.path.remote)}`,
      relayed: Object.values(relays).map((r) => formatAddress(advertised(r!))),
      lifetime: Math.round((alloc.expiresAt - ctx.now) / 1000),
    });
  }

  /** Peer-to-client: datagrams arriving at a relayed address (RFC 8656 sections 10.3, 12.5). */
  private attachRelay(alloc: Allocation, relay: RelaySocket): void {
    const client = alloc.client;
    const clock = this.clock;
    const drops = this.drops;
    const c = this.c;
    let announced = false;
    relay.socket.on('message', (buf, rinfo) => {
      const now = clock.now();
      if (!alloc.permitted(rinfo.address, now) || alloc.expiresAt <= now) {
        drops.no_permission.inc();
        return;
      }
      const len = buf.length;
      const ch = alloc.peerChannels.get(rinfo.address)?.get(rinfo.port);
      let out: Buffer;
      if (ch && ch.expiresAt > now) {
        // ChannelData: 4-byte header, padded to 4 on streams (section 12.5).
        const total = client.stream ? 4 + ((len + 3) & ~3) : 4 + len;
        out = Buffer.allocUnsafe(total);
        out.writeUInt16BE(ch.number, 0);
        out.writeUInt16BE(len, 2);
        buf.copy(out, 4);
        if (total > 4 + len) out.fill(0, 4 + len, total);
      } else {
        out = new MessageBuilder(Method.Data, MessageClass.Indication)
          .add(TurnAttr.XorPeerAddress, { family: rinfo.family as Family, address: rinfo.address, port: rinfo.port })
          .add(TurnAttr.Data, buf)
          .encode();
      }
      client.send(out);
      alloc.counters.toClientPackets++;
      alloc.counters.toClientBytes += len;
      c.toClientPackets.inc();
      c.toClientBytes.inc(len);
      if (!announced) {
        announced = true;
        this.log('info', 'relaying', { id: alloc.id, user: alloc.username, client: formatAddress(client.remote), peer: formatAddress({ family: rinfo.family as Family, address: rinfo.address, port: rinfo.port }) });
      }
    });
    relay.socket.on('error', (err) => {
      drops.send_failed.inc();
      this.log('debug', 'relay socket error', { id: alloc.id, error: err.message });
    });
  }

  // ------------------------------------------------------------------------------------
  // Refresh (section 7.3), CreatePermission (9.2), ChannelBind (12.2), Send (10.2)

  /**
   * The common start of Refresh, CreatePermission and ChannelBind: authenticate, find the
   * 5-tuple's allocation (437) made by the same user (441). `s` signs error answers.
   */
  private existing(ctx: Ctx): { alloc: Allocation; sig: { key: Buffer | undefined; integrity: 'sha1' | 'sha256' }; s: Auth | undefined } | undefined {
    const auth = this.authenticate(ctx);
    if (!auth) return undefined;
    const alloc = this.allocationFor(ctx, auth);
    if (!alloc) return undefined;
    const sig = this.signed(auth);
    return { alloc, sig, s: sig.key ? auth : undefined };
  }

  private onRefresh(ctx: Ctx): void {
    const e = this.existing(ctx);
    if (!e) return;
    const { alloc, sig, s } = e;
    const lifetime = ctx.msg.get(TurnAttr.Lifetime);
    const fam = ctx.msg.get(TurnAttr.RequestedAddressFamily);
    // RFC 8656 section 7.3: a family the allocation does not have is a mismatch (443).
    if (fam && !alloc.relays[fam]) return this.reject(ctx, ErrorCode.PeerAddressFamilyMismatch, s, `the allocation has no ${fam} address`);
    if (lifetime === 0) {
      this.deleteAllocation(alloc, 'refreshed with lifetime 0');
      this.answer(ctx, MessageClass.SuccessResponse, sig.key, sig.integrity, (b) => b.add(TurnAttr.Lifetime, 0));
      return;
    }
    const ms = this.lifetimeMs(lifetime);
    alloc.expiresAt = ctx.now + ms;
    this.answer(ctx, MessageClass.SuccessResponse, sig.key, sig.integrity, (b) => b.add(TurnAttr.Lifetime, Math.round(ms / 1000)));
  }

  /** Checks a peer address for an allocation; answers and returns false if refused. */
  private peerAllowed(ctx: Ctx, alloc: Allocation, peer: TransportAddress, auth: { key: Buffer; integrity: 'sha1' | 'sha256' } | undefined): boolean {
    if (!alloc.relays[peer.family]) {
      this.reject(ctx, ErrorCode.PeerAddressFamilyMismatch, auth, `no ${peer.family} relayed address for peer ${peer.address}`);
      return false;
    }
    const d = this.policy.check(peer.address);
    if (!d.allowed) {
      this.log('info', 'peer refused', { id: alloc.id, user: alloc.username, peer: peer.address, reason: d.reason });
      this.reject(ctx, ErrorCode.Forbidden, auth, `peer ${peer.address} is not allowed`);
      return false;
    }
    return true;
  }

  private onCreatePermission(ctx: Ctx): void {
    const e = this.existing(ctx);
    if (!e) return;
    const { alloc, sig, s } = e;
    const peers = ctx.msg.getAll(TurnAttr.XorPeerAddress);
    if (peers.length === 0) return this.reject(ctx, ErrorCode.BadRequest, s, 'XOR-PEER-ADDRESS is missing');
    // RFC 8656 section 9.2: all or none.
    for (const p of peers) if (!this.peerAllowed(ctx, alloc, p, s)) return;
    const fresh = new Set(peers.map((p) => p.address).filter((ip) => !alloc.permitted(ip, ctx.now)));
    if (alloc.livePermissions(ctx.now) + fresh.size > (this.opts.maxPermissions ?? 64)) {
      return this.reject(ctx, ErrorCode.InsufficientCapacity, s, `at most ${this.opts.maxPermissions ?? 64} permissions per allocation`);
    }
    for (const p of peers) alloc.permit(p.address, ctx.now);
    this.answer(ctx, MessageClass.SuccessResponse, sig.key, sig.integrity);
  }

  private onChannelBind(ctx: Ctx): void {
    const e = this.existing(ctx);
    if (!e) return;
    const { alloc, sig, s } = e;
    const number = ctx.msg.get(TurnAttr.ChannelNumber);
    const peer = ctx.msg.get(TurnAttr.XorPeerAddress);
    if (number === undefined || peer === undefined) return this.reject(ctx, ErrorCode.BadRequest, s, 'CHANNEL-NUMBER and XOR-PEER-ADDRESS are required');
    // RFC 8656 section 12.2: a number outside 0x4000-0x4FFF (RFC 5766's 0x7FFF when
    // legacyChannels is set) is refused with 400.
    const maxChannel = this.opts.legacyChannels ? 0x7fff : MAX_CHANNEL;
    if (number < MIN_CHANNEL || number > maxChannel) {
      return this.reject(ctx, ErrorCode.BadRequest, s, `channel 0x${number.toString(16)} is outside 0x4000-0x${maxChannel.toString(16).toUpperCase()}`);
    }
    if (peer.port === 0) return this.reject(ctx, ErrorCode.BadRequest, s, 'peer port 0');
    if (!this.peerAllowed(ctx, alloc, peer, s)) return;
    alloc.sweep(ctx.now);
    // RFC 8656 section 12.2: a number bound to another peer, or a peer bound to another
    // number, is refused.
    const byNumber = alloc.channels.get(number);
    if (byNumber && (byNumber.peer.address !== peer.address || byNumber.peer.port !== peer.port)) {
      return this.reject(ctx, ErrorCode.BadRequest, s, `channel 0x${number.toString(16)} is bound to another peer`);
    }
    const byPeer = alloc.channelForPeer(peer);
    if (byPeer && byPeer.number !== number) return this.reject(ctx, ErrorCode.BadRequest, s, 'the peer is bound to another channel');
    if (!byNumber && alloc.channels.size >= (this.opts.maxChannels ?? 64)) {
      return this.reject(ctx, ErrorCode.InsufficientCapacity, s, `at most ${this.opts.maxChannels ?? 64} channels per allocation`);
    }
    if (!alloc.permitted(peer.address, ctx.now) && alloc.livePermissions(ctx.now) >= (this.opts.maxPermissions ?? 64)) {
      return this.reject(ctx, ErrorCode.InsufficientCapacity, s, `at most ${this.opts.maxPermissions ?? 64} permissions per allocation`);
    }
    alloc.bind(number, peer, ctx.now);
    this.answer(ctx, MessageClass.SuccessResponse, sig.key, sig.integrity);
  }

  private onSend(msg: StunMessage, path: ClientPath, conn: StreamConn | undefined, udp: { l: UdpListener; rinfo: DatagramInfo } | undefined, now: number): void {
    const alloc = conn ? conn.allocation : udp!.l.allocs.get(path.remote.address)?.get(path.remote.port);
    if (!alloc || alloc.expiresAt <= now) {
      this.drops.no_allocation.inc();
      return;
    }
    const peer = msg.get(TurnAttr.XorPeerAddress);
    const data = msg.get(TurnAttr.Data);
    // RFC 8656 section 10.2: without XOR-PEER-ADDRESS and DATA, or without a permission,
    // the indication is discarded.
    if (!peer || !data || peer.port === 0) {
      this.drops.malformed.inc();
      return;
    }
    if (msg.unknownRequired.length > 0) {
      this.drops.unknown_attribute.inc();
      return;
    }
    if (data.length > MAX_UDP_PAYLOAD) {
      this.drops.oversized.inc();
      return;
    }
    if (!alloc.permitted(peer.address, now)) {
      this.drops.no_permission.inc();
      return;
    }
    const relay = alloc.relays[peer.family];
    if (!relay) {
      this.drops.no_allocation.inc();
      return;
    }
    relay.socket.send(data, peer.port, peer.address);
    alloc.counters.toPeerPackets++;
    alloc.counters.toPeerBytes += data.length;
    this.c.toPeerPackets.inc();
    this.c.toPeerBytes.inc(data.length);
  }

  // ------------------------------------------------------------------------------------
  // Lifetimes, reload, drain, close

  private deleteAllocation(alloc: Allocation, why: string): void {
    if (alloc.closed) return;
    alloc.closed = true;
    this.allocations.delete(alloc.key);
    const n = (this.perUser.get(alloc.username) ?? 1) - 1;
    if (n <= 0) this.perUser.delete(alloc.username);
    else this.perUser.set(alloc.username, n);
    for (const l of this.udp) {
      const byPort = l.allocs.get(alloc.client.remote.address);
      if (byPort?.get(alloc.client.remote.port) === alloc) {
        byPort.delete(alloc.client.remote.port);
        if (byPort.size === 0) l.allocs.delete(alloc.client.remote.address);
      }
    }
    for (const c of this.conns) if (c.allocation === alloc) c.allocation = undefined;
    for (const r of Object.values(alloc.relays)) this.relays.release(r!);
    this.log('info', 'allocation deleted', { id: alloc.id, user: alloc.username, why, ...alloc.counters });
    if (this.draining && this.allocations.size === 0) for (const w of this.drainWaiters.splice(0)) w(0);
  }

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
    for (const a of [...this.allocations.values()]) {
      if (a.expiresAt <= now) this.deleteAllocation(a, 'expired');
      else a.sweep(now);
    }
    this.relays.sweep(now);
  }

  /** Replaces users and REST secrets (SIGHUP); existing allocations stay. */
  reloadCredentials(users: Map<string, UserEntry>, secrets: string[]): void {
    this.credentials.reload(users, secrets);
    this.log('info', 'credentials reloaded', { users: users.size, secrets: secrets.length });
  }

  get isDraining(): boolean {
    return this.draining;
  }

  /**
   * Stops taking new allocations (508) and resolves when the last allocation is gone or
   * `timeoutMs` has passed; returns how many were still there.
   */
  drain(timeoutMs: number): Promise<number> {
    this.draining = true;
    this.log('info', 'draining', { allocations: this.allocations.size, timeoutMs });
    if (this.allocations.size === 0) return Promise.resolve(0);
    return new Promise((resolve) => {
      const timer = this.clock.setTimeout(() => resolve(this.allocations.size), timeoutMs);
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
    for (const w of this.drainWaiters.splice(0)) w(this.allocations.size);
    for (const a of [...this.allocations.values()]) this.deleteAllocation(a, 'server closing');
    this.relays.close();
    const waits: Promise<void>[] = [];
    for (const l of this.udp) waits.push(new Promise((r) => l.socket.close(() => r())));
    for (const s of this.streamServers) waits.push(new Promise((r) => s.close(() => r())));
    for (const c of this.conns) c.socket.destroy();
    await Promise.all(waits);
  }
}

type Auth = { key: Buffer; integrity: 'sha1' | 'sha256' };

/** Decodes every known attribute once; false if one is malformed. */
function validated(msg: StunMessage): boolean {
  try {
    msg.validate();
    return true;
  } catch {
    return false;
  }
}

interface Ctx {
  msg: StunMessage;
  path: ClientPath;
  conn: StreamConn | undefined;
  udp: { l: UdpListener; rinfo: DatagramInfo } | undefined;
  now: number;
  fingerprint: boolean;
}
