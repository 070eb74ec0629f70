import { type Family, canonicalIp, ipFamily, ipToBytes } from '@natkit/stun';
import type { VirtualClock } from './clock.js';
import { Prng } from './rng.js';

// The pieces every node of the virtual network shares: packets, links (one per interface,
// with a delay, jitter and loss rate in each direction), segments (a LAN or the internet) and
// the fabric that carries a packet from an interface to the next node on a clock timer.

export class VnetError extends Error {
  override name = 'VnetError';
}

/** An error shaped like the ones node:dgram and node:dns give (code, syscall). */
export function sysError(code: string, syscall: string, detail: string): NodeJS.ErrnoException {
  const e = new Error(`${syscall} ${code} ${detail}`) as NodeJS.ErrnoException;
  e.code = code;
  e.syscall = syscall;
  return e;
}

export interface Endpoint {
  address: string;
  port: number;
}

export function ep(e: Endpoint): string {
  return e.address.includes(':') ? `[${e.address}]:${e.port}` : `${e.address}:${e.port}`;
}

/** A UDP datagram on its way. Addresses are canonical text; `data` is the network's own copy. */
export interface Packet {
  id: number;
  family: Family;
  src: Endpoint;
  dst: Endpoint;
  data: Buffer;
}

// ---------------------------------------------------------------------------------------
// Addresses

export interface Subnet {
  family: Family;
  bytes: Uint8Array;
  prefix: number;
  text: string;
}

/** '10.0.1.0/24', 'fd00::/64'. */
export function parseSubnet(cidr: string): Subnet {
  const slash = cidr.indexOf('/');
  const addr = slash < 0 ? cidr : cidr.slice(0, slash);
  const family = ipFamily(addr);
  if (!family) throw new VnetError(`not a subnet: ${cidr}`);
  const max = family === 'IPv4' ? 32 : 128;
  const prefix = slash < 0 ? max : Number(cidr.slice(slash + 1));
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max) throw new VnetError(`bad prefix in ${cidr}`);
  return { family, bytes: ipToBytes(addr, family), prefix, text: `${canonicalIp(addr)}/${prefix}` };
}

export function inSubnet(address: string, s: Subnet): boolean {
  if (ipFamily(address) !== s.family) return false;
  const b = ipToBytes(address, s.family);
  let bits = s.prefix;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((b[i]! & mask) !== (s.bytes[i]! & mask)) return false;
  }
  return true;
}

export function isLoopback(address: string): boolean {
  return address === '::1' || (ipFamily(address) === 'IPv4' && address.startsWith('127.'));
}

export function isWildcard(address: string): boolean {
  return address === '0.0.0.0' || address === '::';
}

export function familyOf(address: string): Family {
  const f = ipFamily(address);
  if (!f) throw new VnetError(`not an IP address: ${address}`);
  return f;
}

// ---------------------------------------------------------------------------------------
// Links

export interface DirectionOptions {
  /** Fixed one-way delay, ms (default 0 on a LAN link, 10 on an internet link; see VirtualNetwork). */
  delayMs?: number;
  /** Extra delay drawn uniformly from [0, jitterMs): packets may overtake each other. */
  jitterMs?: number;
  /** Probability that a packet is lost, 0..1. */
  loss?: number;
}

export interface LinkOptions extends DirectionOptions {
  /** Overrides for the direction from the node to its segment. */
  out?: DirectionOptions;
  /** Overrides for the direction from the segment to the node. */
  in?: DirectionOptions;
}

export interface DirectionCounters {
  /** Packets that entered this direction. */
  sent: number;
  /** Packets that came out of it (lost and blocked ones excepted). */
  delivered: number;
  /** Dropped by the loss rate. */
  lost: number;
  /** Dropped because the direction is blocked (cable pulled). */
  blocked: number;
}

export class LinkDirection {
  delayMs = 0;
  jitterMs = 0;
  loss = 0;
  blocked = false;
  readonly counters: DirectionCounters = { sent: 0, delivered: 0, lost: 0, blocked: 0 };
  private readonly rng: Prng;

  constructor(
    readonly name: string,
    seed: number,
  ) {
    this.rng = Prng.derive(seed, name);
  }

