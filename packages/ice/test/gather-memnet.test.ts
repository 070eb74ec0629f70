// The Gatherer on an in-memory network (test/helpers/memnet.ts) with a manual clock: no
// kernel, no real time. natkit's StunServer and TurnServer run on the same network. This is
// what lets the virtual NAT network of the ICE tests run the gatherer unchanged.
import { describe, expect, it } from 'vitest';
import { ManualClock, StunServer, type TransportAddress } from '@natkit/stun';
import { TurnServer, parseUsers } from '@natkit/turn';
import { Gatherer, type ServerOutcome } from '../src/index.js';
import { MemorySegment, inbox } from '../../../test/helpers/memnet.js';
import { useCleanup } from '../../../test/helpers/cleanup.js';

const { track } = useCleanup();

/** Lets the microtask-driven network deliver what is in flight (no timers involved). */
async function settle(): Promise<void> {
  for (let i = 0; i < 50; i++) await Promise.resolve();
  await new Promise<void>((r) => setImmediate(r));
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
});
