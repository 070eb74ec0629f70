// The virtual network itself (test/helpers/vnet): its clock, sockets with the kernel's bind
// rules, routing, links with delay and loss, the host firewall, and NAT routers of each RFC
// 4787 behaviour, checked packet by packet: which port each mapping gets and which inbound
// packets each filter admits. No ICE here, no real socket, no real timer: every test runs on
// the network's VirtualClock.
import { type DatagramInfo, type DatagramSocket, ManualClock } from '@natkit/stun';
import { describe, expect, test } from 'vitest';
import {
  type Host,
  type NatBehaviour,
  type NatType,
  Prng,
  VirtualClock,
  VirtualNetwork,
  type VirtualSocket,
  VnetError,
  createVnetLab,
} from '../helpers/vnet/index.js';

// ---------------------------------------------------------------------------------------
// helpers

interface Received {
  text: string;
  from: string;
  at: number;
  rinfo: DatagramInfo;
}

/** A bound socket that records what it receives. */
async function listen(vnet: VirtualNetwork, host: Host, port = 0, address?: string): Promise<{ s: DatagramSocket; got: Received[]; port: number; send(to: string, text: string): void }> {
  const s = await host.network.createUdpSocket({ family: 'IPv4', port, address });
  const got: Received[] = [];
  s.on('message', (m, r) => got.push({ text: m.toString(), from: `${r.address}:${r.port}`, at: vnet.clock.now(), rinfo: r }));
  return {
    s,
    got,
    port: s.address().port,
    send(to, text) {
      const i = to.lastIndexOf(':');
      s.send(Buffer.from(text), Number(to.slice(i + 1)), to.slice(0, i));
    },
  };
}

/** A socket that answers every datagram with "<text> <the sender's address:port>", as natlab's REFLECT peer. */
async function reflector(host: Host, address: string, port: number): Promise<DatagramSocket> {
  const s = await host.network.createUdpSocket({ family: 'IPv4', address, port });
  s.on('message', (m, r) => s.send(Buffer.from(`${m.toString()} ${r.address}:${r.port}`), r.port, r.address));
  return s;
}

const texts = (got: Received[]) => got.map((g) => g.text);

/** One client behind a NAT of `nat`, and public reflectors at R1:3478, R1:3479, R2:3478. */
async function natSetup(nat: Exclude<NatType, 'none' | 'firewall'> | NatBehaviour, extra: { hairpin?: boolean; mappingTimeoutSec?: number; seed?: number } = {}) {
  const lab = createVnetLab({ nat, hairpin: extra.hairpin, mappingTimeoutSec: extra.mappingTimeoutSec, seed: extra.seed, trace: true });
  const { vnet } = lab;
  const [R1, R2] = lab.server.addresses;
  for (const [a, p] of [[R1, 3478], [R1, 3479], [R2, 3478]] as const) await reflector(lab.server.host, a, p);
  const client = await listen(vnet, lab.client.host, 40000);
  /** Sends `tag` to a reflector and returns the mapped address it saw. */
  const mapped = async (to: string, tag: string, sender = client) => {
    sender.send(to, tag);
    await vnet.runUntil(() => sender.got.some((g) => g.text.startsWith(`${tag} `)), { label: `the answer to ${tag}` });
    return sender.got.find((g) => g.text.startsWith(`${tag} `))!.text.split(' ')[1]!;
  };
  return { lab, vnet, R1, R2, client, mapped, nat: lab.nat.router! };
}

// ---------------------------------------------------------------------------------------

describe('VirtualClock', () => {
  test('is a ManualClock; fires timers in time order, ties in the order they were set, one per step', () => {
    const c = new VirtualClock(100);
    expect(c).toBeInstanceOf(ManualClock);
    const fired: string[] = [];
    c.setTimeout(() => fired.push('b@20'), 20);
    c.setTimeout(() => fired.push('a@10'), 10);
    c.setTimeout(() => fired.push('c@20'), 20);
    const gone = c.setTimeout(() => fired.push('never'), 15);
    c.setTimeout(() => fired.push('now'), -5);
    c.clearTimeout(gone);
    expect(c.pending).toBe(4);
    expect(c.nextAt()).toBe(100);
    expect(c.step()).toBe(true);
    expect(fired).toEqual(['now']);
    expect(c.now()).toBe(100);
    expect(c.step(105)).toBe(false); // the next is at 110
    c.advance(15);
    expect(fired).toEqual(['now', 'a@10']);
    expect(c.now()).toBe(115);
    c.advance(100);
    expect(fired).toEqual(['now', 'a@10', 'b@20', 'c@20']);
    expect(c.now()).toBe(215);
    expect(c.pending).toBe(0);
    expect(c.nextAt()).toBeUndefined();
  });

  test('a timer set by a firing timer for the same instant fires after the ones already due', () => {
    const c = new VirtualClock();
    const fired: number[] = [];
    c.setTimeout(() => {
      fired.push(1);
      c.setTimeout(() => fired.push(3), 0);
    }, 5);
    c.setTimeout(() => fired.push(2), 5);
    c.advance(5);
    expect(fired).toEqual([1, 2, 3]);
  });
});

describe('Prng', () => {
  test('the same seed gives the same numbers; derived streams are independent of each other', () => {
    const a = new Prng(42);
    const b = new Prng(42);
    const xs = Array.from({ length: 100 }, () => a.next());
    expect(Array.from({ length: 100 }, () => b.next())).toEqual(xs);
    expect(xs.every((x) => x >= 0 && x < 1)).toBe(true);
    expect(new Set(xs).size).toBe(100);
    const l1 = Prng.derive(7, 'link a');
    const l2 = Prng.derive(7, 'link b');
    expect(l1.next()).not.toBe(l2.next());
    expect(Prng.derive(7, 'link a').next()).toBe(Prng.derive(7, 'link a').next());
    const ints = Array.from({ length: 1000 }, () => a.int(3, 5));
    expect(new Set(ints)).toEqual(new Set([3, 4, 5]));
  });
});

