// The Gatherer against natkit's own STUN and TURN servers in-process on loopback, and
// scripted servers (silent, mapping, refusing): host, server-reflexive and relayed
// candidates, trickle order, per-server outcomes, bases carrying data, close().
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ManualClock, MessageBuilder, MessageClass, Method, StunServer, type TransportAddress, decodeMessage } from '@natkit/stun';
import { TurnServer, parseUsers } from '@natkit/turn';
import {
  type CandidateBase,
  Gatherer,
  type GathererOptions,
  type LocalCandidate,
  type ServerOutcome,
  candidateFoundation,
  candidatePriority,
  gatherCandidates,
} from '../src/index.js';
import { RelayBase } from '../src/gather/bases.js';
import { openRawUdp } from '../../../test/helpers/udp.js';
import { metric } from '../../../test/helpers/interop-turn-peers.js';
import { useCleanup } from '../../../test/helpers/cleanup.js';
import { LO4, LO6, forbiddingServer, loopbackNetwork, mappingServer, silentServer, until } from './gather-helpers.js';

const cleanup = useCleanup();
const { defer, track } = cleanup;

const fixtures = new URL('../../../test/fixtures/', import.meta.url);
const cert = readFileSync(new URL('tls-cert.pem', fixtures));
const key = readFileSync(new URL('tls-key.pem', fixtures));

const USER = 'alice';
const PASS = 'wonderland';

async function turnServer(opts: { tls?: boolean } = {}): Promise<TurnServer & { udpPort: number; tcpPort: number; tlsPort: number }> {
  const s = track(
    await TurnServer.start({
      listen: ['127.0.0.1'],
      port: 0,
      users: parseUsers(`${USER}:${PASS}\n`),
      allowPeers: ['127.0.0.0/8'],
      relayPortMin: 48000,
      relayPortMax: 51999,
      ...(opts.tls ? { tls: { cert, key, port: 0 } } : {}),
    }),
  );
  const port = (t: string) => s.listening.find((l) => l.transport === t)?.port ?? 0;
  return Object.assign(s, { udpPort: port('udp'), tcpPort: port('tcp'), tlsPort: port('tls') });
}

/** A gatherer whose every event is recorded in order. */
function recorded(options: GathererOptions) {
  const g = track(new Gatherer(options));
  const events: string[] = [];
  const outcomes = new Map<string, ServerOutcome>();
  g.on('candidate', (c) => events.push(`candidate ${c.type} ${c.server ?? ''}`.trim()));
  g.on('server-done', (o) => {
    events.push(`done ${o.url}`);
    outcomes.set(o.url, o);
  });
  g.on('complete', () => events.push('complete'));
  return { g, events, outcomes };
}

function addr(c: LocalCandidate): string {
  return `${c.address}:${c.port}`;
}

