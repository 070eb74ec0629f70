import { type Endpoint, type Fabric, type Interface, type Link, type Packet, type VNode, VnetError, ep } from './core.js';
import {
  DEPENDENCES,
  type Dependence,
  type NatBehaviour as LabNatBehaviour,
  type PortAllocation,
  ROUTED_PRESETS,
  type RoutedNatType,
  defaultPortAllocation,
} from '../nat-behaviour.js';
import { Prng } from './rng.js';

// A NAT router between a private segment (its "lan" interface, the gateway there) and an
// outer one (its "wan" interface, usually the internet), with the behaviours of RFC 4787:
// mapping (section 4.1) and filtering (section 5) each endpoint-independent, address-dependent
// or address-and-port-dependent, port allocation (section 4.2.1), hairpinning (section 6),
// and an idle timeout refreshed by outbound traffic (section 4.3, REQ-5 and REQ-6).
//
// It is built to behave like the NATs of the real-kernel lab (test/helpers/natlab.ts, whose
// nftables keep the same tables: @out, @in, @taken, @permit), so that a test gets the same
// answer from both:
//  - outbound UDP reuses the live mapping for its key (internal address and port, plus the
//    remote address for ADM, plus the remote port for APDM), or allocates a port: 'preserve'
//    keeps the internal port unless a live mapping holds it (then a random one), 'random' is
//    uniform over 1024-65535 (nftables' fully-random), 'sequential' counts up from 1024
//    (`numgen inc mod 64512 offset 1024`); every outbound packet refreshes its mapping and
//    opens the filter towards its destination (address for ADF, address and port for APDF);
//  - inbound UDP to the public address is translated to the mapping that holds its port if
//    the filter admits it: EIF always, ADF if the mapping has sent to that address, APDF if
//    to that address and port; anything else is dropped without an answer, as is anything for
//    the router's own addresses;
//  - hairpinning (RFC 4787 REQ-9), when on: a packet from inside to the public address is
//    translated exactly as if it had left (the sender's mapping, which opens the sender's
//    filter towards the target) and come back in (the TARGET mapping's filter applies, then
//    it is translated to the target): the receiver sees the sender's public address and port.
//    When off, such packets are dropped. (So a socket sending to its own mapping is admitted
//    by every cone NAT, its own mapping having addressed it; from another socket only by EIF:
//    the lab's header explains why natcheck then reports "no hairpinning" for ADF and APDF.)
// Mappings are checked lazily: one idle longer than the timeout is gone when next looked at,
// and its port is free again. IPv4 only (IPv6 packets are not forwarded).

// natlab.ts's presets and behaviours, from the module both labs share.
export type { Dependence, NatType, PortAllocation } from '../nat-behaviour.js';

/** An RFC 4787 behaviour, as natlab.ts names it, with what only the virtual NAT can vary. */
export interface NatBehaviour extends LabNatBehaviour {
  /** Idle lifetime of a mapping and of each filter entry (default 300 s, RFC 4787 REQ-5; the lab's default). */
  mappingTimeoutMs?: number;
  /** Inbound packets refresh their mapping too (RFC 4787 REQ-6 allows it; the lab's NATs do not). */
  inboundRefresh?: boolean;
}

/** The presets of natlab.ts that put a NAT router in front of the client. */
export const NAT_PRESETS = ROUTED_PRESETS;

export interface ResolvedBehaviour {
  mapping: Dependence;
  filtering: Dependence;
  portAllocation: PortAllocation;
  hairpin: boolean;
  mappingTimeoutMs: number;
  inboundRefresh: boolean;
}

