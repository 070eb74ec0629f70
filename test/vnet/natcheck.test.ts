// natkit's NAT discovery (discoverNat, the RFC 5780 tests behind `natcheck`) against natkit's
// StunServer in RFC 5780 full mode, both on the virtual network, one client behind
// each of its NATs. The verdict each case asserts, and the list of RFC 5780 tests with where
// each answer came from, are those test/natlab/natcheck.test.ts asserts for the real-kernel
// NATs of the lab (the cases below are its NATKIT_CASES and its "UDP blocked" group, copied
// with their reasons): the virtual NATs must be classified exactly as the nftables ones are,
// or a deterministic ICE test on the vnet would prove something the kernel does not do.
// Everything runs on the network's clock (natcheck's probe schedule: an unanswered probe costs
// 2.75 s of virtual time, nothing of real time).
import { type NatReport, type StunServer, type TransportAddress, discoverNat } from '@natkit/stun';
import { describe, expect, test } from 'vitest';
import { type VnetClientSpec, type VnetLab, VnetProber, createVnetLab, startStunServer } from '../helpers/vnet/index.js';

type Behaviour = 'endpoint-independent' | 'address-dependent' | 'address-and-port-dependent';
const EIM: Behaviour = 'endpoint-independent';
const ADM: Behaviour = 'address-dependent';
const APDM: Behaviour = 'address-and-port-dependent';
const EIF = EIM;
const ADF = ADM;
const APDF = APDM;
const PORT = 3478;
const ALT_PORT = 3479;

interface Verdict {
  natPresent: boolean;
  mapping: Behaviour;
  filtering: Behaviour;
  hairpinning: boolean | undefined;
  portPreservation: boolean;
  classic: 'Open Internet' | 'Symmetric UDP Firewall' | 'Full Cone' | 'Restricted Cone' | 'Port Restricted Cone' | 'Symmetric';
}

interface Case {
  name: string;
  spec: VnetClientSpec;
  expected: Verdict;
}

// test/natlab/natcheck.test.ts, NATKIT_CASES
const CASES: Case[] = [
  // No NAT: mapping is endpoint-independent by definition (RFC 5780 4.3: mapped = local), the
  // filtering tests still run, hairpinning is not tested.
  { name: 'none', spec: { nat: 'none' }, expected: { natPresent: false, mapping: EIM, filtering: EIF, hairpinning: undefined, portPreservation: true, classic: 'Open Internet' } },
  { name: 'firewall', spec: { nat: 'firewall' }, expected: { natPresent: false, mapping: EIM, filtering: APDF, hairpinning: undefined, portPreservation: true, classic: 'Symmetric UDP Firewall' } },
  { name: 'full-cone', spec: { nat: 'full-cone' }, expected: { natPresent: true, mapping: EIM, filtering: EIF, hairpinning: false, portPreservation: true, classic: 'Full Cone' } },
  { name: 'full-cone, hairpin', spec: { nat: 'full-cone', hairpin: true }, expected: { natPresent: true, mapping: EIM, filtering: EIF, hairpinning: true, portPreservation: true, classic: 'Full Cone' } },
  { name: 'restricted-cone', spec: { nat: 'restricted-cone' }, expected: { natPresent: true, mapping: EIM, filtering: ADF, hairpinning: false, portPreservation: true, classic: 'Restricted Cone' } },
  // hairpins, but the ADF of the target mapping drops the request from another socket
  { name: 'restricted-cone, hairpin', spec: { nat: 'restricted-cone', hairpin: true }, expected: { natPresent: true, mapping: EIM, filtering: ADF, hairpinning: false, portPreservation: true, classic: 'Restricted Cone' } },
  { name: 'port-restricted-cone', spec: { nat: 'port-restricted-cone' }, expected: { natPresent: true, mapping: EIM, filtering: APDF, hairpinning: false, portPreservation: true, classic: 'Port Restricted Cone' } },
  { name: 'port-restricted-cone, hairpin', spec: { nat: 'port-restricted-cone', hairpin: true }, expected: { natPresent: true, mapping: EIM, filtering: APDF, hairpinning: false, portPreservation: true, classic: 'Port Restricted Cone' } },
  // a random port per 5-tuple
  { name: 'symmetric', spec: { nat: 'symmetric' }, expected: { natPresent: true, mapping: APDM, filtering: APDF, hairpinning: false, portPreservation: false, classic: 'Symmetric' } },
  { name: 'symmetric, hairpin', spec: { nat: 'symmetric', hairpin: true }, expected: { natPresent: true, mapping: APDM, filtering: APDF, hairpinning: false, portPreservation: false, classic: 'Symmetric' } },
  // RFC 4787 behaviours without an RFC 3489 name of their own
  {
    name: 'custom ADM + ADF, preserving',
    spec: { nat: { mapping: ADM, filtering: ADF, portAllocation: 'preserve' } },
    // the first mapping (to A) keeps the local port; the one to A2 cannot (it is taken)
    expected: { natPresent: true, mapping: ADM, filtering: ADF, hairpinning: false, portPreservation: true, classic: 'Symmetric' },
  },
  {
    name: 'custom EIM + ADF, random port',
    spec: { nat: { mapping: EIM, filtering: ADF, portAllocation: 'random' } },
    expected: { natPresent: true, mapping: EIM, filtering: ADF, hairpinning: false, portPreservation: false, classic: 'Restricted Cone' },
  },
  {
    name: 'custom APDM + EIF, sequential, hairpin',
    // EIF lets the hairpinned request in although it comes from a mapping the target never
    // addressed: a symmetric NAT on which natcheck must see hairpinning
    spec: { nat: { mapping: APDM, filtering: EIF, portAllocation: 'sequential', hairpin: true } },
    expected: { natPresent: true, mapping: APDM, filtering: EIF, hairpinning: true, portPreservation: false, classic: 'Symmetric' },
  },
];