describe('hosts and sockets', () => {
  test('binding: port 0 takes an ephemeral port, EADDRINUSE and EADDRNOTAVAIL as the kernel says, the port is free once closed', async () => {
    const vnet = new VirtualNetwork();
    const h = vnet.host('h', { address: ['203.0.113.10', '203.0.113.11'] });
    const n = h.network;
    const any = await n.createUdpSocket({ family: 'IPv4' });
    expect(any.address()).toMatchObject({ address: '0.0.0.0', family: 'IPv4' });
    expect(any.address().port).toBeGreaterThanOrEqual(32768);
    expect(any.address().port).toBeLessThanOrEqual(60999);
    const a = await n.createUdpSocket({ family: 'IPv4', address: '203.0.113.10', port: 5000 });
    // the same address and port, and the wildcard over it: taken
    await expect(n.createUdpSocket({ family: 'IPv4', address: '203.0.113.10', port: 5000 })).rejects.toMatchObject({ code: 'EADDRINUSE', syscall: 'bind', port: 5000 });
    await expect(n.createUdpSocket({ family: 'IPv4', port: 5000 })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    // another address of the host on the same port: free
    const b = await n.createUdpSocket({ family: 'IPv4', address: '203.0.113.11', port: 5000 });
    // an address the host does not have
    await expect(n.createUdpSocket({ family: 'IPv4', address: '203.0.113.99', port: 5001 })).rejects.toMatchObject({ code: 'EADDRNOTAVAIL' });
    await expect(n.createUdpSocket({ family: 'IPv4', port: 70000 })).rejects.toMatchObject({ code: 'ERR_SOCKET_BAD_PORT' });
    // SO_REUSEPORT: shared when every socket on the port asks for it
    const r1 = await n.createUdpSocket({ family: 'IPv4', port: 6000, reusePort: true });
    const r2 = await n.createUdpSocket({ family: 'IPv4', port: 6000, reusePort: true });
    await expect(n.createUdpSocket({ family: 'IPv4', port: 6000 })).rejects.toMatchObject({ code: 'EADDRINUSE' });
    await new Promise<void>((r) => a.close(() => r()));
    expect(() => a.close()).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_DGRAM_NOT_RUNNING' }));
    expect(() => a.send(Buffer.from('x'), 1, '203.0.113.1')).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_DGRAM_NOT_RUNNING' }));
    expect(() => a.address()).toThrow(expect.objectContaining({ code: 'EBADF' }));
    const again = await n.createUdpSocket({ family: 'IPv4', address: '203.0.113.10', port: 5000 });
    expect(again.address().port).toBe(5000);
    for (const s of [any, b, r1, r2, again]) s.close();
    expect(vnet.openSockets()).toEqual([]);
  });

  test('interfaces() lists loopback and every address; lookup() answers literals, the name table and localhost', async () => {
    const vnet = new VirtualNetwork();
    const lan = vnet.lan('lan', { subnet: ['10.0.9.0/24', 'fd00:9::/64'] });
    vnet.nat('gw', { nat: 'full-cone', publicAddress: '203.0.113.50', lan });
    const h = vnet.host('h', { interfaces: [{ segment: lan, address: ['10.0.9.7', 'fd00:9::7'] }] });
    expect(h.network.interfaces()).toEqual([
      { name: 'lo', address: '127.0.0.1', family: 'IPv4', internal: true, prefix: 8 },
      { name: 'lo', address: '::1', family: 'IPv6', internal: true, prefix: 128 },
      { name: 'eth0', address: '10.0.9.7', family: 'IPv4', internal: false, prefix: 24 },
      { name: 'eth0', address: 'fd00:9::7', family: 'IPv6', internal: false, prefix: 64 },
    ]);
    vnet.dns.set('stun.example.org', ['203.0.113.1', '2001:db8::1']);
    vnet.dns.set('slow.example.org', '203.0.113.2', { delayMs: 500 });
    vnet.dns.fail('broken.example.org', 'ETIMEOUT');
    await expect(h.network.lookup('203.0.113.9')).resolves.toEqual([{ address: '203.0.113.9', family: 'IPv4' }]);
    await expect(h.network.lookup('STUN.example.org')).resolves.toEqual([
      { address: '203.0.113.1', family: 'IPv4' },
      { address: '2001:db8::1', family: 'IPv6' },
    ]);
    await expect(h.network.lookup('stun.example.org', 'IPv6')).resolves.toEqual([{ address: '2001:db8::1', family: 'IPv6' }]);
    await expect(h.network.lookup('localhost', 'IPv4')).resolves.toEqual([{ address: '127.0.0.1', family: 'IPv4' }]);
    await expect(h.network.lookup('nowhere.example.org')).rejects.toMatchObject({ code: 'ENOTFOUND', syscall: 'getaddrinfo' });
    await expect(h.network.lookup('broken.example.org')).rejects.toMatchObject({ code: 'ETIMEOUT' });
    // a slow answer comes when the clock says so
    let answer: unknown;
    void h.network.lookup('slow.example.org').then((a) => (answer = a));
    await vnet.run(499);
    expect(answer).toBeUndefined();
    await vnet.run(1);
    expect(answer).toEqual([{ address: '203.0.113.2', family: 'IPv4' }]);
  });

  test('a datagram between two public hosts: rinfo, a copy of the bytes, the send callback, the links delay', async () => {
    const vnet = new VirtualNetwork({ internetLink: { delayMs: 7 } });
    const a = vnet.host('a', { address: '203.0.113.10' });
    const b = vnet.host('b', { address: '203.0.113.20' });
    const rx = await listen(vnet, b, 9000);
    const tx = await a.network.createUdpSocket({ family: 'IPv4', port: 1234 });
    const buf = Buffer.from('hello');
    let sent: [Error | null, number] | undefined;
    tx.send(buf, 9000, '203.0.113.20', (err, bytes) => (sent = [err, bytes]));
    buf.write('HELLO'); // the network took its own copy
    await vnet.runUntil(() => rx.got.length === 1);
    expect(sent).toEqual([null, 5]);
    expect(rx.got[0]).toMatchObject({ text: 'hello', at: 14, rinfo: { address: '203.0.113.10', family: 'IPv4', port: 1234, size: 5 } });
    // node's other send form: (msg, offset, length, port, address)
    (tx as VirtualSocket).send(Buffer.from('xxpartyy'), 2, 5, 9000, '203.0.113.20');
    await vnet.runUntil(() => rx.got.length === 2);
    expect(rx.got[1]!.text).toBe('party');
    expect(a.link.out.counters).toEqual({ sent: 2, delivered: 2, lost: 0, blocked: 0 });
    expect(b.link.in.counters).toEqual({ sent: 2, delivered: 2, lost: 0, blocked: 0 });
    // bad ports throw at once, as node:dgram does
    expect(() => tx.send(Buffer.from('x'), 0, '203.0.113.20')).toThrow(expect.objectContaining({ code: 'ERR_SOCKET_BAD_PORT' }));
    tx.close();
    rx.s.close();
  });

  test('loopback and own addresses are delivered without a link; the specific socket wins over the wildcard', async () => {
    const vnet = new VirtualNetwork();
    const h = vnet.host('h', { address: ['203.0.113.10', '203.0.113.11'] });
    const wild = await listen(vnet, h, 7000);
    const spec = await listen(vnet, h, 7000, '203.0.113.11').catch((e: Error) => e);
    // the wildcard holds port 7000 on every address: the kernel refuses the specific bind
    expect(spec).toMatchObject({ code: 'EADDRINUSE' });
    const specific = await listen(vnet, h, 7001, '203.0.113.11');
    const wild2 = await listen(vnet, h, 7001, '203.0.113.10');
    const tx = await listen(vnet, h, 0);
    tx.send('127.0.0.1:7000', 'lo');
    tx.send('203.0.113.10:7000', 'own');
    tx.send('203.0.113.11:7001', 'to .11');
    tx.send('203.0.113.10:7001', 'to .10');
    await vnet.runUntil(() => wild.got.length === 2 && specific.got.length === 1 && wild2.got.length === 1);
    expect(vnet.clock.now()).toBe(0);
    expect(wild.got.map((g) => [g.text, g.from])).toEqual([
      ['lo', `127.0.0.1:${tx.port}`],
      ['own', `203.0.113.10:${tx.port}`],
    ]);
    expect(specific.got[0]!.text).toBe('to .11');
    expect(wild2.got[0]!.text).toBe('to .10');
    expect(h.link.out.counters.sent).toBe(0);
    for (const x of [wild, specific, wild2, tx]) x.s.close();
  });

  test('routing: a LAN without a gateway cannot reach the internet (ENETUNREACH); private addresses are unroutable on the internet; nothing bound is counted', async () => {
    const vnet = new VirtualNetwork();
    const lan = vnet.lan('isolated', { subnet: '10.9.0.0/24' });
    const inside = vnet.host('inside', { segment: lan });
    expect(inside.address()).toBe('10.9.0.2');
    const pub = vnet.host('pub', { address: '203.0.113.10' });
    const s = await inside.network.createUdpSocket({ family: 'IPv4' });
    const err = await new Promise<Error | null>((r) => s.send(Buffer.from('x'), 9, '203.0.113.10', (e) => r(e)));
    expect(err).toMatchObject({ code: 'ENETUNREACH' });
    const p = await pub.network.createUdpSocket({ family: 'IPv4' });
    p.send(Buffer.from('x'), 9, '10.9.0.2');
    p.send(Buffer.from('y'), 9, '203.0.113.10'); // itself, nothing bound on 9
    const other = vnet.host('other', { address: '203.0.113.11' });
    p.send(Buffer.from('z'), 9, '203.0.113.11');
    await vnet.run(100);
    expect(vnet.internet.counters.unroutable).toBe(1);
    expect(pub.counters.noListener).toBe(1);
    expect(other.counters.noListener).toBe(1);
    // IPv4 socket to an IPv6 address
    const e6 = await new Promise<Error | null>((r) => p.send(Buffer.from('x'), 9, '2001:db8::1', (e) => r(e)));
    expect(e6).toMatchObject({ code: 'EINVAL' });
    s.close();
    p.close();
  });

  test('IPv6: public hosts talk over v6; the NAT routers are IPv4 only and do not forward v6', async () => {
    const vnet = new VirtualNetwork();
    const a = vnet.host('a', { address: ['203.0.113.10', '2001:db8::10'] });
    const b = vnet.host('b', { address: ['203.0.113.20', '2001:db8::20'] });
    const rx = await b.network.createUdpSocket({ family: 'IPv6', port: 9 });
    const got: DatagramInfo[] = [];
    rx.on('message', (_m, r) => got.push(r));
    const tx = await a.network.createUdpSocket({ family: 'IPv6', port: 5000 });
    expect(tx.address()).toEqual({ address: '::', family: 'IPv6', port: 5000 });
    // the families are separate: an IPv4 socket may take the same port
    const v4 = await a.network.createUdpSocket({ family: 'IPv4', port: 5000 });
    tx.send(Buffer.from('over v6'), 9, '2001:0db8:0:0::20');
    await vnet.runUntil(() => got.length === 1);
    expect(got[0]).toEqual({ address: '2001:db8::10', family: 'IPv6', port: 5000, size: 7 });
    // a LAN with a v6 prefix behind a NAT: its v6 packets reach the router, which drops them
    const lan = vnet.lan('lan', { subnet: ['10.0.1.0/24', 'fd00:1::/64'] });
    const nat = vnet.nat('nat', { nat: 'full-cone', publicAddress: '203.0.113.101', lan });
    lan.gateways.set('IPv6', 'fd00:1::1');
    nat.lan.addresses.push({ address: 'fd00:1::1', family: 'IPv6', prefix: 64 });
    lan.claim('fd00:1::1', nat.lan);
    const inside = vnet.host('inside', { segment: lan, address: ['10.0.1.2', 'fd00:1::2'] });
    const s6 = await inside.network.createUdpSocket({ family: 'IPv6' });
    s6.send(Buffer.from('v6 out'), 9, '2001:db8::20');
    await vnet.run(100);
    expect(got).toHaveLength(1);
    expect(nat.counters.dropped).toBe(1);
    for (const s of [rx, tx, v4, s6]) s.close();
  });

  test("the 'firewall' preset admits only replies to flows the host started, until conntrack's timeouts", async () => {
    const lab = createVnetLab({ nat: 'firewall' });
    const { vnet } = lab;
    const [R1, R2] = lab.server.addresses;
    const r1 = await listen(vnet, lab.server.host, 3478, R1);
    const r2 = await listen(vnet, lab.server.host, 5000, R2);
    const c = await listen(vnet, lab.client.host, 40000);
    const me = `${lab.client.address}:40000`;
    c.send(`${R1}:3478`, 'hi');
    await vnet.runUntil(() => r1.got.length === 1);
    expect(r1.got[0]!.from).toBe(me); // no NAT
    r1.send(me, 'reply');
    r2.send(me, 'unsolicited');
    await vnet.run(100);
    expect(texts(c.got)).toEqual(['reply']);
    // a flow that has seen both directions lives 120 s without traffic (each packet refreshes it)
    await vnet.run(119_000);
    r1.send(me, 'after 119 s');
    await vnet.run(100);
    await vnet.run(120_100);
    r1.send(me, 'after 120 s more');
    // one only the host has spoken on lives 30 s
    c.send(`${R2}:5000`, 'to r2');
    await vnet.run(29_000);
    r2.send(me, 'r2 after 29 s');
    c.send(`${R2}:5001`, 'to r2 port 5001');
    await vnet.run(31_000);
    const late = await listen(vnet, lab.server.host, 5001, R2);
    late.send(me, 'r2:5001 after 31 s');
    await vnet.run(100);
    expect(texts(c.got)).toEqual(['reply', 'after 119 s', 'r2 after 29 s']);
    expect(lab.client.host.firewall!.counters).toEqual({ admitted: 3, dropped: 3 });
    vnet.openSockets().forEach((s) => s.close());
  });
});

describe('the driver: run, runUntil', () => {
  test('runUntil(promise) returns its value and passes its rejection on; time moves only as far as needed', async () => {
    const vnet = new VirtualNetwork();
    const later = (ms: number, v: string) => new Promise<string>((r) => vnet.clock.setTimeout(() => r(v), ms));
    await expect(vnet.runUntil(later(250, 'done'))).resolves.toBe('done');
    expect(vnet.clock.now()).toBe(250);
    const failing = new Promise((_, reject) => vnet.clock.setTimeout(() => reject(new Error('boom')), 10));
    await expect(vnet.runUntil(failing)).rejects.toThrow('boom');
    expect(vnet.clock.now()).toBe(260);
  });

  test('runUntil throws with the state of the network when the time is up, or when nothing is left to happen', async () => {
    const vnet = new VirtualNetwork({ trace: true });
    const h = vnet.host('h', { address: '203.0.113.10' });
    const s = await listen(vnet, h, 5000);
    s.send('203.0.113.77:9', 'into the void');
    vnet.clock.setTimeout(() => {}, 60_000);
    await expect(vnet.runUntil(() => false, { maxMs: 1000, label: 'an answer' })).rejects.toThrow(
      /an answer not reached within 1000 ms of virtual time\nvirtual network \(seed 1\) at t=1000 ms: 1 timer\(s\) pending \(next at 60000 ms\)[^]*host h[^]*sockets: 0\.0\.0\.0:5000[^]*unroutable +internet/,
    );
    expect(vnet.clock.now()).toBe(1000);
    await vnet.run(60_000);
    await expect(vnet.runUntil(() => false, { label: 'a miracle' })).rejects.toThrow(/a miracle not reached after 0 ms: nothing is left to happen/);
    // one run at a time
    const first = vnet.run(10);
    await expect(vnet.run(10)).rejects.toThrow(VnetError);
    await first;
    s.s.close();
  });

  test("an exception in a 'message' listener fails the run that delivered it, with where it happened", async () => {
    const vnet = new VirtualNetwork();
    const a = vnet.host('a', { address: '203.0.113.10' });
    const b = vnet.host('b', { address: '203.0.113.20' });
    const rx = await b.network.createUdpSocket({ family: 'IPv4', port: 9 });
    rx.on('message', () => {
      throw new Error('listener bug');
    });
    const tx = await a.network.createUdpSocket({ family: 'IPv4' });
    tx.send(Buffer.from('x'), 9, '203.0.113.20');
    await expect(vnet.run(100)).rejects.toThrow(/a 'message' listener of b 0\.0\.0\.0:9 threw at t=20 ms: Error: listener bug/);
    rx.close();
    tx.close();
  });
});

describe('links: delay and loss', () => {
  test('with a fixed delay datagrams arrive in order, at the sum of the two links; jitter reorders within its bound', async () => {
    const vnet = new VirtualNetwork({ seed: 3 });
    const a = vnet.host('a', { address: '203.0.113.10', link: { delayMs: 5 } });
    const b = vnet.host('b', { address: '203.0.113.20', link: { in: { delayMs: 40 } } });
    const c = vnet.host('c', { address: '203.0.113.30', link: { delayMs: 1, jitterMs: 50 } });
    const rb = await listen(vnet, b, 9);
    const rc = await listen(vnet, c, 9);
    const tx = await listen(vnet, a, 0);
    for (let i = 0; i < 50; i++) {
      tx.send('203.0.113.20:9', `b${i}`);
      tx.send('203.0.113.30:9', `c${i}`);
      await vnet.run(1);
    }
    await vnet.runUntil(() => rb.got.length === 50 && rc.got.length === 50);
    expect(texts(rb.got)).toEqual(Array.from({ length: 50 }, (_, i) => `b${i}`));
    // a's 5 ms out, b's 40 ms in: sent at t=i, arrives at t=i+45
    expect(rb.got.map((g) => g.at)).toEqual(Array.from({ length: 50 }, (_, i) => i + 45));
    // to c: 5 ms + c's 1 ms plus up to 50 ms of jitter: some overtake others
    rc.got.forEach((g) => {
      const i = Number(g.text.slice(1));
      expect(g.at - i).toBeGreaterThanOrEqual(6);
      expect(g.at - i).toBeLessThan(6 + 50);
    });
    expect(texts(rc.got)).not.toEqual(Array.from({ length: 50 }, (_, i) => `c${i}`));
    expect(new Set(texts(rc.got)).size).toBe(50);
    for (const x of [rb, rc, tx]) x.s.close();
  });

  test('loss: 20 % of 10,000 datagrams, within binomial bounds, the same ones for the same seed and other ones for another', async () => {
    const run = async (seed: number, n: number) => {
      const vnet = new VirtualNetwork({ seed });
      const a = vnet.host('a', { address: '203.0.113.10', link: { out: { loss: 0.2 } } });
      const b = vnet.host('b', { address: '203.0.113.20' });
      const rx = await listen(vnet, b, 9);
      const tx = await a.network.createUdpSocket({ family: 'IPv4' });
      for (let i = 0; i < n; i++) tx.send(Buffer.from(String(i)), 9, '203.0.113.20');
      await vnet.run(100);
      tx.close();
      rx.s.close();
      return { got: texts(rx.got), counters: { ...a.link.out.counters } };
    };
    const one = await run(11, 10_000);
    // mean 8000, standard deviation sqrt(10000 * 0.2 * 0.8) = 40: 5 sd either side
    expect(one.got.length).toBeGreaterThan(8000 - 200);
    expect(one.got.length).toBeLessThan(8000 + 200);
    expect(one.counters).toEqual({ sent: 10_000, delivered: one.got.length, lost: 10_000 - one.got.length, blocked: 0 });
    // losses are spread out, not in one block: both halves lose about as much
    const firstHalf = one.got.filter((t) => Number(t) < 5000).length;
    expect(Math.abs(firstHalf - (one.got.length - firstHalf))).toBeLessThan(300);
    // the same seed loses the same datagrams (the first 2000 here are the first 2000 there)
    const again = await run(11, 2000);
    expect(again.got).toEqual(one.got.filter((t) => Number(t) < 2000));
    const other = await run(12, 2000);
    expect(other.got).not.toEqual(again.got);
  });

  test('a blocked link drops everything (counted) until unblocked', async () => {
    const vnet = new VirtualNetwork();
    const a = vnet.host('a', { address: '203.0.113.10' });
    const b = vnet.host('b', { address: '203.0.113.20' });
    const rx = await listen(vnet, b, 9);
    const tx = await listen(vnet, a, 0);
    b.link.block('in');
    tx.send('203.0.113.20:9', 'cut');
    await vnet.run(100);
    b.link.unblock();
    tx.send('203.0.113.20:9', 'mended');
    await vnet.runUntil(() => rx.got.length === 1);
    expect(texts(rx.got)).toEqual(['mended']);
    expect(b.link.in.counters).toMatchObject({ sent: 2, delivered: 1, blocked: 1 });
    rx.s.close();
    tx.s.close();
  });
});

// ---------------------------------------------------------------------------------------
// NAT routers

const EIM = 'endpoint-independent';
const ADM = 'address-dependent';
const APDM = 'address-and-port-dependent';

describe('NAT mapping (RFC 4787 section 4.1) and port allocation (section 4.2.1)', () => {
  test('endpoint-independent, preserving: one mapping, the local port, to every destination', async () => {
    const { vnet, R1, R2, mapped, nat, lab } = await natSetup({ mapping: EIM, filtering: APDM });
    const pub = lab.nat.publicAddress;
    expect(await mapped(`${R1}:3478`, 'a')).toBe(`${pub}:40000`);
    expect(await mapped(`${R1}:3479`, 'b')).toBe(`${pub}:40000`);
    expect(await mapped(`${R2}:3478`, 'c')).toBe(`${pub}:40000`);
    expect(nat.mappings()).toHaveLength(1);
    expect(nat.mappingFor({ address: lab.client.address, port: 40000 }, { address: R2, port: 9 })).toEqual({ address: pub, port: 40000 });
    vnet.openSockets().forEach((s) => s.close());
  });

  test('address-dependent, preserving: one mapping per remote address; the second cannot keep the port (taken)', async () => {
    const { vnet, R1, R2, mapped, nat, lab } = await natSetup({ mapping: ADM, filtering: ADM, portAllocation: 'preserve' });
    const pub = lab.nat.publicAddress;
    expect(await mapped(`${R1}:3478`, 'a')).toBe(`${pub}:40000`);
    expect(await mapped(`${R1}:3479`, 'b')).toBe(`${pub}:40000`);
    const toR2 = await mapped(`${R2}:3478`, 'c');
    expect(toR2).not.toBe(`${pub}:40000`);
    expect(toR2.startsWith(`${pub}:`)).toBe(true);
    expect(nat.mappings().map((m) => m.remote)).toEqual([{ address: R1 }, { address: R2 }]);
    vnet.openSockets().forEach((s) => s.close());
  });

  test('address-and-port-dependent (symmetric): a new random port for every destination, the same one for the same destination', async () => {
    const { vnet, R1, R2, mapped, nat } = await natSetup('symmetric');
    const m1 = await mapped(`${R1}:3478`, 'a');
    const m2 = await mapped(`${R1}:3479`, 'b');
    const m3 = await mapped(`${R2}:3478`, 'c');
    expect(new Set([m1, m2, m3]).size).toBe(3);
    expect(await mapped(`${R1}:3478`, 'd')).toBe(m1);
    for (const m of [m1, m2, m3]) {
      const port = Number(m.split(':')[1]);
      expect(port).toBeGreaterThanOrEqual(1024);
      expect(port).not.toBe(40000);
    }
    expect(nat.mappings()).toHaveLength(3);
    // the same seed makes the same ports
    const again = await natSetup('symmetric');
    expect(await again.mapped(`${R1}:3478`, 'a')).toBe(m1);
    const other = await natSetup('symmetric', { seed: 99 });
    expect(await other.mapped(`${R1}:3478`, 'a')).not.toBe(m1);
    for (const x of [vnet, again.vnet, other.vnet]) x.openSockets().forEach((s) => s.close());
  });

  test('sequential allocation counts up from 1024; random allocation never keeps the port by design', async () => {
    const seq = await natSetup({ mapping: APDM, filtering: APDM, portAllocation: 'sequential' });
    const ports = [];
    for (const [i, to] of [`${seq.R1}:3478`, `${seq.R1}:3479`, `${seq.R2}:3478`].entries()) ports.push(Number((await seq.mapped(to, `s${i}`)).split(':')[1]));
    expect(ports).toEqual([1024, 1025, 1026]);
    const rnd = await natSetup({ mapping: EIM, filtering: EIM, portAllocation: 'random' });
    const m = await rnd.mapped(`${rnd.R1}:3478`, 'r');
    expect(m).not.toBe(`${rnd.lab.nat.publicAddress}:40000`);
    expect(await rnd.mapped(`${rnd.R2}:3478`, 'r2')).toBe(m); // still endpoint-independent
    for (const x of [seq.vnet, rnd.vnet]) x.openSockets().forEach((s) => s.close());
  });

  test('two clients behind one preserving NAT on the same local port: the first keeps it, the second gets another', async () => {
    const lab = createVnetLab({ clients: [{ nat: 'full-cone' }, { behind: 0 }] });
    const { vnet } = lab;
    await reflector(lab.server.host, lab.server.addresses[0], 3478);
    const a = await listen(vnet, lab.clients[0]!.host, 40000);
    const b = await listen(vnet, lab.clients[1]!.host, 40000);
    expect(lab.clients.map((c) => c.address)).toEqual(['10.0.1.2', '10.0.1.3']);
    a.send('203.0.113.1:3478', 'a');
    b.send('203.0.113.1:3478', 'b');
    await vnet.runUntil(() => a.got.length === 1 && b.got.length === 1);
    expect(a.got[0]!.text).toBe('a 203.0.113.101:40000');
    expect(b.got[0]!.text).toMatch(/^b 203\.0\.113\.101:\d+$/);
    expect(b.got[0]!.text).not.toBe('b 203.0.113.101:40000');
    vnet.openSockets().forEach((s) => s.close());
  });
});

describe('NAT filtering (RFC 4787 section 5)', () => {
  // After the client has sent to R1:3478 only, which of R1:3478, R1:3479 (same address, other
  // port) and R2:3478 (other address) get in, and a packet to a port with no mapping.
  const cases: Array<{ filtering: NatBehaviour['filtering']; admitted: string[] }> = [
    { filtering: EIM, admitted: ['same', 'port', 'address'] },
    { filtering: ADM, admitted: ['same', 'port'] },
    { filtering: APDM, admitted: ['same'] },
  ];
  for (const { filtering, admitted } of cases) {
    test(`${filtering}: admits ${admitted.join(', ')}`, async () => {
      const { vnet, R1, R2, client, mapped, nat, lab } = await natSetup({ mapping: EIM, filtering });
      const m = await mapped(`${R1}:3478`, 'open');
      const senders = {
        port: await listen(vnet, lab.server.host, 4000, R1),
        address: await listen(vnet, lab.server.host, 4000, R2),
      };
      const before = client.got.length;
      // "same": R1:3478 itself, the reflector's socket
      const refl = lab.server.host.openSockets().find((s) => s.address().address === R1 && s.address().port === 3478)!;
      refl.send(Buffer.from('from same'), Number(m.split(':')[1]), m.split(':')[0]);
      senders.port.send(m, 'from port');
      senders.address.send(m, 'from address');
      senders.port.send(`${lab.nat.publicAddress}:1`, 'no mapping');
      await vnet.run(200);
      const got = texts(client.got.slice(before)).map((t) => t.replace('from ', ''));
      expect(got.sort()).toEqual([...admitted].sort());
      expect(nat.counters.filtered).toBe(3 - admitted.length);
      expect(nat.counters.noMapping).toBe(1);
      vnet.openSockets().forEach((s) => s.close());
    });
  }

  test('the presets are the behaviours natlab.ts gives them', async () => {
    const lab = createVnetLab({ clients: [{ nat: 'full-cone' }, { nat: 'restricted-cone' }, { nat: 'port-restricted-cone' }, { nat: 'symmetric' }] });
    expect(lab.clients.map((c) => [c.nat.type, c.nat.mapping, c.nat.filtering, c.nat.portAllocation, c.nat.hairpin])).toEqual([
      ['full-cone', EIM, EIM, 'preserve', false],
      ['restricted-cone', EIM, ADM, 'preserve', false],
      ['port-restricted-cone', EIM, APDM, 'preserve', false],
      ['symmetric', APDM, APDM, 'random', false],
    ]);
    expect(lab.clients.map((c) => c.nat.publicAddress)).toEqual(['203.0.113.101', '203.0.113.102', '203.0.113.103', '203.0.113.104']);
    expect(lab.clients.map((c) => c.address)).toEqual(['10.0.1.2', '10.0.2.2', '10.0.3.2', '10.0.4.2']);
    expect(() => createVnetLab({ nat: 'firewall', hairpin: true })).toThrow(/hairpin needs a NAT/);
    expect(() => createVnetLab({ nat: 'cone' as NatType })).toThrow(/unknown NAT type/);
    expect(() => createVnetLab({ clients: [{ nat: 'none' }, { behind: 0 }] })).toThrow(/has no NAT/);
  });
});

describe('hairpinning (RFC 4787 section 6), as the lab does it', () => {
  test('on: two clients behind one port-restricted NAT punch a hole through its public address and see each other\'s public endpoints', async () => {
    // natlab.test.ts's "hairpinning: two clients behind one port-restricted NAT" step by step
    const lab = createVnetLab({ clients: [{ nat: 'port-restricted-cone', hairpin: true }, { behind: 0 }], trace: true });
    const { vnet } = lab;
    const nat = lab.nat.router!;
    await reflector(lab.server.host, lab.server.addresses[0], 3478);
    const a = await listen(vnet, lab.clients[0]!.host, 40000);
    const b = await listen(vnet, lab.clients[1]!.host, 41000);
    a.send('203.0.113.1:3478', 'who-a');
    b.send('203.0.113.1:3478', 'who-b');
    await vnet.runUntil(() => a.got.length === 1 && b.got.length === 1);
    const ma = a.got[0]!.text.split(' ')[1]!;
    const mb = b.got[0]!.text.split(' ')[1]!;
    expect([ma, mb]).toEqual(['203.0.113.101:40000', '203.0.113.101:41000']);
    a.send(mb, 'a1'); // b's mapping has only sent to the server: dropped, but it opens a's filter to b
    await vnet.run(100);
    expect(nat.counters).toMatchObject({ hairpinned: 1, filtered: 1 });
    b.send(ma, 'b1');
    await vnet.runUntil(() => a.got.length === 2);
    expect(a.got[1]).toMatchObject({ text: 'b1', from: mb });
    a.send(mb, 'a2');
    await vnet.runUntil(() => b.got.length === 2);
    expect(b.got[1]).toMatchObject({ text: 'a2', from: ma });
    expect(texts(b.got).filter((t) => /^a\d$/.test(t))).toEqual(['a2']);
    vnet.openSockets().forEach((s) => s.close());
  });

  test('off: a packet to the public address from inside is dropped', async () => {
    const lab = createVnetLab({ clients: [{ nat: 'full-cone' }, { behind: 0 }] });
    const { vnet } = lab;
    await reflector(lab.server.host, lab.server.addresses[0], 3478);
    const a = await listen(vnet, lab.clients[0]!.host, 40000);
    const b = await listen(vnet, lab.clients[1]!.host, 41000);
    b.send('203.0.113.1:3478', 'who-b');
    await vnet.runUntil(() => b.got.length === 1);
    a.send('203.0.113.101:41000', 'hairpin?');
    await vnet.run(100);
    expect(texts(b.got)).toEqual(['who-b 203.0.113.101:41000']);
    expect(lab.nat.router!.counters.hairpinDropped).toBe(1);
    vnet.openSockets().forEach((s) => s.close());
  });

  test("a socket's request to its own mapping comes back through every cone NAT; from another socket only through EIF", async () => {
    // the header of natlab.ts: Vovida's test (same socket) vs coturn's and natcheck's (another socket)
    for (const [nat, fromOther] of [['full-cone', true], ['restricted-cone', false], ['port-restricted-cone', false]] as const) {
      const { vnet, R1, client, mapped, lab } = await natSetup(nat, { hairpin: true });
      const m = await mapped(`${R1}:3478`, 'who');
      // the other socket first: once the mapping has sent to its own public address, an
      // address-dependent filter admits everything from that address
      const other = await listen(vnet, lab.client.host, 40001);
      other.send(m, 'other');
      await vnet.run(100);
      client.send(m, 'self');
      await vnet.run(100);
      expect(texts(client.got).slice(1), nat).toEqual(fromOther ? ['other', 'self'] : ['self']);
      vnet.openSockets().forEach((s) => s.close());
    }
  });
});

describe('mapping lifetime, flush and a new public address', () => {
  test('a mapping idle for the timeout is gone (inbound dropped, a new mapping next time); outbound traffic refreshes it, inbound does not', async () => {
    const { vnet, R1, client, mapped, nat, lab } = await natSetup('symmetric', { mappingTimeoutSec: 30 });
    const m1 = await mapped(`${R1}:3478`, 'a');
    const refl = lab.server.host.openSockets().find((s) => s.address().port === 3478 && s.address().address === R1)!;
    const poke = (text: string) => refl.send(Buffer.from(text), Number(m1.split(':')[1]), lab.nat.publicAddress);
    // inbound every 10 s does not keep it alive
    for (let t = 0; t < 2; t++) {
      await vnet.run(10_000);
      poke(`in${t}`);
    }
    await vnet.run(9_000); // 29 s (and a bit) after the last outbound packet
    poke('still');
    await vnet.run(100);
    expect(texts(client.got).slice(1)).toEqual(['in0', 'in1', 'still']);
    await vnet.run(1_000); // past 30 s idle
    poke('expired');
    await vnet.run(100);
    expect(texts(client.got).slice(1)).toEqual(['in0', 'in1', 'still']);
    expect(nat.counters).toMatchObject({ mappingsExpired: 1, noMapping: 1 });
    const m2 = await mapped(`${R1}:3478`, 'b');
    expect(m2).not.toBe(m1);
    // outbound every 20 s keeps m2 for 90 s
    for (let i = 0; i < 4; i++) {
      await vnet.run(20_000);
      expect(await mapped(`${R1}:3478`, `keep${i}`)).toBe(m2);
    }
    vnet.openSockets().forEach((s) => s.close());
  });

  test('inboundRefresh: inbound packets keep a mapping alive too', async () => {
    const { vnet, R1, client, mapped, lab } = await natSetup({ mapping: EIM, filtering: EIM, mappingTimeoutMs: 30_000, inboundRefresh: true });
    const m = await mapped(`${R1}:3478`, 'a');
    const refl = lab.server.host.openSockets().find((s) => s.address().port === 3478 && s.address().address === R1)!;
    for (let i = 0; i < 4; i++) {
      await vnet.run(20_000);
      refl.send(Buffer.from(`in${i}`), Number(m.split(':')[1]), lab.nat.publicAddress);
    }
    await vnet.run(100);
    expect(texts(client.got).slice(1)).toEqual(['in0', 'in1', 'in2', 'in3']);
    vnet.openSockets().forEach((s) => s.close());
  });

  test('flush forgets every mapping (conntrack -F): inbound is dropped and the next packet gets a new one', async () => {
    const { vnet, R1, client, mapped, nat, lab } = await natSetup('symmetric');
    const m1 = await mapped(`${R1}:3478`, 'a');
    nat.flush();
    expect(nat.mappings()).toEqual([]);
    const refl = lab.server.host.openSockets().find((s) => s.address().port === 3478 && s.address().address === R1)!;
    refl.send(Buffer.from('late'), Number(m1.split(':')[1]), lab.nat.publicAddress);
    await vnet.run(100);
    expect(texts(client.got)).toEqual([`a ${m1}`]);
    expect(nat.counters.noMapping).toBe(1);
    const m2 = await mapped(`${R1}:3478`, 'b');
    expect(m2).not.toBe(m1);
    vnet.openSockets().forEach((s) => s.close());
  });

  test('a new public address: the world sees it, the old one is gone from the internet', async () => {
    const { vnet, R1, client, mapped, nat, lab } = await natSetup('full-cone');
    expect(await mapped(`${R1}:3478`, 'a')).toBe('203.0.113.101:40000');
    nat.setPublicAddress('203.0.113.150');
    expect(nat.publicAddress).toBe('203.0.113.150');
    expect(await mapped(`${R1}:3478`, 'b')).toBe('203.0.113.150:40000');
    const refl = lab.server.host.openSockets().find((s) => s.address().port === 3478 && s.address().address === R1)!;
    refl.send(Buffer.from('old'), 40000, '203.0.113.101');
    await vnet.run(100);
    expect(texts(client.got)).toEqual(['a 203.0.113.101:40000', 'b 203.0.113.150:40000']);
    expect(vnet.internet.counters.unroutable).toBe(1);
    vnet.openSockets().forEach((s) => s.close());
  });

  test('NAT behind NAT (a carrier-grade NAT): the world sees the outer NAT', async () => {
    const vnet = new VirtualNetwork();
    const server = vnet.host('server', { address: '203.0.113.1' });
    await reflector(server, '203.0.113.1', 3478);
    const cgnLan = vnet.lan('cgn', { subnet: '100.64.0.0/24' });
    vnet.nat('cgn', { nat: 'port-restricted-cone', publicAddress: '203.0.113.200', lan: cgnLan });
    const home = vnet.lan('home', { subnet: '192.168.1.0/24' });
    vnet.nat('home', { nat: 'full-cone', publicAddress: '100.64.0.2', outside: cgnLan, lan: home });
    const h = vnet.host('laptop', { segment: home });
    const s = await listen(vnet, h, 50000);
    s.send('203.0.113.1:3478', 'who');
    await vnet.runUntil(() => s.got.length === 1);
    expect(s.got[0]!.text).toBe('who 203.0.113.200:50000');
    vnet.openSockets().forEach((x) => x.close());
  });
});

describe('tracing', () => {
  test("a packet's way is in the trace and the description shows the NAT's mappings", async () => {
    const { vnet, R1, mapped } = await natSetup('port-restricted-cone');
    await mapped(`${R1}:3478`, 'a');
    const events = vnet.traceEntries().filter((e) => e.id === vnet.traceEntries()[0]!.id).map((e) => `${e.event}@${e.at}`);
    expect(events).toEqual(['send@client0', 'arrive@nat0', 'nat-out@nat0', 'arrive@server', 'deliver@server']);
    expect(vnet.describe()).toMatch(/mapping 10\.0\.1\.2:40000 -> 203\.0\.113\.101:40000, idle \d+ ms, out 1, in 1, admits 203\.0\.113\.1:3478/);
    expect(vnet.traceText()).toMatch(/nat-out +nat0 +203\.0\.113\.101:40000 -> 203\.0\.113\.1:3478 \(1 B\) from 10\.0\.1\.2:40000 \(new mapping\)/);
    vnet.openSockets().forEach((s) => s.close());
  });
});
