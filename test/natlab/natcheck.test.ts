// natkit's own NAT discovery (`natcheck`, RFC 5780 tests) against the real NATs of the lab
// (test/helpers/natlab.ts: netns + nftables, each preset proven by Debian's Vovida `stun` and
// coturn's `turnutils_natdiscovery` in natlab.test.ts). The answer each test asserts is what
// the NAT really does, not what natcheck happens to print: where they differ, the test fails
// and says which RFC 5780 test went wrong.
//
//  - natkit's `stunserver --listen A --alternate A2 --port 3478` and one client behind each
//    preset (hairpinning on and off where it matters) and a few RFC 4787 behaviours without an
//    RFC 3489 name;
//  - the same natcheck against coturn's `turnserver` and Debian's `stund`, two NATs each, so
//    that the verdict is seen not to depend on natkit's own server;
//  - UDP blocked: every UDP packet dropped at the router (the server is up), and a server
//    address where nothing listens: classic 'UDP Blocked', exit status 3.
//
// Speed: natcheck runs with --timeout 1000 (an unanswered probe costs 1 s; the filtering tests
// of an address-and-port-dependent filter and a hairpinning test that gets nothing cost three).
// Each group makes ONE lab with a client behind each of its NATs and runs every natcheck of the
// group at once; the first test of the group does that work (and tears everything down in a
// `finally` before it returns, so no process outlives it: test/setup/each.ts checks handles),
// and each test then asserts its own NAT's verdict. Nothing sleeps: servers are waited for by
// their start-up line or their listening sockets, natcheck by its exit.
//
// Hairpinning (RFC 5780 section 3.4, "Diagnosing NAT Hairpinning"; section 4.5 only adds that
// tests sensitive to prior NAT state must not be combined carelessly): the client "sends a
// STUN Binding Request to this mapped address from a different port. If the client receives
// its own request, the NAT hairpins". natcheck does exactly that (a third socket, like coturn's
// natdiscovery -H). The lab's hairpinning is RFC 4787 REQ-9 done properly: the hairpinned
// packet is translated as if it had left (it carries the sender's own new mapping) and come
// back in, so the TARGET mapping's filter applies to it. The primary mapping has sent nothing to
// the NAT's own public address, so:
//   - endpoint-independent filtering (full cone, and APDM + EIF below) lets it in: hairpinning yes;
//   - address-dependent or address-and-port-dependent filtering (restricted and port-restricted
//     cone, symmetric) drops it although the NAT hairpins: the RFC 5780 test receives nothing,
//     and "receives its own request" is the test's only criterion, so natcheck must report
//     hairpinning false (coturn's natdiscovery says the same in natlab.test.ts; Vovida's client
//     says "will hairpin" because it sends from the same socket, whose own mapping's filter
//     admits what that mapping addressed).
//   - no NAT ('none', 'firewall'): nothing to hairpin; natcheck skips the test and the JSON
//     report has no `hairpinning` (undefined, "not tested").
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { describe, expect, test } from 'vitest';
import {
  type ClientSpec,
  type LabClient,
  type LabProcess,
  type NatLab,
  createNatLab,
  needNatLab,
  startTurnserver,
  systemProgram,
} from '../helpers/natlab.js';
import {
  ALT_PORT,
  type Behaviour,
  NATCHECK_CASES,
  PORT,
  type TestLine,
  type Verdict,
  type VerdictCase,
  expectVerdict,
  formatTests,
  once,
  verdictFor,
  verdictOf,
} from '../helpers/natcheck-verdicts.js';

const NATCHECK = fileURLToPath(new URL('../../packages/stun/bin/natcheck.js', import.meta.url));
const STUNSERVER = fileURLToPath(new URL('../../packages/stun/bin/stunserver.js', import.meta.url));
// How long natcheck waits for an answer before calling a probe unanswered. Every expected
// silence costs this much, but an answer that comes late under a loaded machine (the whole
// suite runs at once) must not pass for filtering: 2 s leaves a wide margin on the lab's
// sub-millisecond links.
const PROBE_TIMEOUT_MS = 2000;