describe('host candidates (RFC 8445 section 5.1.1.1)', () => {
  it('one socket and one host candidate per usable address, then end-of-candidates', async () => {
    const network = loopbackNetwork();
    const { g, events } = recorded({ network });
    const report = await g.gather();
    expect(events).toEqual(['candidate host', 'complete']);
    expect(report.candidates).toHaveLength(1);
    const [c] = report.candidates;
    expect(c).toMatchObject({ type: 'host', transport: 'udp', component: 1, address: '127.0.0.1', baseId: g.bases[0]!.id });
    // RFC 8445 5.1.2.1 with one address: local preference 65535.
    expect(c!.priority).toBe(candidatePriority(126, 65535, 1));
    expect(c!.priority).toBe(2130706431);
    expect(c!.foundation).toBe(candidateFoundation('host', '127.0.0.1', undefined, 'udp'));
    expect(c!.base).toEqual({ family: 'IPv4', address: '127.0.0.1', port: c!.port });
    expect(g.bases).toHaveLength(1);
    expect(g.base(c!.baseId)?.kind).toBe('host');
    expect(network.opened).toBe(1);
    expect(g.gatheringState).toBe('complete');
  });

  it('IPv4 and IPv6 on a dual-stack host: both families, intermingled local preferences (RFC 8421), each unique', async () => {
    const network = loopbackNetwork({
      interfaces: [
        LO4,
        LO6,
        { name: 'lo', address: '127.0.0.2', family: 'IPv4', internal: true, prefix: 8 },
      ],
    });
    const report = await track(new Gatherer({ network, includeLoopback: true })).gather();
    // ::1 has RFC 6724 precedence 50 (over IPv4's 35): IPv6 first, then the families alternate.
    expect(report.candidates.map((c) => c.address)).toEqual(['::1', '127.0.0.1', '127.0.0.2']);
    const prefs = report.candidates.map((c) => (c.priority >> 8) & 0xffff);
    expect(prefs).toEqual([0xffff, 0xfeff, 0xfdff]);
    expect(new Set(report.candidates.map((c) => c.foundation)).size).toBe(3);
    expect(report.candidates[0]!.base.family).toBe('IPv6');
  });

  it('leaves out loopback and link-local unless asked, and honours families, the interface filter and explicit addresses', async () => {
    const ifs = [LO4, { name: 'eth9', address: '169.254.1.1', family: 'IPv4' as const, internal: false, prefix: 16 }];
    // Loopback is the only other address: used as the fallback when includeLoopback is not set...
    const fallback = await gatherCandidates({ network: loopbackNetwork({ interfaces: ifs }) });
    expect(fallback.candidates.map((c) => c.address)).toEqual(['127.0.0.1']);
    // ...but not when it is turned off, and link-local is out unless asked (169.254.1.1 is not on this machine: its bind fails and is reported).
    const none = await gatherCandidates({ network: loopbackNetwork({ interfaces: ifs }), includeLoopback: false });
    expect(none.candidates).toEqual([]);
    const ll = await gatherCandidates({ network: loopbackNetwork({ interfaces: ifs }), includeLoopback: false, includeLinkLocal: true });
    expect(ll.candidates).toEqual([]);
    expect(ll.hostErrors).toEqual([{ address: '169.254.1.1', message: expect.stringMatching(/EADDRNOTAVAIL/) }]);
    const v6 = await gatherCandidates({ network: loopbackNetwork({ interfaces: [LO4, LO6] }), includeLoopback: true, families: ['IPv6'] });
    expect(v6.candidates.map((c) => c.address)).toEqual(['::1']);
    const filtered = await gatherCandidates({ network: loopbackNetwork({ interfaces: [LO4, LO6] }), includeLoopback: true, interfaceFilter: (a) => a.family === 'IPv4' });
    expect(filtered.candidates.map((c) => c.address)).toEqual(['127.0.0.1']);
    const explicit = await gatherCandidates({ network: loopbackNetwork({ interfaces: [] }), addresses: ['127.0.0.3'] });
    expect(explicit.candidates.map((c) => c.address)).toEqual(['127.0.0.3']);
    expect(() => new Gatherer({ addresses: ['not-an-ip'] })).toThrow(TypeError);
  });

  it('a host base delivers every datagram that is not its own STUN answer to onPacket, and sends', async () => {
    const g = track(new Gatherer({ network: loopbackNetwork() }));
    const { candidates } = await g.gather();
    const base = g.base(candidates[0]!.baseId)!;
    const got: Array<[Buffer, TransportAddress]> = [];
    base.onPacket = (d, from) => got.push([d, from]);
    const peer = await openRawUdp();
    defer(() => peer.close());
    const check = new MessageBuilder(Method.Binding, MessageClass.Request).encode({ fingerprint: true });
    await peer.send(Buffer.from('application bytes'), candidates[0]!.port, '127.0.0.1');
    await peer.send(check, candidates[0]!.port, '127.0.0.1');
    // 20+ bytes starting with 00 that are not STUN: still the agent's (RFC 7983 leaves demultiplexing to it).
    await peer.send(Buffer.alloc(24), candidates[0]!.port, '127.0.0.1');
    await until(() => got.length === 3, 'three datagrams at the host base');
    expect(got[0]![0].toString()).toBe('application bytes');
    expect(got[0]![1]).toEqual({ family: 'IPv4', address: '127.0.0.1', port: peer.port });
    expect(decodeMessage(got[1]![0]).cls).toBe(MessageClass.Request);
    expect(got[2]![0]).toEqual(Buffer.alloc(24));
    base.send(Buffer.from('answer'), { family: 'IPv4', address: '127.0.0.1', port: peer.port });
    const [back, from] = await peer.next();
    expect(back.toString()).toBe('answer');
    expect(from.port).toBe(candidates[0]!.port);
  });
});

