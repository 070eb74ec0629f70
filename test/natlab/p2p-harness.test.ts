// What the two-peer lab test (p2p.test.ts) stands on, checked now, without p2pdemo: the
// servers the harness starts in a peer lab answer peers behind their NATs (natcheck through
// stunserver, a TURN allocation through relayserver that relays a peer's datagram; and
// signalserver once it is on main: the test starts it whenever its binary is there).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expect, test } from 'vitest';
import { createPeerLab, needNatLab } from '../helpers/natlab.js';
import { BINARIES, ROOT, TURN_PASSWORD, TURN_USER, startLabServers } from './p2p-harness.js';
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

test('the harness starts the servers in a peer lab, and peers behind NATs use them', async (ctx) => {
  await needNatLab(ctx);
  const lab = await createPeerLab('symmetric', 'port-restricted-cone');
  try {
    const signal = existsSync(join(ROOT, BINARIES.signalserver));
    const servers = await startLabServers(lab, { signal });
    const [a, b] = lab.peers;
    try {
      expect(servers.stunUrl).toBe('stun:203.0.113.1:3478');
      expect(servers.turnUrl).toBe('turn:203.0.113.3:3478');
      expect(servers.signal_).toBe('203.0.113.1:14141');
      // signalserver: whenever its binary is built (it comes from the signal branch)
      expect(servers.signal !== undefined).toBe(signal);
      if (servers.signal) await lab.waitForListener(lab.server.ns, { proto: 'tcp', address: '203.0.113.1', port: 14141 });

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
