import { EventEmitter } from 'node:events';
import {
  type DatagramInfo,
  type DatagramSocket,
  type Family,
  type InterfaceAddress,
  type Network,
  type UdpSocketOptions,
  canonicalIp,
  ipFamily,
} from '@natkit/stun';
import {
  type Endpoint,
  type Fabric,
  Interface,
  type Link,
  type Packet,
  type Segment,
  type VNode,
  VnetError,
  ep,
  isLoopback,
  isWildcard,
  sysError,
} from './core.js';
import { Prng } from './rng.js';

// A host of the virtual network: interfaces with addresses, a UDP socket table with the
// kernel's bind rules, a routing decision per destination, an optional stateful firewall, and
// a `Network` (createUdpSocket, interfaces, lookup) that natkit's adapters run over unchanged.

/** Linux's default ip_local_port_range: where port 0 binds. */
export const EPHEMERAL_PORTS = [32768, 60999] as const;

const MAX_PAYLOAD: Record<Family, number> = { IPv4: 65507, IPv6: 65527 };

export interface FirewallOptions {
  /**
   * Linux conntrack's UDP timeouts: a flow only one side has spoken on
   * (nf_conntrack_udp_timeout, 30 s) and one that has seen both directions
   * (nf_conntrack_udp_timeout_stream, 120 s).
   */
  unrepliedTimeoutMs?: number;
  repliedTimeoutMs?: number;
}

/**
 * A host's stateful firewall, as natlab's 'firewall' preset builds it with nftables ("ct state
 * established,related accept; drop"): a datagram gets in only on a flow (local address and
 * port, remote address and port) that this host started. RFC 4787 would call that
 * address-and-port-dependent filtering without a NAT (RFC 3489's "Symmetric UDP Firewall").
 */
export class Firewall {
  readonly unrepliedTimeoutMs: number;
  readonly repliedTimeoutMs: number;
  readonly counters = { admitted: 0, dropped: 0 };
  private readonly flows = new Map<string, { last: number; replied: boolean }>();

  constructor(o: FirewallOptions = {}) {
    this.unrepliedTimeoutMs = o.unrepliedTimeoutMs ?? 30_000;
    this.repliedTimeoutMs = o.repliedTimeoutMs ?? 120_000;
  }

  private key(local: Endpoint, remote: Endpoint): string {
    return `${local.address}|${local.port}|${remote.address}|${remote.port}`;
  }

  private alive(f: { last: number; replied: boolean }, now: number): boolean {
    return now - f.last < (f.replied ? this.repliedTimeoutMs : this.unrepliedTimeoutMs);
  }

  outbound(local: Endpoint, remote: Endpoint, now: number): void {
    const k = this.key(local, remote);
    const f = this.flows.get(k);
    if (f && this.alive(f, now)) f.last = now;
    else this.flows.set(k, { last: now, replied: false });
  }

  inbound(local: Endpoint, remote: Endpoint, now: number): boolean {
    const k = this.key(local, remote);
    const f = this.flows.get(k);
    if (!f || !this.alive(f, now)) {
      if (f) this.flows.delete(k);
      this.counters.dropped++;
      return false;
    }
    f.last = now;
    f.replied = true;
    this.counters.admitted++;
    return true;
  }

  /** Forgets every flow (conntrack -F). */
  flush(): void {
    this.flows.clear();
  }

  describe(now: number): string {
    const live = [...this.flows].filter(([, f]) => this.alive(f, now));
    return `firewall: ${live.length} flow(s) open, admitted ${this.counters.admitted}, dropped ${this.counters.dropped}`;
  }
}

export interface HostCounters {
  /** Datagrams its sockets sent (that left the host or looped back). */
  sent: number;
  /** Datagrams handed to one of its sockets. */
  received: number;
  /** Arrived for a port nothing is bound to (a real host would answer ICMP port unreachable, which UDP sockets that are not connected ignore). */
  noListener: number;
  /** Arrived for an address this host does not have (hosts do not forward). */
  notForMe: number;
  /** Sends that failed (no route, bad address, too big). */
  sendErrors: number;
}