  set(o: DirectionOptions): void {
    if (o.delayMs !== undefined) {
      if (!(o.delayMs >= 0)) throw new VnetError(`${this.name}: delayMs must be >= 0, not ${o.delayMs}`);
      this.delayMs = o.delayMs;
    }
    if (o.jitterMs !== undefined) {
      if (!(o.jitterMs >= 0)) throw new VnetError(`${this.name}: jitterMs must be >= 0, not ${o.jitterMs}`);
      this.jitterMs = o.jitterMs;
    }
    if (o.loss !== undefined) {
      if (!(o.loss >= 0 && o.loss <= 1)) throw new VnetError(`${this.name}: loss must be within [0, 1], not ${o.loss}`);
      this.loss = o.loss;
    }
  }

  /**
   * A packet enters: undefined if it is dropped (counted), else its delay through this
   * direction. Every packet draws the same number of random numbers whatever happens to it,
   * so the draws of one packet never depend on another's fate.
   */
  pass(): number | undefined {
    this.counters.sent++;
    const lossDraw = this.rng.next();
    const jitterDraw = this.rng.next();
    if (this.blocked) {
      this.counters.blocked++;
      return undefined;
    }
    if (lossDraw < this.loss) {
      this.counters.lost++;
      return undefined;
    }
    return this.delayMs + jitterDraw * this.jitterMs;
  }

  describe(): string {
    const c = this.counters;
    const props = [`delay ${this.delayMs} ms`, this.jitterMs ? `jitter ${this.jitterMs} ms` : '', this.loss ? `loss ${this.loss * 100}%` : '', this.blocked ? 'BLOCKED' : '']
      .filter(Boolean)
      .join(', ');
    return `${this.name}: ${props}; sent ${c.sent}, delivered ${c.delivered}, lost ${c.lost}${c.blocked ? `, blocked ${c.blocked}` : ''}`;
  }
}

/** The cable between a node's interface and its segment: a direction each way. */
export class Link {
  /** Node to segment. */
  readonly out: LinkDirection;
  /** Segment to node. */
  readonly in: LinkDirection;

  constructor(
    readonly name: string,
    seed: number,
  ) {
    this.out = new LinkDirection(`${name} out`, seed);
    this.in = new LinkDirection(`${name} in`, seed);
  }

  /** Sets delay, jitter and loss of both directions (then the per-direction overrides). */
  set(o: LinkOptions): this {
    const both: DirectionOptions = { delayMs: o.delayMs, jitterMs: o.jitterMs, loss: o.loss };
    this.out.set(both);
    this.in.set(both);
    if (o.out) this.out.set(o.out);
    if (o.in) this.in.set(o.in);
    return this;
  }

  /** Drops everything both ways (or one way) until `unblock()`. */
  block(direction: 'both' | 'out' | 'in' = 'both'): this {
    if (direction !== 'in') this.out.blocked = true;
    if (direction !== 'out') this.in.blocked = true;
    return this;
  }

  unblock(): this {
    this.out.blocked = false;
    this.in.blocked = false;
    return this;
  }

  describe(): string {
    return `${this.out.describe()}\n${this.in.describe()}`;
  }
}

// ---------------------------------------------------------------------------------------
// Nodes, interfaces, segments

export interface IfAddress {
  address: string;
  family: Family;
  prefix: number;
}

/** Something with interfaces: a host or a router. */
export interface VNode {
  readonly name: string;
  /** A packet arrived on `iface` (at the instant its delivery timer fires). */
  receive(pkt: Packet, iface: Interface): void;
  describe(): string;
}

/** A node's attachment to a segment: its addresses there and its link. */
export class Interface {
  constructor(
    readonly node: VNode,
    readonly name: string,
    readonly segment: Segment,
    readonly addresses: IfAddress[],
    readonly link: Link,
  ) {}

  address(family: Family): string | undefined {
    return this.addresses.find((a) => a.family === family)?.address;
  }
}

export interface SegmentCounters {
  /** Packets to an address nothing on the segment has, and no gateway to send it to. */
  unroutable: number;
}

/**
 * A broadcast domain. 'internet': every address is on-link and delivered to whoever holds it
 * (public addresses only; nothing routes private ones here, so they are unroutable). 'lan':
 * its subnets are on-link; anything else goes to the gateway of its family (a NAT router).
 */
