import { EventEmitter } from 'node:events';
import {
  Attr,
  type Clock,
  type Credentials,
  type DatagramSocket,
  type Family,
  type MessageBuilder,
  MessageBuilder as Builder,
  MessageClass,
  Method,
  type Network,
  type RetransmitOptions,
  type ServerSpec,
  StunClient,
  type StunMessage,
  StunTransactionError,
  type TransportAddress,
  canonicalIp,
  decodeMessage,
  formatAddress,
  ipFamily,
  realClock,
} from '@natkit/stun';
import { TRANSPORT_UDP, TurnAttr, turnRegistry } from '../codec/attributes.js';
import { MAX_CHANNEL, MIN_CHANNEL, decodeChannelData, encodeChannelData, isChannelData } from '../codec/channeldata.js';
import { RefreshSchedule } from './schedule.js';

export interface TurnClientOptions {
  server: ServerSpec;
  username: string;
  password: string;
  credentials?: Omit<Credentials, 'username' | 'password'>;
  /** Requested lifetime in seconds (the server decides; default: the server's default). */
  lifetime?: number;
  /** REQUESTED-ADDRESS-FAMILY (default IPv4). */
  family?: Family;
  /** Ask for an IPv6 relayed address as well (ADDITIONAL-ADDRESS-FAMILY, RFC 8656 7.2). */
  dualStack?: boolean;
  /** A bound UDP socket to allocate from (shared with ICE, say); never closed by the client. */
  socket?: DatagramSocket;
  /** Where the client's own UDP socket comes from (default nodeNetwork); TCP and TLS use node:net and node:tls. */
  network?: Network;
  /** Local address for the client's own socket or connection (default: the wildcard, the kernel picks). */
  bindAddress?: string;
  retransmit?: RetransmitOptions;
  software?: string | false;
  clock?: Clock;
  /**
   * Over UDP, when nothing else went to the server for this long, send it a Binding
   * indication so that a NAT keeps the client's mapping (and so the allocation's 5-tuple)
   * alive. Default 15000 ms, the keepalive interval of RFC 8445 section 11; 0 turns it off.
   */
  keepaliveMs?: number;
}

/** RFC 8445 section 11's default keepalive interval, Tr. */
export const TURN_KEEPALIVE_MS = 15_000;

export interface TurnClientEvents {
  data: [data: Buffer, peer: TransportAddress];
  /** A refresh failed; the allocation may be lost. */
  error: [err: Error];
  /** The allocation is gone (refresh refused, or closed). */
  closed: [];
}

/**
 * A TURN client (RFC 8656): allocates (answering 401 and 438), refreshes on its own at
 * half the granted lifetime, keeps permissions and channel bindings fresh, sends over
 * ChannelData when a channel is bound and Send indications otherwise, receives both, and
 * closes with a Refresh of lifetime 0. UDP, TCP and TLS to the server.
 */
export class TurnClient extends EventEmitter<TurnClientEvents> {
  readonly server: Required<Pick<ServerSpec, 'address' | 'port' | 'transport'>> & ServerSpec;
  /** The relayed transport addresses (one, or two with dualStack). */
  relayed: TransportAddress[] = [];
  /** The client's server-reflexive address as the server saw it. */
  mapped: TransportAddress | undefined;
  /** Seconds granted by the last Allocate or Refresh. */
  lifetime = 0;
  private readonly stun: StunClient;
  private readonly opts: TurnClientOptions;
  private readonly clock: Clock;
  private readonly schedule = new RefreshSchedule();
  private timer: unknown;
  private readonly channels = new Map<number, TransportAddress>();
  private readonly channelByPeer = new Map<string, number>();
  /** sendNow's cache: the channel bound to a peer object the caller sends to again and again. */
  private readonly channelOfPeer = new WeakMap<TransportAddress, number>();
  private readonly serverFamily: Family;
  private readonly permitted = new Set<string>();
  private nextChannel = MIN_CHANNEL;
  private state: 'new' | 'allocated' | 'closed' = 'new';

