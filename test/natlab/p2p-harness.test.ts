// What the two-peer lab test (p2p.test.ts) stands on, checked now, without p2pdemo: the
// servers the harness starts in a peer lab answer peers behind their NATs (natcheck through
// stunserver, a TURN allocation through relayserver that relays a peer's datagram, a
// signalling connection through signalserver).
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { createPeerLab, needNatLab } from '../helpers/natlab.js';
import { ROOT, TURN_PASSWORD, TURN_USER, startLabServers } from './p2p-harness.js';
import { Peer } from './udp-peer.js';

const NATCHECK = join(ROOT, 'packages/stun/bin/natcheck.js');

// A TURN client behind a NAT: allocates, permits one peer address, prints what is relayed to it.
const TURN_CLIENT = `
import { TurnClient } from '@natkit/turn';
const [server, peer] = process.argv.slice(1);
const c = await TurnClient.allocate({ server: { address: server, port: 3478 }, username: '${TURN_USER}', password: '${TURN_PASSWORD}' });
c.on('data', (d, from) => console.log('data ' + from.address + ':' + from.port + ' ' + d));
await c.createPermission({ family: 'IPv4', address: peer, port: 0 });
console.log('relayed ' + c.relayed[0].address + ':' + c.relayed[0].port + ' mapped ' + c.mapped.address);
process.stdin.resume();
process.stdin.on('end', () => c.close().then(() => process.exit(0)));
`;

// A signalling party (signalserver's JSON rooms): joins, says who it is, prints every line it gets.
const SIGNAL_CLIENT = `
const [host, port, room, name] = process.argv.slice(1);
const s = require('node:net').connect(Number(port), host, () => {
  s.write(JSON.stringify({ type: 'join', room }) + '\\n');
  s.write(JSON.stringify({ type: 'app', data: { from: name } }) + '\\n');
});
s.setEncoding('utf8');
s.on('data', (d) => process.stdout.write(d));
process.stdin.resume();
process.stdin.on('end', () => s.end(() => process.exit(0)));
`;

test('the harness starts the servers in a peer lab, and peers behind NATs use them', async (ctx) => {
  await needNatLab(ctx);
  const lab = await createPeerLab('symmetric', 'port-restricted-cone');
  try {
    const servers = await startLabServers(lab);
    const [a, b] = lab.peers;
    try {
      expect(servers.stunUrl).toBe('stun:203.0.113.1:3478');
      expect(servers.turnUrl).toBe('turn:203.0.113.3:3478');
      expect(servers.signal_).toBe('203.0.113.1:14141');
      // signalserver: both peers join one room from behind their NATs and hear each other
      const parties = lab.peers.map((p, i) =>
        lab.spawn(p.ns, process.execPath, ['-e', SIGNAL_CLIENT, '203.0.113.1', '14141', `room-${lab.id}`, i === 0 ? 'A' : 'B'], { stdio: ['pipe', 'pipe', 'pipe'] }),
      );
      try {
        await parties[0]!.waitFor(/"type":"app","data":\{"from":"B"\}/, { timeoutMs: 10_000 });
        await parties[1]!.waitFor(/"type":"app","data":\{"from":"A"\}/, { timeoutMs: 10_000 });
      } finally {
        for (const p of parties) p.child.stdin!.end();
        await Promise.all(parties.map((p) => p.exited));
      }

      // natcheck from behind A's symmetric NAT through the lab's stunserver (RFC 5780 full mode)
      const nc = await lab.run(a.ns, process.execPath, [NATCHECK, '--json', '--timeout', '1000', '--no-hairpin', '203.0.113.1:3478'], { timeoutMs: 30_000 });
      expect(nc.code, nc.stderr).toBe(0);
      expect(JSON.parse(nc.stdout)).toMatchObject({ classic: 'Symmetric', mapped: { address: a.nat.publicAddress } });

      // a TURN allocation from behind B's port-restricted NAT; A's datagram to the relayed
      // address reaches B (permission for A's NAT address; the relay refuses nothing in the lab's
      // public segment, only its own addresses)
      const turn = lab.spawn(b.ns, process.execPath, ['--input-type=module', '-e', TURN_CLIENT, lab.server.relayAddress, a.nat.publicAddress], {
        cwd: ROOT,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      try {
        const m = await turn.waitFor(/^relayed (\S+) mapped (\S+)$/m, { timeoutMs: 15_000 });
        expect(m[1]!.split(':')[0]).toBe(lab.server.relayAddress);
        expect(m[2]).toBe(b.nat.publicAddress);
        const sender = await Peer.start(lab, a.ns, 40000);
        try {
          sender.send(m[1]!, 'through-the-relay');
          const d = await turn.waitFor(/^data (\S+) through-the-relay$/m, { timeoutMs: 10_000 });
          expect(d[1]!.split(':')[0]).toBe(a.nat.publicAddress);
        } finally {
          await sender.stop();
        }
      } finally {
        turn.child.stdin!.end();
        await turn.exited;
      }
    } finally {
      await servers.stop();
    }
    // relayserver stops at once (--drain-timeout 0), the others on SIGTERM
    expect((await servers.relay.exited).signal ?? (await servers.relay.exited).code).not.toBe('SIGKILL');
  } finally {
    await lab.destroy();
  }
});