/** A bound UDP socket of a virtual host: the part of dgram.Socket natkit uses, and a bit more. */
export class VirtualSocket extends EventEmitter implements DatagramSocket {
  closed = false;
  readonly counters = { sent: 0, received: 0 };
  private recvBufferSize: number;
  private sendBufferSize: number;

  constructor(
    readonly host: Host,
    readonly family: Family,
    readonly boundAddress: string,
    readonly port: number,
    readonly reusePort: boolean,
    options: UdpSocketOptions,
  ) {
    super();
    this.recvBufferSize = options.recvBufferSize ?? 212_992;
    this.sendBufferSize = options.sendBufferSize ?? 212_992;
  }

  address(): { address: string; family: string; port: number } {
    if (this.closed) throw sysError('EBADF', 'getsockname', '');
    return { address: this.boundAddress, family: this.family, port: this.port };
  }

  /**
   * send(msg, port, address?, callback?) or send(msg, offset, length, port, address?,
   * callback?), as node:dgram. Bad arguments and a closed socket throw, as there; a send that
   * fails in the "kernel" (no route, too big) reports to the callback, or as 'error'.
   */
  send(msg: Uint8Array | string | readonly (Uint8Array | string)[], ...args: unknown[]): void {
    let data: Buffer;
    let rest: unknown[];
    if (typeof args[1] === 'number') {
      const [offset, length] = args as [number, number];
      const whole = toBuffer(msg);
      data = whole.subarray(offset, offset + length);
      rest = args.slice(2);
    } else {
      data = toBuffer(msg);
      rest = args;
    }
    const port = rest[0];
    let address = rest[1];
    let callback = rest[2];
    if (typeof address === 'function') {
      callback = address;
      address = undefined;
    }
    if (this.closed) {
      const e = new Error('Not running') as NodeJS.ErrnoException;
      e.code = 'ERR_SOCKET_DGRAM_NOT_RUNNING';
      throw e;
    }
    if (typeof port !== 'number' || !Number.isInteger(port) || port <= 0 || port > 65535) {
      const e = new RangeError(`Port should be > 0 and < 65536. Received ${String(port)}.`) as RangeError & { code: string };
      e.code = 'ERR_SOCKET_BAD_PORT';
      throw e;
    }
    const to = (address as string | undefined) ?? (this.family === 'IPv6' ? '::1' : '127.0.0.1');
    const cb = typeof callback === 'function' ? (callback as (err: Error | null, bytes: number) => void) : undefined;
    const report = (err: NodeJS.ErrnoException | undefined) => {
      if (err) this.host.counters.sendErrors++;
      else this.counters.sent++;
      if (cb) queueMicrotask(() => cb(err ?? null, err ? 0 : data.length));
      else if (err && this.listenerCount('error') > 0) queueMicrotask(() => this.emit('error', err));
    };
    if (ipFamily(to) === undefined) {
      // node:dgram resolves names with dns.lookup; here, the network's name table
      this.host.network.lookup(to, this.family).then(
        (list) => {
          if (this.closed) return;
          report(this.host.sendFrom(this, Buffer.from(data), port, list[0]!.address));
        },
        (err: NodeJS.ErrnoException) => report(err),
      );
      return;
    }
    // the network keeps its own copy: the sender may reuse its buffer at once
    report(this.host.sendFrom(this, Buffer.from(data), port, canonicalIp(to)));
  }

  close(callback?: () => void): this {
    if (this.closed) {
      const e = new Error('Not running') as NodeJS.ErrnoException;
      e.code = 'ERR_SOCKET_DGRAM_NOT_RUNNING';
      throw e;
    }
    this.closed = true;
    this.host.unbind(this);
    if (callback) this.once('close', callback);
    queueMicrotask(() => this.emit('close'));
    return this;
  }

  ref(): this {
    return this;
  }

  unref(): this {
    return this;
  }

  setRecvBufferSize(n: number): void {
    this.recvBufferSize = n;
  }

  setSendBufferSize(n: number): void {
    this.sendBufferSize = n;
  }

  getRecvBufferSize(): number {
    return this.recvBufferSize;
  }