export function resolveBehaviour(nat: RoutedNatType | NatBehaviour, hairpin?: boolean, mappingTimeoutMs?: number): ResolvedBehaviour {
  if (typeof nat === 'string') {
    const p = NAT_PRESETS[nat];
    if (!p) throw new VnetError(`unknown NAT type ${JSON.stringify(nat)}; one of ${Object.keys(NAT_PRESETS).join(', ')}`);
    return { ...p, hairpin: hairpin ?? false, mappingTimeoutMs: mappingTimeoutMs ?? 300_000, inboundRefresh: false };
  }
  if (!DEPENDENCES.includes(nat.mapping) || !DEPENDENCES.includes(nat.filtering)) {
    throw new VnetError(`bad NAT behaviour ${JSON.stringify(nat)}: mapping and filtering are one of ${DEPENDENCES.join(', ')}`);
  }
  const portAllocation = nat.portAllocation ?? defaultPortAllocation(nat.mapping);
  if (!['preserve', 'random', 'sequential'].includes(portAllocation)) throw new VnetError(`bad port allocation ${JSON.stringify(portAllocation)}`);
  const timeout = nat.mappingTimeoutMs ?? mappingTimeoutMs ?? 300_000;
  if (!(timeout > 0)) throw new VnetError(`mappingTimeoutMs must be > 0, not ${timeout}`);
  return {
    mapping: nat.mapping,
    filtering: nat.filtering,
    portAllocation,
    hairpin: nat.hairpin ?? hairpin ?? false,
    mappingTimeoutMs: timeout,
    inboundRefresh: nat.inboundRefresh ?? false,
  };
}

interface Mapping {
  key: string;
  internal: Endpoint;
  port: number;
  /** The remote part of the key (ADM: address; APDM: address and port). */
  remote: Endpoint | { address: string } | undefined;
  createdAt: number;
  lastOut: number;
  /** Filter entries: remote address (ADF) or address|port (APDF) -> last outbound to it. */
  permits: Map<string, number>;
  out: number;
  in: number;
}

/** A mapping as tests see it. */
export interface MappingInfo {
  internal: Endpoint;
  external: Endpoint;
  /** The remote part of the mapping's key (ADM, APDM). */
  remote: Endpoint | { address: string } | undefined;
  /** Where the filter admits packets from (ADF: addresses; APDF: address:port); [] under EIF. */
  permits: string[];
  idleMs: number;
  packetsOut: number;
  packetsIn: number;
}

export interface NatCounters {
  /** Outbound packets translated. */
  out: number;
  /** Inbound packets admitted and translated. */
  in: number;
  /** Inbound packets the filter dropped. */
  filtered: number;
  /** Inbound packets for a port no live mapping holds. */
  noMapping: number;
  /** Packets sent back in from inside (hairpinning on). */
  hairpinned: number;
  /** Packets from inside to the public address dropped (hairpinning off). */
  hairpinDropped: number;
  /** Packets for the router itself, or that it cannot route. */
  dropped: number;
  mappingsCreated: number;
  mappingsExpired: number;
}

const PORT_LO = 1024;
const PORT_HI = 65535;

export class NatRouter implements VNode {
  readonly behaviour: ResolvedBehaviour;
  readonly counters: NatCounters = { out: 0, in: 0, filtered: 0, noMapping: 0, hairpinned: 0, hairpinDropped: 0, dropped: 0, mappingsCreated: 0, mappingsExpired: 0 };
  wan!: Interface;
  lan!: Interface;
  private readonly byKey = new Map<string, Mapping>();
  private readonly byPort = new Map<number, Mapping>();
  private readonly rng: Prng;
  private sequential = 0;

  constructor(
    private readonly fabric: Fabric,
    readonly name: string,
    behaviour: ResolvedBehaviour,
  ) {
    this.behaviour = behaviour;
    this.rng = Prng.derive(fabric.seed, `nat ${name}`);
  }

  get publicAddress(): string {
    return this.wan.addresses[0]!.address;
  }

  get privateAddress(): string {
    return this.lan.addresses[0]!.address;
  }

  get wanLink(): Link {
    return this.wan.link;
  }

  get lanLink(): Link {
    return this.lan.link;
  }

  /** Forgets every mapping and filter entry, like `conntrack -F` with the lab's sets flushed. */
  flush(): void {
    this.byKey.clear();
    this.byPort.clear();
  }

  /**
   * The NAT gets a new public address (a new DHCP lease, a CGN reassigning): the old one is
   * gone from the outer segment, and every mapping with it (masquerade drops its conntracks).
   */
  setPublicAddress(address: string): void {
    const old = this.wan.addresses[0]!;
    if (address === old.address) return;
    this.wan.segment.claim(address, this.wan);
    this.wan.segment.release(old.address, this.wan);
    this.wan.addresses[0] = { ...old, address };
    this.flush();
  }