interface Outcome {
  report?: NatReport;
  error?: unknown;
  /** Virtual ms the discovery took. */
  ms: number;
}

/** natcheck from every client of `lab` at once, against `target(i)` (A:P by default); the server is natkit's StunServer in full mode. */
async function runAll(lab: VnetLab, target?: (i: number) => TransportAddress | undefined): Promise<{ outcomes: Outcome[]; server: StunServer }> {
  const { vnet } = lab;
  const server = await startStunServer(lab);
  expect(server.full).toBe(true);
  const primary: TransportAddress = { family: 'IPv4', address: lab.server.addresses[0], port: PORT };
  try {
    const outcomes = await vnet.runUntil(
      Promise.all(
        lab.clients.map(async (c, i): Promise<Outcome> => {
          const t0 = vnet.clock.now();
          const to = target?.(i) ?? primary;
          const prober = await VnetProber.open(c.host, to, { clock: vnet.clock });
          try {
            return { report: await discoverNat(prober, to), ms: vnet.clock.now() - t0 };
          } catch (error) {
            return { error, ms: vnet.clock.now() - t0 };
          } finally {
            await prober.close();
          }
        }),
      ),
      { maxMs: 60_000, label: 'every discovery' },
    );
    return { outcomes, server };
  } finally {
    await server.close();
  }
}

const re = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** natcheck.test.ts's expectedTests: the RFC 5780 tests that must have run, and where each answer came from. */
function expectedTests(v: Verdict, lab: VnetLab, i: number, mapped: TransportAddress | undefined): unknown[] {
  const [a, a2] = lab.server.addresses;
  const pub = lab.clients[i]!.nat.publicAddress;
  const answered = (from: string) => expect.stringMatching(new RegExp(`^mapped ${re(pub)}:\\d+ from ${re(from)}$`));
  const t = (name: string, to: string, change: string, result: unknown) => ({ name, to, change, result });
  const AP = `${a}:${PORT}`;
  const tests = [t('mapping I', AP, '-', answered(AP))];
  if (v.natPresent) {
    tests.push(t('mapping II', `${a2}:${PORT}`, '-', answered(`${a2}:${PORT}`)));
    if (v.mapping !== EIM) tests.push(t('mapping III', `${a2}:${ALT_PORT}`, '-', answered(`${a2}:${ALT_PORT}`)));
  }
  tests.push(t('filtering I', AP, '-', answered(AP)));
  tests.push(t('filtering II', AP, 'change IP and port', v.filtering === EIF ? answered(`${a2}:${ALT_PORT}`) : 'no response'));
  if (v.filtering !== EIF) tests.push(t('filtering III', AP, 'change port', v.filtering === ADF ? answered(`${a}:${ALT_PORT}`) : 'no response'));
  if (v.hairpinning !== undefined) tests.push(t('hairpinning', mapped ? `${mapped.address}:${mapped.port}` : '?', '-', v.hairpinning ? 'received' : 'not received'));
  return tests;
}

