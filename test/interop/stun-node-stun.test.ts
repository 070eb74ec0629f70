// Interop with node-stun 0.1.2 (npm, an RFC 3489 client and server by Yutaka Takeda;
// dev dependency):
//  - its client (bin/client.js) classifying natkit's stunserver: RFC 3489 requests with
//    no magic cookie, four Binding requests to A:P, A:P2, A2:P, A2:P2 from one socket,
//    then CHANGE-REQUEST filtering tests from a second one;
//  - natkit's natcheck, StunClient and checkNat against its server (bin/server.js, four
//    sockets from node-stun.ini), which answers with MAPPED-ADDRESS, CHANGED-ADDRESS and
//    SOURCE-ADDRESS only: natkit must fall back to all three RFC 3489 attributes.
//
// A divergence these tests guard (fixed in natkit, tested as a regression): node-stun's
// Message.deserialize skips an attribute it does not know by its length field only,
// without the RFC 5389 padding to a multiple of 4 (RFC 3489 had no padding: every
// attribute was a multiple of 4). A SOFTWARE attribute whose length is not a multiple of 4
// made it lose its place and drop the request ("Malformed data: code=0 rem=6 len=32808"
// in its log). natkit now pads SOFTWARE with spaces to a multiple of 4 (softwareText), so
// the tests below with natkit's default SOFTWARE texts must pass.
import { afterEach, describe, expect, it } from 'vitest';
import { Attr, AttrType, StunClient, checkNat } from '@natkit/stun';
import { A, A2, NODE_STUN_CLIENT, type RunningServer, startNodeStunServer, startStunserver, expectOpenInternetReport } from '../helpers/interop-servers.js';
import { killAll, run, runBin } from '../helpers/spawn.js';

afterEach(killAll);

const addr = (address: string, port: number) => ({ family: 'IPv4', address, port });

/** node-stun's server's account of requests it dropped, to say why a test failed. */
function nodeStunDropped(server: RunningServer): string {
  const why = [...new Set(server.proc.stdout().match(/\[warn\] Error: .*/g) ?? [])];
  return why.join(' / ') || '(nothing dropped)';
}

describe("node-stun's client against natkit's stunserver", () => {
  it('finds its mapped address and classifies Open (NB=I, EF=I)', async () => {
    const server = await startStunserver();
    const P = server.port;
    const P2 = server.altPort;
    try {
      const r = await run(process.execPath, [NODE_STUN_CLIENT, '-s', A, '-p', String(P)], { timeoutMs: 15_000 });
      expect(r.code).toBe(0);
      // It learnt the other address and port from CHANGED-ADDRESS.
      expect(r.stdout).toMatch(new RegExp(`^CHANGED: addr=127\\.0\\.0\\.2:${P2}$`, 'm'));
      // MAPPED0..3: the answers from A:P, A:P2, A2:P, A2:P2: always its own socket.
      const mapped = [0, 1, 2, 3].map((i) => new RegExp(`^MAPPED${i}: addr=(.*)$`, 'm').exec(r.stdout)?.[1]);
      expect(mapped[0]).toMatch(/^127\.0\.0\.1:\d+$/);
      expect(new Set(mapped)).toEqual(new Set([mapped[0]]));
      // Its verdict: not natted, independent binding (NB) and filtering (EF).
      expect(r.stdout).toMatch(new RegExp(`^Complete\\(0\\): Open NB=I EF=I \\(Open to internet\\) mapped=${mapped[0]!.replaceAll('.', '\\.')} rtt=\\d+$`, 'm'));
      expect(r.stdout).toMatch(/^All sockets closed\.$/m);
      expect(r.stdout).not.toMatch(/Error:/);
    } finally {
      expect(await server.stop()).toBe(0);
    }
    // Every request it sent (four binding tests, two filtering tests, any retransmission)
    // was answered.
    expect(server.proc.stderr()).toMatch(/stopped received=(\d+) responses=\1 /);
  });

  // Regression test for the padding problem the other way round: with a SOFTWARE text whose
  // length is not a multiple of 4 (here "natkit", 6 bytes; or any version like 0.1.10) the
  // server used to send RFC 3489 clients an attribute their framing cannot carry, and
  // node-stun's client read past it ("Error: Malformed data"). It is padded now.
  it('still works when the server SOFTWARE is not a multiple of 4 bytes (--software natkit)', async () => {
    const server = await startStunserver(['--software', 'natkit']);
    try {
      const r = await run(process.execPath, [NODE_STUN_CLIENT, '-s', A, '-p', String(server.port)], { timeoutMs: 20_000 });
      expect(r.stdout).not.toMatch(/Error: Malformed data/);
      expect(r.stdout).toMatch(/^Complete\(0\): Open NB=I EF=I \(Open to internet\) mapped=127\.0\.0\.1:\d+ rtt=\d+$/m);
      expect(r.code).toBe(0);
    } finally {
      expect(await server.stop()).toBe(0);
    }
  });
});