  getSendBufferSize(): number {
    return this.sendBufferSize;
  }

  /** The network hands this socket a datagram (in a delivery timer). */
  deliver(pkt: Packet, fabric: Fabric): void {
    this.counters.received++;
    const rinfo: DatagramInfo = { address: pkt.src.address, family: pkt.family, port: pkt.src.port, size: pkt.data.length };
    fabric.trace('deliver', pkt, this.host.name);
    try {
      // each socket gets its own buffer, as from the kernel
      this.emit('message', Buffer.from(pkt.data), rinfo);
    } catch (err) {
      fabric.trace('error', pkt, this.host.name, String((err as Error)?.message ?? err));
      fabric.listenerError(err, `a 'message' listener of ${this.host.name} ${ep({ address: this.boundAddress, port: this.port })}`);
    }
  }
}

function toBuffer(msg: Uint8Array | string | readonly (Uint8Array | string)[]): Buffer {
  if (typeof msg === 'string') return Buffer.from(msg);
  if (msg instanceof Uint8Array) return Buffer.from(msg.buffer, msg.byteOffset, msg.byteLength);
  if (Array.isArray(msg)) return Buffer.concat(msg.map((m) => (typeof m === 'string' ? Buffer.from(m) : (m as Uint8Array))));
  throw new TypeError('The "msg" argument must be a Buffer, TypedArray, string or an array of those');
}

export interface InterfaceSpec {
  segment: Segment;
  /** One address or several (v4 and/or v6) on this interface. */
  address: string | string[];
  /** Interface name; eth0, eth1, ... by default. */
  name?: string;
  /** Prefix length shown by interfaces() (default 24 for IPv4, 64 for IPv6). */
  prefix?: number;
}

export interface NameEntry {
  addresses?: string[];
  /** Fails with this code instead (ENOTFOUND, ETIMEOUT, ...). */
  error?: string;
  /** Answers after this long on the network's clock (0: at once). Infinity: never. */
  delayMs?: number;
}

/** The network's DNS: names to addresses, with a delay or a failure per name. */
export class NameTable {
  private readonly names = new Map<string, NameEntry>();

  constructor(private readonly fabric: () => Fabric) {}

  set(name: string, addresses: string | string[], options: { delayMs?: number } = {}): void {
    const list = (Array.isArray(addresses) ? addresses : [addresses]).map((a) => {
      if (!ipFamily(a)) throw new VnetError(`${name}: not an IP address: ${a}`);
      return canonicalIp(a);
    });
    this.names.set(name.toLowerCase(), { addresses: list, delayMs: options.delayMs });
  }

  fail(name: string, code = 'ENOTFOUND', options: { delayMs?: number } = {}): void {
    this.names.set(name.toLowerCase(), { error: code, delayMs: options.delayMs });
  }

  delete(name: string): void {
    this.names.delete(name.toLowerCase());
  }

  get(name: string): NameEntry | undefined {
    return this.names.get(name.toLowerCase());
  }

  resolve(name: string, family: Family | undefined): Promise<Array<{ address: string; family: Family }>> {
    const entry = this.get(name);
    const answer = (): Array<{ address: string; family: Family }> => {
      if (!entry || entry.error) throw sysError(entry?.error ?? 'ENOTFOUND', 'getaddrinfo', name);
      const list = entry
        .addresses!.map((address) => ({ address, family: ipFamily(address)! }))
        .filter((a) => family === undefined || a.family === family);
      if (list.length === 0) throw sysError('ENOTFOUND', 'getaddrinfo', name);
      return list;
    };
    const delay = entry?.delayMs ?? 0;
    if (delay <= 0) return new Promise((resolve) => resolve(answer()));
    if (delay === Number.POSITIVE_INFINITY) return new Promise(() => {});
    const clock = this.fabric().clock;
    return new Promise((resolve, reject) => {
      clock.setTimeout(() => {
        try {
          resolve(answer());
        } catch (err) {
          reject(err);
        }
      }, delay);
    });
  }

  describe(): string {
    return [...this.names].map(([n, e]) => `${n} -> ${e.error ?? e.addresses!.join(', ')}${e.delayMs ? ` (after ${e.delayMs} ms)` : ''}`).join('\n');
  }
}