  constructor(options: TurnClientOptions) {
    super();
    this.opts = options;
    this.clock = options.clock ?? realClock;
    const transport = options.server.transport ?? 'udp';
    this.server = {
      ...options.server,
      transport,
      address: canonicalIp(options.server.address),
      port: options.server.port ?? (transport === 'tls' ? 5349 : 3478),
    };
    this.serverFamily = ipFamily(this.server.address) ?? 'IPv4';
    this.stun = new StunClient({
      clock: this.clock,
      socket: options.socket,
      network: options.network,
      bindAddress: options.bindAddress,
      registry: turnRegistry,
      retransmit: options.retransmit,
      software: options.software,
      credentials: { ...options.credentials, username: options.username, password: options.password, kind: 'long-term' },
      onUnmatched: (data, from) => this.onIncoming(data, from),
    });
  }

  /** Creates the client and allocates; `signal` abandons the Allocate (and closes the client). */
  static async allocate(options: TurnClientOptions & { signal?: AbortSignal }): Promise<TurnClient> {
    const c = new TurnClient(options);
    try {
      await c.allocate({ signal: options.signal });
    } catch (err) {
      await c.close().catch(() => {});
      throw err;
    }
    return c;
  }

  private request(method: number, add?: (b: MessageBuilder) => void, signal?: AbortSignal): Promise<StunMessage> {
    this.schedule.sent(this.clock.now());
    return this.stun.request(this.server, { method, attributes: add, retransmit: this.opts.retransmit, signal }).then((r) => r.message);
  }

  /** The local address of the client's UDP socket or TCP/TLS connection, once allocated. */
  get local(): TransportAddress | undefined {
    return this.localAddress;
  }
  private localAddress: TransportAddress | undefined;

