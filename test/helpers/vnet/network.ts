import { canonicalIp, formatIPv4, ipFamily } from '@natkit/stun';
import { VirtualClock } from './clock.js';
import {
  type Fabric,
  Interface,
  Link,
  type LinkOptions,
  type Packet,
  Segment,
  type TraceEntry,
  type TraceEvent,
  VnetError,
  ep,
  formatTrace,
} from './core.js';
import { type FirewallOptions, Host, type InterfaceSpec, NameTable, type VirtualSocket } from './host.js';
import { type NatBehaviour, NatRouter, type NatType, resolveBehaviour } from './nat.js';

export interface VirtualNetworkOptions {
  /** Seeds every random draw (loss, jitter, ephemeral and NAT ports). Default 1. */
  seed?: number;
  /** Default: a new VirtualClock at 0. */
  clock?: VirtualClock;
  /** Keep a trace of packet events (the last `traceLimit`), shown in failure descriptions. */
  trace?: boolean;
  traceLimit?: number;
  /** Link defaults for interfaces on the internet: 10 ms each way (20 ms between two public hosts). */
  internetLink?: LinkOptions;
  /** Link defaults for interfaces on a LAN: 1 ms each way. */
  lanLink?: LinkOptions;
}

export interface HostOptions {
  /** Default: the internet. */
  segment?: Segment;
  /** Address(es) on that segment; on a LAN, the next free one of its subnet by default. */
  address?: string | string[];
  /** Delay, jitter and loss of the host's link (over the segment's defaults). */
  link?: LinkOptions;
  /** A stateful host firewall (natlab's 'firewall'): only replies to what the host sent get in. */
  firewall?: boolean | FirewallOptions;
  /** Several interfaces instead of `segment`/`address` (a multihomed host). */
  interfaces?: Array<InterfaceSpec & { link?: LinkOptions }>;
}

export interface NatOptions {
  /** A preset of natlab.ts (that has a router) or an RFC 4787 behaviour. */
  nat: Exclude<NatType, 'none' | 'firewall'> | NatBehaviour;
  hairpin?: boolean;
  mappingTimeoutMs?: number;
  /** The router's address on the outer segment. */
  publicAddress: string;
  /** Default: the internet. */
  outside?: Segment;
  /** The private segment behind it (the router becomes its gateway). */
  lan: Segment;
  /** Default: the first address of the LAN's subnet (.1). */
  privateAddress?: string;
  wanLink?: LinkOptions;
  lanLink?: LinkOptions;
}

export interface RunOptions {
  /** Virtual time the run may take (default 30 s); past it, the run throws with the network's state. */
  maxMs?: number;
  /** What is being waited for, for the error message. */
  label?: string;
}

/** How many event-loop turns an idle network waits for async work before calling itself stalled. */
const IDLE_TURNS = 5;
/** Timers one run may fire: a guard against timers that keep re-arming at the same instant. */
const MAX_STEPS = 2_000_000;

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * An in-memory internet for deterministic tests: hosts, LANs behind NAT routers of each RFC
 * 4787 behaviour, links with delay, jitter and loss, a name table, all on one VirtualClock.
 * Packets travel on clock timers; nothing reads real time and nothing touches the kernel. A
 * run is the same for the same seed.
 *
 *   const vnet = new VirtualNetwork({ seed: 7 });
 *   const server = vnet.host('server', { address: ['203.0.113.1', '203.0.113.2'] });
 *   const lan = vnet.lan('lan0', { subnet: '10.0.1.0/24' });
 *   const nat = vnet.nat('nat0', { nat: 'port-restricted-cone', publicAddress: '203.0.113.101', lan });
 *   const client = vnet.host('client0', { segment: lan });         // 10.0.1.2, gateway 10.0.1.1
 *   const sock = await client.network.createUdpSocket({ family: 'IPv4' });
 *   ...
 *   await vnet.runUntil(() => got.length > 0, { maxMs: 5000 });      // or runUntil(promise)
 *
 * Drive time only through run/runUntil: they fire the clock's timers one at a time and let
 * promise continuations run between two (a turn of the event loop), so async code above the
 * sockets (clients, agents) progresses as it would on the real event loop.
 */