export class Host implements VNode {
  readonly interfaces: Interface[] = [];
  readonly counters: HostCounters = { sent: 0, received: 0, noListener: 0, notForMe: 0, sendErrors: 0 };
  /** The `Network` to give natkit's adapters (gatherer, agent, servers, clients). */
  readonly network: Network;
  readonly firewall: Firewall | undefined;
  private readonly sockets = new Map<string, VirtualSocket[]>();
  private readonly rng: Prng;

  constructor(
    private readonly fabric: Fabric,
    readonly name: string,
    private readonly names: NameTable,
    options: { firewall?: FirewallOptions | boolean } = {},
  ) {
    this.rng = Prng.derive(fabric.seed, `host ${name}`);
    this.firewall = options.firewall ? new Firewall(options.firewall === true ? {} : options.firewall) : undefined;
    this.network = {
      createUdpSocket: (o) => this.bind(o),
      interfaces: () => this.interfaceAddresses(),
      lookup: (hostname, family) => this.lookup(hostname, family),
    };
  }

  /** Attaches an interface (the network calls this; use VirtualNetwork.host). */
  attach(spec: InterfaceSpec, link: Link): Interface {
    const list = Array.isArray(spec.address) ? spec.address : [spec.address];
    const addresses = list.map((a) => {
      const family = ipFamily(a);
      if (!family) throw new VnetError(`${this.name}: not an IP address: ${a}`);
      return { address: canonicalIp(a), family, prefix: spec.prefix ?? (family === 'IPv4' ? 24 : 64) };
    });
    const iface = new Interface(this, spec.name ?? `eth${this.interfaces.length}`, spec.segment, addresses, link);
    for (const a of addresses) spec.segment.claim(a.address, iface);
    this.interfaces.push(iface);
    return iface;
  }

  /** The first address of the first interface (of a family). */
  address(family: Family = 'IPv4'): string {
    for (const i of this.interfaces) {
      const a = i.address(family);
      if (a) return a;
    }
    throw new VnetError(`${this.name} has no ${family} address`);
  }

  /** The link of the first interface. */
  get link(): Link {
    const i = this.interfaces[0];
    if (!i) throw new VnetError(`${this.name} has no interface`);
    return i.link;
  }

  hasAddress(address: string): boolean {
    return this.interfaces.some((i) => i.addresses.some((a) => a.address === address));
  }

  private hasIPv6(): boolean {
    return this.interfaces.some((i) => i.addresses.some((a) => a.family === 'IPv6'));
  }

  interfaceAddresses(): InterfaceAddress[] {
    const out: InterfaceAddress[] = [{ name: 'lo', address: '127.0.0.1', family: 'IPv4', internal: true, prefix: 8 }];
    if (this.hasIPv6()) out.push({ name: 'lo', address: '::1', family: 'IPv6', internal: true, prefix: 128 });
    for (const i of this.interfaces) {
      for (const a of i.addresses) out.push({ name: i.name, address: a.address, family: a.family, internal: false, prefix: a.prefix });
    }
    return out;
  }

  lookup(hostname: string, family?: Family): Promise<Array<{ address: string; family: Family }>> {
    const literal = ipFamily(hostname);
    if (literal) {
      if (family && literal !== family) return Promise.reject(sysError('ENOTFOUND', 'getaddrinfo', hostname));
      return Promise.resolve([{ address: canonicalIp(hostname), family: literal }]);
    }
    if (hostname.toLowerCase() === 'localhost' && !this.names.get(hostname)) {
      const all: Array<{ address: string; family: Family }> = [{ address: '127.0.0.1', family: 'IPv4' }];
      if (this.hasIPv6()) all.push({ address: '::1', family: 'IPv6' });
      return Promise.resolve(all.filter((a) => !family || a.family === family));
    }
    return this.names.resolve(hostname, family);
  }

  // -------------------------------------------------------------------------------------
  // Sockets

  private key(family: Family, port: number): string {
    return `${family}/${port}`;
  }

