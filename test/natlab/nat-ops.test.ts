// What the NAT lab (test/helpers/natlab.ts) can do to a live NAT, each shown with real traffic
// through real nftables NATs:
//  - loss on a NAT's WAN side, both directions (nftables `numgen random` in netdev hooks: this
//    kernel has no sch_netem, and nothing else is needed), counted, so every missing datagram
//    is accounted for;
//  - UDP mappings that expire after a chosen idle time, in the lab's own mapping tables and in
//    conntrack alike, refreshed by traffic either way;
//  - a NAT that forgets its mappings under a live session (conntrack -F and the lab's tables),
//    or changes its public address;
//  - the two-peer layout of issue 8, and how cheaply labs are made side by side.
// The waits here are the kernel's own timers (a mapping's idle lifetime): each has a margin of
// at least 1.5 s on either side of the moment it tests.
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { describe, expect, test } from 'vitest';
import {
  type LabProcess,
  type NatLab,
  type NatLabOptions,
  type NatType,
  createNatLab,
  createPeerLab,
  lossRuleset,
  needNatLab,
  withNatLab,
} from '../helpers/natlab.js';
import { Peer, reflect } from './udp-peer.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function netnsList(): string[] {
  try {
    return readdirSync('/run/netns');
  } catch {
    return [];
  }
}

const reflectorOf = (lab: NatLab, i = 0) => `${lab.server.addresses[i]!}:3478`;

// ---------------------------------------------------------------------------------------

test('loss: each direction of a WAN side drops its share and counts it; 0 removes it', async (ctx) => {
  await needNatLab(ctx);
  // client 0 behind a port-restricted NAT, 10 % from the start; client 1 a public host, 10 % set live
  await withNatLab({ clients: [{ nat: 'port-restricted-cone', loss: 10 }, { nat: 'none' }] }, async (lab) => {
    expect(lab.clients[0]!.nat.loss).toBe(10);
    await lab.setLoss(1, 10);
    expect(lab.clients[1]!.nat.loss).toBe(10);
    const reflector = await Peer.start(lab, lab.server.ns, 3478, true);
    const peers = await Promise.all(lab.clients.map((c) => Peer.start(lab, c.ns, 40000)));
    try {
      const refl = reflectorOf(lab);
      const N = 400;
      // in bursts of 50, so that no socket buffer overflows (that would be loss of our own)
      await Promise.all(
        peers.map(async (p, i) => {
          for (let k = 0; k < N; k += 50) {
            for (let j = k; j < k + 50; j++) p.send(refl, `c${i}-${j}`);
            await p.quiet(150);
          }
        }),
      );
      await Promise.all([reflector.quiet(1000), ...peers.map((p) => p.quiet(1000))]);
      for (const [i, p] of peers.entries()) {
        const atServer = reflector.count(new RegExp(`^c${i}-\\d+$`));
        const back = p.count(new RegExp(`^c${i}-\\d+ `));
        const dropped = await lab.lossCounters(i);
        const why = `client ${i}: ${N} sent, ${atServer} reached the server, ${back} echoes came back; dropped ${JSON.stringify(dropped)}`;
        // The loss rules are the only loss on the path: they account for every missing datagram.
        expect(dropped.outbound, why).toBe(N - atServer);
        expect(dropped.inbound, why).toBe(atServer - back);
        // 10 % each way. Outbound ~ Binomial(400, 0.1): mean 40, sd 6; inbound ~ Binomial(~360,
        // 0.1): mean 36, sd 5.7. The bounds are more than 4 sd away (a false alarm in ~1e-5 runs).
        expect(N - atServer, why).toBeGreaterThanOrEqual(15);
        expect(N - atServer, why).toBeLessThanOrEqual(70);
        expect(atServer - back, why).toBeGreaterThanOrEqual(12);
        expect(atServer - back, why).toBeLessThanOrEqual(66);
      }
      // 0 removes the rules: everything arrives, nothing is counted
      await Promise.all([lab.setLoss(0, 0), lab.setLoss(1, 0)]);
      expect(lab.clients.map((c) => c.nat.loss)).toEqual([0, 0]);
      for (const [i, p] of peers.entries()) for (let j = 0; j < 50; j++) p.send(refl, `z${i}-${j}`);
      await Promise.all([reflector.quiet(500), ...peers.map((p) => p.quiet(500))]);
      for (const [i, p] of peers.entries()) {
        expect(reflector.count(new RegExp(`^z${i}-\\d+$`))).toBe(50);
        expect(p.count(new RegExp(`^z${i}-\\d+ `))).toBe(50);
        expect(await lab.lossCounters(i)).toEqual({ inbound: 0, outbound: 0 });
      }
    } finally {
      await Promise.all([reflector.stop(), ...peers.map((p) => p.stop())]);
    }
  });
});