export class VirtualNetwork implements Fabric {
  readonly clock: VirtualClock;
  readonly seed: number;
  readonly internet: Segment;
  readonly dns: NameTable;
  readonly hosts: Host[] = [];
  readonly nats: NatRouter[] = [];
  readonly segments: Segment[] = [];
  tracing: boolean;
  private readonly traceLimit: number;
  private readonly traceLog: TraceEntry[] = [];
  private readonly taps = new Set<(e: TraceEntry) => void>();
  private readonly flying = new Map<number, Packet>();
  private readonly errors: Array<{ err: unknown; where: string }> = [];
  private reported = 0;
  private packetSeq = 0;
  private driving = false;
  private readonly internetLink: LinkOptions;
  private readonly lanLink: LinkOptions;

  constructor(options: VirtualNetworkOptions = {}) {
    this.seed = options.seed ?? 1;
    this.clock = options.clock ?? new VirtualClock();
    this.tracing = options.trace ?? false;
    this.traceLimit = options.traceLimit ?? 20_000;
    this.internetLink = { delayMs: 10, ...options.internetLink };
    this.lanLink = { delayMs: 1, ...options.lanLink };
    this.dns = new NameTable(() => this);
    this.internet = new Segment('internet', 'internet');
    this.segments.push(this.internet);
  }

  // -------------------------------------------------------------------------------------
  // Building

  /** A private segment (a LAN); a NAT router made with `nat({ lan })` becomes its gateway. */
  lan(name: string, options: { subnet: string | string[] }): Segment {
    if (this.segments.some((s) => s.name === name)) throw new VnetError(`a segment named ${name} exists`);
    const seg = new Segment(name, 'lan', Array.isArray(options.subnet) ? options.subnet : [options.subnet]);
    this.segments.push(seg);
    return seg;
  }

  private newLink(name: string, seg: Segment, extra: LinkOptions | undefined): Link {
    const link = new Link(name, this.seed);
    link.set(seg.kind === 'internet' ? this.internetLink : this.lanLink);
    if (extra) link.set(extra);
    return link;
  }

  private checkName(name: string): void {
    if (this.hosts.some((h) => h.name === name) || this.nats.some((n) => n.name === name)) throw new VnetError(`a node named ${name} exists`);
  }

  /** The next free IPv4 address of a LAN, from .2 (.1 is the router's). */
  private freeAddress(seg: Segment): string {
    const net = seg.subnets.find((s) => s.family === 'IPv4');
    if (!net) throw new VnetError(`${seg.name} has no IPv4 subnet to take an address from; give one`);
    const base = Buffer.from(net.bytes);
    const size = 2 ** (32 - net.prefix);
    const start = base.readUInt32BE(0) & ~(size - 1);
    const taken = new Set(seg.addresses());
    for (let i = 2; i < size - 1; i++) {
      const b = Buffer.alloc(4);
      b.writeUInt32BE((start + i) >>> 0, 0);
      const a = formatIPv4(b);
      if (!taken.has(a)) return a;
    }
    throw new VnetError(`${seg.name} is full`);
  }

  host(name: string, options: HostOptions = {}): Host {
    this.checkName(name);
    const h = new Host(this, name, this.dns, { firewall: options.firewall });
    const specs: Array<InterfaceSpec & { link?: LinkOptions }> =
      options.interfaces ?? [{ segment: options.segment ?? this.internet, address: options.address ?? '', link: options.link }];
    if (specs.length === 0) throw new VnetError(`${name}: a host needs an interface`);
    for (const spec of specs) {
      let address = spec.address;
      if (address === '' || (Array.isArray(address) && address.length === 0)) {
        if (spec.segment.kind === 'internet') throw new VnetError(`${name}: a host on the internet needs an address`);
        address = this.freeAddress(spec.segment);
      }
      const ifName = spec.name ?? `eth${h.interfaces.length}`;
      h.attach({ ...spec, address, name: ifName }, this.newLink(`${name}/${ifName}`, spec.segment, spec.link));
    }
    this.hosts.push(h);
    return h;
  }

