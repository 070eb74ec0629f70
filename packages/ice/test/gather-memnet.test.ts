// The Gatherer on an in-memory network (test/helpers/memnet.ts) with a manual clock: no
// kernel, no real time. natkit's StunServer and TurnServer run on the same network. This is
// what lets the virtual NAT network of the ICE tests run the gatherer unchanged.
import { describe, expect, it } from 'vitest';
import { ManualClock, Method, type Network, StunServer, type TransportAddress, decodeMessage, isStunMessage } from '@natkit/stun';
import { TurnServer, parseUsers } from '@natkit/turn';
import { Gatherer, type ServerOutcome } from '../src/index.js';
import type { RelayBase } from '../src/gather/bases.js';
import { type MemoryHost, MemorySegment, inbox } from '../../../test/helpers/memnet.js';
import { useCleanup } from '../../../test/helpers/cleanup.js';

const { track } = useCleanup();

/** A host's Network whose sockets record every datagram as send() is called. */
function recording(host: MemoryHost): { network: Network; sent: Buffer[] } {
  const sent: Buffer[] = [];
  const network: Network = {
    interfaces: () => host.interfaces(),
    lookup: (h, f) => host.lookup(h, f),
    createUdpSocket: async (o) => {
      const sock = await host.createUdpSocket(o);
      const send = sock.send.bind(sock);
      sock.send = (msg, ...rest) => {
        sent.push(Buffer.from(msg));
        send(msg, ...rest);
      };
      return sock;
    },
  };
  return { network, sent };
}

/** Lets the microtask-driven network deliver what is in flight (no timers involved). */
async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) await Promise.resolve();
  await new Promise<void>((r) => setImmediate(r));
}


/**
 * A relay-only Gatherer on an in-memory network with natkit's relay and a peer socket at
 * 198.51.100.9:7000; every send() of the client's sockets is recorded as it is made.
 */
async function recordedRelayBase() {
  const seg = new MemorySegment();
  const client = seg.host('198.51.100.2');
  const serverHost = seg.host('203.0.113.1');
  const peerHost = seg.host('198.51.100.9');
  track(await TurnServer.start({ network: serverHost, listen: ['203.0.113.1'], port: 3478, tcp: false, users: parseUsers('alice:wonderland\n') }));
  const { network, sent } = recording(client);
  const g = track(new Gatherer({ network, clock: new ManualClock(), policy: 'relay', iceServers: [{ urls: 'turn:203.0.113.1', username: 'alice', credential: 'wonderland' }] }));
  const report = await g.gather();
  const peerSocket = await peerHost.createUdpSocket({ family: 'IPv4', address: '198.51.100.9', port: 7000 });
  const peer = inbox(peerSocket);
  const base = g.base(report.candidates[0]!.baseId)!;
  const to: TransportAddress = { family: 'IPv4', address: '198.51.100.9', port: 7000 };
  return { base, peer, peerSocket, to, sent };
}