  /** The live mappings. */
  mappings(): MappingInfo[] {
    const now = this.fabric.clock.now();
    const out: MappingInfo[] = [];
    for (const m of [...this.byKey.values()]) {
      if (!this.alive(m, now)) continue;
      out.push({
        internal: { ...m.internal },
        external: { address: this.publicAddress, port: m.port },
        remote: m.remote,
        permits: [...m.permits].filter(([, t]) => now - t < this.behaviour.mappingTimeoutMs).map(([k]) => k.replace('|', ':')),
        idleMs: now - m.lastOut,
        packetsOut: m.out,
        packetsIn: m.in,
      });
    }
    return out;
  }

  /** The live mapping an outbound packet from `internal` to `remote` would use now, if any. */
  mappingFor(internal: Endpoint, remote: Endpoint): Endpoint | undefined {
    const m = this.byKey.get(this.keyOf(internal, remote));
    if (!m || !this.alive(m, this.fabric.clock.now())) return undefined;
    return { address: this.publicAddress, port: m.port };
  }

  private keyOf(internal: Endpoint, remote: Endpoint): string {
    const k = `${internal.address}|${internal.port}`;
    switch (this.behaviour.mapping) {
      case 'endpoint-independent':
        return k;
      case 'address-dependent':
        return `${k}|${remote.address}`;
      default:
        return `${k}|${remote.address}|${remote.port}`;
    }
  }

  /** True if `m` is live; an expired mapping is removed (and counted) when seen. */
  private alive(m: Mapping, now: number): boolean {
    if (now - m.lastOut < this.behaviour.mappingTimeoutMs) return true;
    if (this.byKey.get(m.key) === m) {
      this.byKey.delete(m.key);
      if (this.byPort.get(m.port) === m) this.byPort.delete(m.port);
      this.counters.mappingsExpired++;
    }
    return false;
  }

  private portInUse(port: number, now: number): boolean {
    const m = this.byPort.get(port);
    return m !== undefined && this.alive(m, now);
  }

  /** RFC 4787 section 4.2.1: the external port of a new mapping. */
  private allocatePort(internalPort: number, now: number): number {
    const a = this.behaviour.portAllocation;
    if (a === 'preserve' && internalPort >= PORT_LO && !this.portInUse(internalPort, now)) return internalPort;
    if (a === 'sequential') {
      for (let i = 0; i <= PORT_HI - PORT_LO; i++) {
        const p = PORT_LO + (this.sequential++ % (PORT_HI - PORT_LO + 1));
        if (!this.portInUse(p, now)) return p;
      }
    } else {
      for (let i = 0; i < 64; i++) {
        const p = this.rng.int(PORT_LO, PORT_HI);
        if (!this.portInUse(p, now)) return p;
      }
      for (let p = PORT_LO; p <= PORT_HI; p++) if (!this.portInUse(p, now)) return p;
    }
    throw new VnetError(`${this.name}: no free port for a new mapping`);
  }

  private permitKey(remote: Endpoint): string {
    return this.behaviour.filtering === 'address-dependent' ? remote.address : `${remote.address}|${remote.port}`;
  }

  /** Outbound translation: the packet as it leaves by the public address. */
  private outbound(pkt: Packet): Packet {
    const now = this.fabric.clock.now();
    const key = this.keyOf(pkt.src, pkt.dst);
    let m = this.byKey.get(key);
    let fresh = false;
    if (!m || !this.alive(m, now)) {
      const port = this.allocatePort(pkt.src.port, now);
      const mp = this.behaviour.mapping;
      m = {
        key,
        internal: { ...pkt.src },
        port,
        remote: mp === 'endpoint-independent' ? undefined : mp === 'address-dependent' ? { address: pkt.dst.address } : { ...pkt.dst },
        createdAt: now,
        lastOut: now,
        permits: new Map(),
        out: 0,
        in: 0,
      };
      this.byKey.set(key, m);
      this.byPort.set(port, m);
      this.counters.mappingsCreated++;
      fresh = true;
    }
    m.lastOut = now;
    m.out++;
    if (this.behaviour.filtering !== 'endpoint-independent') m.permits.set(this.permitKey(pkt.dst), now);
    this.counters.out++;
    const translated: Packet = { ...pkt, src: { address: this.publicAddress, port: m.port } };
    this.fabric.trace('nat-out', translated, this.name, `from ${ep(pkt.src)}${fresh ? ' (new mapping)' : ''}`);
    return translated;
  }