test('the loss rules: IPv4 only (ARP is spared), both hooks of one device, hundredths of a percent', () => {
  const r = lossRuleset('wan', 12.5);
  expect(r).toContain('type filter hook ingress device "wan"');
  expect(r).toContain('type filter hook egress device "wan"');
  expect(r.match(/meta protocol ip numgen random mod 10000 < 1250 counter drop/g)).toHaveLength(2);
  // inbound, only frames for this host (not those the bridge floods to every port)
  expect(r).toMatch(/ingress[^}]*meta pkttype host meta protocol ip/);
});

// ---------------------------------------------------------------------------------------

const EIM = 'endpoint-independent' as const;
const EIF = EIM;

test('mappings expire after mappingTimeoutSec idle, in the lab tables and in conntrack alike; traffic either way refreshes them', async (ctx) => {
  await needNatLab(ctx, 'conntrack');
  const T = 4;
  // port-restricted (the port is preserved, so a new mapping looks like the old one: the table
  // and the filter tell them apart); symmetric and an EIM NAT that picks random ports (a
  // mapping made anew shows by its port: conntrack and the lab's table both forgot it); a
  // host firewall (conntrack only).
  const clients = [{ nat: 'port-restricted-cone' as const }, { nat: 'symmetric' as const }, { nat: { mapping: EIM, filtering: EIF, portAllocation: 'random' as const } }, { nat: 'firewall' as const }];
  await withNatLab({ mappingTimeoutSec: T, clients }, async (lab) => {
    for (const c of lab.clients) {
      expect(c.nat.mappingTimeoutSec).toBe(T);
      // conntrack's own UDP timeouts in the NAT's namespace (unreplied, and "stream")
      const r = await lab.run(c.nat.ns!, '/bin/cat', ['/proc/sys/net/netfilter/nf_conntrack_udp_timeout', '/proc/sys/net/netfilter/nf_conntrack_udp_timeout_stream']);
      expect(r.stdout.split('\n').filter(Boolean)).toEqual([String(T), String(T)]);
    }
    const reflector = await Peer.start(lab, lab.server.ns, 3478, true);
    const peers = await Promise.all(lab.clients.map((c) => Peer.start(lab, c.ns, 40000)));
    try {
      const refl = reflectorOf(lab);
      const state = (i: number) => lab.natState(i);
      const udp = (s: Awaited<ReturnType<typeof state>>) => s.conntrack.filter((e) => e.proto === 'udp');
      const routed = (i: number) => lab.clients[i]!.nat.mapping !== 'none';
      const before = await Promise.all(peers.map((p, i) => reflect(p, refl, `m1-${i}`)));
      for (const [i, c] of lab.clients.entries()) {
        const s = await state(i);
        expect(udp(s).length, s.conntrack.map((e) => e.entry).join('\n')).toBe(1);
        expect(udp(s)[0]!.timeoutSec).toBeLessThanOrEqual(T);
        if (routed(i)) {
          expect(s.mappings).toEqual([{ external: before[i], internal: `${c.address}:40000`, expiresMs: expect.any(Number) }]);
          expect(s.mappings[0]!.expiresMs).toBeLessThanOrEqual(T * 1000);
        }
      }
      await sleep((T / 2) * 1000); // half the lifetime, idle
      for (const i of lab.clients.keys()) {
        const s = await state(i);
        expect(udp(s)[0]!.timeoutSec).toBeLessThanOrEqual(T / 2);
        if (routed(i)) expect(s.mappings[0]!.expiresMs).toBeLessThanOrEqual((T / 2) * 1000);
      }
      // Inbound traffic refreshes: the server sends to each mapping (from the very address it
      // addressed, so every filter lets it in), and both timers start again.
      for (const [i, p] of peers.entries()) {
        reflector.send(before[i]!, `p1-${i}`);
        expect(await p.from(`p1-${i}`)).toBe(refl);
        const s = await state(i);
        expect(udp(s)[0]!.timeoutSec).toBeGreaterThanOrEqual(T - 1);
        if (routed(i)) expect(s.mappings[0]!.expiresMs).toBeGreaterThanOrEqual((T - 1) * 1000);
      }
      await sleep((T + 1.5) * 1000); // idle past the lifetime
      for (const i of lab.clients.keys()) {
        const s = await state(i);
        expect(udp(s), `client ${i}`).toEqual([]);
        expect(s.mappings, `client ${i}`).toEqual([]);
      }
      // The old mapping takes nothing in any more, and the next datagram out makes a new one.
      await Promise.all(peers.map((_, i) => reflector.sendNow(before[i]!, `p2-${i}`)));
      const after = await Promise.all(peers.map((p, i) => reflect(p, refl, `m2-${i}`)));
      for (const [i, p] of peers.entries()) expect(p.received(), `client ${i}`).not.toContain(`p2-${i}`);
      expect(after[0]).toBe(before[0]); // the preserved port was free again
      expect(after[1]).not.toBe(before[1]); // a new random port (equal once in ~64k runs)
      expect(after[2]).not.toBe(before[2]);
      expect(after[3]).toBe(before[3]); // no NAT
    } finally {
      await Promise.all([reflector.stop(), ...peers.map((p) => p.stop())]);
    }
  });
});