interface Address {
  family: string;
  address: string;
  port: number;
}

/** natcheck --json (NatReport; JSON drops the keys whose value is undefined). */
interface Report {
  server: Address;
  local: Address;
  udpBlocked: boolean;
  mapped?: Address;
  natPresent?: boolean;
  serverSupportsDiscovery: boolean;
  otherAddress?: Address;
  mapping?: Behaviour;
  filtering?: Behaviour;
  hairpinning?: boolean;
  portPreservation?: boolean;
  classic: string;
  tests: TestLine[];
}

/** A case of test/helpers/natcheck-verdicts.ts, with the lab's own ClientSpec. */
interface Case extends VerdictCase {
  spec: ClientSpec;
}

interface Run {
  code: number | null;
  ms: number;
  report: Report | undefined;
  output: string;
  /** The NAT's state (nftables ruleset with its live maps), kept for a failing case. */
  natState?: string;
}

interface Outcome {
  client: LabClient;
  server: [string, string];
  run?: Run;
  error?: unknown;
}

function sameVerdict(r: Report | undefined, v: Verdict): boolean {
  if (!r) return false;
  const got = verdictOf(r);
  return (Object.keys(v) as (keyof Verdict)[]).every((k) => got[k] === v[k]);
}

/** natcheck --json in `ns`; its wall time includes node's start-up. */
async function natcheck(lab: NatLab, ns: string, target: string): Promise<Run> {
  const t0 = performance.now();
  const r = await lab.run(ns, process.execPath, [NATCHECK, '--json', '--timeout', String(PROBE_TIMEOUT_MS), target], { timeoutMs: 30_000 });
  const ms = Math.round(performance.now() - t0);
  let report: Report | undefined;
  try {
    report = JSON.parse(r.stdout) as Report;
  } catch {
    report = undefined;
  }
  // the report without its `tests` (describeRun lists those as a table), or what came instead
  const shown = report ? JSON.stringify({ ...report, tests: undefined }) : r.stdout;
  return { code: r.code, ms, report, output: `exit ${r.code ?? r.signal}${r.timedOut ? ' (timed out)' : ''}\nstdout: ${shown}\nstderr: ${r.stderr}` };
}

/** natkit's stunserver in RFC 5780 full mode on the server's two addresses, ready to answer. */
async function startNatkitStunserver(lab: NatLab): Promise<LabProcess> {
  const [a, a2] = lab.server.addresses;
  const p = lab.spawn(lab.server.ns, process.execPath, [STUNSERVER, '--listen', a, '--alternate', a2, '--port', String(PORT)]);
  try {
    // The line is printed once every socket is bound: "stunserver 0.1.0 listening on udp
    // 203.0.113.1:3478, ... (RFC 5780 full mode)".
    await p.waitFor(/listening on .*\(RFC 5780 full mode\)/, { timeoutMs: 10_000 });
  } catch (err) {
    await p.stop();
    throw err;
  }
  return p;
}

/**
 * One lab, a client behind each case's NAT, a server started by `startServer`, and natcheck
 * run from every client at once against `target(lab)` (default A:3478). Everything is
 * stopped and the lab destroyed before this resolves, with the server's output.
 */
