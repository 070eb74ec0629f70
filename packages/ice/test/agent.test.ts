// The Node IceAgent, deterministic: the in-memory network (test/helpers/memnet.ts) and a
// ManualClock, a test double of the Gatherer. Timers, demultiplexing, trickle, mDNS, restart,
// relay channels and close. The same agents over real loopback sockets: agent-loopback.test.ts.
import { type TransportAddress, ManualClock, MessageBuilder, MessageClass, Method, Attr, shortTermKey, decodeMessage } from '@natkit/stun';
import { describe, expect, it } from 'vitest';
import { MemorySegment, type MemoryHost } from '../../../test/helpers/memnet.js';
import { thrown } from '../../../test/helpers/thrown.js';
import { CandidateLineError, IceAgent, type IceAgentOptions, type IceCore, IceError, formatCandidateLine } from '../src/index.js';
import { decodeQuery, encodeAnswer } from '../src/mdns/dns.js';
import { seededBytes } from './helpers/wire.js';
import { TestGatherer } from './helpers/test-gatherer.js';

/** Lets the in-memory network (microtasks) settle. */
async function flush(n = 30): Promise<void> {
  for (let i = 0; i < n; i++) await Promise.resolve();
}

interface Rig {
  clock: ManualClock;
  seg: MemorySegment;
  A: IceAgent;
  B: IceAgent;
  gA: TestGatherer;
  gB: TestGatherer;
  log: Array<[number, string, string, unknown]>;
  /** Moves time in steps of `step` ms until `pred` holds or `limit` ms passed. */
  until(pred: () => boolean, limit?: number, step?: number): Promise<number>;
  advance(ms: number, step?: number): Promise<void>;
}

function rig(opts: { a?: IceAgentOptions; b?: IceAgentOptions; hostA?: MemoryHost; relaysA?: string[]; signal?: boolean } = {}): Rig {
  const clock = new ManualClock();
  const seg = new MemorySegment();
  const hostA = opts.hostA ?? seg.host('10.0.0.1', '10.0.0.11');
  const hostB = seg.host('10.0.0.2');
  let gA!: TestGatherer;
  let gB!: TestGatherer;
  const A = new IceAgent({
    controlling: true,
    clock,
    network: hostA,
    core: { random: () => 0.5, randomBytes: seededBytes(1), tieBreaker: 2n },
    gatherer: () => (gA = new TestGatherer({ network: hostA, addresses: ['10.0.0.1'], relays: opts.relaysA })),
    ...opts.a,
  });
  const B = new IceAgent({
    controlling: false,
    clock,
    network: hostB,
    core: { random: () => 0.5, randomBytes: seededBytes(2), tieBreaker: 1n },
    gatherer: () => (gB = new TestGatherer({ network: hostB, addresses: ['10.0.0.2'] })),
    ...opts.b,
  });
  const log: Rig['log'] = [];
  for (const [name, agent, peer] of [
    ['A', A, () => B],
    ['B', B, () => A],
  ] as const) {
    agent.on('state', (s) => log.push([clock.now(), name, 'state', s]));
    agent.on('selected-pair', (p) => log.push([clock.now(), name, 'selected-pair', `${p.local.type}:${p.local.address}->${p.remote.address}`]));
    agent.on('data', (d) => log.push([clock.now(), name, 'data', d.toString()]));
    agent.on('restart', (p) => log.push([clock.now(), name, 'restart', p.ufrag]));
    agent.on('role', (c) => log.push([clock.now(), name, 'role', c]));
    if (opts.signal !== false) {
      // The signalling channel: candidate lines and end-of-candidates, as text.
      agent.on('candidate', (c) => peer().addRemoteCandidate(formatCandidateLine(c)));
      agent.on('gathering-complete', () => peer().addRemoteCandidate('a=end-of-candidates'));
      agent.on('restart', (p) => peer().setRemoteParameters(p));
    }
  }
  const r: Rig = {
    clock,
    seg,
    A,
    B,
    get gA() {
      return gA;
    },
    get gB() {
      return gB;
    },
    log,
    async until(pred, limit = 60_000, step = 1) {
      const start = clock.now();
      await flush();
      while (!pred()) {
        if (clock.now() - start > limit) throw new Error(`not reached within ${limit} ms (t=${clock.now()})`);
        clock.advance(step);
        await flush();
      }
      return clock.now();
    },
    async advance(ms, step = 1) {
      for (let t = 0; t < ms; t += step) {
        clock.advance(step);
        await flush();
      }
    },
  };
  return r;
}