function once<T>(fn: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= fn());
}

describe("natcheck's discovery on the virtual network gives the lab's verdict for every NAT", () => {
  const results = once(async () => {
    const lab = createVnetLab({ clients: CASES.map((c) => c.spec), trace: true });
    const { outcomes } = await runAll(lab);
    expect(lab.vnet.openSockets().map((s) => s.address())).toEqual([]);
    return { lab, outcomes };
  });

  for (const [i, c] of CASES.entries()) {
    const e = c.expected;
    test(`${c.name}: ${e.mapping} mapping, ${e.filtering} filtering, hairpinning ${e.hairpinning ?? 'not tested'}, ${e.classic}`, async () => {
      const { lab, outcomes } = await results();
      const o = outcomes[i]!;
      if (o.error) throw o.error;
      const r = o.report!;
      const why = `${c.name}: ${JSON.stringify({ ...r, tests: undefined })}\n${r.tests.map((t) => `  ${t.name.padEnd(14)} to ${t.to.padEnd(20)} ${t.change.padEnd(18)} ${t.result}`).join('\n')}`;
      const client = lab.clients[i]!;
      expect(r.udpBlocked, why).toBe(false);
      expect(r.serverSupportsDiscovery, why).toBe(true);
      expect(r.otherAddress, why).toEqual({ family: 'IPv4', address: lab.server.addresses[1], port: ALT_PORT });
      expect(r.local.address, why).toBe(client.address);
      expect(r.mapped?.address, why).toBe(client.nat.publicAddress);
      if (e.portPreservation) expect(r.mapped?.port, why).toBe(r.local.port);
      expect({ natPresent: r.natPresent, mapping: r.mapping, filtering: r.filtering, hairpinning: r.hairpinning, portPreservation: r.portPreservation, classic: r.classic }, why).toEqual(e);
      expect(r.tests, why).toEqual(expectedTests(e, lab, i, r.mapped));
    });
  }
});

describe('natcheck when no answer comes: classic "UDP Blocked"', () => {
  // natcheck.test.ts's group: client 0 behind a full-cone NAT that drops every UDP packet it
  // would forward (here: its public link is cut), client 1 without NAT pointed at a server
  // address and port where nothing listens, client 2 the control.
  const results = once(async () => {
    const lab = createVnetLab({ clients: [{ nat: 'full-cone' }, { nat: 'none' }, { nat: 'none' }] });
    lab.clients[0]!.nat.router!.wanLink.block();
    const { outcomes } = await runAll(lab, (i) => (i === 1 ? { family: 'IPv4', address: lab.server.addresses[1], port: 4000 } : undefined));
    return { lab, outcomes };
  });

  for (const i of [0, 1]) {
    test(`${i === 0 ? 'full-cone, UDP dropped at the router' : 'none, nothing listening'}: UDP Blocked after one unanswered probe`, async () => {
      const { lab, outcomes } = await results();
      const o = outcomes[i]!;
      if (o.error) throw o.error;
      const r = o.report!;
      expect(r.udpBlocked).toBe(true);
      expect(r.classic).toBe('UDP Blocked');
      expect(r.mapped).toBeUndefined();
      expect(r.tests).toEqual([{ name: 'mapping I', to: i === 1 ? `${lab.server.addresses[1]}:4000` : `${lab.server.addresses[0]}:${PORT}`, change: '-', result: 'no response' }]);
      // natcheck's schedule: requests at 0, 250, 750, 1750 ms, given up at 2750 ms
      expect(o.ms).toBe(2750);
    });
  }

  test('control: the same server answers a client whose UDP is not blocked', async () => {
    const { outcomes } = await results();
    expect(outcomes[2]!.report).toMatchObject({ udpBlocked: false, classic: 'Open Internet' });
  });
});