// ---------------------------------------------------------------------------------------

/** A TCP connection from `ns` to the server namespace, held open until stopped. */
async function tcpConnection(lab: NatLab, ns: string): Promise<LabProcess[]> {
  const server = lab.spawn(lab.server.ns, process.execPath, [
    '-e',
    `require('node:net').createServer((c) => c.pipe(c)).listen(5000, () => console.log('listening'))`,
  ]);
  await server.waitFor(/^listening$/m);
  const client = lab.spawn(ns, process.execPath, [
    '-e',
    `const c = require('node:net').connect(5000, '${lab.server.addresses[0]}', () => c.write('hello\\n')); c.on('data', (d) => process.stdout.write('echo ' + d));`,
  ]);
  await client.waitFor(/^echo hello$/m);
  return [client, server];
}

test('flushMappings under a live session: the hole closes at once, the next datagram out opens a new one; udpOnly keeps TCP', async (ctx) => {
  await needNatLab(ctx, 'conntrack');
  await withNatLab({ clients: [{ nat: 'port-restricted-cone' }, { nat: 'port-restricted-cone' }, { nat: 'symmetric' }, { nat: 'firewall' }] }, async (lab) => {
    const reflector = await Peer.start(lab, lab.server.ns, 3478, true);
    const [a, b, s, f] = await Promise.all(lab.clients.map((c) => Peer.start(lab, c.ns, 40000)));
    const tcp = await tcpConnection(lab, lab.clients[0]!.ns);
    try {
      const refl = reflectorOf(lab);
      const [ma, mb] = [await reflect(a!, refl, 'who-a'), await reflect(b!, refl, 'who-b')];
      // a live session between a and b (the hole punched as in natlab.test.ts)
      a!.send(mb!, 'a1');
      await reflect(a!, refl, 'sync-a');
      b!.send(ma!, 'b1');
      expect(await a!.from('b1')).toBe(mb);
      a!.send(mb!, 'a2');
      expect(await b!.from('a2')).toBe(ma);
      const tcpEntries = async () => (await lab.natState(0)).conntrack.filter((e) => e.proto === 'tcp').length;
      expect(await tcpEntries()).toBe(1);

      // a's NAT forgets its UDP mappings (only those)
      await lab.flushMappings(0, { udpOnly: true });
      const st = await lab.natState(0);
      expect(st.mappings).toEqual([]);
      expect(st.conntrack.map((e) => e.proto)).toEqual(['tcp']);
      // b's next datagram finds no mapping at a's NAT: dropped. (b's round trip through the
      // server, after it, takes longer than b2's one way.)
      await b!.sendNow(ma!, 'b2');
      await reflect(b!, refl, 'sync-b');
      // a's next datagram out makes a new mapping (the same port: it is preserved, and free)
      // and opens its filter to b again; b's NAT never forgot a
      a!.send(mb!, 'a3');
      expect(await b!.from('a3')).toBe(ma);
      b!.send(ma!, 'b4');
      expect(await a!.from('b4')).toBe(mb);
      expect(a!.received().filter((t) => /^b\d$/.test(t))).toEqual(['b1', 'b4']);

      // everything, TCP too
      await lab.flushMappings(0);
      expect(await tcpEntries()).toBe(0);

      // A symmetric NAT's next mapping has a new random port; a firewall lets nothing in any more.
      const s1 = await reflect(s!, refl, 's1');
      const f1 = await reflect(f!, refl, 'f1');
      await Promise.all([lab.flushMappings(2), lab.flushMappings(3)]);
      await reflector.sendNow(f1, 'late-f');
      const s2 = await reflect(s!, refl, 's2');
      await reflect(f!, refl, 'f2');
      expect(s2).not.toBe(s1);
      expect(s2.split(':')[0]).toBe(s1.split(':')[0]);
      expect(f!.received()).not.toContain('late-f');
      await expect(lab.flushMappings(99)).rejects.toThrow(/no such client 99/);
    } finally {
      await Promise.all([reflector.stop(), a!.stop(), b!.stop(), s!.stop(), f!.stop(), ...tcp.map((p) => p.stop())]);
    }
  });
});