async function runGroup(
  cases: readonly { spec: ClientSpec }[],
  startServer: (lab: NatLab) => Promise<LabProcess>,
  opts: { target?: (lab: NatLab, i: number) => string; prepare?: (lab: NatLab) => Promise<void>; expected?: (i: number) => Verdict | 'blocked' } = {},
): Promise<{ outcomes: Outcome[]; serverOutput: string }> {
  const lab = await createNatLab({ clients: cases.map((c) => c.spec) });
  try {
    await opts.prepare?.(lab);
    const server = await startServer(lab);
    try {
      const target = opts.target ?? ((l: NatLab) => `${l.server.addresses[0]}:${PORT}`);
      const outcomes = await Promise.all(
        lab.clients.map(async (client, i): Promise<Outcome> => {
          try {
            const run = await natcheck(lab, client.ns, target(lab, i));
            const want = opts.expected?.(i);
            const ok = want === 'blocked' ? run.report?.udpBlocked === true : want === undefined || sameVerdict(run.report, want);
            if (!ok && client.nat.ns) {
              const nft = await lab.run(client.nat.ns, systemProgram('nft') ?? 'nft', ['list', 'ruleset']);
              run.natState = nft.stdout;
            }
            return { client, server: lab.server.addresses, run };
          } catch (error) {
            return { client, server: lab.server.addresses, error };
          }
        }),
      );
      return { outcomes, serverOutput: server.stdout() + server.stderr() };
    } finally {
      await server.stop();
    }
  } finally {
    await lab.destroy();
  }
}

function describeRun(c: { name: string; spec: ClientSpec }, o: Outcome): string {
  const r = o.run!;
  const tests = r.report ? formatTests(r.report.tests) : '';
  return `${c.name} (${JSON.stringify(c.spec.nat)}${c.spec.hairpin ? ', hairpin' : ''}), client ${o.client.address} behind ${o.client.nat.publicAddress}:\nnatcheck's RFC 5780 tests:\n${tests}\n${r.output}${r.natState ? `\nNAT state:\n${r.natState}` : ''}`;
}

/** Asserts a natcheck run against `expected`, with everything needed to read a failure. */
function assertVerdict(c: Case, o: Outcome, otherAddress: Address | undefined): void {
  if (o.error) throw o.error;
  const r = o.run!;
  const why = describeRun(c, o);
  expect(r.report, why).toBeDefined();
  expect(r.code, why).toBe(0);
  expectVerdict(r.report!, c.expected, { server: o.server, clientAddress: o.client.address, publicAddress: o.client.nat.publicAddress }, otherAddress, why);
}

function timingTable(title: string, cases: readonly { name: string }[], outcomes: Outcome[]): string {
  const rows = cases.map((c, i) => {
    const r = outcomes[i]!.run?.report;
    const v = r ? `${r.udpBlocked ? 'UDP blocked' : `${r.mapping ?? '?'} / ${r.filtering ?? '?'} / hairpin ${r.hairpinning ?? '-'} / preserve ${r.portPreservation ?? '-'}`} / ${r.classic}` : 'no report';
    return `  ${c.name.padEnd(44)} ${String(outcomes[i]!.run?.ms ?? '-').padStart(5)} ms  ${v}`;
  });
  return `${title}\n${rows.join('\n')}`;
}

// ---------------------------------------------------------------------------------------
// natkit's stunserver, every preset

// the shared table (test/helpers/natcheck-verdicts.ts), which test/vnet/natcheck.test.ts asserts too
const NATKIT_CASES: readonly Case[] = NATCHECK_CASES;

describe("natcheck against natkit's stunserver classifies every NAT of the lab", () => {
  const results = once(async () => {
    const t0 = performance.now();
    const { outcomes } = await runGroup(NATKIT_CASES, startNatkitStunserver, { expected: (i) => NATKIT_CASES[i]!.expected });
    console.log(`${timingTable(`natcheck vs natkit stunserver (group: ${Math.round(performance.now() - t0)} ms with the lab)`, NATKIT_CASES, outcomes)}`);
    return outcomes;
  });

  for (const [i, c] of NATKIT_CASES.entries()) {
    const e = c.expected;
    test(`${c.name}: ${e.mapping} mapping, ${e.filtering} filtering, hairpinning ${e.hairpinning ?? 'not tested'}, ${e.classic}`, async (ctx) => {
      await needNatLab(ctx);
      const outcomes = await results();
      const o = outcomes[i]!;
      assertVerdict(c, o, { family: 'IPv4', address: o.server[1], port: ALT_PORT });
    });
  }
});