describe('server-reflexive candidates (RFC 8445 section 5.1.1.2)', () => {
  it('from every STUN server, sent from the host socket itself; the mapping the server reports becomes the candidate', async () => {
    const a = await mappingServer(cleanup, { address: '198.51.100.7', port: 40000 });
    const b = await mappingServer(cleanup, { address: '198.51.100.8', port: 40001 });
    const urlA = `stun:127.0.0.1:${a.port}`;
    const urlB = `stun:127.0.0.1:${b.port}`;
    const { g, events, outcomes } = recorded({ network: loopbackNetwork(), iceServers: [{ urls: [urlA, urlB] }] });
    const report = await g.gather();
    expect(events[0]).toBe('candidate host');
    expect(events.at(-1)).toBe('complete');
    expect(events.filter((e) => e.startsWith('candidate srflx'))).toHaveLength(2);
    const host = report.candidates.find((c) => c.type === 'host')!;
    // The Binding requests came from the host candidate's own socket.
    expect(a.sources).toEqual([{ address: '127.0.0.1', port: host.port }]);
    expect(b.sources).toEqual([{ address: '127.0.0.1', port: host.port }]);
    const srflx = report.candidates.filter((c) => c.type === 'srflx');
    const fromA = srflx.find((c) => c.server === urlA)!;
    expect(fromA).toMatchObject({ address: '198.51.100.7', port: 40000, relatedAddress: '127.0.0.1', relatedPort: host.port, baseId: host.baseId, base: host.base });
    expect(fromA.foundation).toBe(candidateFoundation('srflx', '127.0.0.1', '127.0.0.1', 'udp'));
    // Two server-reflexive candidates on one base: same type, distinct local preferences (RFC 8445 5.1.2.1).
    expect(new Set(srflx.map((c) => c.priority)).size).toBe(2);
    expect(srflx.every((c) => c.priority >>> 24 === 100)).toBe(true);
    expect(outcomes.get(urlA)).toMatchObject({ ok: true, kind: 'stun', transport: 'udp', server: { address: '127.0.0.1', port: a.port } });
    expect(outcomes.get(urlA)!.candidates).toEqual([fromA]);
  });

  it("natkit's stunserver on loopback maps the host to itself: the server-reflexive candidate is redundant and pruned (RFC 8445 5.1.3), the server still ok", async () => {
    const s = track(await StunServer.start({ address: '127.0.0.1', port: 0, tcp: false }));
    const url = `stun:127.0.0.1:${s.listening[0]!.port}`;
    const report = await gatherCandidates({ network: loopbackNetwork(), iceServers: [{ urls: url }] });
    expect(report.candidates.map((c) => c.type)).toEqual(['host']);
    const [o] = report.servers;
    expect(o).toMatchObject({ url, ok: true, candidates: [] });
    expect(o!.mapped).toEqual([{ local: report.candidates[0]!.base, mapped: report.candidates[0]!.base }]);
    expect(o!.error).toBeUndefined();
  });

  it('asks an IPv6 server only from IPv6 host sockets, and reports a server of a family with no local address as UNREACHABLE', async () => {
    const s6 = track(await StunServer.start({ address: '::1', port: 0, tcp: false }));
    const url = `stun:[::1]:${s6.listening[0]!.port}`;
    const report = await gatherCandidates({ network: loopbackNetwork({ interfaces: [LO4, LO6] }), includeLoopback: true, iceServers: [{ urls: url }] });
    const v6host = report.candidates.find((c) => c.address === '::1')!;
    expect(report.servers[0]).toMatchObject({ url, ok: true, server: { family: 'IPv6', address: '::1' } });
    expect(report.servers[0]!.mapped).toEqual([{ local: v6host.base, mapped: v6host.base }]);
    const v4only = await gatherCandidates({ network: loopbackNetwork({ interfaces: [LO4] }), iceServers: [{ urls: url }] });
    expect(v4only.servers[0]).toMatchObject({ ok: false, error: { code: 'UNREACHABLE', message: 'no local IPv6 address to reach ::1 from' } });
  });

  it('resolves host names through network.lookup (RFC 7064), and reports a name that does not resolve as DNS', async () => {
    const s = track(await StunServer.start({ address: '127.0.0.1', port: 0, tcp: false }));
    const port = s.listening[0]!.port;
    const network = loopbackNetwork({ names: { 'stun.natkit.test': [{ address: '127.0.0.1', family: 'IPv4' }] } });
    const report = await gatherCandidates({ network, iceServers: [{ urls: [`stun:stun.natkit.test:${port}`, `stun:nowhere.natkit.test:${port}`] }] });
    expect(network.lookups.sort()).toEqual(['nowhere.natkit.test', 'stun.natkit.test']);
    const ok = report.servers.find((o) => o.url.includes('stun.natkit.test'))!;
    expect(ok).toMatchObject({ ok: true, server: { family: 'IPv4', address: '127.0.0.1', port } });
    const bad = report.servers.find((o) => o.url.includes('nowhere'))!;
    expect(bad.ok).toBe(false);
    expect(bad.error).toMatchObject({ code: 'DNS', message: expect.stringMatching(/cannot resolve nowhere\.natkit\.test: .*ENOTFOUND/) });
  });
});