test('changePublicAddress: a new address, every mapping lost, the old address silent; hairpinning follows it', async (ctx) => {
  await needNatLab(ctx, 'conntrack');
  await withNatLab({ clients: [{ nat: 'port-restricted-cone', hairpin: true }, { behind: 0 }, { nat: 'none' }] }, async (lab) => {
    const reflector = await Peer.start(lab, lab.server.ns, 3478, true);
    const [a, b] = await Promise.all([Peer.start(lab, lab.clients[0]!.ns, 40000), Peer.start(lab, lab.clients[1]!.ns, 41000)]);
    try {
      const refl = reflectorOf(lab);
      const old = lab.nat.publicAddress;
      const ma = await reflect(a, refl, 'who-a');
      expect(ma).toBe(`${old}:40000`);

      const next = await lab.changePublicAddress(0);
      expect(next).toBe('203.0.113.11');
      expect(next).not.toBe(old);
      expect([lab.clients[0]!.nat.publicAddress, lab.clients[1]!.nat.publicAddress]).toEqual([next, next]);
      expect((await lab.natState(1)).mappings).toEqual([]);
      // what the server sends to the old address goes nowhere; a's next datagram comes from the new one
      await reflector.sendNow(ma, 'to-old');
      expect(await reflect(a, refl, 'who-a2')).toBe(`${next}:40000`);
      expect(a.received()).not.toContain('to-old');

      // hairpinning through the new public address (see natlab.test.ts for the steps)
      const [na, nb] = [await reflect(a, refl, 'n-a'), await reflect(b, refl, 'n-b')];
      expect(nb).toBe(`${next}:41000`);
      a.send(nb, 'a1');
      await reflect(a, refl, 'sync-a');
      b.send(na, 'b1');
      expect(await a.from('b1')).toBe(nb);
      a.send(nb, 'a2');
      expect(await b.from('a2')).toBe(na);

      // a chosen address; and what cannot be
      expect(await lab.changePublicAddress(1, '203.0.113.77')).toBe('203.0.113.77');
      expect(lab.clients[0]!.nat.publicAddress).toBe('203.0.113.77');
      expect(await reflect(a, refl, 'who-a3')).toBe('203.0.113.77:40000');
      await expect(lab.changePublicAddress(0, lab.server.addresses[0])).rejects.toThrow(/203\.0\.113\.1 is in use/);
      await expect(lab.changePublicAddress(0, '198.51.100.7')).rejects.toThrow(/not an address of the public segment/);
      await expect(lab.changePublicAddress(2)).rejects.toThrow(/has no NAT: its address is its own/);
    } finally {
      await Promise.all([reflector.stop(), a.stop(), b.stop()]);
    }
  });
});

// ---------------------------------------------------------------------------------------
// The two-peer layout (issue 8), and labs side by side

