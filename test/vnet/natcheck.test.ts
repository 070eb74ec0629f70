// natkit's NAT discovery (discoverNat, the RFC 5780 tests behind `natcheck`) against natkit's
// StunServer in RFC 5780 full mode, both on the virtual network, one client behind
// each of its NATs. The verdict each case asserts, and the list of RFC 5780 tests with where
// each answer came from, are those test/natlab/natcheck.test.ts asserts for the real-kernel
// NATs of the lab (both take them from test/helpers/natcheck-verdicts.ts; the "UDP blocked"
// group below is the lab's too): the virtual NATs must be classified exactly as the nftables
// ones are, or a deterministic ICE test on the vnet would prove something the kernel does not do.
// Everything runs on the network's clock (natcheck's probe schedule: an unanswered probe costs
// 2.75 s of virtual time, nothing of real time).
import { type NatReport, type StunServer, type TransportAddress, discoverNat } from '@natkit/stun';
import { describe, expect, test } from 'vitest';
import { ALT_PORT, NATCHECK_CASES, PORT, expectVerdict, formatTests, once } from '../helpers/natcheck-verdicts.js';
import { type VnetLab, VnetProber, createVnetLab, startStunServer } from '../helpers/vnet/index.js';

// test/helpers/natcheck-verdicts.ts, as test/natlab/natcheck.test.ts's NATKIT_CASES
const CASES = NATCHECK_CASES;

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
      const why = `${c.name}: ${JSON.stringify({ ...r, tests: undefined })}\n${formatTests(r.tests)}`;
      const client = lab.clients[i]!;
      const place = { server: lab.server.addresses, clientAddress: client.address, publicAddress: client.nat.publicAddress };
      expectVerdict(r, e, place, { family: 'IPv4', address: lab.server.addresses[1], port: ALT_PORT }, why);
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