  private bind(o: UdpSocketOptions): Promise<DatagramSocket> {
    return new Promise((resolve) => resolve(this.bindNow(o)));
  }

  /** Binds at once (throws on failure); createUdpSocket is the promise form. */
  bindNow(o: UdpSocketOptions): VirtualSocket {
    const family = o.family;
    if (family !== 'IPv4' && family !== 'IPv6') throw new VnetError(`bad family ${String(family)}`);
    const address = canonicalIp(o.address ?? (family === 'IPv6' ? '::' : '0.0.0.0'));
    if (ipFamily(address) !== family) throw sysError('EINVAL', 'bind', `${address} is not an ${family} address`);
    if (!isWildcard(address) && !isLoopback(address) && !this.hasAddress(address)) {
      throw Object.assign(sysError('EADDRNOTAVAIL', 'bind', `${address}:${o.port ?? 0}`), { address, port: o.port ?? 0 });
    }
    if (isLoopback(address) && family === 'IPv6' && !this.hasIPv6()) throw sysError('EADDRNOTAVAIL', 'bind', `${address}`);
    const want = o.port ?? 0;
    if (!Number.isInteger(want) || want < 0 || want > 65535) {
      const e = new RangeError(`Port should be >= 0 and < 65536. Received ${want}.`) as RangeError & { code: string };
      e.code = 'ERR_SOCKET_BAD_PORT';
      throw e;
    }
    const reusePort = o.reusePort === true;
    let port = want;
    if (port === 0) {
      port = this.ephemeralPort(family);
    } else {
      // Linux without SO_REUSEADDR: a port is taken for an address if any socket holds it on
      // that address or on the wildcard (or, binding the wildcard, on any address), unless
      // every one of them and the new one set SO_REUSEPORT.
      const clash = (this.sockets.get(this.key(family, port)) ?? []).find(
        (s) => (s.boundAddress === address || isWildcard(s.boundAddress) || isWildcard(address)) && !(reusePort && s.reusePort),
      );
      if (clash) throw Object.assign(sysError('EADDRINUSE', 'bind', `${address}:${port}`), { address, port });
    }
    const s = new VirtualSocket(this, family, address, port, reusePort, o);
    const k = this.key(family, port);
    const list = this.sockets.get(k);
    if (list) list.push(s);
    else this.sockets.set(k, [s]);
    return s;
  }

  private ephemeralPort(family: Family): number {
    const [lo, hi] = EPHEMERAL_PORTS;
    for (let i = 0; i < 64; i++) {
      const p = this.rng.int(lo, hi);
      if (!this.sockets.has(this.key(family, p))) return p;
    }
    for (let p = lo; p <= hi; p++) if (!this.sockets.has(this.key(family, p))) return p;
    throw sysError('EADDRINUSE', 'bind', 'no ephemeral port left');
  }

  /** The socket closed: its port is free at once. */
  unbind(s: VirtualSocket): void {
    const k = this.key(s.family, s.port);
    const list = this.sockets.get(k);
    if (!list) return;
    const rest = list.filter((x) => x !== s);
    if (rest.length) this.sockets.set(k, rest);
    else this.sockets.delete(k);
  }

  /** Open sockets, for descriptions and leak checks. */
  openSockets(): VirtualSocket[] {
    return [...this.sockets.values()].flat();
  }

  /** Which socket gets a datagram to dst from src: the one bound to dst itself before a wildcard. */
  private socketFor(family: Family, dst: Endpoint, src: Endpoint): VirtualSocket | undefined {
    const list = this.sockets.get(this.key(family, dst.port));
    if (!list) return undefined;
    let match = list.filter((s) => s.boundAddress === dst.address);
    if (match.length === 0) match = list.filter((s) => isWildcard(s.boundAddress));
    if (match.length <= 1) return match[0];
    // SO_REUSEPORT: the kernel spreads flows by a hash of the source
    let h = src.port;
    for (let i = 0; i < src.address.length; i++) h = (Math.imul(h, 31) + src.address.charCodeAt(i)) >>> 0;
    return match[h % match.length];
  }

  // -------------------------------------------------------------------------------------
  // Sending and receiving