describe("natkit against node-stun's server (127.0.0.1 and 127.0.0.2 from node-stun.ini)", () => {
  it('StunClient.binding falls back to MAPPED-ADDRESS, CHANGED-ADDRESS and SOURCE-ADDRESS (no SOFTWARE sent)', async () => {
    const server = await startNodeStunServer();
    const client = new StunClient({ software: false, bindAddress: A, retransmit: { rto: 100, rc: 4, rm: 16 } });
    try {
      const me = await client.localAddress();
      const r = await client.binding({ address: A, port: server.port });
      // All it sends: no XOR-MAPPED-ADDRESS, no RFC 5780 attributes, no SOFTWARE.
      expect(r.message.attributes.map((a) => a.type)).toEqual([AttrType.MAPPED_ADDRESS, AttrType.CHANGED_ADDRESS, AttrType.SOURCE_ADDRESS]);
      expect(r.mapped).toEqual(addr(A, me.port));
      expect(r.message.get(Attr.MappedAddress)).toEqual(r.mapped);
      expect(r.otherAddress).toEqual(addr(A2, server.altPort));
      expect(r.responseOrigin).toEqual(addr(A, server.port));
      expect(r.from).toEqual(addr(A, server.port));
      expect(r.software).toBeUndefined();
    } finally {
      await client.close();
      await server.stop();
    }
  });

  // Regression test: StunClient's default SOFTWARE "natkit" (6 bytes) is padded, so
  // node-stun's server no longer drops the request; see the top of this file.
  it('StunClient.binding with its default options gets an answer', async () => {
    const server = await startNodeStunServer();
    const client = new StunClient({ bindAddress: A, retransmit: { rto: 100, rc: 4, rm: 16 } });
    try {
      const me = await client.localAddress();
      const r = await client.binding({ address: A, port: server.port }).catch((err: Error) => {
        throw new Error(`${err.message}; node-stun's server logged: ${nodeStunDropped(server)}`);
      });
      expect(r.mapped).toEqual(addr(A, me.port));
      expect(r.otherAddress).toEqual(addr(A2, server.altPort));
    } finally {
      await client.close();
      await server.stop();
    }
  });

  it('checkNat (no SOFTWARE) classifies Open Internet', async () => {
    const server = await startNodeStunServer();
    try {
      const report = await checkNat({ family: 'IPv4', address: A, port: server.port }, { software: false, bindAddress: A, retransmit: { rto: 100, rc: 4, rm: 16 } });
      expect(report).toMatchObject({
        udpBlocked: false,
        natPresent: false,
        serverSupportsDiscovery: true,
        otherAddress: addr(A2, server.altPort),
        mapping: 'endpoint-independent',
        filtering: 'endpoint-independent',
        portPreservation: true,
        classic: 'Open Internet',
      });
      expect(report.mapped).toEqual(report.local);
      expect(report.local.address).toBe(A);
      const f2 = report.tests.find((t) => t.name === 'filtering II');
      expect(f2).toMatchObject({ change: 'change IP and port', result: expect.stringMatching(new RegExp(`from 127\\.0\\.0\\.2:${server.altPort}$`)) });
    } finally {
      await server.stop();
    }
  });

  // Regression test: natcheck's SOFTWARE "natkit natcheck 0.1.0" (21 bytes) is padded;
  // unpadded, node-stun's server dropped every probe and natcheck said "UDP Blocked".
  it('natcheck classifies Open Internet', async () => {
    const server = await startNodeStunServer();
    const P = server.port;
    try {
      const r = await runBin('stun', 'natcheck', ['--timeout', '5000', `${A}:${P}`], { timeoutMs: 60_000 });
      expectOpenInternetReport(r.stdout, P, server.altPort, `node-stun's server logged: ${nodeStunDropped(server)}`);
      expect(r.code).toBe(0);
    } finally {
      await server.stop();
    }
  });
});
