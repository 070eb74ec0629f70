// Interop with Debian's Vovida STUN programs (packages stun-client and stun-server,
// version 0.97, RFC 3489 only):
//  - the `stun` client classifying natkit's stunserver (RFC 3489 requests: no magic
//    cookie, CHANGE-REQUEST; it wants MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS);
//  - natkit's StunClient, checkNat and natcheck against `stund` (answers with
//    MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS and XOR-MAPPED-ADDRESS, but no
//    OTHER-ADDRESS or RESPONSE-ORIGIN: natkit must take those from CHANGED-ADDRESS and
//    SOURCE-ADDRESS; the MAPPED-ADDRESS-only fallback is tested against node-stun's
//    server, which sends no XOR-MAPPED-ADDRESS).
//
// Everything runs on loopback (127.0.0.1 and 127.0.0.2): there is no NAT, so every
// classification must come out "open".
//
// A divergence these tests guard (fixed in natkit, tested as a regression): stund 0.97
// parses 0x8022 (SOFTWARE in RFC 8489, SERVER-NAME in the draft it follows) as a string
// whose length must be a multiple of 4, and drops the whole request otherwise ("Bad length
// string 6 / problem parsing ServerName / Failed to parse message" in its -v output).
// natkit now pads SOFTWARE with spaces to a multiple of 4 (softwareText), so StunClient's
// default "natkit" and natcheck's "natkit natcheck 0.1.0" must be answered.
import { afterEach, describe, expect, it } from 'vitest';
import { Attr, AttrType, StunClient, checkNat } from '@natkit/stun';
import { A, A2, needSystemProgram, startStund, startStunserver, expectOpenInternetReport } from '../helpers/interop-servers.js';
import { killAll, run, runBin } from '../helpers/spawn.js';

afterEach(killAll);

const local = (port: number) => ({ family: 'IPv4', address: A, port });

/** One answer as the Vovida client's -v output shows it (stderr). */
interface VovidaAnswer {
  id: number;
  type: number;
  mapped?: string;
  source?: string;
  changed?: string;
  serverName?: string;
}

function parseVovidaAnswers(stderr: string): Map<number, VovidaAnswer> {
  const out = new Map<number, VovidaAnswer>();
  const re = /Received stun message: \d+ bytes\n([\s\S]*?)Received message of type (\d+)\s+id=(\d+)/g;
  for (const m of stderr.matchAll(re)) {
    const body = m[1]!;
    const field = (name: string) => new RegExp(`^${name} = (.*)$`, 'm').exec(body)?.[1];
    const id = Number(m[3]);
    out.set(id, { id, type: Number(m[2]), mapped: field('MappedAddress'), source: field('SourceAddress'), changed: field('ChangedAddress'), serverName: field('ServerName') });
  }
  return out;
}

/** stund's own account (-v) of requests it dropped, to say why a test failed. */
function stundDropped(stderr: string): string {
  const why = [...new Set(stderr.match(/^(Bad length string \d+|problem parsing \w+|Failed to parse message)$/gm) ?? [])];
  return why.join(' / ') || '(nothing dropped)';
}

