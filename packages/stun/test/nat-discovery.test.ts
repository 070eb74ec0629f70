import { describe, expect, it } from 'vitest';
import {
  type Behaviour,
  type NatProber,
  type ProbeAnswer,
  type ProbeRequest,
  StunServer,
  type TransportAddress,
  UdpProber,
  classicName,
  discoverNat,
  formatReport,
} from '../src/index.js';
import { MemorySegment } from '../../../test/helpers/memnet.js';

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
  /** The socket UdpProber.hairpin() sends from: a third one, with a mapping of its own. */
  private readonly hairpinLocal = ep('10.0.0.2', 40002);
  private readonly mappings = new Map<string, number>();
  /** Inbound translation: mapped port -> the local endpoint it belongs to. */
  private readonly owners = new Map<number, TransportAddress>();
  /** Where each mapping has sent (its filter's state). */
  private readonly opened = new Map<number, Array<TransportAddress>>();
  private nextPort = 50000;
  sent = 0;

  constructor(private readonly m: NatModel) {}

  local(socket: 'primary' | 'filtering'): TransportAddress {
    return this.locals[socket];
  }

  /** The mapping `local` gets towards `to` (made on first use), with `to` recorded in its filter. */
  private send(local: TransportAddress, to: TransportAddress): TransportAddress {
    // Without a NAT the "mapping" is the socket itself (a stateful firewall still filters).
    const key = !this.m.nat
      ? `${local.port}`
      : this.m.mapping === 'endpoint-independent'
        ? `${local.port}`
        : this.m.mapping === 'address-dependent'
          ? `${local.port}|${to.address}`
          : `${local.port}|${to.address}|${to.port}`;
    let port = this.mappings.get(key);
    if (port === undefined) {
      port = !this.m.nat || (this.m.preservePorts && !this.owners.has(local.port)) ? local.port : this.nextPort++;
      this.mappings.set(key, port);
      this.owners.set(port, local);
    }
    const list = this.opened.get(port) ?? [];
    list.push(to);
    this.opened.set(port, list);
    return this.m.nat ? ep(PUBLIC, port) : local;
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
    const mapped = this.send(local, req.to);
    const via = SERVER.findIndex((s) => s.address === req.to.address && s.port === req.to.port);
    if (via < 0) return undefined;
    if (this.m.singleAddress && via !== 0) return undefined;
    if (this.m.singleAddress && (req.changeIp || req.changePort)) return undefined; // 420 in real life
    const from = SERVER[via ^ (req.changeIp ? 2 : 0) ^ (req.changePort ? 1 : 0)]!;
    if (!this.admits(mapped.port, from)) return undefined;
    return { mapped, otherAddress: this.m.singleAddress ? undefined : SERVER[via ^ 3], responseOrigin: from, from };
  }

  /**
   * RFC 5780 section 3.4 as UdpProber does it: a request from a third socket to the primary
   * socket's mapped address. Hairpinning as RFC 4787 REQ-9 has it, and as the NAT lab
   * (test/helpers/natlab.ts) builds it: the packet is translated as if it had left (it gets
   * the sender's own mapping, towards the NAT's public address) and come back in, so the
   * TARGET mapping's filter applies to it. The primary mapping has only addressed the STUN
   * server, so address-dependent and address-and-port-dependent filtering drop it although
   * the NAT hairpins; only endpoint-independent filtering lets it through.
   */
  async hairpin(mapped: TransportAddress): Promise<boolean> {
    if (!this.m.nat || this.m.blocked) return false;
    const from = this.send(this.hairpinLocal, mapped); // the sender's mapping exists either way
    if (!this.m.hairpin || mapped.address !== PUBLIC) return false; // no hairpinning: the NAT drops it
    const owner = this.owners.get(mapped.port);
    if (!owner || owner.port !== this.locals.primary.port) return false; // no such mapping
    return this.admits(mapped.port, from);
  }
}

const BEHAVIOURS: Behaviour[] = ['endpoint-independent', 'address-dependent', 'address-and-port-dependent'];