describe('relayed candidates (RFC 8445 section 5.1.1.2, RFC 8656)', () => {
  it("from natkit's relay over UDP, TCP and TLS at once: one relay base each, preferences UDP > TCP > TLS, foundations apart", async () => {
    const s = await turnServer({ tls: true });
    const urls = [`turn:127.0.0.1:${s.udpPort}`, `turn:127.0.0.1:${s.tcpPort}?transport=tcp`, `turns:127.0.0.1:${s.tlsPort}`];
    const { g, outcomes } = recorded({ network: loopbackNetwork(), iceServers: [{ urls, username: USER, credential: PASS }], tls: { ca: cert } });
    const report = await g.gather();
    const relays = report.candidates.filter((c) => c.type === 'relay');
    expect(relays).toHaveLength(3);
    const [udp, tcp, tls] = urls.map((u) => relays.find((c) => c.server === u)!);
    for (const [c, t] of [[udp!, 'udp'], [tcp!, 'tcp'], [tls!, 'tls']] as const) {
      const o = outcomes.get(c.server!)!;
      expect(o).toMatchObject({ ok: true, kind: 'turn', transport: t, candidates: [c] });
      const base = g.base(c.baseId)!;
      expect(base).toBeInstanceOf(RelayBase);
      expect(base.kind).toBe('relay');
      expect(base.address).toEqual({ family: 'IPv4', address: c.address, port: c.port });
      expect(c.base).toEqual(base.address);
      // raddr/rport of a relayed candidate: the mapped address the TURN server saw (RFC 8839 5.1).
      expect(c.relatedAddress).toBe('127.0.0.1');
      expect(c.relatedPort).toBe((base as RelayBase).mapped!.port);
      expect(c.transport).toBe('udp');
      expect(c.priority >>> 24).toBe(0);
    }
    expect(udp!.priority).toBeGreaterThan(tcp!.priority);
    expect(tcp!.priority).toBeGreaterThan(tls!.priority);
    expect(new Set([udp!.foundation, tcp!.foundation, tls!.foundation]).size).toBe(3);
    expect(s.allAllocations()).toHaveLength(3);
    await g.close();
    // close() deletes every allocation (Refresh with LIFETIME 0).
    expect(s.allAllocations()).toHaveLength(0);
  });

  it('a relay base installs the permission before the first packet, carries data both ways, and binds a channel', async () => {
    const s = await turnServer();
    const g = track(new Gatherer({ network: loopbackNetwork(), iceServers: [{ urls: `turn:127.0.0.1:${s.udpPort}`, username: USER, credential: PASS }] }));
    const report = await g.gather();
    const relay = report.candidates.find((c) => c.type === 'relay')!;
    const base = g.base(relay.baseId) as CandidateBase;
    const peer = await openRawUdp();
    defer(() => peer.close());
    const to: TransportAddress = { family: 'IPv4', address: '127.0.0.1', port: peer.port };
    const got: Array<[string, TransportAddress]> = [];
    base.onPacket = (d, from) => got.push([d.toString(), from]);
    // Sent at once, before any permission exists: queued, then delivered in order.
    base.send(Buffer.from('one'), to);
    base.send(Buffer.from('two'), to);
    const [m1, f1] = await peer.next();
    const [m2] = await peer.next();
    expect([m1.toString(), m2.toString()]).toEqual(['one', 'two']);
    expect(f1).toMatchObject({ address: relay.address, port: relay.port });
    await peer.send(Buffer.from('back'), relay.port, relay.address);
    await until(() => got.length === 1, 'data from the peer through the relay');
    expect(got[0]).toEqual(['back', to]);
    await base.bindChannel!(to);
    base.send(Buffer.from('three'), to);
    const [m3] = await peer.next();
    expect(m3.toString()).toBe('three');
    await peer.send(Buffer.from('over the channel'), relay.port, relay.address);
    await until(() => got.length === 2, 'data from the peer over the channel');
    expect(got[1]).toEqual(['over the channel', to]);
    expect(s.allAllocations()[0]!.counters.toPeerPackets).toBe(3);
    // The last two went over the channel, not as indications.
    expect((base as RelayBase).client.channelFor(to)).toBeGreaterThanOrEqual(0x4000);
    expect(await metric(s, 'natkit_turn_requests_total', { method: 'channel_bind' })).toBe(1);
    expect(await metric(s, 'natkit_turn_requests_total', { method: 'create_permission' })).toBe(1);
  });

  it('turns: with an unknown certificate fails as TLS; stuns: reports the TLS mapping but makes no UDP candidate', async () => {
    const s = await turnServer({ tls: true });
    const stuns = track(await StunServer.start({ address: '127.0.0.1', port: 0, udp: false, tcp: false, tls: { cert, key, port: 0 } }));
    const stunsUrl = `stuns:127.0.0.1:${stuns.listening.find((l) => l.transport === 'tls')!.port}`;
    const turnsUrl = `turns:127.0.0.1:${s.tlsPort}`;
    const untrusted = await gatherCandidates({ network: loopbackNetwork(), iceServers: [{ urls: turnsUrl, username: USER, credential: PASS }] });
    expect(untrusted.servers[0]).toMatchObject({ ok: false, error: { code: 'TLS', message: expect.stringMatching(/self-signed certificate/) } });
    const trusted = await gatherCandidates({ network: loopbackNetwork(), tls: { ca: cert }, iceServers: [{ urls: stunsUrl }] });
    expect(trusted.candidates.map((c) => c.type)).toEqual(['host']);
    expect(trusted.servers[0]).toMatchObject({ ok: true, kind: 'stun', transport: 'tls', candidates: [] });
    expect(trusted.servers[0]!.mapped).toEqual([{ local: expect.objectContaining({ address: '127.0.0.1' }), mapped: expect.objectContaining({ address: '127.0.0.1' }) }]);
  });

  it("policy 'relay': only relayed candidates, no host sockets, STUN servers not contacted", async () => {
    const s = await turnServer();
    const stun = await mappingServer(cleanup, { address: '198.51.100.7', port: 1 });
    const network = loopbackNetwork();
    const report = await gatherCandidates({
      network,
      policy: 'relay',
      iceServers: [{ urls: `stun:127.0.0.1:${stun.port}` }, { urls: `turn:127.0.0.1:${s.udpPort}`, username: USER, credential: PASS }],
    });
    expect(report.candidates.map((c) => c.type)).toEqual(['relay']);
    // The only UDP socket: the TURN client's.
    expect(network.opened).toBe(1);
    expect(stun.seen).toHaveLength(0);
    expect(report.servers.find((o) => o.url.startsWith('stun:'))).toMatchObject({ ok: false, error: { code: 'SKIPPED' } });
  });
});