// ---------------------------------------------------------------------------------------
// Other people's servers: the verdict is the NAT's, not the server's

const COTURN_CASES: Case[] = [
  { name: 'restricted-cone, hairpin (coturn)', spec: { nat: 'restricted-cone', hairpin: true }, expected: verdictFor('restricted-cone, hairpin') },
  { name: 'symmetric (coturn)', spec: { nat: 'symmetric' }, expected: verdictFor('symmetric') },
];

describe("natcheck against coturn's turnserver (two -L: RFC 5780) gives the same verdicts", () => {
  let turnserver: string | undefined;
  const results = once(async () => {
    const t0 = performance.now();
    const { outcomes } = await runGroup(COTURN_CASES, (lab) => startTurnserver(lab, { program: turnserver }), { expected: (i) => COTURN_CASES[i]!.expected });
    console.log(timingTable(`natcheck vs coturn turnserver (group: ${Math.round(performance.now() - t0)} ms with the lab)`, COTURN_CASES, outcomes));
    return outcomes;
  });

  for (const [i, c] of COTURN_CASES.entries()) {
    test(`${c.name}: ${c.expected.mapping} mapping, ${c.expected.filtering} filtering, ${c.expected.classic}`, async (ctx) => {
      turnserver = (await needNatLab(ctx, 'turnserver')).turnserver;
      const o = (await results())[i]!;
      // coturn: OTHER-ADDRESS is the other -L address with --alt-listening-port
      assertVerdict(c, o, { family: 'IPv4', address: o.server[1], port: ALT_PORT });
    });
  }
});

// Debian's stund 0.97 is an RFC 3489 server: no OTHER-ADDRESS, so natcheck must take the
// alternate address from CHANGED-ADDRESS (A2:3479). stund drops every request whose 0x8022
// attribute (SOFTWARE in RFC 8489; SERVER-NAME in the draft stund follows) has a length that
// is not a multiple of 4 ("Bad length string" in its -v output; test/interop/stun-debian.test.ts),
// which natcheck's SOFTWARE "natkit natcheck 0.1.0" (21 bytes) used to be, making natcheck
// report a false "UDP Blocked"; natkit now pads SOFTWARE to a multiple of 4 (commit f45e608).
// stund runs with -v so that a failure here shows why it dropped requests.
const STUND_CASES: Case[] = [
  { name: 'full-cone, hairpin (stund)', spec: { nat: 'full-cone', hairpin: true }, expected: verdictFor('full-cone, hairpin') },
  { name: 'port-restricted-cone (stund)', spec: { nat: 'port-restricted-cone' }, expected: verdictFor('port-restricted-cone') },
];

describe("natcheck against Debian's stund (RFC 3489, CHANGED-ADDRESS) gives the same verdicts", () => {
  let stund: string | undefined;
  const results = once(async () => {
    const t0 = performance.now();
    const { outcomes, serverOutput } = await runGroup(
      STUND_CASES,
      async (lab) => {
        const [a, a2] = lab.server.addresses;
        // -v: stund says why it drops a request
        const p = lab.spawn(lab.server.ns, stund ?? 'stund', ['-v', '-h', a, '-a', a2]);
        try {
          for (const [address, port] of [[a, PORT], [a, ALT_PORT], [a2, PORT], [a2, ALT_PORT]] as const) {
            await lab.waitForListener(lab.server.ns, { proto: 'udp', address, port, abort: () => p.child.exitCode !== null || p.child.signalCode !== null });
          }
        } catch (err) {
          await p.stop();
          throw new Error(`${(err as Error).message}\nstund output:\n${p.stdout()}${p.stderr()}`);
        }
        return p;
      },
      { expected: (i) => STUND_CASES[i]!.expected },
    );
    const dropped = [...new Set(serverOutput.match(/^(Bad length string \d+|problem parsing \w+|Failed to parse message)$/gm) ?? [])].join(' / ');
    for (const o of outcomes) if (o.run) o.run.output += `\nstund -v on the requests it dropped: ${dropped || '(none dropped)'}`;
    console.log(timingTable(`natcheck vs Debian stund (group: ${Math.round(performance.now() - t0)} ms with the lab)`, STUND_CASES, outcomes));
    return outcomes;
  });

  for (const [i, c] of STUND_CASES.entries()) {
    test(`${c.name}: ${c.expected.mapping} mapping, ${c.expected.filtering} filtering, ${c.expected.classic}`, async (ctx) => {
      stund = (await needNatLab(ctx, 'stund')).stund;
      const o = (await results())[i]!;
      // stund: CHANGED-ADDRESS is the alternate address and port
      assertVerdict(c, o, { family: 'IPv4', address: o.server[1], port: ALT_PORT });
    });
  }
});