async function start(r: Rig): Promise<void> {
  r.A.setRemoteParameters(r.B.localParameters);
  r.B.setRemoteParameters(r.A.localParameters);
  await Promise.all([r.A.gather(), r.B.gather()]);
  await flush();
}

const events = (r: Rig, who: string, kind: string) => r.log.filter(([, w, k]) => w === who && k === kind).map(([t, , , v]) => [t, v]);

describe('IceAgent (in memory, fake clock)', () => {
  it('connects, reports every state and the selected pair, carries data both ways, closes clean', async () => {
    const r = rig();
    const candidates: string[] = [];
    r.A.on('candidate', (c) => candidates.push(formatCandidateLine(c)));
    await start(r);
    expect(candidates).toEqual([expect.stringMatching(/^candidate:\d+ 1 udp 2130706175 10\.0\.0\.1 \d+ typ host$/)]);
    const connected = r.A.connect();
    await r.until(() => r.A.state === 'completed' && r.B.state === 'completed');
    const pair = await connected;
    expect(pair).toMatchObject({ local: { address: '10.0.0.1', type: 'host' }, remote: { address: '10.0.0.2' } });
    // The in-memory network has no delay: A checks at 0, nominates in the next paced slot.
    expect(events(r, 'A', 'state')).toEqual([
      [0, 'checking'],
      [50, 'connected'],
      [50, 'completed'],
    ]);
    expect(events(r, 'B', 'state')).toEqual([
      [0, 'checking'],
      [50, 'connected'],
      [50, 'completed'],
    ]);
    expect(events(r, 'A', 'selected-pair')).toEqual([[50, 'host:10.0.0.1->10.0.0.2']]);
    await expect(r.B.connect()).resolves.toMatchObject({ local: { address: '10.0.0.2' } });

    expect(r.A.send(Buffer.from('ping'))).toBe(true);
    expect(r.B.send(Buffer.from('pong'))).toBe(true);
    await flush();
    expect(events(r, 'B', 'data')).toEqual([[50, 'ping']]);
    expect(events(r, 'A', 'data')).toEqual([[50, 'pong']]);
    expect(r.A.stats).toMatchObject({ dataSent: 1, dataReceived: 1 });

    await Promise.all([r.A.close(), r.B.close()]);
    expect(events(r, 'A', 'state').at(-1)).toEqual([50, 'closed']);
    expect(r.clock.pending).toBe(0);
    expect(r.seg.open).toBe(0);
    expect(thrown(IceError, () => r.A.send(Buffer.from('x'))).code).toBe('CLOSED');
    await expect(r.A.connect()).rejects.toMatchObject({ code: 'CLOSED' });
    await r.A.close(); // idempotent
  });

  it('keeps one timer on the clock, at the core deadline (consent every 5 s)', async () => {
    const r = rig();
    await start(r);
    await r.until(() => r.A.state === 'completed');
    // One timer per agent (A's and B's), each at its consent deadline.
    expect(r.clock.pending).toBe(2);
    expect(r.clock.nextAt()).toBe(5050);
    await Promise.all([r.A.close(), r.B.close()]);
  });

  it('passes every gathering option to its gatherer (TLS for turns:, retransmissions, SOFTWARE, TURN lifetime), the agent\'s own options not', async () => {
    const seg = new MemorySegment();
    const host = seg.host('10.0.0.1');
    let given: Record<string, unknown> | undefined;
    const tls = { ca: 'PEM', rejectUnauthorized: true };
    const A = new IceAgent({
      network: host,
      iceServers: [{ urls: 'turns:turn.example.org', username: 'u', credential: 'p' }],
      tls,
      retransmit: { rto: 250 },
      software: false,
      turnLifetime: 120,
      serverTimeoutMs: 1234,
      controlling: false,
      ta: 20,
      gatherer: (o) => {
        given = o as unknown as Record<string, unknown>;
        return new TestGatherer({ network: host, addresses: ['10.0.0.1'] });
      },
    });
    await A.gather();
    expect(given).toMatchObject({ tls, retransmit: { rto: 250 }, software: false, turnLifetime: 120, serverTimeoutMs: 1234, component: 1, network: host });
    for (const own of ['controlling', 'ta', 'gatherer', 'core', 'mdns']) expect(given).not.toHaveProperty(own);
    await A.close();
  });

  it('send() before a pair is selected sends nothing and says so', async () => {
    const r = rig();
    expect(r.A.send(Buffer.from('early'))).toBe(false);
    expect(r.A.stats.dataDropped.notConnected).toBe(1);
    await r.A.close();
    await r.B.close();
  });

  it('demultiplexes (RFC 7983): STUN to the core, anything else from the peer to the application, the rest dropped', async () => {
    const r = rig();
    await start(r);
    await r.until(() => r.B.state === 'completed');
    // A datagram that starts with 0x00 but is no STUN message is application data.
    r.A.send(Buffer.from([0, 1, 2, 3]));
    await flush();
    expect(r.log.filter(([, w, k]) => w === 'B' && k === 'data')).toHaveLength(1);
    // Data from an address that is no candidate of a checked pair is not the peer's.
    const stranger = await r.seg.host('10.0.0.66').createUdpSocket({ family: 'IPv4' });
    const bAddr = r.gB.bases[0]!.address;
    stranger.send(Buffer.from('spoof'), bAddr.port, bAddr.address);
    // And a STUN check with a wrong password gets a 401, the pair unharmed.
    const bad = new MessageBuilder(Method.Binding, MessageClass.Request).add(Attr.Username, `${r.B.localParameters.ufrag}:x`).add(Attr.Priority, 1).add(Attr.IceControlling, 5n).encode({ integrity: { key: shortTermKey('w'.repeat(22)) }, fingerprint: true });
    const answers: Buffer[] = [];
    stranger.on('message', (m: Buffer) => answers.push(m));
    stranger.send(bad, bAddr.port, bAddr.address);
    await flush();
    expect(r.B.stats.dataDropped.unknownSource).toBe(1);
    expect(answers.map((m) => decodeMessage(m).get(Attr.ErrorCode)?.code)).toEqual([401]);
    expect(r.B.state).toBe('completed');
    await new Promise<void>((res) => stranger.close(() => res()));
    await Promise.all([r.A.close(), r.B.close()]);
  });

  it('takes remote candidates as lines with any prefix, refuses malformed ones with a typed error', async () => {
    const r = rig({ signal: false });
    await start(r);
    const c = r.gB.candidates[0]!;
    expect(thrown(CandidateLineError, () => r.A.addRemoteCandidate('candidate:1 1 udp 0 10.0.0.2 1 typ host')).code).toBe('BAD_PRIORITY');
    expect(thrown(IceError, () => r.A.addRemoteCandidate({ ...c, port: 0 })).code).toBe('BAD_CANDIDATE');
    // Each refusal is counted too, by kind.
    expect(r.A.stats.remoteCandidatesDropped).toEqual({ malformed: 1, refused: 1, unresolved: 0 });
    r.A.addRemoteCandidate(formatCandidateLine(c, { prefix: 'a=candidate:' }));
    r.B.addRemoteCandidate(formatCandidateLine(r.gA.candidates[0]!, { prefix: '' }));
    await r.until(() => r.A.state === 'connected' && r.B.state === 'connected');
    r.A.addRemoteCandidate('a=end-of-candidates\r\n');
    r.B.endOfRemoteCandidates();
    await flush();
    expect([r.A.state, r.B.state]).toEqual(['completed', 'completed']);
    await Promise.all([r.A.close(), r.B.close()]);
  });

  it('connect() rejects with FAILED when no pair works', async () => {
    const r = rig({ signal: false });
    await start(r);
    const p = r.A.connect();
    const failed = expect(p).rejects.toMatchObject({ code: 'FAILED' });
    r.A.addRemoteCandidate('candidate:1 1 udp 2130706431 10.0.0.99 9 typ host');
    r.A.endOfRemoteCandidates();
    await r.until(() => r.A.state === 'failed', 60_000, 100);
    await failed;
    expect(r.clock.now()).toBe(39_500);
    await Promise.all([r.A.close(), r.B.close()]);
  });

  it('resolves a browser .local candidate by mDNS, and drops one that does not resolve (end-of-candidates waits for it)', async () => {
    const seg = new MemorySegment();
    // The responder: a host on the segment that answers queries for one name.
    const responderHost = seg.host('10.0.0.53');
    const responder = await responderHost.createUdpSocket({ family: 'IPv4', address: '10.0.0.53', port: 5353 });
    const NAME = '1f4712db-ea17-4bcf-a596-105139dfd8bf.local';
    responder.on('message', (m: Buffer, rinfo) => {
      const q = decodeQuery(m);
      if (q?.name === NAME) responder.send(encodeAnswer(q.id, q.name, [{ family: 'IPv4', bytes: Uint8Array.from([10, 0, 0, 2]) }]), rinfo.port, rinfo.address);
    });
    const server: TransportAddress = { family: 'IPv4', address: '10.0.0.53', port: 5353 };
    const clock = new ManualClock();
    const hostA = seg.host('10.0.0.1');
    const hostB = seg.host('10.0.0.2');
    let gB!: TestGatherer;
    const A = new IceAgent({ clock, network: hostA, mdns: { server, timeoutMs: 3000 }, gatherer: () => new TestGatherer({ network: hostA, addresses: ['10.0.0.1'] }) });
    const B = new IceAgent({ controlling: false, clock, network: hostB, gatherer: () => (gB = new TestGatherer({ network: hostB, addresses: ['10.0.0.2'] })) });
    const errors: string[] = [];
    A.on('candidate-error', (e) => errors.push(`${e.candidate.address}: ${(e.error as { code?: string }).code}`));
    B.on('candidate', (c) => A.addRemoteCandidate(formatCandidateLine(c)));
    A.setRemoteParameters(B.localParameters);
    B.setRemoteParameters(A.localParameters);
    await Promise.all([A.gather(), B.gather()]);
    const port = gB.candidates[0]!.port;
    // B's host candidate as a browser signals it, and one nobody answers for.
    A.addRemoteCandidate(`candidate:1 1 udp 2122260223 ${NAME} ${port} typ host generation 0`);
    A.addRemoteCandidate(`candidate:2 1 udp 2122260222 nobody-home.local ${port} typ host`);
    A.endOfRemoteCandidates();
    await flush();
    expect(A.remoteCandidates.map((c) => c.address)).toEqual(['10.0.0.2']);
    expect(errors).toEqual([]);
    for (let t = 0; t < 2990; t += 10) {
      clock.advance(10);
      await flush();
    }
    // Connected over the resolved candidate; not completed: end-of-candidates waits for the
    // name that has not resolved (yet).
    expect(A.state).toBe('connected');
    expect(A.selectedPair!.remote.address).toBe('10.0.0.2');
    clock.advance(10);
    await flush();
    expect(errors).toEqual(['nobody-home.local: TIMEOUT']);
    expect(A.stats.remoteCandidatesDropped.unresolved).toBe(1);
    expect(A.state).toBe('completed');
    await Promise.all([A.close(), B.close()]);
    await new Promise<void>((res) => responder.close(() => res()));
    expect(clock.pending).toBe(0);
    expect(seg.open).toBe(0);
  });

  it('bounds what a peer can make it resolve: names in flight count as remote candidates, one address per family per name; a restart drops the old session\'s waits', async () => {
    const seg = new MemorySegment();
    const responderHost = seg.host('10.0.0.53');
    const responder = await responderHost.createUdpSocket({ family: 'IPv4', address: '10.0.0.53', port: 5353 });
    const queries: string[] = [];
    const WIDE = 'aaaaaaaa-0000-4000-8000-000000000001.local';
    responder.on('message', (m: Buffer, rinfo) => {
      const q = decodeQuery(m);
      if (!q) return;
      queries.push(q.name);
      // A hostile answer: ten addresses for one name.
      if (q.name === WIDE) {
        const answers = Array.from({ length: 10 }, (_, i) => ({ family: 'IPv4' as const, bytes: Uint8Array.from([10, 0, 1, i + 1]) }));
        responder.send(encodeAnswer(q.id, q.name, answers), rinfo.port, rinfo.address);
      }
    });
    const server: TransportAddress = { family: 'IPv4', address: '10.0.0.53', port: 5353 };
    const clock = new ManualClock();
    const hostA = seg.host('10.0.0.1');
    const A = new IceAgent({ clock, network: hostA, mdns: { server, timeoutMs: 3000 }, core: { maxRemoteCandidates: 3 }, gatherer: () => new TestGatherer({ network: hostA, addresses: ['10.0.0.1'] }) });
    A.setRemoteParameters({ ufrag: 'rrrr', pwd: 'p'.repeat(22) });
    await A.gather();
    A.addRemoteCandidate(`candidate:1 1 udp 2122260223 ${WIDE} 5000 typ host`);
    await flush();
    expect(A.remoteCandidates.map((c) => c.address)).toEqual(['10.0.1.1']);
    // Two silent names in flight and one candidate: the limit (3) is reached.
    A.addRemoteCandidate('candidate:2 1 udp 2122260222 silent-1.local 5000 typ host');
    A.addRemoteCandidate('candidate:3 1 udp 2122260221 silent-2.local 5000 typ host');
    expect(thrown(IceError, () => A.addRemoteCandidate('candidate:4 1 udp 2122260220 silent-3.local 5000 typ host')).code).toBe('TOO_MANY_CANDIDATES');
    await flush();
    expect(queries).toEqual([WIDE, 'silent-1.local', 'silent-2.local']);
    // The peer's end-of-candidates waits for the two names; then A restarts: the new session
    // neither waits for them nor gets that end-of-candidates when they time out.
    A.endOfRemoteCandidates();
    A.restart();
    A.setRemoteParameters({ ufrag: 'ssss', pwd: 'q'.repeat(22) });
    for (let t = 0; t < 3000; t += 100) {
      clock.advance(100);
      await flush();
    }
    const core = (A as unknown as { core: IceCore }).core;
    expect(core.endOfCandidates.remote).toBe(false);
    A.endOfRemoteCandidates();
    expect(core.endOfCandidates.remote).toBe(true);
    await A.close();
    await new Promise<void>((res) => responder.close(() => res()));
    expect(clock.pending).toBe(0);
  });

  it('restart: new parameters both ways, candidates again, data flowing throughout', async () => {
    const r = rig();
    await start(r);
    await r.until(() => r.A.state === 'completed' && r.B.state === 'completed');
    const before = r.A.localParameters;
    const reannounced: string[] = [];
    r.A.on('candidate', (c) => reannounced.push(c.address));
    let sent = 0;
    const params = r.A.restart();
    // The peer learns the new parameters (the 'restart' event of B sends B's back).
    r.B.setRemoteParameters(params);
    expect(params.ufrag).not.toBe(before.ufrag);
    expect(r.A.state).toBe('connected');
    for (let i = 0; i < 20; i++) {
      expect(r.A.send(Buffer.from(`m${i}`))).toBe(true);
      sent++;
      await r.advance(5);
    }
    await r.until(() => r.A.state === 'completed' && r.B.state === 'completed');
    expect(reannounced).toEqual(['10.0.0.1']);
    expect(events(r, 'B', 'restart')).toHaveLength(1);
    expect(events(r, 'A', 'selected-pair')).toHaveLength(2);
    expect(events(r, 'B', 'data').map(([, d]) => d)).toEqual(Array.from({ length: sent }, (_, i) => `m${i}`));
    expect(r.A.send(Buffer.from('after'))).toBe(true);
    await flush();
    expect(events(r, 'B', 'data').at(-1)![1]).toBe('after');
    await Promise.all([r.A.close(), r.B.close()]);
  });

  it('binds a TURN channel when a relayed pair is selected', async () => {
    const r = rig({ a: {}, relaysA: ['10.0.0.11'] });
    // A's host path is refused by B, so the relayed candidate carries the pair.
    await start(r);
    r.gA.bases[0]!.mute = true;
    await r.until(() => r.A.state === 'completed', 60_000, 10);
    expect(r.A.selectedPair!.local.type).toBe('relay');
    expect(r.gA.bases[1]!.channels).toEqual([{ family: 'IPv4', address: '10.0.0.2', port: r.gB.candidates[0]!.port }]);
    await Promise.all([r.A.close(), r.B.close()]);
  });

  it('a TURN allocation lost under the selected pair (base-closed) fails the agent at once; a restart does not signal its candidate again', async () => {
    const r = rig({ a: {}, relaysA: ['10.0.0.11'] });
    await start(r);
    r.gA.bases[0]!.mute = true;
    await r.until(() => r.A.state === 'completed', 60_000, 10);
    expect(r.A.selectedPair!.local.type).toBe('relay');
    const t = r.clock.now();
    // The gatherer reports the allocation gone (a refresh refused, RFC 8656 section 7).
    r.gA.emit('base-closed', r.gA.bases[1], new Error('437 Allocation Mismatch'));
    expect(events(r, 'A', 'state').at(-1)).toEqual([t, 'failed']);
    expect(r.A.send(Buffer.from('x'))).toBe(false);
    expect(r.A.localCandidates.map((c) => c.type)).toEqual(['host']);
    const again: string[] = [];
    r.A.on('candidate', (c) => again.push(`${c.type} ${c.address}`));
    r.A.restart();
    await flush();
    expect(again).toEqual(['host 10.0.0.1']);
    await Promise.all([r.A.close(), r.B.close()]);
  });

  it('the peer goes silent: disconnected, then failed, and send() stops', async () => {
    const r = rig({ a: { core: { random: () => 0.5, consent: { intervalMs: 1000, expiryMs: 6000 }, disconnectedAfterMs: 2500 } } });
    await start(r);
    await r.until(() => r.A.state === 'completed');
    const t0 = r.clock.now();
    r.gB.bases[0]!.mute = true;
    await r.until(() => r.A.state === 'failed', 10_000, 10);
    expect(events(r, 'A', 'state').slice(-2)).toEqual([
      [t0 + 2500, 'disconnected'],
      [t0 + 6000, 'failed'],
    ]);
    expect(r.A.send(Buffer.from('x'))).toBe(false);
    await Promise.all([r.A.close(), r.B.close()]);
  });
});
