// Two (or more) IceCores wired to each other in memory on a fake clock: no sockets, no
// timers. Every datagram a core asks to send is delivered after `latency` ms (unless `drop`
// says otherwise), through an optional one-to-one NAT per base, and logged with the time it
// left, so tests can assert exact timings and the bytes on the wire.
import { type StunMessage, type TransportAddress, canonicalIp, decodeMessage, ipFamily } from '@natkit/stun';
import {
  type Candidate,
  type CandidateType,
  type IceAction,
  type IceCore,
  type LocalCandidate,
  TYPE_PREFERENCE,
  candidateFoundation,
  candidatePriority,
} from '../../src/index.js';

export interface Packet {
  /** When it left. */
  t: number;
  sender: string;
  baseId: number;
  /** As seen on the wire (after NAT). */
  from: TransportAddress;
  to: TransportAddress;
  data: Buffer;
}

export interface Recorded {
  t: number;
  who: string;
  action: Exclude<IceAction, { type: 'send' }>;
}

interface Endpoint {
  name: string;
  core: IceCore;
  bases: Map<number, TransportAddress>;
}

/** A NAT in front of one base: endpoint-independent mapping to `public`, filtering as named. */
export interface Nat {
  name: string;
  baseId: number;
  public: TransportAddress;
  /** 'open': full cone; 'address': address-restricted; 'port': port-restricted; 'symmetric': a new mapping per destination, port-restricted. */
  filter: 'open' | 'address' | 'port' | 'symmetric';
}

const key = (a: TransportAddress) => `${canonicalIp(a.address)}|${a.port}`;

export function addr(address: string, port: number): TransportAddress {
  return { family: ipFamily(address) ?? 'IPv4', address, port };
}

/** A local candidate as a gatherer would make it. */
export function localCandidate(
  type: Exclude<CandidateType, 'prflx'>,
  baseId: number,
  address: string,
  port: number,
  opts: { base?: TransportAddress; localPreference?: number; server?: string; component?: number } = {},
): LocalCandidate {
  const base = opts.base ?? addr(address, port);
  const c: LocalCandidate = {
    foundation: candidateFoundation(type, base.address, opts.server, 'udp'),
    component: opts.component ?? 1,
    transport: 'udp',
    priority: candidatePriority(TYPE_PREFERENCE[type], opts.localPreference ?? 65535, opts.component ?? 1),
    address,
    port,
    type,
    base,
    baseId,
  };
  if (type !== 'host') {
    c.relatedAddress = base.address;
    c.relatedPort = base.port;
  }
  return c;
}

/** What the peer sees of a local candidate (the signalled part). */
export function signalled(c: LocalCandidate): Candidate {
  const { base: _b, baseId: _i, server: _s, elapsedMs: _e, ...rest } = c;
  return rest;
}

/** Deterministic random bytes (xorshift), so transaction ids and tie-breakers repeat. */
export function seededBytes(seed: number): (n: number) => Uint8Array {
  let x = seed >>> 0 || 1;
  return (n) => {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      b[i] = x & 0xff;
    }
    return b;
  };
}

export class Wire {
  now = 0;
  latency = 10;
  readonly sent: Packet[] = [];
  readonly events: Recorded[] = [];
  /** Return true to lose a packet. */
  drop: (p: Packet) => boolean = () => false;
  private readonly endpoints = new Map<string, Endpoint>();
  private readonly bound = new Map<string, { ep: Endpoint; baseId: number }>();
  private readonly nats: Array<Nat & { permits: Set<string>; mappings: Map<string, TransportAddress> }> = [];
  private queue: Array<{ at: number; seq: number; p: Packet }> = [];
  private seq = 0;

  add(name: string, core: IceCore, bases: Record<number, TransportAddress>): IceCore {
    const ep: Endpoint = { name, core, bases: new Map(Object.entries(bases).map(([k, v]) => [Number(k), v])) };
    this.endpoints.set(name, ep);
    for (const [id, a] of ep.bases) this.bound.set(key(a), { ep, baseId: id });
    return core;
  }

  nat(n: Nat): void {
    this.nats.push({ ...n, permits: new Set(), mappings: new Map() });
    const ep = this.endpoints.get(n.name)!;
    if (n.filter !== 'symmetric') this.bound.set(key(n.public), { ep, baseId: n.baseId });
  }

  core(name: string): IceCore {
    return this.endpoints.get(name)!.core;
  }