  nat(name: string, options: NatOptions): NatRouter {
    this.checkName(name);
    const lan = options.lan;
    if (lan.kind !== 'lan') throw new VnetError(`${name}: the inside of a NAT is a LAN`);
    if (lan.gateways.has('IPv4')) throw new VnetError(`${lan.name} already has a gateway (${lan.gateways.get('IPv4')})`);
    const behaviour = resolveBehaviour(options.nat, options.hairpin, options.mappingTimeoutMs);
    const outside = options.outside ?? this.internet;
    const pub = canonicalIp(options.publicAddress);
    if (ipFamily(pub) !== 'IPv4') throw new VnetError(`${name}: the public address must be IPv4`);
    let priv = options.privateAddress;
    if (priv === undefined) {
      const net = lan.subnets.find((s) => s.family === 'IPv4');
      if (!net) throw new VnetError(`${lan.name} has no IPv4 subnet`);
      const b = Buffer.from(net.bytes);
      b.writeUInt32BE(((b.readUInt32BE(0) & ~(2 ** (32 - net.prefix) - 1)) + 1) >>> 0, 0);
      priv = formatIPv4(b);
    }
    const router = new NatRouter(this, name, behaviour);
    const mk = (ifName: string, seg: Segment, address: string, link: LinkOptions | undefined): Interface => {
      const iface = new Interface(router, ifName, seg, [{ address, family: 'IPv4', prefix: 24 }], this.newLink(`${name}/${ifName}`, seg, link));
      seg.claim(address, iface);
      return iface;
    };
    router.wan = mk('wan', outside, pub, options.wanLink);
    router.lan = mk('lan', lan, canonicalIp(priv), options.lanLink);
    lan.gateways.set('IPv4', router.privateAddress);
    this.nats.push(router);
    return router;
  }

  // -------------------------------------------------------------------------------------
  // The fabric

  nextPacketId(): number {
    return ++this.packetSeq;
  }

  trace(event: TraceEvent, pkt: Packet, at: string, note?: string): void {
    if (!this.tracing && this.taps.size === 0) return;
    const e: TraceEntry = { t: this.clock.now(), id: pkt.id, event, at, src: { ...pkt.src }, dst: { ...pkt.dst }, size: pkt.data.length, data: pkt.data, ...(note ? { note } : {}) };
    if (this.tracing) {
      this.traceLog.push(e);
      if (this.traceLog.length > this.traceLimit) this.traceLog.splice(0, this.traceLog.length - this.traceLimit);
    }
    for (const f of this.taps) f(e);
  }

  /** Calls `fn` with every packet event (whether or not tracing is on); returns the unsubscribe. */
  tap(fn: (e: TraceEntry) => void): () => void {
    this.taps.add(fn);
    return () => this.taps.delete(fn);
  }

  /** The recorded trace (tracing on), oldest first. */
  traceEntries(): readonly TraceEntry[] {
    return this.traceLog;
  }

  /** The last `n` trace entries as text. */
  traceText(n = 60): string {
    return this.traceLog.slice(-n).map(formatTrace).join('\n');
  }

  transmit(iface: Interface, pkt: Packet): void {
    const out = iface.link.out;
    const d1 = out.pass();
    if (d1 === undefined) {
      this.trace(out.blocked ? 'blocked' : 'lost', pkt, out.name);
      return;
    }
    const target = iface.segment.nextHop(pkt.dst.address, iface);
    if (!target) {
      iface.segment.counters.unroutable++;
      this.trace('unroutable', pkt, iface.segment.name);
      return;
    }
    out.counters.delivered++;
    const inn = target.link.in;
    const d2 = inn.pass();
    if (d2 === undefined) {
      this.trace(inn.blocked ? 'blocked' : 'lost', pkt, inn.name);
      return;
    }
    this.flying.set(pkt.id, pkt);
    this.clock.setTimeout(() => {
      this.flying.delete(pkt.id);
      inn.counters.delivered++;
      this.trace('arrive', pkt, target.node.name);
      target.node.receive(pkt, target);
    }, d1 + d2);
  }

  local(pkt: Packet, fn: () => void): void {
    this.flying.set(pkt.id, pkt);
    this.clock.setTimeout(() => {
      this.flying.delete(pkt.id);
      fn();
    }, 0);
  }

  listenerError(err: unknown, where: string): void {
    this.errors.push({ err, where });
  }

  /** Packets on their way now. */
  get inFlight(): number {
    return this.flying.size;
  }

  /** Every socket still open on any host. */
  openSockets(): VirtualSocket[] {
    return this.hosts.flatMap((h) => h.openSockets());
  }

  // -------------------------------------------------------------------------------------
  // Driving

  private throwListenerErrors(): void {
    if (this.errors.length > this.reported) {
      const { err, where } = this.errors[this.reported]!;
      this.reported = this.errors.length;
      throw new VnetError(`${where} threw at t=${this.clock.now()} ms: ${(err as Error)?.stack ?? String(err)}`, { cause: err });
    }
  }

  private enter(what: string): void {
    if (this.driving) throw new VnetError(`${what}: the network is already being run (one run/runUntil at a time)`);
    this.driving = true;
  }