describe('gathering on an in-memory network with a manual clock', () => {
  it('host candidates for both families, srflx and relay from servers on the same network, a dead server timed out on the manual clock', async () => {
    const seg = new MemorySegment();
    const client = seg.host('198.51.100.2', '2001:db8::2');
    const serverHost = seg.host('203.0.113.1');
    const stun = track(await StunServer.start({ network: serverHost, address: '203.0.113.1', port: 3478, tcp: false }));
    const turn = track(await TurnServer.start({ network: serverHost, listen: ['203.0.113.1'], port: 3479, tcp: false, users: parseUsers('alice:wonderland\n') }));
    const clock = new ManualClock();
    const g = track(
      new Gatherer({
        network: client,
        clock,
        serverTimeoutMs: 2000,
        iceServers: [{ urls: ['stun:203.0.113.1', 'stun:203.0.113.99'] }, { urls: 'turn:203.0.113.1:3479', username: 'alice', credential: 'wonderland' }],
      }),
    );
    const done: ServerOutcome[] = [];
    g.on('server-done', (o) => done.push(o));
    const p = g.gather();
    for (let i = 0; i < 20 && done.length < 2; i++) await settle();
    expect(done.map((o) => o.url).sort()).toEqual(['stun:203.0.113.1', 'turn:203.0.113.1:3479']);
    expect(clock.now()).toBe(0);
    // IPv6 first (RFC 6724 precedence 40 over IPv4's 35), then IPv4.
    const hosts = g.candidates.filter((c) => c.type === 'host');
    expect(hosts.map((c) => c.address)).toEqual(['2001:db8::2', '198.51.100.2']);
    // No NAT on this segment: the mapping is the host address itself, so no srflx (RFC 8445 5.1.3).
    expect(done.find((o) => o.url === 'stun:203.0.113.1')).toMatchObject({ ok: true, candidates: [], mapped: [{ mapped: { address: '198.51.100.2' } }] });
    const relay = g.candidates.find((c) => c.type === 'relay')!;
    expect(relay).toMatchObject({ address: '203.0.113.1', relatedAddress: '198.51.100.2', server: 'turn:203.0.113.1:3479' });
    // Every candidate's base is found by its id (host sockets and the allocation alike).
    expect(g.candidates.map((c) => g.base(c.baseId)?.address)).toEqual(g.candidates.map((c) => c.base));
    expect(g.bases.map((b) => b.kind).sort()).toEqual(['host', 'host', 'relay']);
    expect(g.base(0)).toBeUndefined();
    // The dead server: its retransmissions go out only as the manual clock moves.
    clock.advance(1999);
    await settle();
    expect(done).toHaveLength(2);
    clock.advance(1);
    const report = await p;
    expect(report.servers.find((o) => o.url === 'stun:203.0.113.99')).toMatchObject({ ok: false, elapsedMs: 2000, error: { code: 'TIMEOUT' } });
    // Binding requests to it at 0, 500 and 1500 ms (RFC 8489 6.2.1: RTO 500, doubling); the next (3500) is past the limit.
    expect(seg.undeliverable).toBe(3);
    await g.close();
    expect(turn.allAllocations()).toHaveLength(0);
  });

  it('a relay base on the in-memory network carries data both ways to a peer', async () => {
    const seg = new MemorySegment();
    const client = seg.host('198.51.100.2');
    const serverHost = seg.host('203.0.113.1');
    const peerHost = seg.host('198.51.100.9');
    track(await TurnServer.start({ network: serverHost, listen: ['203.0.113.1'], port: 3478, tcp: false, users: parseUsers('alice:wonderland\n') }));
    const g = track(new Gatherer({ network: client, clock: new ManualClock(), policy: 'relay', iceServers: [{ urls: 'turn:203.0.113.1', username: 'alice', credential: 'wonderland' }] }));
    const report = await g.gather();
    const relay = report.candidates[0]!;
    expect(relay.type).toBe('relay');
    const peerSocket = await peerHost.createUdpSocket({ family: 'IPv4', address: '198.51.100.9', port: 7000 });
    const peer = inbox(peerSocket);
    const base = g.base(relay.baseId)!;
    const got: Array<[string, TransportAddress]> = [];
    base.onPacket = (d, from) => got.push([d.toString(), from]);
    const to: TransportAddress = { family: 'IPv4', address: '198.51.100.9', port: 7000 };
    base.send(Buffer.from('ping'), to);
    const [m, from] = await peer.next();
    expect(m.toString()).toBe('ping');
    expect(from).toMatchObject({ address: '203.0.113.1', port: relay.port });
    peerSocket.send(Buffer.from('pong'), relay.port, relay.address);
    for (let i = 0; i < 20 && got.length === 0; i++) await settle();
    expect(got).toEqual([['pong', to]]);
    await new Promise<void>((r) => peerSocket.close(() => r()));
  });

  it('a relay base hands each datagram to the socket at once once a channel is bound: ChannelData, no promise per datagram', async () => {
    const { base, peer, peerSocket, to, sent } = await recordedRelayBase();
    await base.bindChannel!(to);
    const before = sent.length;
    for (let i = 0; i < 5; i++) base.send(Buffer.from(`d${i}`), to);
    // Synchronously: five ChannelData messages (first byte 0x40-0x7f, RFC 8656 section 12.4).
    expect(sent.slice(before).map((b) => [b[0]! >> 6, b.subarray(4).toString()])).toEqual(Array.from({ length: 5 }, (_, i) => [1, `d${i}`]));
    for (let i = 0; i < 5; i++) expect((await peer.next())[0].toString()).toBe(`d${i}`);
    await new Promise<void>((r) => peerSocket.close(() => r()));
  });

  it('a relay base hands each datagram to the socket at once before a channel too: Send indications, no promise per datagram', async () => {
    const { base, peer, peerSocket, to, sent } = await recordedRelayBase();
    // The first datagram waits for the permission (RFC 8656 section 9).
    base.send(Buffer.from('first'), to);
    expect((await peer.next())[0].toString()).toBe('first');
    const before = sent.length;
    for (let i = 0; i < 3; i++) base.send(Buffer.from(`d${i}`), to);
    // Synchronously: three Send indications (RFC 8656 section 10.1).
    expect(sent.slice(before).map((b) => decodeMessage(b).method)).toEqual([Method.Send, Method.Send, Method.Send]);
    for (let i = 0; i < 3; i++) expect((await peer.next())[0].toString()).toBe(`d${i}`);
    // More than a Send indication's DATA can hold: a lost datagram, not an exception.
    expect(() => base.send(Buffer.alloc(70_000), to)).not.toThrow();
    expect((base as RelayBase).dropped).toBe(1);
    await new Promise<void>((r) => peerSocket.close(() => r()));
  });

  it('a relay base asks for a refused permission once: later datagrams to that IP are dropped and counted, not asked again', async () => {
    const seg = new MemorySegment();
    const client = seg.host('198.51.100.2');
    const serverHost = seg.host('203.0.113.1');
    // natkit's relay refuses private peers by default (RFC 8656 section 9.2: 403).
    track(await TurnServer.start({ network: serverHost, listen: ['203.0.113.1'], port: 3478, tcp: false, users: parseUsers('alice:wonderland\n') }));
    const { network, sent } = recording(client);
    const g = track(new Gatherer({ network, clock: new ManualClock(), policy: 'relay', iceServers: [{ urls: 'turn:203.0.113.1', username: 'alice', credential: 'wonderland' }] }));
    const report = await g.gather();
    const base = g.base(report.candidates[0]!.baseId) as RelayBase;
    const privatePeer: TransportAddress = { family: 'IPv4', address: '10.1.2.3', port: 5000 };
    const permissionsAsked = () => sent.filter((b) => isStunMessage(b) && decodeMessage(b).method === Method.CreatePermission).length;
    base.send(Buffer.from('check'), privatePeer);
    for (let i = 0; i < 20 && base.dropped === 0; i++) await settle();
    expect(base.dropped).toBe(1);
    const asked = permissionsAsked();
    // A check's retransmissions (and another peer port on the same IP): dropped at once.
    base.send(Buffer.from('again'), privatePeer);
    base.send(Buffer.from('other port'), { ...privatePeer, port: 5001 });
    await settle();
    expect(base.dropped).toBe(3);
    expect(asked).toBe(1);
    expect(permissionsAsked()).toBe(asked);
  });
});