export class Segment {
  readonly subnets: Subnet[];
  readonly gateways = new Map<Family, string>();
  readonly counters: SegmentCounters = { unroutable: 0 };
  private readonly byAddress = new Map<string, Interface>();
  readonly interfaces: Interface[] = [];

  constructor(
    readonly name: string,
    readonly kind: 'internet' | 'lan',
    subnets: string[] = [],
  ) {
    this.subnets = subnets.map(parseSubnet);
  }

  /** True if `address` belongs on this segment (is reached without a gateway). */
  onLink(address: string): boolean {
    if (this.kind === 'internet') return true;
    return this.byAddress.has(address) || this.subnets.some((s) => inSubnet(address, s));
  }

  /** The interface that holds `address` here, if any. */
  holder(address: string): Interface | undefined {
    return this.byAddress.get(address);
  }

  /** Where a packet to `dst` goes next on this segment: its holder, or the gateway. */
  nextHop(dst: string, from: Interface): Interface | undefined {
    const holder = this.byAddress.get(dst);
    if (holder) return holder;
    if (this.onLink(dst)) return undefined;
    const gw = this.gateways.get(familyOf(dst));
    const g = gw === undefined ? undefined : this.byAddress.get(gw);
    return g === from ? undefined : g;
  }

  /** Makes `address` held by `iface` on this segment. */
  claim(address: string, iface: Interface): void {
    const have = this.byAddress.get(address);
    if (have && have !== iface) throw new VnetError(`${address} is already on ${this.name} (${have.node.name})`);
    if (this.kind === 'lan' && this.subnets.length > 0 && !this.subnets.some((s) => inSubnet(address, s))) {
      throw new VnetError(`${address} is not within ${this.name}'s subnets (${this.subnets.map((s) => s.text).join(', ')})`);
    }
    this.byAddress.set(address, iface);
  }

  release(address: string, iface: Interface): void {
    if (this.byAddress.get(address) === iface) this.byAddress.delete(address);
  }

  addresses(): string[] {
    return [...this.byAddress.keys()];
  }
}

// ---------------------------------------------------------------------------------------
// The fabric: what nodes need of the network

export type TraceEvent =
  | 'send' // a socket sent it
  | 'lost' // the loss rate took it
  | 'blocked' // a blocked link
  | 'unroutable' // no next hop
  | 'arrive' // it reached a node
  | 'deliver' // a socket got it
  | 'no-listener' // nothing bound to its port
  | 'not-for-me' // a host got a packet for an address it does not have
  | 'firewall' // a host firewall dropped it
  | 'nat-out' // a NAT translated it on the way out
  | 'nat-in' // a NAT let it in and translated it
  | 'filtered' // a NAT's filter dropped it
  | 'no-mapping' // a NAT had no mapping for its port
  | 'hairpin' // a NAT sent it back in
  | 'hairpin-off' // a NAT without hairpinning dropped it
  | 'to-router' // addressed to a router itself
  | 'error'; // a 'message' listener threw

export interface TraceEntry {
  t: number;
  id: number;
  event: TraceEvent;
  /** The node (or link) where it happened. */
  at: string;
  src: Endpoint;
  dst: Endpoint;
  size: number;
  /** The datagram's bytes (the network's copy: read, do not change). */
  data: Buffer;
  note?: string;
}

export function formatTrace(e: TraceEntry): string {
  return `t=${e.t.toFixed(1).padStart(9)} #${String(e.id).padEnd(5)} ${e.event.padEnd(11)} ${e.at.padEnd(14)} ${ep(e.src)} -> ${ep(e.dst)} (${e.size} B)${e.note ? ` ${e.note}` : ''}`;
}

export interface Fabric {
  readonly clock: VirtualClock;
  readonly seed: number;
  nextPacketId(): number;
  /** Records an event for the packet (when tracing or tapped). */
  trace(event: TraceEvent, pkt: Packet, at: string, note?: string): void;
  /** Sends `pkt` out of `iface` onto its segment, to the next hop for its destination. */
  transmit(iface: Interface, pkt: Packet): void;
  /** Runs `fn` for `pkt` on a zero-delay timer (a host's packet to itself: loopback, own addresses). */
  local(pkt: Packet, fn: () => void): void;
  /** A listener threw: kept, and rethrown by the driver. */
  listenerError(err: unknown, where: string): void;
}