// ---------------------------------------------------------------------------------------
// UDP blocked

describe('natcheck when no answer comes: classic "UDP Blocked", exit status 3', () => {
  // client 0: behind a full-cone NAT that drops every forwarded UDP packet, natkit's stunserver
  //           up and answering (client 2 proves it);
  // client 1: no NAT, pointed at a server address and port where nothing listens;
  // client 2: no NAT, the same server as client 0 (the control).
  const BLOCKED: { name: string; spec: ClientSpec }[] = [
    { name: 'full-cone, UDP dropped at the router', spec: { nat: 'full-cone' } },
    { name: 'none, nothing listening', spec: { nat: 'none' } },
    { name: 'none, the same server (control)', spec: { nat: 'none' } },
  ];
  const results = once(async () => {
    const t0 = performance.now();
    const { outcomes } = await runGroup(BLOCKED, startNatkitStunserver, {
      prepare: async (lab) => {
        // a table of the test's own, before the NAT's forward chain (priority filter = 0)
        const nft = systemProgram('nft') ?? 'nft';
        const rules = 'table ip blockudp {\n  chain forward {\n    type filter hook forward priority -10; policy accept;\n    meta l4proto udp drop\n  }\n}\n';
        const r = await lab.run(lab.clients[0]!.nat.ns!, nft, ['-f', '-'], { input: rules });
        if (r.code !== 0) throw new Error(`nft -f failed: ${r.stderr}`);
      },
      target: (lab, i) => (i === 1 ? `${lab.server.addresses[1]}:4000` : `${lab.server.addresses[0]}:${PORT}`),
      expected: (i) => (i === 2 ? verdictFor('none') : 'blocked'),
    });
    console.log(timingTable(`natcheck, UDP blocked (group: ${Math.round(performance.now() - t0)} ms with the lab)`, BLOCKED, outcomes));
    return outcomes;
  });

  for (const [i, c] of BLOCKED.slice(0, 2).entries()) {
    test(`${c.name}: UDP Blocked, exit 3`, async (ctx) => {
      await needNatLab(ctx);
      const o = (await results())[i]!;
      if (o.error) throw o.error;
      const why = describeRun(c, o);
      const r = o.run!.report;
      expect(r, why).toBeDefined();
      expect(r!.udpBlocked, why).toBe(true);
      expect(r!.classic, why).toBe('UDP Blocked');
      expect(o.run!.code, why).toBe(3);
      expect(r!.mapped, why).toBeUndefined();
      // only the first test ran, and it was sent (with retransmissions) and never answered
      expect(r!.tests, why).toEqual([{ name: 'mapping I', to: i === 1 ? `${o.server[1]}:4000` : `${o.server[0]}:${PORT}`, change: '-', result: 'no response' }]);
    });
  }

  test('control: the same server answers a client whose UDP is not blocked', async (ctx) => {
    await needNatLab(ctx);
    const o = (await results())[2]!;
    assertVerdict({ name: BLOCKED[2]!.name, spec: BLOCKED[2]!.spec, expected: verdictFor('none') }, o, { family: 'IPv4', address: o.server[1], port: ALT_PORT });
  });
});