describe("Debian's stun client (Vovida 0.97) against natkit's stunserver", () => {
  it('classifies loopback as Open, exit status 0x01 (open, port preserved, hairpins)', async (ctx) => {
    const stun = needSystemProgram(ctx, 'stun');
    const server = await startStunserver();
    try {
      // `stun HOST:PORT` runs the RFC 3489 section 10.1 tests against the server.
      const r = await run(stun, [`${A}:${server.port}`], { timeoutMs: 15_000 });
      // client.cxx: StunTypeOpen prints "Open" and sets 0x00; a preserved port ORs in
      // 0x01; no hairpinning would OR in 0x10. So Open on loopback is exactly 1.
      expect(r.stdout).toMatch(/^STUN client version 0\.97\n/);
      expect(r.stdout).toMatch(/^Primary: Open\t$/m);
      expect(r.stdout).toMatch(/^Return value is 0x000001$/m);
      expect(r.code).toBe(1);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });

  it('-v shows MAPPED-ADDRESS = its own address, CHANGED-ADDRESS = 127.0.0.2:P2, and CHANGE-REQUEST answered from the right address', async (ctx) => {
    const stun = needSystemProgram(ctx, 'stun');
    const server = await startStunserver();
    const P = server.port;
    const P2 = server.altPort;
    try {
      const r = await run(stun, [`${A}:${P}`, '-v'], { timeoutMs: 15_000 });
      expect(r.stdout).toMatch(/^Primary: Open\t$/m);
      expect(r.code).toBe(1);
      // It binds two sockets (port N and N+1) on INADDR_ANY and sends from 127.0.0.1.
      const ports = [...r.stderr.matchAll(/^Opened port (\d+) with fd \d+$/gm)].map((m) => Number(m[1]));
      expect(ports).toHaveLength(2);
      const [n1, n2] = ports as [number, number];
      const answers = parseVovidaAnswers(r.stderr);
      // id 1: test I (no change): mapped is the client's own address, the answer comes
      // from A:P and CHANGED-ADDRESS names the other address and port (RFC 3489 11.2.3).
      expect(answers.get(1)).toEqual({ id: 1, type: 0x0101, mapped: `${A}:${n1}`, source: `${A}:${P}`, changed: `${A2}:${P2}`, serverName: expect.stringMatching(/^natkit /) });
      // id 2: test II, change IP (flag 0x04), sent from the second socket: answered from A2:P.
      expect(answers.get(2)).toMatchObject({ type: 0x0101, mapped: `${A}:${n2}`, source: `${A2}:${P}`, changed: `${A2}:${P2}` });
      // id 3: test III, change port (flag 0x02): answered from A:P2.
      expect(answers.get(3)).toMatchObject({ type: 0x0101, mapped: `${A}:${n2}`, source: `${A}:${P2}`, changed: `${A2}:${P2}` });
      // id 10: test I sent to the CHANGED-ADDRESS's IP (A2:P): same mapping, answered from
      // A2:P, whose "other" address is A:P2.
      expect(answers.get(10)).toMatchObject({ type: 0x0101, mapped: `${A}:${n1}`, source: `${A2}:${P}`, changed: `${A}:${P2}` });
      // Its verdicts.
      expect(r.stderr).toMatch(/^test I = 1$/m);
      expect(r.stderr).toMatch(/^test II = 1$/m);
      expect(r.stderr).toMatch(/^test III = 1$/m);
      expect(r.stderr).toMatch(/^is nat {2}= 0$/m);
      expect(r.stderr).toMatch(/^mapped IP same = 1$/m);
      expect(r.stderr).toMatch(/^preserver port = 1$/m);
    } finally {
      expect(await server.stop()).toBe(0);
    }
    // Every request it sent was answered (none dropped as malformed).
    expect(server.proc.stderr()).toMatch(/stopped received=(\d+) responses=\1 /);
  });
});

describe("natkit against Debian's stund (Vovida 0.97, RFC 3489)", () => {
  it('StunClient.binding takes OTHER-ADDRESS and RESPONSE-ORIGIN from CHANGED-ADDRESS and SOURCE-ADDRESS (no SOFTWARE sent)', async (ctx) => {
    const server = await startStund(needSystemProgram(ctx, 'stund'));
    const client = new StunClient({ software: false, bindAddress: A, retransmit: { rto: 100, rc: 4, rm: 16 } });
    try {
      const me = await client.localAddress();
      const r = await client.binding({ address: A, port: server.port });
      expect(r.mapped).toEqual(local(me.port));
      expect(r.otherAddress).toEqual({ family: 'IPv4', address: A2, port: server.altPort });
      expect(r.responseOrigin).toEqual({ family: 'IPv4', address: A, port: server.port });
      expect(r.from).toEqual({ family: 'IPv4', address: A, port: server.port });
      // What stund really sent: MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS,
      // XOR-MAPPED-ADDRESS (0x0020, XORed with the magic cookie as RFC 5389 says) and its
      // name in 0x8022; no OTHER-ADDRESS or RESPONSE-ORIGIN, so those two came from the
      // RFC 3489 attributes.
      expect(r.message.attributes.map((a) => a.type)).toEqual([
        AttrType.MAPPED_ADDRESS,
        AttrType.SOURCE_ADDRESS,
        AttrType.CHANGED_ADDRESS,
        AttrType.XOR_MAPPED_ADDRESS,
        AttrType.SOFTWARE,
      ]);
      expect(r.message.get(Attr.MappedAddress)).toEqual(r.mapped);
      expect(r.message.get(Attr.XorMappedAddress)).toEqual(r.mapped);
      expect(r.message.has(AttrType.OTHER_ADDRESS)).toBe(false);
      expect(r.message.has(AttrType.RESPONSE_ORIGIN)).toBe(false);
      // Vovida pads its name with NULs to a multiple of 4 and counts them in the length
      // (16), so the NUL is part of the value on the wire.
      expect(r.software).toBe('Vovida.org 0.97\u0000');
    } finally {
      await client.close();
      await server.stop();
    }
    expect(server.proc.stderr()).toMatch(/Request parsed ok/);
  });

  // Regression test: StunClient's default SOFTWARE "natkit" (6 bytes) is padded, so stund
  // answers; see the top of this file.
  it('StunClient.binding with its default options gets an answer', async (ctx) => {
    const server = await startStund(needSystemProgram(ctx, 'stund'));
    const client = new StunClient({ bindAddress: A, retransmit: { rto: 100, rc: 4, rm: 16 } });
    try {
      const me = await client.localAddress();
      const r = await client.binding({ address: A, port: server.port }).catch((err: Error) => {
        throw new Error(`${err.message}; stund -v said: ${stundDropped(server.proc.stderr())}`);
      });
      expect(r.mapped).toEqual(local(me.port));
      expect(r.otherAddress).toEqual({ family: 'IPv4', address: A2, port: server.altPort });
    } finally {
      await client.close();
      await server.stop();
    }
  });

  it('checkNat (no SOFTWARE) runs the RFC 5780 tests over CHANGED-ADDRESS and classifies Open Internet', async (ctx) => {
    const server = await startStund(needSystemProgram(ctx, 'stund'));
    try {
      const report = await checkNat({ family: 'IPv4', address: A, port: server.port }, { software: false, bindAddress: A, retransmit: { rto: 100, rc: 4, rm: 16 } });
      expect(report.udpBlocked).toBe(false);
      expect(report.mapped).toEqual(report.local);
      expect(report.local.address).toBe(A);
      expect(report.natPresent).toBe(false);
      expect(report.serverSupportsDiscovery).toBe(true);
      expect(report.otherAddress).toEqual({ family: 'IPv4', address: A2, port: server.altPort });
      expect(report.mapping).toBe('endpoint-independent');
      expect(report.filtering).toBe('endpoint-independent');
      expect(report.portPreservation).toBe(true);
      expect(report.classic).toBe('Open Internet');
      // The change-IP-and-port request was answered from A2:P2.
      const f2 = report.tests.find((t) => t.name === 'filtering II');
      expect(f2?.change).toBe('change IP and port');
      expect(f2?.result).toMatch(new RegExp(`^mapped 127\\.0\\.0\\.1:\\d+ from 127\\.0\\.0\\.2:${server.altPort}$`));
    } finally {
      await server.stop();
    }
  });

  // Regression test: natcheck's SOFTWARE "natkit natcheck 0.1.0" (21 bytes) is padded;
  // unpadded, stund dropped every probe and natcheck reported "UDP Blocked".
  it('natcheck classifies Open Internet', async (ctx) => {
    const server = await startStund(needSystemProgram(ctx, 'stund'));
    try {
      const r = await runBin('stun', 'natcheck', ['--timeout', '5000', `${A}:${server.port}`], { timeoutMs: 60_000 });
      expectOpenInternetReport(r.stdout, server.port, server.altPort, `stund -v said: ${stundDropped(server.proc.stderr())}`);
      expect(r.code).toBe(0);
    } finally {
      await server.stop();
    }
  });
});
