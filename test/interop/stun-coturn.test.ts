// Interop with coturn 4.6.1 (Debian package coturn):
//  - its clients turnutils_stunclient and turnutils_natdiscovery against natkit's
//    stunserver in RFC 5780 full mode;
//  - natkit's natcheck and StunClient (UDP and TCP) against coturn's turnserver with two
//    listening addresses (which turns RFC 5780 on in coturn).
// Everything on loopback, 127.0.0.1 (A) and 127.0.0.2 (A2): no NAT anywhere.
import { afterEach, describe, expect, it } from 'vitest';
import { Attr, AttrType, StunClient } from '@natkit/stun';
import { A, A2, needSystemProgram, startStunserver, startTurnserver, expectOpenInternetReport } from '../helpers/interop-servers.js';
import { killAll, run, runBin } from '../helpers/spawn.js';

afterEach(killAll);

const addr = (address: string, port: number) => ({ family: 'IPv4', address, port });

/**
 * coturn's clients print one block per answer that carried OTHER-ADDRESS:
 *   ========================================
 *   RFC 5780 response 2
 *   0: : IPv4. Response origin: : 127.0.0.2:49761
 *   0: : IPv4. Other addr: : 127.0.0.2:49761
 *   0: : IPv4. UDP reflexive addr: 127.0.0.1:35540
 *   0: : IPv4. Local addr: : 127.0.0.1:35540        (natdiscovery only)
 */
interface CoturnAnswer {
  n: number;
  origin?: string;
  other?: string;
  reflexive?: string;
  local?: string;
  text: string;
}

function parseAnswers(stdout: string): CoturnAnswer[] {
  const blocks = stdout.split(/^=+\nRFC 5780 response /m).slice(1);
  return blocks.map((b) => {
    const field = (name: string) => new RegExp(`^0: : IPv4\\. ${name}:(?: :)? (\\S+)$`, 'm').exec(b)?.[1];
    return { n: Number(/^\d+/.exec(b)?.[0]), origin: field('Response origin'), other: field('Other addr'), reflexive: field('UDP reflexive addr'), local: field('Local addr'), text: b };
  });
}

/** natdiscovery's conclusions: the lines framed by two rows of '='. */
function conclusions(stdout: string): string[] {
  return [...stdout.matchAll(/^=+\n(.+)\n(?==+$)/gm)].map((m) => m[1]!).filter((l) => !l.startsWith('RFC 5780 response'));
}