test('createPeerLab: two peers behind NATs of their own reach all three server addresses', async (ctx) => {
  await needNatLab(ctx);
  const lab = await createPeerLab('symmetric', 'none', { mappingTimeoutSec: 60, loss: 0 });
  try {
    expect(lab.peers).toEqual([lab.clients[0], lab.clients[1]]);
    expect(lab.peers[0].nat.type).toBe('symmetric');
    expect(lab.peers[0].nat.mappingTimeoutSec).toBe(60);
    expect(lab.peers[0].nat.hairpin).toBe(false);
    expect(lab.peers[1].nat.type).toBe('none');
    expect(lab.peers[1].address).toBe(lab.peers[1].nat.publicAddress);
    expect(lab.namespaces.length).toBe(5); // inet, server, nat0, client0, client1
    expect(lab.server.relayAddress).toBe('203.0.113.3');
    // one reflector per address: a wildcard socket would answer from the primary address,
    // which a symmetric NAT's mapping towards another address does not let in
    const addresses = [...lab.server.addresses, lab.server.relayAddress];
    const reflectors = await Promise.all(addresses.map((a) => Peer.start(lab, lab.server.ns, 3478, true, a)));
    const peers = await Promise.all(lab.peers.map((c) => Peer.start(lab, c.ns, 40000)));
    try {
      for (const [i, p] of peers.entries()) {
        for (const addr of addresses) {
          const seen = await reflect(p, `${addr}:3478`, `hi-${i}-${addr}`);
          expect(seen.split(':')[0]).toBe(lab.peers[i]!.nat.publicAddress);
        }
      }
    } finally {
      await Promise.all([...reflectors, ...peers].map((p) => p.stop()));
    }
  } finally {
    await lab.destroy();
  }
});

const CELL_TYPES: NatType[] = ['none', 'full-cone', 'restricted-cone', 'port-restricted-cone', 'symmetric'];

test('25 two-peer labs at once (one per cell of issue 8): made side by side, each its own, all removed', async (ctx) => {
  const { ip } = await needNatLab(ctx);
  const cells = CELL_TYPES.flatMap((a) => CELL_TYPES.map((b) => [a, b] as const));
  const t0 = performance.now();
  const made = await Promise.allSettled(cells.map(([a, b]) => createPeerLab(a, b)));
  const t1 = performance.now();
  const labs = made.filter((m): m is PromiseFulfilledResult<Awaited<ReturnType<typeof createPeerLab>>> => m.status === 'fulfilled').map((m) => m.value);
  try {
    const failed = made.find((m): m is PromiseRejectedResult => m.status === 'rejected');
    if (failed) throw failed.reason;
    const all = labs.flatMap((l) => l.namespaces);
    expect(new Set(all).size).toBe(all.length);
    expect(netnsList()).toEqual(expect.arrayContaining(all));
    for (const [k, lab] of labs.entries()) expect(lab.peers.map((p) => p.nat.type)).toEqual(cells[k]);
    // each lab's addresses are its own: the same 203.0.113.1 in every server namespace
    const addrs = labs.slice(0, 3).map((l) => execFileSync(ip!, ['-n', l.server.ns, '-br', 'addr', 'show', 'eth0'], { encoding: 'utf8' }));
    for (const a of addrs) expect(a).toContain('203.0.113.1/24');
  } finally {
    const t2 = performance.now();
    await Promise.all(labs.map((l) => l.destroy()));
    const t3 = performance.now();
    console.log(`25 two-peer labs: made in ${Math.round(t1 - t0)} ms at once, removed in ${Math.round(t3 - t2)} ms`);
  }
  const left = netnsList();
  for (const l of labs) for (const n of [l.inet.ns, l.server.ns]) expect(left).not.toContain(n);
});

describe('lab descriptions that cannot be made fail before anything is', () => {
  test.each([
    [{ mappingTimeoutSec: 0 }, /mappingTimeoutSec must be a whole number of seconds from 1 to 86400, not 0/],
    [{ clients: [{ nat: 'full-cone' as const, mappingTimeoutSec: 1.5 }] }, /clients\[0\]\.mappingTimeoutSec must be a whole number/],
    [{ clients: [{ nat: 'full-cone' as const, loss: 101 }] }, /clients\[0\]\.loss must be a percentage from 0 to 100/],
    [{ clients: [{ nat: 'full-cone' as const, loss: 0.001 }] }, /at most two decimals/],
    [{ clients: [{ nat: 'full-cone' as const }, { behind: 0, loss: 5 }] }, /behind shares the NAT of client 0/],
  ])('%j', async (opts, message) => {
    // (checked before root or any program is needed)
    const ours = () => netnsList().filter((n) => n.startsWith(`nk-${process.pid}-`));
    const before = ours();
    await expect(createNatLab(opts as NatLabOptions)).rejects.toThrow(message);
    expect(ours()).toEqual(before);
  });
});
