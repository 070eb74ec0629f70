import { describe, expect, it } from 'vitest';
import {
  type Behaviour,
  type NatProber,
  type ProbeAnswer,
  type ProbeRequest,
  type TransportAddress,
  classicName,
  discoverNat,
  formatReport,
} from '../src/index.js';

/**
 * A simulated network for the discovery logic: a server with four endpoints (RFC 5780)
 * and a NAT modelled by its RFC 4787 mapping and filtering behaviour. Mappings are made
 * and filters opened by the probes actually sent, so the logic is tested against NAT
 * behaviour, not scripted answers.
 */
interface NatModel {
  nat: boolean;
  mapping: Behaviour;
  filtering: Behaviour;
  preservePorts?: boolean;
  hairpin?: boolean;
  blocked?: boolean;
  /** The server has no alternate address (no OTHER-ADDRESS). */
  singleAddress?: boolean;
}

const A = '198.51.100.1';
const A2 = '198.51.100.2';
const P = 3478;
const P2 = 3479;
const PUBLIC = '203.0.113.9';
const ep = (address: string, port: number): TransportAddress => ({ family: 'IPv4', address, port });
const SERVER = [ep(A, P), ep(A, P2), ep(A2, P), ep(A2, P2)];

class SimulatedNat implements NatProber {
  private readonly locals = { primary: ep('10.0.0.2', 40000), filtering: ep('10.0.0.2', 40001) };
  private readonly mappings = new Map<string, number>();
  private readonly opened = new Map<number, Array<TransportAddress>>();
  private nextPort = 50000;
  /** The primary socket's first mapping (mapping test I's): what a hairpin test must aim at. */
  private firstMapped: TransportAddress | undefined;
  sent = 0;

  constructor(private readonly m: NatModel) {}

  local(socket: 'primary' | 'filtering'): TransportAddress {
    return this.locals[socket];
  }

  private map(local: TransportAddress, to: TransportAddress): TransportAddress {
    if (!this.m.nat) return local;
    const key =
      this.m.mapping === 'endpoint-independent'
        ? `${local.port}`
        : this.m.mapping === 'address-dependent'
          ? `${local.port}|${to.address}`
          : `${local.port}|${to.address}|${to.port}`;
    let port = this.mappings.get(key);
    if (port === undefined) {
      const used = new Set(this.mappings.values());
      port = this.m.preservePorts && !used.has(local.port) ? local.port : this.nextPort++;
      this.mappings.set(key, port);
    }
    return ep(PUBLIC, port);
  }

  private admits(mappedPort: number, from: TransportAddress): boolean {
    const seen = this.opened.get(mappedPort) ?? [];
    if (this.m.filtering === 'endpoint-independent') return true;
    if (this.m.filtering === 'address-dependent') return seen.some((s) => s.address === from.address);
    return seen.some((s) => s.address === from.address && s.port === from.port);
  }

  async probe(req: ProbeRequest): Promise<ProbeAnswer | undefined> {
    this.sent++;
    if (this.m.blocked) return undefined;
    const local = this.locals[req.socket];
    const mapped = this.map(local, req.to);
    if (req.socket === 'primary') this.firstMapped ??= mapped;
    const list = this.opened.get(mapped.port) ?? [];
    list.push(req.to);
    this.opened.set(mapped.port, list);
    const via = SERVER.findIndex((s) => s.address === req.to.address && s.port === req.to.port);
    if (via < 0) return undefined;
    if (this.m.singleAddress && via !== 0) return undefined;
    if (this.m.singleAddress && (req.changeIp || req.changePort)) return undefined; // 420 in real life
    const from = SERVER[via ^ (req.changeIp ? 2 : 0) ^ (req.changePort ? 1 : 0)]!;
    if (!this.admits(mapped.port, from)) return undefined;
    return { mapped, otherAddress: this.m.singleAddress ? undefined : SERVER[via ^ 3], responseOrigin: from, from };
  }

  /** A NAT that hairpins delivers a datagram sent to the primary socket's mapped address. */
  async hairpin(mapped: TransportAddress): Promise<boolean> {
    return !!this.m.hairpin && mapped.address === this.firstMapped?.address && mapped.port === this.firstMapped.port;
  }
}

const BEHAVIOURS: Behaviour[] = ['endpoint-independent', 'address-dependent', 'address-and-port-dependent'];