  /** RFC 8656 section 7.1: Allocate with REQUESTED-TRANSPORT UDP. */
  async allocate(options: { signal?: AbortSignal | undefined } = {}): Promise<void> {
    if (this.state !== 'new') throw new StunTransactionError('CLOSED', 'already allocated or closed');
    const o = this.opts;
    const r = await this.stun.request(this.server, {
      method: Method.Allocate,
      retransmit: this.opts.retransmit,
      signal: options.signal,
      attributes: (b) => {
        b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP);
        if (o.family && o.family !== 'IPv4') b.add(TurnAttr.RequestedAddressFamily, o.family);
        if (o.dualStack) b.add(TurnAttr.AdditionalAddressFamily, 'IPv6');
        if (o.lifetime !== undefined) b.add(TurnAttr.Lifetime, o.lifetime);
      },
    });
    if (this.state !== 'new') throw new StunTransactionError('CLOSED', 'the client was closed');
    const m = r.message;
    this.localAddress = r.local;
    this.relayed = m.getAll(TurnAttr.XorRelayedAddress);
    if (this.relayed.length === 0) throw new StunTransactionError('BAD_RESPONSE', 'Allocate success without XOR-RELAYED-ADDRESS');
    this.mapped = m.get(Attr.XorMappedAddress);
    this.lifetime = m.get(TurnAttr.Lifetime) ?? 600;
    this.state = 'allocated';
    const now = this.clock.now();
    this.schedule.allocationRefreshed(now, this.lifetime);
    if (this.server.transport === 'udp') this.schedule.keepAlive(o.keepaliveMs ?? TURN_KEEPALIVE_MS, now);
    this.arm();
  }

  /** RFC 8656 section 7.3: Refresh; lifetime 0 deletes the allocation. */
  async refresh(lifetime?: number): Promise<number> {
    const m = await this.request(Method.Refresh, (b) => {
      if (lifetime !== undefined) b.add(TurnAttr.Lifetime, lifetime);
    });
    this.lifetime = m.get(TurnAttr.Lifetime) ?? 0;
    if (lifetime !== 0) this.schedule.allocationRefreshed(this.clock.now(), this.lifetime);
    return this.lifetime;
  }

  /** RFC 8656 section 9.1: permissions for peers' IP addresses (refreshed until close). */
  async createPermission(peers: TransportAddress | TransportAddress[]): Promise<void> {
    const list = Array.isArray(peers) ? peers : [peers];
    await this.request(Method.CreatePermission, (b) => {
      for (const p of list) b.add(TurnAttr.XorPeerAddress, { ...p, address: canonicalIp(p.address) });
    });
    const now = this.clock.now();
    for (const p of list) {
      const ip = canonicalIp(p.address);
      this.permitted.add(ip);
      this.schedule.permissionRefreshed(ip, now);
    }
    this.arm();
  }

  /**
   * RFC 8656 section 11.1: binds a channel to a peer (also installing its permission) and
   * returns the number. Binding the same peer again refreshes the same channel.
   */
  async bindChannel(peer: TransportAddress): Promise<number> {
    const p = { ...peer, address: canonicalIp(peer.address) };
    const key = formatAddress(p);
    let number = this.channelByPeer.get(key);
    if (number === undefined) {
      if (this.channels.size > MAX_CHANNEL - MIN_CHANNEL) throw new StunTransactionError('ERROR_RESPONSE', 'no channel numbers left');
      while (this.channels.has(this.nextChannel)) this.nextChannel = this.nextChannel >= MAX_CHANNEL ? MIN_CHANNEL : this.nextChannel + 1;
      number = this.nextChannel;
      this.nextChannel = number >= MAX_CHANNEL ? MIN_CHANNEL : number + 1;
    }
    const n = number;
    await this.request(Method.ChannelBind, (b) => b.add(TurnAttr.ChannelNumber, n).add(TurnAttr.XorPeerAddress, p));
    this.channels.set(n, p);
    this.channelByPeer.set(key, n);
    const now = this.clock.now();
    this.schedule.channelRefreshed(n, now);
    this.permitted.add(p.address);
    this.schedule.permissionRefreshed(p.address, now);
    this.arm();
    return n;
  }

  /** Whether a permission for the peer's IP address is installed (RFC 8656 section 9). */
  hasPermission(peer: TransportAddress | string): boolean {
    const ip = typeof peer === 'string' ? peer : peer.address;
    // An address already in canonical form (what the data path passes) needs no parsing.
    return this.permitted.has(ip) || this.permitted.has(canonicalIp(ip));
  }

  /** The channel bound to a peer, if any. */
  channelFor(peer: TransportAddress): number | undefined {
    return this.channelByPeer.get(formatAddress({ ...peer, address: canonicalIp(peer.address) }));
  }

  /**
   * Sends data to a peer through the relay: ChannelData if a channel is bound (padded on
   * TCP/TLS, RFC 8656 section 12.5), a Send indication otherwise (section 10.1).
   */
  async send(peer: TransportAddress, data: Uint8Array): Promise<void> {
    if (this.state !== 'allocated') throw new StunTransactionError('CLOSED', 'no allocation');
    const bytes = this.wrap(peer, data, this.channelFor(peer));
    this.schedule.sent(this.clock.now());
    await this.stun.send(this.server, bytes);
  }

  /**
   * The data path's send: like `send`, but now and without a promise, for one datagram after
   * another. Over UDP it writes the ChannelData (once a channel is bound to the peer) or the
   * Send indication straight to the socket; a channel, once found, is remembered per peer
   * object, so pass the same object each time and do not change it. Returns false, sending
   * nothing, when it cannot send at once (no allocation, TCP/TLS): use `send`.
   */
  sendNow(peer: TransportAddress, data: Uint8Array): boolean {
    if (this.state !== 'allocated' || this.server.transport !== 'udp') return false;
    let ch = this.channelOfPeer.get(peer);
    if (ch === undefined) {
      ch = this.channelFor(peer);
      if (ch !== undefined) this.channelOfPeer.set(peer, ch);
    }
    if (!this.stun.sendDatagram(this.serverFamily, this.server.address, this.server.port, this.wrap(peer, data, ch))) return false;
    this.schedule.sent(this.clock.now());
    return true;
  }

  /**
   * Data for a peer as it goes to the server: ChannelData on the peer's channel (padded on
   * TCP/TLS, RFC 8656 section 12.5), a Send indication without one (section 10.1).
   */
  private wrap(peer: TransportAddress, data: Uint8Array, ch: number | undefined): Buffer {
    if (ch !== undefined) return encodeChannelData(ch, data, this.server.transport !== 'udp');
    return new Builder(Method.Send, MessageClass.Indication)
      .add(TurnAttr.XorPeerAddress, { ...peer, address: canonicalIp(peer.address) })
      .add(TurnAttr.Data, Buffer.from(data.buffer, data.byteOffset, data.length))
      .encode();
  }

  private onIncoming(data: Buffer, _from: TransportAddress): void {
    if (isChannelData(data)) {
      let cd;
      try {
        cd = decodeChannelData(data);
      } catch {
        return; // malformed: dropped
      }
      const peer = this.channels.get(cd.channel);
      if (peer) this.emit('data', cd.data, peer);
      return;
    }
    let m: StunMessage;
    try {
      m = decodeMessage(data, { registry: turnRegistry });
    } catch {
      return;
    }
    // RFC 8656 section 10.4: a Data indication carries XOR-PEER-ADDRESS and DATA.
    if (m.method !== Method.Data || m.cls !== MessageClass.Indication) return;
    try {
      const peer = m.get(TurnAttr.XorPeerAddress);
      const payload = m.get(TurnAttr.Data);
      if (peer && payload) this.emit('data', payload, peer);
    } catch {
      // malformed: dropped
    }
  }

  private arm(): void {
    this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    if (this.state !== 'allocated') return;
    const at = this.schedule.next();
    if (at === undefined) return;
    this.timer = this.clock.setTimeout(() => void this.onTimer(), Math.max(0, at - this.clock.now()));
  }

  private async onTimer(): Promise<void> {
    this.timer = undefined;
    const due = this.schedule.due(this.clock.now());
    this.arm();
    for (const d of due) {
      try {
        // A Binding indication needs no answer; the server ignores it (RFC 8489 section 6.3.2).
        if (d.kind === 'keepalive') await this.stun.send(this.server, new Builder(Method.Binding, MessageClass.Indication).encode({ fingerprint: true }));
        else if (d.kind === 'allocation') await this.refresh(this.opts.lifetime);
        else if (d.kind === 'permissions') {
          const peers = d.peers.map((address) => ({ family: ipFamily(address)!, address, port: 0 }));
          await this.createPermission(peers);
        } else {
          const peer = this.channels.get(d.number);
          if (peer) await this.bindChannel(peer);
        }
      } catch (err) {
        if (this.state === 'closed') return;
        this.emit('error', err as Error);
        // RFC 8656 section 7.3 / 8: a refused refresh (437 and the like) means the
        // allocation is gone.
        if (d.kind === 'allocation' && (err as StunTransactionError).code === 'ERROR_RESPONSE') {
          this.state = 'closed';
          this.schedule.clear();
          this.emit('closed');
          return;
        }
      }
    }
    this.arm();
  }

  /** Deletes the allocation (Refresh with LIFETIME 0) and closes the sockets. */
  async close(): Promise<void> {
    const was = this.state;
    this.state = 'closed';
    this.clock.clearTimeout(this.timer);
    this.schedule.clear();
    try {
      if (was === 'allocated') {
        await this.stun.request(this.server, {
          method: Method.Refresh,
          attributes: (b) => b.add(TurnAttr.Lifetime, 0),
          retransmit: { rto: 200, rc: 3, rm: 2, ...this.opts.retransmit },
        });
      }
    } catch {
      // The allocation times out on the server anyway.
    } finally {
      await this.stun.close();
      if (was !== 'closed') this.emit('closed');
    }
  }
}