describe('discoverNat against simulated NATs (RFC 5780 section 4)', () => {
  for (const [i, mapping] of BEHAVIOURS.entries()) {
    for (const [j, filtering] of BEHAVIOURS.entries()) {
      // Half the NATs hairpin and half do not, so the report must come from the test. A NAT
      // that hairpins is seen to only through endpoint-independent filtering (see hairpin()).
      const hairpin = (i + j) % 2 === 0;
      const seen = hairpin && filtering === 'endpoint-independent';
      it(`finds ${mapping} mapping and ${filtering} filtering (${hairpin ? 'with' : 'without'} hairpinning)`, async () => {
        const sim = new SimulatedNat({ nat: true, mapping, filtering, preservePorts: true, hairpin });
        const r = await discoverNat(sim, SERVER[0]!);
        expect(r.udpBlocked).toBe(false);
        expect(r.natPresent).toBe(true);
        expect(r.serverSupportsDiscovery).toBe(true);
        expect(r.mapping).toBe(mapping);
        expect(r.filtering).toBe(filtering);
        expect(r.hairpinning).toBe(seen);
        expect(r.tests.at(-1)).toMatchObject({ name: 'hairpinning', to: `${PUBLIC}:40000`, result: seen ? 'received' : 'not received' });
        expect(formatReport(r)).toMatch(new RegExp(`hairpinning\\s+${seen ? 'yes' : 'no'}\\n`));
        expect(r.classic).toBe(classicName(true, mapping, filtering));
        // Mapping test III runs only when test II saw a different mapping.
        const names = r.tests.map((t) => t.name);
        expect(names.includes('mapping III')).toBe(mapping !== 'endpoint-independent');
        expect(names.includes('filtering III')).toBe(filtering !== 'endpoint-independent');
      });
    }
  }

  // The verdicts the NAT lab gives for the same NATs (test/natlab/natcheck.test.ts, where
  // coturn's turnutils_natdiscovery agrees): a NAT that hairpins is seen to do so only through
  // endpoint-independent filtering, because the hairpinned request comes from the sender's
  // own mapping, which the target mapping never addressed. (This simulator used to report
  // hairpinning whenever the NAT hairpinned, whatever its filtering: the rows with dependent
  // filtering below are the ones it got wrong.)
  const LAB_HAIRPIN: { name: string; mapping: Behaviour; filtering: Behaviour; hairpin: boolean; seen: boolean }[] = [
    { name: 'full cone, hairpin', mapping: 'endpoint-independent', filtering: 'endpoint-independent', hairpin: true, seen: true },
    { name: 'full cone', mapping: 'endpoint-independent', filtering: 'endpoint-independent', hairpin: false, seen: false },
    { name: 'restricted cone, hairpin', mapping: 'endpoint-independent', filtering: 'address-dependent', hairpin: true, seen: false },
    { name: 'port-restricted cone, hairpin', mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', hairpin: true, seen: false },
    { name: 'symmetric, hairpin', mapping: 'address-and-port-dependent', filtering: 'address-and-port-dependent', hairpin: true, seen: false },
    { name: 'APDM + EIF, hairpin', mapping: 'address-and-port-dependent', filtering: 'endpoint-independent', hairpin: true, seen: true },
  ];
  for (const c of LAB_HAIRPIN) {
    it(`agrees with the NAT lab on hairpinning: ${c.name} -> ${c.seen ? 'received' : 'not received'}`, async () => {
      const r = await discoverNat(new SimulatedNat({ nat: true, mapping: c.mapping, filtering: c.filtering, preservePorts: true, hairpin: c.hairpin }), SERVER[0]!);
      expect(r.hairpinning).toBe(c.seen);
      expect(r.tests.at(-1)).toEqual({ name: 'hairpinning', to: `${PUBLIC}:40000`, change: '-', result: c.seen ? 'received' : 'not received' });
      // the filtering found is what decides it
      expect(r.filtering).toBe(c.filtering);
    });
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

describe('UdpProber on a network other than the kernel\'s (options.network)', () => {
  // test/helpers/memnet.ts: one flat segment, no NAT; the server is natkit's StunServer on it.
  async function setup(...clientAddresses: string[]) {
    const seg = new MemorySegment();
    const server = await StunServer.start({ address: '192.0.2.1', port: 3478, tcp: false, network: seg.host('192.0.2.1') });
    return { seg, server, client: seg.host(...clientAddresses), to: ep('192.0.2.1', 3478) };
  }

  it('opens its sockets there and reports the only address of the family as local', async () => {
    const { seg, server, client, to } = await setup('192.0.2.10');
    try {
      const prober = await UdpProber.open(to, { network: client });
      try {
        const r = await discoverNat(prober, to, { hairpin: false });
        expect(r.local).toMatchObject({ family: 'IPv4', address: '192.0.2.10' });
        expect(r.mapped).toEqual({ ...r.local });
        expect(r.natPresent).toBe(false);
      } finally {
        await prober.close();
      }
    } finally {
      await server.close();
    }
    expect(seg.open).toBe(0);
  });

  it('needs bindAddress on a host with several addresses of the family, and then reports it', async () => {
    const { server, client, to } = await setup('192.0.2.10', '192.0.2.11');
    try {
      await expect(UdpProber.open(to, { network: client })).rejects.toMatchObject({
        code: 'NO_LOCAL_ADDRESS',
        message: 'cannot tell which of 2 IPv4 addresses reaches 192.0.2.1: give bindAddress',
      });
      const prober = await UdpProber.open(to, { network: client, bindAddress: '192.0.2.11' });
      try {
        expect(prober.local('primary').address).toBe('192.0.2.11');
        expect(prober.local('filtering').address).toBe('192.0.2.11');
        const r = await discoverNat(prober, to, { hairpin: false });
        expect(r.mapped).toEqual(r.local);
        expect(r.local.address).toBe('192.0.2.11');
      } finally {
        await prober.close();
      }
    } finally {
      await server.close();
    }
  });
});