  /** Which interface a packet to `dst` leaves by: on-link first, then the internet, then a gateway. */
  route(dst: string, family: Family): Interface | undefined {
    const usable = this.interfaces.filter((i) => i.address(family) !== undefined);
    return (
      usable.find((i) => i.segment.kind === 'lan' && i.segment.onLink(dst)) ??
      usable.find((i) => i.segment.kind === 'internet') ??
      usable.find((i) => i.segment.gateways.has(family))
    );
  }

  /** A socket sends (the address is a literal). Returns the error a kernel would give, if any. */
  sendFrom(s: VirtualSocket, data: Buffer, port: number, address: string): NodeJS.ErrnoException | undefined {
    const family = ipFamily(address)!;
    if (family !== s.family) return sysError('EINVAL', 'send', `${address}: not an ${s.family} address`);
    if (data.length > MAX_PAYLOAD[family]) return sysError('EMSGSIZE', 'send', `${data.length} bytes`);
    const dst = { address, port };
    const fabric = this.fabric;
    if (isLoopback(address) || this.hasAddress(address)) {
      // to this host itself: over lo, no link, no firewall
      const src = { address: isWildcard(s.boundAddress) ? address : s.boundAddress, port: s.port };
      const pkt: Packet = { id: fabric.nextPacketId(), family, src, dst, data };
      this.counters.sent++;
      fabric.trace('send', pkt, this.name, 'loopback');
      fabric.local(pkt, () => this.arrive(pkt, undefined));
      return undefined;
    }
    if (isLoopback(s.boundAddress)) return sysError('EINVAL', 'send', `a socket bound to ${s.boundAddress} cannot reach ${address}`);
    const iface = this.route(address, family);
    if (!iface) return sysError('ENETUNREACH', 'send', `${address}:${port}`);
    const srcAddress = isWildcard(s.boundAddress) ? iface.address(family)! : s.boundAddress;
    const pkt: Packet = { id: fabric.nextPacketId(), family, src: { address: srcAddress, port: s.port }, dst, data };
    this.firewall?.outbound(pkt.src, dst, fabric.clock.now());
    this.counters.sent++;
    fabric.trace('send', pkt, this.name);
    fabric.transmit(iface, pkt);
    return undefined;
  }

  receive(pkt: Packet, iface: Interface): void {
    this.arrive(pkt, iface);
  }

  private arrive(pkt: Packet, iface: Interface | undefined): void {
    const fabric = this.fabric;
    if (iface) {
      if (!this.hasAddress(pkt.dst.address)) {
        this.counters.notForMe++;
        fabric.trace('not-for-me', pkt, this.name);
        return;
      }
      if (this.firewall && !this.firewall.inbound(pkt.dst, pkt.src, fabric.clock.now())) {
        fabric.trace('firewall', pkt, this.name);
        return;
      }
    }
    const s = this.socketFor(pkt.family, pkt.dst, pkt.src);
    if (!s) {
      this.counters.noListener++;
      fabric.trace('no-listener', pkt, this.name);
      return;
    }
    this.counters.received++;
    s.deliver(pkt, fabric);
  }

  describe(): string {
    const lines = [`host ${this.name}`];
    for (const i of this.interfaces) {
      lines.push(`  ${i.name} on ${i.segment.name}: ${i.addresses.map((a) => `${a.address}/${a.prefix}`).join(', ')}`);
      lines.push(...i.link.describe().split('\n').map((l) => `    ${l}`));
    }
    const socks = this.openSockets();
    lines.push(`  sockets: ${socks.length ? socks.map((s) => `${ep({ address: s.boundAddress, port: s.port })} (${s.listenerCount('message')} listener(s), in ${s.counters.received}, out ${s.counters.sent})`).join(', ') : 'none'}`);
    const c = this.counters;
    lines.push(`  sent ${c.sent}, received ${c.received}, no listener ${c.noListener}, not for me ${c.notForMe}, send errors ${c.sendErrors}`);
    if (this.firewall) lines.push(`  ${this.firewall.describe(this.fabric.clock.now())}`);
    return lines.join('\n');
  }
}