describe('several servers at once: none holds back the others (RFC 8838 trickle)', () => {
  it('good, dead, 401, 403, DNS, unreachable, bad URL and missing credentials: each reported with its reason; the good ones before the dead one times out', async () => {
    const clock = new ManualClock();
    const s = await turnServer();
    const mapping = await mappingServer(cleanup, { address: '203.0.113.5', port: 5000 });
    const dead = await silentServer(cleanup);
    const forbidding = await forbiddingServer(cleanup, { username: USER, password: PASS });
    // A TCP port nobody listens on: connection refused.
    const closedPort = await openRawUdp().then(async (u) => {
      const p = u.port;
      await u.close();
      return p;
    });
    const urls = {
      good: `stun:127.0.0.1:${mapping.port}`,
      turn: `turn:127.0.0.1:${s.udpPort}`,
      dead: `stun:127.0.0.1:${dead.port}`,
      deadTurn: `turn:127.0.0.1:${dead.port}`,
      wrongPassword: `turn:127.0.0.1:${s.udpPort}?transport=udp`,
      forbidden: `turn:127.0.0.1:${forbidding.port}`,
      dns: 'stun:nowhere.natkit.test',
      refused: `turn:127.0.0.1:${closedPort}?transport=tcp`,
      badUrl: 'stun://127.0.0.1',
      noCreds: `turn:127.0.0.1:${s.tcpPort}?transport=tcp`,
    };
    const timeoutMs = 5000;
    const { g, events, outcomes } = recorded({
      network: loopbackNetwork(),
      clock,
      serverTimeoutMs: timeoutMs,
      iceServers: [
        { urls: [urls.good, urls.dead, urls.dns, urls.badUrl] },
        { urls: [urls.turn, urls.forbidden, urls.refused, urls.deadTurn], username: USER, credential: PASS },
        { urls: urls.wrongPassword, username: USER, credential: 'not the password' },
        { urls: urls.noCreds },
      ],
    });
    const done = g.gather();
    const live = Object.entries(urls).filter(([k]) => k !== 'dead' && k !== 'deadTurn');
    // Every server but the dead ones finishes without the clock moving at all.
    await until(() => live.every(([, u]) => outcomes.has(u)), 'every live server to be done');
    expect(clock.now()).toBe(0);
    expect(outcomes.has(urls.dead)).toBe(false);
    expect(outcomes.has(urls.deadTurn)).toBe(false);
    expect(events).not.toContain('complete');
    // The good servers' candidates are out already.
    expect(g.candidates.map((c) => `${c.type} ${c.server ?? ''}`.trim()).sort()).toEqual(['host', `relay ${urls.turn}`, `srflx ${urls.good}`]);
    expect(outcomes.get(urls.good)).toMatchObject({ ok: true, elapsedMs: 0 });
    expect(outcomes.get(urls.turn)).toMatchObject({ ok: true, elapsedMs: 0 });
    expect(outcomes.get(urls.wrongPassword)).toMatchObject({ ok: false, error: { code: 'AUTH_FAILED', errorCode: 401 } });
    expect(outcomes.get(urls.forbidden)).toMatchObject({ ok: false, error: { code: 'FORBIDDEN', errorCode: 403 } });
    expect(outcomes.get(urls.dns)).toMatchObject({ ok: false, error: { code: 'DNS' } });
    expect(outcomes.get(urls.refused)).toMatchObject({ ok: false, error: { code: 'UNREACHABLE', message: expect.stringMatching(/ECONNREFUSED/) } });
    expect(outcomes.get(urls.badUrl)).toMatchObject({ ok: false, error: { code: 'BAD_URL', message: expect.stringMatching(/no "\/\/"/) } });
    expect(outcomes.get(urls.noCreds)).toMatchObject({ ok: false, error: { code: 'MISSING_CREDENTIALS' } });
    // The dead ones get their full time on the injected clock, and no more.
    clock.advance(timeoutMs - 1);
    expect(outcomes.has(urls.dead)).toBe(false);
    clock.advance(1);
    const report = await done;
    expect(outcomes.get(urls.dead)).toMatchObject({ ok: false, elapsedMs: timeoutMs, error: { code: 'TIMEOUT' } });
    expect(outcomes.get(urls.deadTurn)).toMatchObject({ ok: false, elapsedMs: timeoutMs, error: { code: 'TIMEOUT' } });
    // Order of events: every good candidate before the dead servers' outcomes, then end-of-candidates.
    const firstDead = Math.min(events.indexOf(`done ${urls.dead}`), events.indexOf(`done ${urls.deadTurn}`));
    expect(events.slice(firstDead)).toEqual(expect.arrayContaining([`done ${urls.dead}`, `done ${urls.deadTurn}`, 'complete']));
    expect(events.slice(firstDead)).toHaveLength(3);
    expect(events.at(-1)).toBe('complete');
    expect(report.servers).toHaveLength(Object.keys(urls).length);
    // The dead server heard the Binding request (and retransmissions only as the clock moved).
    expect(dead.seen.length).toBeGreaterThanOrEqual(1);
  });

  it('on the real clock, a dead server times out on its own timer and the report says so', async () => {
    const dead = await silentServer(cleanup);
    const report = await gatherCandidates({ network: loopbackNetwork(), serverTimeoutMs: 300, iceServers: [{ urls: `stun:127.0.0.1:${dead.port}` }] });
    expect(report.servers[0]).toMatchObject({ ok: false, error: { code: 'TIMEOUT', message: expect.stringMatching(/within 300 ms/) } });
    // libuv runs a timer by the loop's cached time, which can trail performance.now() by a
    // fraction of a millisecond: the elapsed time is the 300 ms timer's, to within 1 ms.
    expect(report.servers[0]!.elapsedMs).toBeGreaterThanOrEqual(299);
  });

  it('close() while a server is still silent ends gathering at once: CLOSED, sockets closed', async () => {
    const dead = await silentServer(cleanup);
    const g = new Gatherer({ network: loopbackNetwork(), clock: new ManualClock(), iceServers: [{ urls: `turn:127.0.0.1:${dead.port}`, username: USER, credential: PASS }] });
    let completed = false;
    g.on('complete', () => (completed = true));
    const p = g.gather();
    await until(() => dead.seen.length >= 1, 'the Allocate at the silent server');
    await g.close();
    const report = await p;
    expect(report.servers[0]).toMatchObject({ ok: false, error: { code: 'CLOSED' } });
    expect(g.gatheringState).toBe('closed');
    expect(completed).toBe(false);
    expect(g.bases.every((b) => b.kind === 'host')).toBe(true);
    await expect(g.gather()).resolves.toBe(report);
  });
});