  /** Performs a core's actions: queues its datagrams, records its events. */
  apply(name: string, actions: IceAction[]): IceAction[] {
    const ep = this.endpoints.get(name)!;
    for (const a of actions) {
      if (a.type !== 'send') {
        this.events.push({ t: this.now, who: name, action: a });
        continue;
      }
      let from = ep.bases.get(a.baseId);
      if (!from) throw new Error(`${name} sent from unknown base ${a.baseId}`);
      const nat = this.nats.find((n) => n.name === name && n.baseId === a.baseId);
      if (nat) {
        if (nat.filter === 'symmetric') {
          let m = nat.mappings.get(key(a.to));
          if (!m) {
            m = { ...nat.public, port: nat.public.port + nat.mappings.size };
            nat.mappings.set(key(a.to), m);
            this.bound.set(key(m), { ep, baseId: a.baseId });
          }
          from = m;
        } else {
          from = nat.public;
        }
        nat.permits.add(nat.filter === 'address' ? canonicalIp(a.to.address) : key(a.to));
        nat.permits.add(`${key(from)}>${key(a.to)}`);
      }
      const p: Packet = { t: this.now, sender: name, baseId: a.baseId, from, to: a.to, data: a.data };
      this.sent.push(p);
      if (this.drop(p)) continue;
      this.queue.push({ at: this.now + this.latency, seq: this.seq++, p });
    }
    return actions;
  }

  private deliver(p: Packet): void {
    const target = this.bound.get(key(p.to));
    if (!target) return;
    const nat = this.nats.find((n) => n.name === target.ep.name && n.baseId === target.baseId);
    if (nat) {
      // The private address behind a NAT cannot be reached from outside.
      const inside = target.ep.bases.get(target.baseId)!;
      if (key(p.to) === key(inside)) return;
      let ok: boolean;
      if (nat.filter === 'open') ok = true;
      else if (nat.filter === 'address') ok = nat.permits.has(canonicalIp(p.from.address));
      else if (nat.filter === 'port') ok = nat.permits.has(key(p.from));
      else ok = nat.permits.has(`${key(p.to)}>${key(p.from)}`);
      if (!ok) return;
    }
    this.apply(target.ep.name, target.ep.core.handleStun(target.baseId, p.data, p.from, this.now));
  }

  /** Runs deliveries and timeouts up to `until` (absolute ms). */
  run(until: number): void {
    for (let guard = 0; ; guard++) {
      if (guard > 100_000) throw new Error('the wire does not settle: a core keeps asking for time it already had');
      let t = Number.POSITIVE_INFINITY;
      for (const q of this.queue) if (q.at < t) t = q.at;
      for (const ep of this.endpoints.values()) {
        const n = ep.core.nextTimeout();
        if (n !== undefined && n < t) t = n;
      }
      if (t > until) break;
      this.now = Math.max(this.now, t);
      const due = this.queue.filter((q) => q.at <= this.now).sort((a, b) => a.at - b.at || a.seq - b.seq);
      this.queue = this.queue.filter((q) => q.at > this.now);
      for (const q of due) this.deliver(q.p);
      for (const ep of this.endpoints.values()) {
        const n = ep.core.nextTimeout();
        if (n !== undefined && n <= this.now) this.apply(ep.name, ep.core.handleTimeout(this.now));
      }
    }
    this.now = Math.max(this.now, until);
  }

  /** Runs until `pred` holds (checked after every step), at most until `limit`. Returns the time. */
  runUntil(pred: () => boolean, limit: number): number {
    while (!pred()) {
      if (this.now >= limit) throw new Error(`condition not met by t=${limit}`);
      const before = this.now;
      let t = Number.POSITIVE_INFINITY;
      for (const q of this.queue) if (q.at < t) t = q.at;
      for (const ep of this.endpoints.values()) {
        const n = ep.core.nextTimeout();
        if (n !== undefined && n < t) t = n;
      }
      this.run(Math.min(limit, Math.max(before, t)));
      if (this.now === before && t > limit) this.now = limit;
    }
    return this.now;
  }

  /** Events of one kind, optionally of one agent. */
  eventsOf<T extends Recorded['action']['type']>(type: T, who?: string): Array<{ t: number; who: string; action: Extract<Recorded['action'], { type: T }> }> {
    return this.events.filter((e) => e.action.type === type && (who === undefined || e.who === who)) as never;
  }

  states(who: string): Array<[number, string]> {
    return this.eventsOf('state', who).map((e) => [e.t, e.action.state]);
  }

  /** STUN packets sent by `who`, decoded. */
  stun(who?: string): Array<Packet & { msg: StunMessage }> {
    return this.sent.filter((p) => who === undefined || p.sender === who).map((p) => ({ ...p, msg: decodeMessage(p.data) }));
  }
}