  /** Inbound: the filter, then translation to the mapping's internal endpoint; undefined if dropped. */
  private inbound(pkt: Packet): Packet | undefined {
    const now = this.fabric.clock.now();
    const m = this.byPort.get(pkt.dst.port);
    if (!m || !this.alive(m, now)) {
      this.counters.noMapping++;
      this.fabric.trace('no-mapping', pkt, this.name);
      return undefined;
    }
    if (this.behaviour.filtering !== 'endpoint-independent') {
      const t = m.permits.get(this.permitKey(pkt.src));
      if (t === undefined || now - t >= this.behaviour.mappingTimeoutMs) {
        this.counters.filtered++;
        this.fabric.trace('filtered', pkt, this.name, `(${this.behaviour.filtering} filter of mapping ${m.port})`);
        return undefined;
      }
    }
    if (this.behaviour.inboundRefresh) m.lastOut = now;
    m.in++;
    this.counters.in++;
    const translated: Packet = { ...pkt, dst: { ...m.internal } };
    this.fabric.trace('nat-in', translated, this.name, `to ${ep(pkt.dst)}`);
    return translated;
  }

  receive(pkt: Packet, iface: Interface): void {
    const fabric = this.fabric;
    if (pkt.family !== 'IPv4') {
      this.counters.dropped++;
      fabric.trace('unroutable', pkt, this.name, '(no IPv6 through this NAT)');
      return;
    }
    const dst = pkt.dst.address;
    if (iface === this.lan) {
      if (dst === this.privateAddress) {
        this.counters.dropped++;
        fabric.trace('to-router', pkt, this.name);
        return;
      }
      if (dst === this.publicAddress) {
        if (!this.behaviour.hairpin) {
          this.counters.hairpinDropped++;
          fabric.trace('hairpin-off', pkt, this.name);
          return;
        }
        // RFC 4787 section 6: out through the sender's mapping, back in through the target's filter
        this.counters.hairpinned++;
        const out = this.outbound(pkt);
        fabric.trace('hairpin', out, this.name);
        const back = this.inbound(out);
        if (back) fabric.transmit(this.lan, back);
        return;
      }
      if (this.lan.segment.onLink(dst)) {
        this.counters.dropped++;
        fabric.trace('unroutable', pkt, this.name, '(on the private segment)');
        return;
      }
      fabric.transmit(this.wan, this.outbound(pkt));
      return;
    }
    if (dst !== this.publicAddress) {
      this.counters.dropped++;
      fabric.trace('not-for-me', pkt, this.name);
      return;
    }
    const back = this.inbound(pkt);
    if (back) fabric.transmit(this.lan, back);
  }

  describe(): string {
    const b = this.behaviour;
    const c = this.counters;
    const lines = [
      `nat ${this.name}: ${b.mapping} mapping, ${b.filtering} filtering, ${b.portAllocation} ports, hairpin ${b.hairpin ? 'on' : 'off'}, timeout ${b.mappingTimeoutMs / 1000} s`,
      `  wan ${this.publicAddress} on ${this.wan.segment.name}, lan ${this.privateAddress} on ${this.lan.segment.name}`,
      `  out ${c.out}, in ${c.in}, filtered ${c.filtered}, no mapping ${c.noMapping}, hairpinned ${c.hairpinned}, hairpin dropped ${c.hairpinDropped}, dropped ${c.dropped}, mappings created ${c.mappingsCreated}, expired ${c.mappingsExpired}`,
    ];
    for (const m of this.mappings()) {
      const remote = m.remote ? ` (for ${'port' in m.remote ? ep(m.remote) : m.remote.address})` : '';
      const permits = b.filtering === 'endpoint-independent' ? 'any' : m.permits.join(', ') || 'none';
      lines.push(`  mapping ${ep(m.internal)} -> ${ep(m.external)}${remote}, idle ${m.idleMs} ms, out ${m.packetsOut}, in ${m.packetsIn}, admits ${permits}`);
    }
    for (const l of [this.wan.link, this.lan.link]) lines.push(...l.describe().split('\n').map((x) => `  ${x}`));
    return lines.join('\n');
  }
}