describe('discoverNat against simulated NATs (RFC 5780 section 4)', () => {
  for (const [i, mapping] of BEHAVIOURS.entries()) {
    for (const [j, filtering] of BEHAVIOURS.entries()) {
      // Half the NATs hairpin and half do not, so the report must come from the test.
      const hairpin = (i + j) % 2 === 0;
      it(`finds ${mapping} mapping and ${filtering} filtering (${hairpin ? 'with' : 'without'} hairpinning)`, async () => {
        const sim = new SimulatedNat({ nat: true, mapping, filtering, preservePorts: true, hairpin });
        const r = await discoverNat(sim, SERVER[0]!);
        expect(r.udpBlocked).toBe(false);
        expect(r.natPresent).toBe(true);
        expect(r.serverSupportsDiscovery).toBe(true);
        expect(r.mapping).toBe(mapping);
        expect(r.filtering).toBe(filtering);
        expect(r.hairpinning).toBe(hairpin);
        expect(r.tests.at(-1)).toMatchObject({ name: 'hairpinning', to: `${PUBLIC}:40000`, result: hairpin ? 'received' : 'not received' });
        expect(formatReport(r)).toMatch(new RegExp(`hairpinning\\s+${hairpin ? 'yes' : 'no'}\\n`));
        expect(r.classic).toBe(classicName(true, mapping, filtering));
        // Mapping test III runs only when test II saw a different mapping.
        const names = r.tests.map((t) => t.name);
        expect(names.includes('mapping III')).toBe(mapping !== 'endpoint-independent');
        expect(names.includes('filtering III')).toBe(filtering !== 'endpoint-independent');
      });
    }
  }

  it('names the classic RFC 3489 types', () => {
    expect(classicName(true, 'endpoint-independent', 'endpoint-independent')).toBe('Full Cone');
    expect(classicName(true, 'endpoint-independent', 'address-dependent')).toBe('Restricted Cone');
    expect(classicName(true, 'endpoint-independent', 'address-and-port-dependent')).toBe('Port Restricted Cone');
    expect(classicName(true, 'address-dependent', 'endpoint-independent')).toBe('Symmetric');
    expect(classicName(true, 'address-and-port-dependent', 'address-and-port-dependent')).toBe('Symmetric');
    expect(classicName(false, undefined, 'endpoint-independent')).toBe('Open Internet');
    expect(classicName(false, undefined, 'address-dependent')).toBe('Symmetric UDP Firewall');
  });

  it('reports Open Internet without a NAT, and Symmetric UDP Firewall behind a stateful filter', async () => {
    const open = await discoverNat(new SimulatedNat({ nat: false, mapping: 'endpoint-independent', filtering: 'endpoint-independent' }), SERVER[0]!);
    expect(open.natPresent).toBe(false);
    expect(open.classic).toBe('Open Internet');
    expect(open.hairpinning).toBeUndefined();
    const fw = await discoverNat(new SimulatedNat({ nat: false, mapping: 'endpoint-independent', filtering: 'address-and-port-dependent' }), SERVER[0]!);
    expect(fw.classic).toBe('Symmetric UDP Firewall');
  });

  it('reports port preservation and its absence', async () => {
    const kept = await discoverNat(new SimulatedNat({ nat: true, mapping: 'endpoint-independent', filtering: 'endpoint-independent', preservePorts: true }), SERVER[0]!);
    expect(kept.portPreservation).toBe(true);
    const moved = await discoverNat(new SimulatedNat({ nat: true, mapping: 'endpoint-independent', filtering: 'endpoint-independent', preservePorts: false }), SERVER[0]!);
    expect(moved.portPreservation).toBe(false);
    expect(moved.mapped!.port).toBe(50000);
  });

  it('reports UDP Blocked after one unanswered probe', async () => {
    const sim = new SimulatedNat({ nat: true, mapping: 'endpoint-independent', filtering: 'endpoint-independent', blocked: true });
    const r = await discoverNat(sim, SERVER[0]!);
    expect(r.udpBlocked).toBe(true);
    expect(r.classic).toBe('UDP Blocked');
    expect(sim.sent).toBe(1);
    expect(formatReport(r)).toMatch(/UDP is blocked/);
  });

  it('does not guess behaviour when the server has no alternate address', async () => {
    const sim = new SimulatedNat({ nat: true, mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', singleAddress: true });
    const r = await discoverNat(sim, SERVER[0]!, { hairpin: false });
    expect(r.serverSupportsDiscovery).toBe(false);
    expect(r.mapping).toBeUndefined();
    expect(r.filtering).toBeUndefined();
    expect(r.classic).toBe('Unknown');
    expect(r.hairpinning).toBeUndefined();
    expect(formatReport(r)).toMatch(/lacks RFC 5780/);
  });

  it('runs the filtering tests from a socket that has not opened the filter to the alternate address', async () => {
    // If filtering were tested from the primary socket, mapping test II would have opened
    // an address-dependent filter to A2, and this would come out endpoint-independent.
    const r = await discoverNat(new SimulatedNat({ nat: true, mapping: 'endpoint-independent', filtering: 'address-dependent' }), SERVER[0]!);
    expect(r.filtering).toBe('address-dependent');
    const filtering = r.tests.filter((t) => t.name.startsWith('filtering'));
    // All three ran (an empty list would pass the check below on its own).
    expect(filtering.map((t) => t.name)).toEqual(['filtering I', 'filtering II', 'filtering III']);
    expect(filtering.every((t) => t.to === `${A}:${P}`)).toBe(true);
  });
});