describe('gatherCandidates, the one-call form', () => {
  it('returns every candidate with type, address, related address, server and time, and every server outcome', async () => {
    const s = await turnServer();
    const mapping = await mappingServer(cleanup, { address: '203.0.113.9', port: 9 });
    const report = await gatherCandidates({
      network: loopbackNetwork(),
      iceServers: [{ urls: `stun:127.0.0.1:${mapping.port}` }, { urls: `turn:127.0.0.1:${s.udpPort}`, username: USER, credential: PASS }],
    });
    expect(report.candidates.map((c) => c.type).sort()).toEqual(['host', 'relay', 'srflx']);
    for (const c of report.candidates) {
      expect(c.elapsedMs).toBeGreaterThanOrEqual(0);
      if (c.type !== 'host') {
        expect(c.server).toMatch(/^(stun|turn):/);
        expect(c.relatedAddress).toBe('127.0.0.1');
      }
    }
    expect(report.candidates.find((c) => c.type === 'srflx')).toMatchObject({ address: '203.0.113.9', port: 9 });
    expect(report.servers.map((o) => o.ok)).toEqual([true, true]);
    expect(report.elapsedMs).toBeGreaterThanOrEqual(Math.max(...report.servers.map((o) => o.elapsedMs)));
    // Everything was given back.
    expect(s.allAllocations()).toHaveLength(0);
    expect(addr(report.candidates[0]!)).toMatch(/^127\.0\.0\.1:\d+$/);
  });
});