describe("coturn's clients against natkit's stunserver", () => {
  it('turnutils_stunclient gets 127.0.0.1 as its reflexive address and runs its RFC 5780 steps (CHANGE-REQUEST, RESPONSE-PORT, PADDING)', async (ctx) => {
    const stunclient = needSystemProgram(ctx, 'turnutils_stunclient');
    const server = await startStunserver();
    const P = server.port;
    const P2 = server.altPort;
    try {
      // No -f needed: natkit's OTHER-ADDRESS in the first answer turns its RFC 5780 mode
      // on. It blocks in recv() with no timeout if an answer never comes, so run() kills
      // it after 10 s.
      const r = await run(stunclient, ['-L', A, '-p', String(P), A], { timeoutMs: 10_000 });
      expect(r.code).toBe(0);
      const answers = parseAnswers(r.stdout);
      expect(answers.map((a) => a.n)).toEqual([1, 2, 3]);
      const [a1, a2, a3] = answers as [CoturnAnswer, CoturnAnswer, CoturnAnswer];
      const m = /^127\.0\.0\.1:(\d+)$/.exec(a1.reflexive ?? '');
      expect(m, `reflexive address in\n${r.stdout}`).not.toBeNull();
      const port = Number(m![1]);
      // 1: plain Binding from A:P.
      expect(a1).toMatchObject({ origin: `${A}:${P}`, other: `${A2}:${P2}`, reflexive: `${A}:${port}` });
      // 2: change IP and port plus RESPONSE-PORT = its port + 1, received on a new socket
      // bound to that port: the answer came from A2:P2 and went to port+1, while the
      // mapped address is still the port the request came from (RFC 5780 section 7.5).
      expect(a2).toMatchObject({ origin: `${A2}:${P2}`, other: `${A2}:${P2}`, reflexive: `${A}:${port}` });
      // 3: from the new socket (port + 1), change IP and port, with 1500 bytes of PADDING.
      expect(a3).toMatchObject({ origin: `${A2}:${P2}`, other: `${A2}:${P2}`, reflexive: `${A}:${port + 1}` });
      expect(r.stdout).not.toMatch(/error|not a|Cannot|Wrong/i);
    } finally {
      expect(await server.stop()).toBe(0);
    }
    expect(server.proc.stderr()).toMatch(/stopped received=3 responses=3 /);
  });

  it('turnutils_natdiscovery -m -f -H finds no NAT: endpoint-independent mapping and filtering, hairpinning', async (ctx) => {
    const natdiscovery = needSystemProgram(ctx, 'turnutils_natdiscovery');
    const server = await startStunserver();
    const P = server.port;
    const P2 = server.altPort;
    try {
      // -L 127.0.0.1 so it can compare its local address with the reflexive one (with
      // the wildcard it never says "No NAT!"). Each receive has a 3 s timeout.
      const r = await run(natdiscovery, ['-m', '-f', '-H', '-L', A, '-p', String(P), A], { timeoutMs: 15_000 });
      expect(r.code).toBe(0);
      expect(r.stdout).not.toMatch(/STUN receive timeout|not a|error|ALG detected/i);
      // coturn prints "No NAT!" when local == reflexive, then goes on with the RFC 5780
      // comparison, whose verdicts always begin "NAT with".
      expect(conclusions(r.stdout)).toEqual([
        'No NAT! (Endpoint Independent Mapping)',
        'NAT with Endpoint Independent Mapping!',
        'No NAT! (Endpoint Independent Mapping)',
        'NAT with Endpoint Independent Filtering!',
      ]);
      // Hairpinning: its request to its own reflexive address arrived.
      expect(r.stdout).toMatch(/-= Hairpinning Behavior Discovery =-\n[\s\S]*Received a request \(maybe a successful hairpinning\)\n[\s\S]*-= Mapping Behavior Discovery =-/);
      const answers = parseAnswers(r.stdout);
      expect(answers).toHaveLength(5);
      for (const a of answers) {
        expect(a.reflexive).toBe(a.local);
        expect(a.reflexive).toMatch(/^127\.0\.0\.1:\d+$/);
      }
      // Mapping test II goes to A2:P: answered from there, and the "other" address of
      // A2:P is A:P2 (RFC 5780 section 7.4: where change IP and port would answer from).
      expect(answers[2]).toMatchObject({ origin: `${A2}:${P}`, other: `${A}:${P2}` });
      // Filtering test II (change IP and port): answered from A2:P2.
      expect(answers[4]).toMatchObject({ origin: `${A2}:${P2}`, other: `${A2}:${P2}` });
      // natkit answers RFC 5389+ requests with XOR-MAPPED-ADDRESS only (MAPPED-ADDRESS is
      // for RFC 3489 clients), which natdiscovery notes without complaint.
      expect(r.stdout).toMatch(/Not received mapped address attribute\./);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it('turnutils_natdiscovery -m -f -P (1500-byte PADDING in every request) reaches the same verdicts', async (ctx) => {
    const natdiscovery = needSystemProgram(ctx, 'turnutils_natdiscovery');
    const server = await startStunserver();
    try {
      const r = await run(natdiscovery, ['-m', '-f', '-P', '-L', A, '-p', String(server.port), A], { timeoutMs: 15_000 });
      expect(r.code).toBe(0);
      expect(r.stdout).not.toMatch(/STUN receive timeout|not a|error/i);
      expect(conclusions(r.stdout)).toEqual([
        'No NAT! (Endpoint Independent Mapping)',
        'NAT with Endpoint Independent Mapping!',
        'No NAT! (Endpoint Independent Mapping)',
        'NAT with Endpoint Independent Filtering!',
      ]);
    } finally {
      expect(await server.stop()).toBe(0);
    }
    expect(server.proc.stderr()).toMatch(/stopped received=4 responses=4 /);
  });
});

describe("natkit against coturn's turnserver (two -L: RFC 5780 on)", () => {
  it('natcheck sees OTHER-ADDRESS and classifies Open Internet', async (ctx) => {
    const server = await startTurnserver(needSystemProgram(ctx, 'turnserver'));
    const P = server.port;
    const P2 = server.altPort;
    try {
      const text = await runBin('stun', 'natcheck', ['--timeout', '5000', '--local', A, `${A}:${P}`], { timeoutMs: 60_000 });
      expect(text.code).toBe(0);
      expectOpenInternetReport(text.stdout, P, P2);
      expect(text.stdout).toMatch(/^mapped address +127\.0\.0\.1:\d+$/m);

      const json = await runBin('stun', 'natcheck', ['--json', '--timeout', '5000', '--local', A, `${A}:${P}`], { timeoutMs: 60_000 });
      expect(json.code).toBe(0);
      const report = JSON.parse(json.stdout);
      expect(report).toMatchObject({
        server: addr(A, P),
        udpBlocked: false,
        natPresent: false,
        serverSupportsDiscovery: true,
        otherAddress: addr(A2, P2),
        mapping: 'endpoint-independent',
        filtering: 'endpoint-independent',
        portPreservation: true,
        classic: 'Open Internet',
      });
      expect(report.mapped).toEqual(report.local);
      // coturn answered the change-IP-and-port request from A2:P2.
      const f2 = report.tests.find((t: { name: string }) => t.name === 'filtering II');
      expect(f2).toMatchObject({ change: 'change IP and port', result: expect.stringMatching(new RegExp(`from 127\\.0\\.0\\.2:${P2}$`)) });
    } finally {
      await server.stop();
    }
  });

  it('StunClient.binding over UDP gets XOR-MAPPED-ADDRESS = its own socket, OTHER-ADDRESS and RESPONSE-ORIGIN', async (ctx) => {
    const server = await startTurnserver(needSystemProgram(ctx, 'turnserver'));
    const client = new StunClient({ bindAddress: A, retransmit: { rto: 100, rc: 4, rm: 16 } });
    try {
      const me = await client.localAddress();
      const r = await client.binding({ address: A, port: server.port });
      expect(r.message.get(Attr.XorMappedAddress)).toEqual(addr(A, me.port));
      expect(r.mapped).toEqual(addr(A, me.port));
      expect(r.local).toEqual(addr(A, me.port));
      expect(r.from).toEqual(addr(A, server.port));
      expect(r.responseOrigin).toEqual(addr(A, server.port));
      expect(r.otherAddress).toEqual(addr(A2, server.altPort));
      expect(r.message.has(AttrType.OTHER_ADDRESS)).toBe(true);
      expect(r.message.has(AttrType.RESPONSE_ORIGIN)).toBe(true);
      expect(r.software).toMatch(/^Coturn-4\.6\.1 /);
      // coturn signs with FINGERPRINT; natkit checked it (a bad one is dropped).
      expect(r.message.fingerprintAt).toBeGreaterThan(0);
    } finally {
      await client.close();
      await server.stop();
    }
  });

  it('StunClient.binding over TCP gets XOR-MAPPED-ADDRESS = its connection', async (ctx) => {
    const server = await startTurnserver(needSystemProgram(ctx, 'turnserver'));
    const client = new StunClient();
    try {
      const r = await client.binding({ address: A, port: server.port, transport: 'tcp' }, { retransmit: { ti: 5000 } });
      expect(r.server).toEqual({ address: A, port: server.port, transport: 'tcp' });
      expect(r.local.address).toBe(A);
      expect(r.local.port).toBeGreaterThan(0);
      expect(r.mapped).toEqual(addr(A, r.local.port));
      expect(r.message.get(Attr.XorMappedAddress)).toEqual(r.mapped);
      expect(r.software).toMatch(/^Coturn-4\.6\.1 /);
      // Two requests on the one connection: same mapping.
      const again = await client.binding({ address: A, port: server.port, transport: 'tcp' }, { retransmit: { ti: 5000 } });
      expect(again.mapped).toEqual(r.mapped);
    } finally {
      await client.close();
      await server.stop();
    }
  });
});