  /**
   * Runs the network until `until` holds (a predicate checked between timers) or settles (a
   * promise: resolves with its value, rejects with its error). Fires the clock's timers one at
   * a time with an event-loop turn between two. Throws, with a description of the network,
   * when `maxMs` of virtual time pass first, or when nothing is left to happen.
   */
  runUntil(until: () => unknown, options?: RunOptions): Promise<void>;
  runUntil<T>(until: Promise<T>, options?: RunOptions): Promise<T>;
  async runUntil<T>(until: (() => unknown) | Promise<T>, options: RunOptions = {}): Promise<T | void> {
    this.enter('runUntil');
    try {
      const maxMs = options.maxMs ?? 30_000;
      const label = options.label ?? (typeof until === 'function' ? 'condition' : 'promise');
      let settled = false;
      let value: T | undefined;
      let failure: { err: unknown } | undefined;
      if (typeof until !== 'function') {
        until.then(
          (v) => {
            settled = true;
            value = v;
          },
          (err) => {
            settled = true;
            failure = { err };
          },
        );
      }
      const done = () => (typeof until === 'function' ? Boolean(until()) : settled);
      const start = this.clock.now();
      const deadline = start + maxMs;
      for (let steps = 0; ; steps++) {
        await turn();
        this.throwListenerErrors();
        if (done()) break;
        let next = this.clock.nextAt();
        if (next === undefined) {
          for (let i = 0; i < IDLE_TURNS && next === undefined; i++) {
            await turn();
            this.throwListenerErrors();
            if (done()) break;
            next = this.clock.nextAt();
          }
          if (done()) break;
          if (next === undefined) {
            throw new VnetError(`${label} not reached after ${this.clock.now() - start} ms: nothing is left to happen (no timer, no packet)\n${this.describe()}`);
          }
        }
        if (next > deadline) {
          this.clock.advance(deadline - this.clock.now());
          throw new VnetError(`${label} not reached within ${maxMs} ms of virtual time\n${this.describe()}`);
        }
        if (steps >= MAX_STEPS) throw new VnetError(`${label}: ${MAX_STEPS} timers fired without getting there\n${this.describe()}`);
        this.clock.step();
      }
      if (failure) throw failure.err;
      return value;
    } finally {
      this.driving = false;
    }
  }

  /** Runs the network for `ms` of virtual time, firing every timer due, one at a time. */
  async run(ms: number): Promise<void> {
    this.enter('run');
    try {
      const deadline = this.clock.now() + Math.max(0, ms);
      for (let steps = 0; ; steps++) {
        await turn();
        this.throwListenerErrors();
        const next = this.clock.nextAt();
        if (next === undefined || next > deadline) break;
        if (steps >= MAX_STEPS) throw new VnetError(`run(${ms}): ${MAX_STEPS} timers fired\n${this.describe()}`);
        this.clock.step();
      }
      this.clock.advance(deadline - this.clock.now());
      await turn();
      this.throwListenerErrors();
    } finally {
      this.driving = false;
    }
  }

  /** Lets pending promise continuations run without moving time. */
  async settle(turns = IDLE_TURNS): Promise<void> {
    for (let i = 0; i < turns; i++) await turn();
    this.throwListenerErrors();
  }

  // -------------------------------------------------------------------------------------
  // Describing

  describe(options: { traceLines?: number } = {}): string {
    const next = this.clock.nextAt();
    const lines = [
      `virtual network (seed ${this.seed}) at t=${this.clock.now()} ms: ${this.clock.pending} timer(s) pending${next !== undefined ? ` (next at ${next} ms)` : ''}, ${this.flying.size} packet(s) in flight${this.flying.size ? `: ${[...this.flying.values()].slice(0, 10).map((p) => `#${p.id} ${ep(p.src)} -> ${ep(p.dst)}`).join(', ')}` : ''}`,
    ];
    for (const s of this.segments) {
      const gw = [...s.gateways.values()];
      lines.push(`segment ${s.name} (${s.kind}${s.subnets.length ? ` ${s.subnets.map((x) => x.text).join(', ')}` : ''}${gw.length ? `, gateway ${gw.join(', ')}` : ''}): ${s.addresses().join(', ')}; unroutable ${s.counters.unroutable}`);
    }
    for (const h of this.hosts) lines.push(h.describe());
    for (const n of this.nats) lines.push(n.describe());
    const names = this.dns.describe();
    if (names) lines.push(`names:\n${names}`);
    if (this.tracing) lines.push(`last packet events:\n${this.traceText(options.traceLines ?? 60)}`);
    else lines.push('(packet trace off: new VirtualNetwork({ trace: true }) records one)');
    return lines.join('\n');
  }
}
