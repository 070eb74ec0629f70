// The sans-I/O ICE core (RFC 8445, RFC 8838, RFC 7675) on a fake clock: two cores wired to
// each other in memory (test/helpers/wire.ts), exact times in ms, exact bytes on the wire.
import { Attr, AttrType, ErrorCode, MessageBuilder, MessageClass, Method, checkIntegrity, shortTermKey, verifyFingerprint } from '@natkit/stun';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { thrown } from '../../../test/helpers/thrown.js';
import { type IceCoreOptions, IceCore, IceError, type LocalCandidate, candidatePriority, pairPriority } from '../src/index.js';
import { Wire, addr, localCandidate, seededBytes, signalled } from './helpers/wire.js';

const TA = 50;

interface Side {
  name: string;
  core: IceCore;
  locals: LocalCandidate[];
}

/** Two agents, A controlling (tie-breaker 2) and B controlled (1), 10 ms apart. */
function setup(opts: { a?: IceCoreOptions; b?: IceCoreOptions; latency?: number; basesA?: Record<number, ReturnType<typeof addr>>; basesB?: Record<number, ReturnType<typeof addr>> } = {}) {
  const w = new Wire();
  w.latency = opts.latency ?? 10;
  const A = new IceCore({ controlling: true, tieBreaker: 2n, randomBytes: seededBytes(1), random: () => 0.5, ...opts.a });
  const B = new IceCore({ controlling: false, tieBreaker: 1n, randomBytes: seededBytes(2), random: () => 0.5, ...opts.b });
  w.add('A', A, opts.basesA ?? { 1: addr('10.0.0.1', 1000) });
  w.add('B', B, opts.basesB ?? { 1: addr('10.0.0.2', 2000) });
  return { w, A, B };
}

/** Gathers, signals parameters and candidates both ways and end-of-candidates, at w.now. */
function exchange(w: Wire, a: Side, b: Side, opts: { eoc?: boolean } = {}): void {
  const t = w.now;
  for (const s of [a, b]) for (const c of s.locals) w.apply(s.name, s.core.addLocalCandidate(c, t));
  if (opts.eoc !== false) for (const s of [a, b]) w.apply(s.name, s.core.endOfLocalCandidates(t));
  for (const [me, peer] of [
    [a, b],
    [b, a],
  ] as const) {
    w.apply(me.name, me.core.setRemoteParameters(peer.core.localParameters, t));
    for (const c of peer.locals) w.apply(me.name, me.core.addRemoteCandidate(signalled(c), t));
    if (opts.eoc !== false) w.apply(me.name, me.core.endOfRemoteCandidates(t));
  }
}

const hostA = localCandidate('host', 1, '10.0.0.1', 1000);
const hostB = localCandidate('host', 1, '10.0.0.2', 2000);

describe('ICE core: connecting two agents (RFC 8445)', () => {
  it('host to host: exact timeline, states and selected pair on both sides', () => {
    const { w, A, B } = setup();
    exchange(w, { name: 'A', core: A, locals: [hostA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(1000);
    // A checks at t0, B's answer comes back at 20; the nomination is the next paced check at
    // t0 + Ta; B selects when it arrives (60), A when the answer does (70).
    expect(w.states('A')).toEqual([
      [0, 'checking'],
      [70, 'connected'],
      [70, 'completed'],
    ]);
    expect(w.states('B')).toEqual([
      [0, 'checking'],
      [60, 'connected'],
      [60, 'completed'],
    ]);
    const selA = w.eventsOf('selected-pair', 'A');
    expect(selA).toHaveLength(1);
    expect(selA[0]!.action.pair).toMatchObject({ local: { address: '10.0.0.1', port: 1000 }, remote: { address: '10.0.0.2', port: 2000 }, nominated: true, rtt: 20 });
    expect(B.selectedPair()).toMatchObject({ local: { address: '10.0.0.2' }, remote: { address: '10.0.0.1' } });
    expect(A.dataPath()).toMatchObject({ baseId: 1, to: { address: '10.0.0.2', port: 2000 } });
    expect(B.dataPath()).toMatchObject({ baseId: 1, to: { address: '10.0.0.1', port: 1000 } });
    // The nomination request carried USE-CANDIDATE; the first check did not.
    const requestsA = w.stun('A').filter((p) => p.msg.isRequest());
    expect(requestsA.map((p) => [p.t, p.msg.has(AttrType.USE_CANDIDATE)])).toEqual([
      [0, false],
      [50, true],
    ]);
  });

  it('application data is the peer\'s from a checked source on the same base, however its IPv6 address is spelled; from anywhere else it is not', () => {
    const { w, A, B } = setup({ basesA: { 1: addr('2001:db8::1', 1000) }, basesB: { 1: addr('2001:db8::2', 2000) } });
    const v6A = localCandidate('host', 1, '2001:db8::1', 1000);
    const v6B = localCandidate('host', 1, '2001:db8::2', 2000);
    expect(A.isDataSource(1, addr('2001:db8::2', 2000))).toBe(false);
    exchange(w, { name: 'A', core: A, locals: [v6A] }, { name: 'B', core: B, locals: [v6B] });
    w.run(1000);
    expect(A.state).toBe('completed');
    for (const spelling of ['2001:db8::2', '2001:0db8:0:0:0:0:0:2', '2001:DB8::0:2']) {
      expect(A.isDataSource(1, addr(spelling, 2000))).toBe(true);
    }
    expect(B.isDataSource(1, addr('2001:db8:0::1', 1000))).toBe(true);
    expect(A.isDataSource(1, addr('2001:db8::2', 2001))).toBe(false);
    expect(A.isDataSource(2, addr('2001:db8::2', 2000))).toBe(false);
    expect(A.isDataSource(1, addr('2001:db8::66', 2000))).toBe(false);
  });
});

describe('ICE core: the bytes on the wire (RFC 8445 7.1, 7.3; RFC 8489)', () => {
  it('a check carries USERNAME "RFRAG:LFRAG", PRIORITY, ICE-CONTROLLING, MESSAGE-INTEGRITY with the peer password, FINGERPRINT', () => {
    const { w, A, B } = setup();
    exchange(w, { name: 'A', core: A, locals: [hostA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(25);
    const [check] = w.stun('A');
    const m = check!.msg;
    expect(m.isRequest()).toBe(true);
    expect(m.method).toBe(Method.Binding);
    expect(m.attributes.map((a) => a.type)).toEqual([AttrType.USERNAME, AttrType.PRIORITY, AttrType.ICE_CONTROLLING, AttrType.MESSAGE_INTEGRITY, AttrType.FINGERPRINT]);
    expect(m.get(Attr.Username)).toBe(`${B.localParameters.ufrag}:${A.localParameters.ufrag}`);
    // RFC 8445 7.1.1: the priority of a peer-reflexive candidate with the same local preference.
    expect(m.get(Attr.Priority)).toBe(candidatePriority(110, 65535, 1));
    expect(m.get(Attr.IceControlling)).toBe(2n);
    expect(checkIntegrity(m, shortTermKey(B.localParameters.pwd))).toBe('sha1');
    expect(checkIntegrity(m, shortTermKey(A.localParameters.pwd))).toBe('mismatch');
    expect(verifyFingerprint(m)).toBe(true);
    expect(check!.to).toEqual(addr('10.0.0.2', 2000));

    const [checkB] = w.stun('B').filter((p) => p.msg.isRequest());
    expect(checkB!.msg.get(Attr.IceControlled)).toBe(1n);
    expect(checkB!.msg.has(AttrType.ICE_CONTROLLING)).toBe(false);

    const answer = w.stun('B').find((p) => p.msg.isSuccess() && p.msg.transactionId.equals(m.transactionId))!;
    expect(answer.t).toBe(10);
    expect(answer.msg.attributes.map((a) => a.type)).toEqual([AttrType.XOR_MAPPED_ADDRESS, AttrType.MESSAGE_INTEGRITY, AttrType.FINGERPRINT]);
    expect(answer.msg.get(Attr.XorMappedAddress)).toEqual(addr('10.0.0.1', 1000));
    expect(checkIntegrity(answer.msg, shortTermKey(B.localParameters.pwd))).toBe('sha1');
    expect(verifyFingerprint(answer.msg)).toBe(true);
  });
});

describe('ICE core: the checklist (RFC 8445 6.1.2)', () => {
  it('pairs by component and family, replaces a srflx candidate by its base, orders by pair priority, freezes by foundation', () => {
    const A = new IceCore({ controlling: true, tieBreaker: 2n, randomBytes: seededBytes(1) });
    const srflxA = localCandidate('srflx', 1, '203.0.113.1', 5000, { base: addr('10.0.0.1', 1000), server: '198.51.100.9' });
    const relayA = localCandidate('relay', 2, '198.51.100.9', 40000, { base: addr('10.0.0.1', 1001), server: '198.51.100.9' });
    const v6A = localCandidate('host', 3, '2001:db8::1', 1002);
    for (const c of [hostA, srflxA, relayA, v6A]) A.addLocalCandidate(c, 0);
    A.setRemoteParameters({ ufrag: 'rrrr', pwd: 'p'.repeat(22) }, 0);
    const b1 = signalled(localCandidate('host', 1, '10.0.0.2', 2000));
    // Same IP, another port: the same foundation as b1 (RFC 8445 5.1.1.3).
    const b2 = signalled(localCandidate('host', 2, '10.0.0.2', 2001, { localPreference: 65534 }));
    const bLinkLocal = signalled(localCandidate('host', 3, 'fe80::2', 2002));
    for (const c of [b1, b2, bLinkLocal]) A.addRemoteCandidate(c, 0);

    const list = A.checklist;
    // hostA and relayA pair with b1 and b2; srflxA is its base's (hostA) and adds nothing;
    // the global IPv6 candidate meets only a link-local one and pairs with nothing.
    expect(list.map((p) => `${p.local.type}:${p.local.port}->${p.remote.port}`)).toEqual(['host:1000->2000', 'host:1000->2001', 'relay:40000->2000', 'relay:40000->2001']);
    expect(list.map((p) => p.priority)).toEqual([
      pairPriority(hostA.priority, b1.priority),
      pairPriority(hostA.priority, b2.priority),
      pairPriority(relayA.priority, b1.priority),
      pairPriority(relayA.priority, b2.priority),
    ]);
    // Checking started with the highest pair; the second of each foundation waits frozen.
    expect(list.map((p) => p.state)).toEqual(['in-progress', 'frozen', 'waiting', 'frozen']);
    // RFC 8445 6.1.2.3 as controlled: G is the remote priority.
    const Bc = new IceCore({ controlling: false, randomBytes: seededBytes(3) });
    Bc.addLocalCandidate(hostA, 0);
    Bc.addRemoteCandidate(b1, 0);
    expect(Bc.checklist[0]!.priority).toBe(pairPriority(b1.priority, hostA.priority));
  });

  it('keeps at most maxPairs pairs, dropping the lowest (RFC 8445 6.1.2.5)', () => {
    const A = new IceCore({ maxPairs: 2, randomBytes: seededBytes(1) });
    A.addLocalCandidate(hostA, 0);
    for (let i = 0; i < 4; i++) A.addRemoteCandidate(signalled(localCandidate('host', i, `10.0.1.${i + 1}`, 3000, { localPreference: 100 + i })), 0);
    expect(A.checklist.map((p) => p.remote.address)).toEqual(['10.0.1.4', '10.0.1.3']);
  });

  it('unfreezes a foundation when one of its pairs succeeds (RFC 8445 7.2.5.3.3)', () => {
    const { w, A, B } = setup({ basesB: { 1: addr('10.0.0.2', 2000), 2: addr('10.0.0.2', 2001) } });
    const hostB2 = localCandidate('host', 2, '10.0.0.2', 2001, { localPreference: 65534 });
    exchange(w, { name: 'A', core: A, locals: [hostA] }, { name: 'B', core: B, locals: [hostB, hostB2] });
    expect(A.checklist.map((p) => p.state)).toEqual(['in-progress', 'frozen']);
    w.run(20);
    expect(A.checklist.map((p) => p.state)).toEqual(['succeeded', 'waiting']);
  });
});

describe('ICE core: unfreezing (RFC 8445 6.1.4.2)', () => {
  it('a frozen pair waits while its foundation has a pair in progress, and is checked when that one fails', () => {
    const { w, A } = setup({ a: { rtoMin: 100, rc: 2, rm: 2 } });
    w.drop = () => true;
    A.addLocalCandidate(hostA, 0);
    A.setRemoteParameters({ ufrag: 'rrrr', pwd: 'p'.repeat(22) }, 0);
    // Two remote candidates on one address: one foundation.
    const r1 = signalled(localCandidate('host', 1, '10.9.0.1', 4000));
    const r2 = signalled(localCandidate('host', 2, '10.9.0.1', 4001, { localPreference: 65534 }));
    w.apply('A', A.addRemoteCandidate(r1, 0));
    w.apply('A', A.addRemoteCandidate(r2, 0));
    expect(A.checklist.map((p) => p.state)).toEqual(['in-progress', 'frozen']);
    w.run(1000);
    // r1: sent at 0 and 100 (Rc = 2), failed at 100 + Rm * RTO = 300; only then is r2's
    // pair unfrozen and checked, not at t0 + Ta.
    const sends = (port: number) => w.sent.filter((p) => p.to.port === port).map((p) => p.t);
    expect(sends(4000)).toEqual([0, 100]);
    expect(sends(4001)).toEqual([300, 400]);
    expect(A.checklist.map((p) => p.state)).toEqual(['failed', 'failed']);
  });
});

describe('ICE core: the controlled side (RFC 8445 7.3.1.5)', () => {
  it('USE-CANDIDATE on a pair it has not checked: a triggered check, nominated when it succeeds', () => {
    const { w, A, B } = setup({ a: { nomination: 'aggressive' } });
    w.apply('A', A.addLocalCandidate(hostA, 0));
    w.apply('B', B.addLocalCandidate(hostB, 0));
    w.apply('A', A.setRemoteParameters(B.localParameters, 0));
    w.apply('A', A.addRemoteCandidate(signalled(hostB), 0));
    // B has A's parameters but not its candidate.
    w.apply('B', B.setRemoteParameters(A.localParameters, 0));
    w.run(100);
    // A's check (USE-CANDIDATE) reaches B at 10: B answers, learns A as peer-reflexive and
    // checks back at once; the answer to that check comes at 30 and selects the pair.
    expect(w.stun('B').filter((p) => p.msg.isRequest()).map((p) => p.t)).toEqual([10]);
    expect(w.eventsOf('selected-pair', 'B').map((e) => [e.t, e.action.pair.remote.type])).toEqual([[30, 'prflx']]);
    expect(w.eventsOf('selected-pair', 'A').map((e) => e.t)).toEqual([20]);
  });
});

describe('ICE core: pacing, RTO and retransmissions (RFC 8445 14; RFC 8489 6.2.1)', () => {
  it('sends one new check every Ta and retransmits each at its RTO, doubling, until it fails', () => {
    const { w, A } = setup();
    w.drop = () => true;
    A.addLocalCandidate(hostA, 0);
    A.setRemoteParameters({ ufrag: 'rrrr', pwd: 'p'.repeat(22) }, 0);
    const remotes = [1, 2, 3].map((i) => signalled(localCandidate('host', i, `10.9.0.${i}`, 4000, { localPreference: 1000 - i })));
    for (const r of remotes) w.apply('A', A.addRemoteCandidate(r, 0));
    w.apply('A', A.endOfLocalCandidates(0));
    w.run(100_000);
    const sends = (ip: string) => w.sent.filter((p) => p.to.address === ip).map((p) => p.t);
    // First sends at t0, t0 + Ta, t0 + 2 Ta; RTO = MAX(500, Ta * (waiting + in progress)) =
    // 500; Rc = 7 requests, the interval doubling (RFC 8489 6.2.1).
    expect(sends('10.9.0.1')).toEqual([0, 500, 1500, 3500, 7500, 15500, 31500]);
    expect(sends('10.9.0.2')).toEqual([50, 550, 1550, 3550, 7550, 15550, 31550]);
    expect(sends('10.9.0.3')).toEqual([100, 600, 1600, 3600, 7600, 15600, 31600]);
    // Every retransmission is the same request, byte for byte.
    const first = w.sent.filter((p) => p.to.address === '10.9.0.1');
    for (const p of first) expect(p.data.equals(first[0]!.data)).toBe(true);
    // The last wait is Rm * RTO = 8 s: pairs fail at 39.5 s; without end-of-candidates from
    // the peer the agent keeps waiting (RFC 8838 section 8).
    expect(A.checklist.map((p) => p.state)).toEqual(['failed', 'failed', 'failed']);
    expect(w.states('A')).toEqual([[0, 'checking']]);
    w.apply('A', A.endOfRemoteCandidates(w.now));
    expect(w.states('A')).toEqual([
      [0, 'checking'],
      [100_000, 'failed'],
    ]);
    expect(A.dataPath()).toBeUndefined();
    expect(A.nextTimeout()).toBeUndefined();
  });

  it('fails the moment the last pair fails when both sides signalled end-of-candidates', () => {
    const { w, A } = setup();
    w.drop = () => true;
    A.addLocalCandidate(hostA, 0);
    A.setRemoteParameters({ ufrag: 'rrrr', pwd: 'p'.repeat(22) }, 0);
    w.apply('A', A.addRemoteCandidate(signalled(hostB), 0));
    w.apply('A', A.endOfLocalCandidates(0));
    w.apply('A', A.endOfRemoteCandidates(0));
    w.run(100_000);
    expect(w.states('A')).toEqual([
      [0, 'checking'],
      [39_500, 'failed'],
    ]);
  });

  it('with no pair at all, waits one check timeout for peer-reflexive candidates before failing', () => {
    // B's candidates never reach A (a signalling filter); both sides signal end-of-candidates.
    const { w, A, B } = setup({ a: { controlling: false }, b: { controlling: true } });
    for (const [n, c, l] of [
      ['A', A, hostA],
      ['B', B, hostB],
    ] as const) {
      w.apply(n, c.addLocalCandidate(l, 0));
      w.apply(n, c.endOfLocalCandidates(0));
    }
    w.apply('A', A.setRemoteParameters(B.localParameters, 0));
    w.apply('A', A.endOfRemoteCandidates(0));
    w.run(1000);
    expect(A.state).toBe('new');
    // B starts checking at 1000: A learns it as peer-reflexive and connects.
    w.apply('B', B.setRemoteParameters(A.localParameters, 1000));
    w.apply('B', B.addRemoteCandidate(signalled(hostA), 1000));
    w.apply('B', B.endOfRemoteCandidates(1000));
    w.run(2000);
    expect(A.state).toBe('completed');
    expect(A.selectedPair()!.remote.type).toBe('prflx');

    // Nobody ever checks: failed after Rc sends and the last wait of one check (39.5 s).
    const lone = setup();
    lone.w.apply('A', lone.A.addLocalCandidate(hostA, 0));
    lone.w.apply('A', lone.A.endOfLocalCandidates(0));
    lone.w.apply('A', lone.A.setRemoteParameters({ ufrag: 'rrrr', pwd: 'p'.repeat(22) }, 0));
    lone.w.apply('A', lone.A.endOfRemoteCandidates(0));
    lone.w.run(100_000);
    expect(lone.w.states('A')).toEqual([[39_500, 'failed']]);
  });

  it('scales the RTO with the checks outstanding and honours a configured Ta', () => {
    const { w, A } = setup({ a: { ta: 20, rtoMin: 100 } });
    w.drop = () => true;
    A.addLocalCandidate(hostA, 0);
    for (let i = 1; i <= 8; i++) w.apply('A', A.addRemoteCandidate(signalled(localCandidate('host', i, `10.9.0.${i}`, 4000, { localPreference: 1000 - i })), 0));
    w.apply('A', A.setRemoteParameters({ ufrag: 'rrrr', pwd: 'p'.repeat(22) }, 0));
    w.run(400);
    // Eight pairs waiting: RTO = 20 * 8 = 160 ms for the first check; first sends every 20 ms.
    expect(w.sent.filter((p) => p.to.address === '10.9.0.1').map((p) => p.t)).toEqual([0, 160]);
    expect(w.sent.slice(0, 8).map((p) => p.t)).toEqual([0, 20, 40, 60, 80, 100, 120, 140]);
  });
});

describe('ICE core: triggered checks (RFC 8445 7.3.1.4)', () => {
  it('a check from the peer puts its pair ahead of the ordinary checks', () => {
    const { w, A, B } = setup();
    // A believes B has two better (unreachable) candidates; B's check arrives at 10 and its
    // pair is A's next check at t0 + Ta, ahead of the better ones.
    const ghosts = [1, 2].map((i) => signalled(localCandidate('host', 9, `10.9.0.${i}`, 4000)));
    for (const g of ghosts) g.priority = hostB.priority + 10;
    w.apply('A', A.addLocalCandidate(hostA, 0));
    w.apply('B', B.addLocalCandidate(hostB, 0));
    w.apply('A', A.setRemoteParameters(B.localParameters, 0));
    w.apply('B', B.setRemoteParameters(A.localParameters, 0));
    for (const g of ghosts) w.apply('A', A.addRemoteCandidate(g, 0));
    w.apply('B', B.addRemoteCandidate(signalled(hostA), 0));
    w.run(60);
    expect(w.sent.filter((p) => p.sender === 'A' && decode(p.data).isRequest()).map((p) => [p.t, p.to.address])).toEqual([
      [0, '10.9.0.1'],
      [50, '10.0.0.2'],
    ]);
    // The pair was learned from the check (B was never signalled to A): peer-reflexive.
    expect(w.eventsOf('remote-prflx', 'A').map((e) => [e.t, e.action.candidate.address, e.action.candidate.priority])).toEqual([[10, '10.0.0.2', candidatePriority(110, 65535, 1)]]);
  });
});

function decode(b: Buffer) {
  return w_decode(b);
}
import { decodeMessage as w_decode } from '@natkit/stun';

describe('ICE core: roles (RFC 8445 7.3.1.1, 7.2.5.1)', () => {
  it('both controlling: the lower tie-breaker yields on the request, the higher answers 487', () => {
    const { w, A, B } = setup({ a: { controlling: true, tieBreaker: 10n }, b: { controlling: true, tieBreaker: 20n } });
    exchange(w, { name: 'A', core: A, locals: [hostA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(2000);
    // A receives B's check (ICE-CONTROLLING 20 > 10) at 10 and becomes controlled; B
    // receives A's (10 <= 20) and answers 487; A's 487 at 20 finds it already switched.
    expect(w.eventsOf('role').map((e) => [e.t, e.who, e.action.controlling])).toEqual([[10, 'A', false]]);
    const conflicts = w.stun('B').filter((p) => p.msg.isError());
    expect(conflicts.map((p) => [p.t, p.msg.get(Attr.ErrorCode)?.code])).toEqual([[10, ErrorCode.RoleConflict]]);
    // The 487 is signed with B's password.
    expect(checkIntegrity(conflicts[0]!.msg, shortTermKey(B.localParameters.pwd))).toBe('sha1');
    expect(A.controlling).toBe(false);
    expect(B.controlling).toBe(true);
    expect(A.state).toBe('completed');
    expect(B.state).toBe('completed');
    expect(A.selectedPair()!.remote.address).toBe('10.0.0.2');
    // Priorities were recomputed with the new roles (G is now B's candidate).
    expect(A.selectedPair()!.priority).toBe(pairPriority(hostB.priority, hostA.priority));
  });

  it('a 487 answer switches the role and repeats the check (the peer had not started)', () => {
    const { w, A, B } = setup({ a: { controlling: true, tieBreaker: 10n }, b: { controlling: true, tieBreaker: 20n } });
    // B knows nothing of A yet, but can authenticate A's check with its own password.
    w.apply('A', A.addLocalCandidate(hostA, 0));
    w.apply('B', B.addLocalCandidate(hostB, 0));
    w.apply('A', A.setRemoteParameters(B.localParameters, 0));
    w.apply('A', A.addRemoteCandidate(signalled(hostB), 0));
    w.run(200);
    expect(w.eventsOf('role').map((e) => [e.t, e.who, e.action.controlling])).toEqual([[20, 'A', false]]);
    const checksA = w.stun('A').filter((p) => p.msg.isRequest());
    expect(checksA.map((p) => [p.t, p.msg.has(AttrType.ICE_CONTROLLING), p.msg.has(AttrType.ICE_CONTROLLED)])).toEqual([
      [0, true, false],
      [50, false, true],
    ]);
    expect(A.stats.roleConflicts).toBe(1);
  });

  it('both controlled: the higher tie-breaker takes control', () => {
    const { w, A, B } = setup({ a: { controlling: false, tieBreaker: 20n }, b: { controlling: false, tieBreaker: 10n } });
    exchange(w, { name: 'A', core: A, locals: [hostA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(2000);
    expect(w.eventsOf('role').map((e) => [e.t, e.who, e.action.controlling])).toEqual([[10, 'A', true]]);
    expect(w.stun('B').filter((p) => p.msg.isError()).map((p) => p.msg.get(Attr.ErrorCode)?.code)).toEqual([487]);
    expect([A.controlling, B.controlling]).toEqual([true, false]);
    expect([A.state, B.state]).toEqual(['completed', 'completed']);
  });
});

describe('ICE core: nomination without per-type waits (RFC 8445 8.1.1)', () => {
  const relayA = localCandidate('relay', 2, '198.51.100.9', 40000, { base: addr('10.0.0.1', 1001), server: '198.51.100.9' });
  const basesA = { 1: addr('10.0.0.1', 1000), 2: addr('198.51.100.9', 40000) };

  it('relay only: the first valid pair is nominated at once', () => {
    const { w, A, B } = setup({ basesA });
    exchange(w, { name: 'A', core: A, locals: [relayA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(1000);
    expect(w.states('A')).toEqual([
      [0, 'checking'],
      [70, 'connected'],
      [70, 'completed'],
    ]);
    expect(A.selectedPair()!.local.type).toBe('relay');
  });

  it('a better pair that goes unanswered holds the nomination for one RTO and twice the RTT, then the valid relay pair is nominated', () => {
    const { w, A, B } = setup({ basesA });
    // The direct path is blocked both ways; the relay path works.
    w.drop = (p) => p.from.address.startsWith('10.0.0.') && p.to.address.startsWith('10.0.0.');
    exchange(w, { name: 'A', core: A, locals: [hostA, relayA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(3000);
    const hostSends = w.sent.filter((p) => p.sender === 'A' && p.from.port === 1000 && decode(p.data).isRequest()).map((p) => p.t);
    expect(hostSends.slice(0, 2)).toEqual([0, 500]);
    const nominations = w.stun('A').filter((p) => p.msg.isRequest() && p.msg.has(AttrType.USE_CANDIDATE));
    // The host pair's check went unanswered for a full RTO (500) and its retransmission for
    // twice the relay pair's RTT (2 x 20): then the relay pair is nominated, at once (the
    // pacing slot is free).
    expect(nominations.map((p) => p.t)).toEqual([540]);
    expect(nominations[0]!.from.port).toBe(40000);
    expect(A.selectedPair()!.local.type).toBe('relay');
    expect(B.selectedPair()!.remote.address).toBe('198.51.100.9');
  });

  it('a frozen better pair whose foundation has given up does not hold the nomination either', () => {
    // A second host candidate on the same address: the same foundation as the first, so its
    // pair stays frozen while the first one's check is in progress (RFC 8445 6.1.2.6).
    const hostA2 = localCandidate('host', 3, '10.0.0.1', 1002, { localPreference: 65000 });
    const { w, A, B } = setup({ basesA: { ...basesA, 3: addr('10.0.0.1', 1002) } });
    w.drop = (p) => p.from.address.startsWith('10.0.0.') && p.to.address.startsWith('10.0.0.');
    exchange(w, { name: 'A', core: A, locals: [hostA, hostA2, relayA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(3000);
    // Frozen all along: its foundation was busy with the first host pair's check.
    expect(w.sent.filter((p) => p.sender === 'A' && p.from.port === 1002)).toEqual([]);
    // Given up with the first host pair at 540, not once that check fails (39.5 s).
    const nominations = w.stun('A').filter((p) => p.msg.isRequest() && p.msg.has(AttrType.USE_CANDIDATE));
    expect(nominations.map((p) => [p.t, p.from.port])).toEqual([[540, 40000]]);
    expect(A.selectedPair()!.local.type).toBe('relay');
  });

  it('a better pair that answers within that time wins over the valid relay pair', () => {
    const { w, A, B } = setup({ basesA });
    // The direct path loses only what is sent in the first 100 ms: the host pair's
    // retransmission at 500 is answered at 520, before the relay pair could be nominated (540).
    w.drop = (p) => p.t < 100 && p.from.address.startsWith('10.0.0.') && p.to.address.startsWith('10.0.0.');
    exchange(w, { name: 'A', core: A, locals: [hostA, relayA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(3000);
    expect(A.selectedPair()!.local.type).toBe('host');
    expect(B.selectedPair()!.remote.address).toBe('10.0.0.1');
    expect(w.eventsOf('selected-pair')).toHaveLength(2);
    // The answer came to the retransmission: the RTT is timed from it (Karn), not from t0.
    expect(A.selectedPair()!.rtt).toBe(20);
  });

  it('aggressive nomination: every check carries USE-CANDIDATE and the first success is selected', () => {
    const { w, A, B } = setup({ a: { nomination: 'aggressive' } });
    exchange(w, { name: 'A', core: A, locals: [hostA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(1000);
    expect(w.stun('A').filter((p) => p.msg.isRequest())[0]!.msg.has(AttrType.USE_CANDIDATE)).toBe(true);
    expect(w.states('A')).toEqual([
      [0, 'checking'],
      [20, 'connected'],
      [20, 'completed'],
    ]);
    expect(w.states('B')).toEqual([
      [0, 'checking'],
      [20, 'connected'],
      [20, 'completed'],
    ]);
  });

  it('an ICE-lite peer: the full agent controls, the lite agent never sends a check', () => {
    const { w, A, B } = setup({ a: { controlling: false }, b: { lite: true } });
    expect(B.localParameters.lite).toBe(true);
    exchange(w, { name: 'A', core: A, locals: [hostA] }, { name: 'B', core: B, locals: [hostB] });
    // exchange() passed B's parameters with lite: true; A took control (RFC 8445 6.1.1).
    expect(w.eventsOf('role', 'A').map((e) => [e.t, e.action.controlling])).toEqual([[0, true]]);
    w.run(12_000);
    expect(w.states('A')).toEqual([
      [0, 'checking'],
      [70, 'connected'],
      [70, 'completed'],
    ]);
    expect(w.states('B')).toEqual([
      [10, 'checking'],
      [60, 'connected'],
      [60, 'completed'],
    ]);
    expect(w.stun('B').filter((p) => p.msg.isRequest())).toEqual([]);
    // A keeps consent (every 5 s); B takes A's checks as its evidence and stays completed.
    expect(w.stun('A').filter((p) => p.msg.isRequest()).map((p) => p.t)).toEqual([0, 50, 5070, 10070]);
    expect(B.state).toBe('completed');
  });
});

describe('ICE core: peer-reflexive and server-reflexive candidates (RFC 8445 7.2.5.3.1, 7.3.1.3)', () => {
  it('behind a NAT with only its host candidate signalled, each side learns the other peer-reflexive', () => {
    const { w, A, B } = setup();
    w.nat({ name: 'A', baseId: 1, public: addr('203.0.113.1', 5000), filter: 'port' });
    exchange(w, { name: 'A', core: A, locals: [hostA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(2000);
    // B learns A's mapped address from A's check...
    const prflxB = w.eventsOf('remote-prflx', 'B');
    expect(prflxB.map((e) => [e.t, e.action.candidate.address, e.action.candidate.port, e.action.candidate.priority])).toEqual([[10, '203.0.113.1', 5000, candidatePriority(110, 65535, 1)]]);
    // ...and A learns its own from B's answer: a local prflx candidate on the host base, with
    // the PRIORITY its check carried.
    const prflxA = w.eventsOf('local-prflx', 'A');
    expect(prflxA).toHaveLength(1);
    expect(prflxA[0]!.action.candidate).toMatchObject({ type: 'prflx', address: '203.0.113.1', port: 5000, baseId: 1, priority: candidatePriority(110, 65535, 1), relatedAddress: '10.0.0.1' });
    expect(A.selectedPair()).toMatchObject({ local: { type: 'prflx', address: '203.0.113.1' }, remote: { address: '10.0.0.2' } });
    expect(B.selectedPair()).toMatchObject({ local: { type: 'host' }, remote: { type: 'prflx', address: '203.0.113.1' } });
    // B's own check to A's private address goes nowhere; it ranks above the selected pair, so
    // the controlled B lets it run on (RFC 8445 8.1.2) until it fails; the selection stays.
    expect(B.checklist.find((p) => p.remote.address === '10.0.0.1')!.state).toBe('in-progress');
    w.run(45_000);
    expect(B.checklist.find((p) => p.remote.address === '10.0.0.1')!.state).toBe('failed');
    expect(B.selectedPair()).toMatchObject({ remote: { type: 'prflx', address: '203.0.113.1' } });
    expect(B.state).toBe('completed');
  });

  it('a signalled srflx candidate names the valid pair (no prflx), and the check went from its base', () => {
    const { w, A, B } = setup();
    w.nat({ name: 'A', baseId: 1, public: addr('203.0.113.1', 5000), filter: 'address' });
    const srflxA = localCandidate('srflx', 1, '203.0.113.1', 5000, { base: addr('10.0.0.1', 1000), server: '198.51.100.1' });
    exchange(w, { name: 'A', core: A, locals: [hostA, srflxA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(2000);
    expect(w.eventsOf('local-prflx')).toEqual([]);
    expect(w.eventsOf('remote-prflx')).toEqual([]);
    expect(A.selectedPair()).toMatchObject({ local: { type: 'srflx', address: '203.0.113.1', baseId: 1 } });
    expect(B.selectedPair()).toMatchObject({ remote: { type: 'srflx', address: '203.0.113.1' } });
    expect(A.dataPath()).toMatchObject({ baseId: 1, to: { address: '10.0.0.2' } });
  });

  it('a check that arrives before the candidate is signalled makes a prflx candidate, replaced when the candidate comes', () => {
    const { w, A, B } = setup();
    w.apply('A', A.addLocalCandidate(hostA, 0));
    w.apply('B', B.addLocalCandidate(hostB, 0));
    w.apply('A', A.setRemoteParameters(B.localParameters, 0));
    w.apply('A', A.addRemoteCandidate(signalled(hostB), 0));
    w.apply('B', B.setRemoteParameters(A.localParameters, 0));
    w.run(300);
    expect(B.remoteCandidates.map((c) => [c.type, c.address])).toEqual([['prflx', '10.0.0.1']]);
    expect(B.state).toBe('connected');
    w.apply('B', B.addRemoteCandidate(signalled(hostA), 300));
    expect(B.remoteCandidates.map((c) => [c.type, c.address, c.priority])).toEqual([['host', '10.0.0.1', hostA.priority]]);
    expect(B.selectedPair()!.remote.type).toBe('host');
  });
});

describe('ICE core: trickle (RFC 8838)', () => {
  it('checks start when both the parameters and a candidate are there, in either order', () => {
    const { w, A, B } = setup();
    w.apply('A', A.addLocalCandidate(hostA, 0));
    w.apply('B', B.addLocalCandidate(hostB, 0));
    // Candidates first, parameters at 200.
    w.apply('A', A.addRemoteCandidate(signalled(hostB), 0));
    w.run(200);
    expect(w.sent).toEqual([]);
    expect(A.state).toBe('new');
    w.apply('A', A.setRemoteParameters(B.localParameters, 200));
    w.apply('B', B.setRemoteParameters(A.localParameters, 200));
    expect(w.sent.map((p) => [p.t, p.sender])).toEqual([[200, 'A']]);
    // B gets A's candidate at 400; it answered A's checks in between.
    w.run(400);
    w.apply('B', B.addRemoteCandidate(signalled(hostA), 400));
    w.run(1000);
    expect(A.state).toBe('connected');
    expect(B.state).toBe('connected');
    // No end-of-candidates yet: connected, not completed.
    for (const [n, c] of [
      ['A', A],
      ['B', B],
    ] as const) {
      w.apply(n, c.endOfLocalCandidates(1000));
      w.apply(n, c.endOfRemoteCandidates(1000));
    }
    expect([A.state, B.state]).toEqual(['completed', 'completed']);
  });

  it('candidates of another session (ufrag extension) are ignored', () => {
    const A = new IceCore({ randomBytes: seededBytes(1) });
    A.addLocalCandidate(hostA, 0);
    A.setRemoteParameters({ ufrag: 'rrrr', pwd: 'p'.repeat(22) }, 0);
    A.addRemoteCandidate({ ...signalled(hostB), extensions: [['ufrag', 'old1']] }, 0);
    expect(A.remoteCandidates).toEqual([]);
    A.addRemoteCandidate({ ...signalled(hostB), extensions: [['ufrag', 'rrrr']] }, 0);
    expect(A.remoteCandidates).toHaveLength(1);
  });
});

/** A and B completed host to host (A at 70, B at 60). */
function connected(opts: Parameters<typeof setup>[0] = {}) {
  const r = setup(opts);
  exchange(r.w, { name: 'A', core: r.A, locals: [hostA] }, { name: 'B', core: r.B, locals: [hostB] });
  r.w.run(1000);
  expect([r.A.state, r.B.state]).toEqual(['completed', 'completed']);
  return r;
}

/** A check as an attacker (or a confused peer) would build it. */
function forged(build: (b: MessageBuilder) => void, key?: Buffer, fingerprint = true): Buffer {
  const b = new MessageBuilder(Method.Binding, MessageClass.Request);
  build(b);
  return b.encode({ integrity: key ? { key } : undefined, fingerprint });
}

describe('ICE core: wrong credentials and bad packets never disturb a working pair', () => {
  it('answers 400 and 401 as RFC 8489 9.1.3 says, 420 for unknown attributes, and keeps the selected pair', () => {
    const { w, A, B } = connected();
    const before = { state: B.state, pair: B.selectedPair(), path: B.dataPath() };
    const attacker = addr('10.6.6.6', 6666);
    const lfrag = B.localParameters.ufrag;
    const good = shortTermKey(B.localParameters.pwd);
    const wrong = shortTermKey('w'.repeat(22));
    const role = (b: MessageBuilder) => b.add(Attr.Priority, 1).add(Attr.IceControlling, 99n);
    const cases: Array<[string, Buffer, number, boolean]> = [
      ['no USERNAME', forged((b) => role(b), good), 400, false],
      ['no MESSAGE-INTEGRITY', forged((b) => role(b.add(Attr.Username, `${lfrag}:x`))), 400, false],
      ['another ufrag', forged((b) => role(b.add(Attr.Username, `nope:x`)), good), 401, false],
      ['the wrong password', forged((b) => role(b.add(Attr.Username, `${lfrag}:x`)), wrong), 401, false],
      ['no PRIORITY', forged((b) => b.add(Attr.Username, `${lfrag}:x`).add(Attr.IceControlling, 99n), good), 400, true],
      ['no role', forged((b) => b.add(Attr.Username, `${lfrag}:x`).add(Attr.Priority, 1), good), 400, true],
      ['an unknown comprehension-required attribute', forged((b) => role(b.add(Attr.Username, `${lfrag}:x`)).addRaw(0x0042, Buffer.from('hi')), good), 420, true],
    ];
    for (const [what, data, code, signed] of cases) {
      const actions = B.handleStun(1, data, attacker, w.now);
      const sends = actions.filter((a) => a.type === 'send');
      expect(sends, what).toHaveLength(1);
      const m = decode((sends[0] as { data: Buffer }).data);
      expect(m.isError(), what).toBe(true);
      expect(m.get(Attr.ErrorCode)?.code, what).toBe(code);
      expect(verifyFingerprint(m), what).toBe(true);
      expect(checkIntegrity(m, good), what).toBe(signed ? 'sha1' : 'absent');
      if (code === 420) expect(m.get(Attr.UnknownAttributes)).toEqual([0x0042]);
      expect(actions.filter((a) => a.type !== 'send'), what).toEqual([]);
    }
    expect(B.stats.errorsSent).toEqual({ 400: 4, 401: 2, 420: 1 });
    expect({ state: B.state, pair: B.selectedPair(), path: B.dataPath() }).toEqual(before);
    expect(B.remoteCandidates).toHaveLength(1);
    // And the pair goes on working: consent still answered.
    w.run(11_000);
    expect(A.state).toBe('completed');
    expect(B.state).toBe('completed');
  });

  it('drops and counts what is malformed, forged or unexpected, without answering', () => {
    const { w, A, B } = connected();
    const from = addr('10.0.0.2', 2000);
    const drops: Array<[string, Buffer]> = [
      ['malformed', Buffer.from('hello, this is not STUN at all')],
      ['malformed', Buffer.from([0, 1, 0, 4, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])],
      ['rfc3489', Buffer.alloc(20)],
      ['not-binding', new MessageBuilder(Method.Allocate, MessageClass.Request).encode({ fingerprint: true })],
      ['unknown-transaction', new MessageBuilder(Method.Binding, MessageClass.SuccessResponse).add(Attr.XorMappedAddress, from).encode({ integrity: { key: shortTermKey(B.localParameters.pwd) }, fingerprint: true })],
    ];
    const badFp = new MessageBuilder(Method.Binding, MessageClass.Request).add(Attr.Username, 'x:y').encode({ fingerprint: true });
    badFp[badFp.length - 1]! ^= 1;
    drops.push(['bad-fingerprint', badFp]);
    for (const [reason, data] of drops) {
      const before = A.stats.dropped[reason as keyof typeof A.stats.dropped];
      expect(A.handleStun(1, data, from, w.now), reason).toEqual([]);
      expect(A.stats.dropped[reason as keyof typeof A.stats.dropped], reason).toBe(before + 1);
    }
    expect(A.handleStun(1, Buffer.from(new MessageBuilder(Method.Binding, MessageClass.Indication).encode({ fingerprint: true })), from, w.now)).toEqual([]);
    expect(A.stats.indicationsReceived).toBe(1);
    expect(A.state).toBe('completed');
  });

  it('a forged answer to a check in flight is dropped; the real one still counts', () => {
    const { w, A, B } = setup();
    let forgedOnce = false;
    w.drop = (p) => {
      const m = decode(p.data);
      if (p.sender === 'A' && m.isRequest() && !forgedOnce) {
        forgedOnce = true;
        // Someone on the path answers first, with the right transaction id and a wrong key.
        const fake = new MessageBuilder(Method.Binding, MessageClass.SuccessResponse, Buffer.from(m.transactionId)).add(Attr.XorMappedAddress, addr('6.6.6.6', 6)).encode({ integrity: { key: shortTermKey('f'.repeat(22)) }, fingerprint: true });
        expect(A.handleStun(1, fake, p.to, p.t + 1)).toEqual([]);
      }
      return false;
    };
    exchange(w, { name: 'A', core: A, locals: [hostA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(1000);
    expect(A.stats.dropped['unauthenticated-response']).toBe(1);
    expect(A.selectedPair()!.local.address).toBe('10.0.0.1');
    expect(w.eventsOf('local-prflx')).toEqual([]);
  });

  it('an answer from another address than the check went to fails the pair (RFC 8445 7.2.5.2.1)', () => {
    const { w, A, B } = setup({ basesB: { 1: addr('10.0.0.2', 2000), 2: addr('10.0.0.2', 2999) } });
    // B's answers leave from another port than A's checks went to.
    const realApply = w.apply.bind(w);
    w.apply = (name, actions) => realApply(name, name === 'B' ? actions.map((a) => (a.type === 'send' && decode(a.data).isSuccess() ? { ...a, baseId: 2 } : a)) : actions);
    exchange(w, { name: 'A', core: A, locals: [hostA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(200);
    expect(A.checklist[0]!.state).toBe('failed');
    expect(A.state).toBe('failed');
  });

  it('survives any bytes from anywhere (property): no throw, same state, same pair', () => {
    const { w, A } = connected();
    const pair = A.selectedPair();
    const key = shortTermKey(A.localParameters.pwd);
    const stunish = fc.tuple(fc.constantFrom(0, 1, 2, 3), fc.uint8Array({ maxLength: 60 }), fc.boolean()).map(([cls, tail, signed]) => {
      const b = new MessageBuilder(Method.Binding, cls as 0);
      if (tail.length > 4) b.addRaw(0x0006, tail.subarray(0, 8)).addRaw(0x0024, tail.subarray(0, 4));
      const m = b.encode({ integrity: signed ? { key } : undefined, fingerprint: true });
      return Buffer.concat([m.subarray(0, 20), Buffer.from(tail), m.subarray(20)]);
    });
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }).map((u) => Buffer.from(u)), stunish), fc.constantFrom(addr('10.0.0.2', 2000), addr('10.6.6.6', 1), addr('2001:db8::6', 6)), (data, from) => {
        A.handleStun(1, data, from, w.now);
        A.handleStun(7, data, from, w.now);
      }),
      { seed: 8445, numRuns: 2000 },
    );
    expect(A.state).toBe('completed');
    expect(A.selectedPair()).toEqual(pair);
  });
});

describe('ICE core: consent freshness (RFC 7675) and keepalives (RFC 8445 11)', () => {
  it('checks consent every 4 to 6 s, randomised by the injected source', () => {
    for (const [r, interval] of [
      [0, 4000],
      [0.5, 5000],
      [0.999, 5998],
    ] as const) {
      const { w, A } = connected({ a: { random: () => r } });
      w.run(20_000);
      const consent = w.stun('A').filter((p) => p.msg.isRequest() && p.t > 100);
      const times = consent.map((p) => p.t);
      expect(times[0]).toBeCloseTo(70 + interval, 6);
      for (let i = 1; i < times.length; i++) expect(times[i]! - times[i - 1]!).toBeCloseTo(interval, 6);
      // A consent check is a check without USE-CANDIDATE, on the selected pair, sent once.
      for (const p of consent) {
        expect(p.msg.has(AttrType.USE_CANDIDATE)).toBe(false);
        expect(p.msg.get(Attr.Username)).toBe(`${w.core('B').localParameters.ufrag}:${A.localParameters.ufrag}`);
        expect(p.to).toEqual(addr('10.0.0.2', 2000));
      }
      expect(A.stats.retransmissions).toBe(0);
    }
  });

  it('the peer goes silent: disconnected after 12.5 s without an answer, failed when consent expires at 30 s; data stops', () => {
    const { w, A } = connected();
    // From t = 1000 nothing from B reaches A.
    w.drop = (p) => p.sender === 'B' && p.t >= 1000;
    w.run(40_000);
    // A's last answer was the nomination's, at 70.
    expect(w.states('A')).toEqual([
      [0, 'checking'],
      [70, 'connected'],
      [70, 'completed'],
      [12_570, 'disconnected'],
      [30_070, 'failed'],
    ]);
    expect(A.dataPath()).toBeUndefined();
    // No consent check after consent expired, and no timer left.
    expect(w.stun('A').filter((p) => p.t > 30_070)).toEqual([]);
    expect(A.nextTimeout()).toBeUndefined();
  });

  it('disconnected comes back when answers do', () => {
    const { w, A } = connected();
    w.drop = (p) => p.sender === 'B' && p.t >= 1000 && p.t < 14_000;
    w.run(20_000);
    // Consent checks at 5070, 10070 unanswered; the one at 15070 is answered at 15090.
    expect(w.states('A')).toEqual([
      [0, 'checking'],
      [70, 'connected'],
      [70, 'completed'],
      [12_570, 'disconnected'],
      [15_090, 'completed'],
    ]);
    expect(A.dataPath()).toBeDefined();
  });

  it('without consent checks, a Binding indication goes out after Tr = 15 s of silence (data counts as traffic)', () => {
    const { w, A } = connected({ a: { consent: false }, b: { consent: false } });
    w.run(20_000);
    // The last thing A sent on the pair was the nomination, at 50.
    const ind = () => w.stun('A').filter((p) => p.msg.isIndication());
    expect(ind().map((p) => p.t)).toEqual([15_050]);
    expect(ind()[0]!.msg.attributes.map((a) => a.type)).toEqual([AttrType.FINGERPRINT]);
    // The agent's per-datagram route() notes the send: no keepalive until 15 s after it.
    expect(A.route(25_000)).toMatchObject({ baseId: 1, to: { address: '10.0.0.2', port: 2000 } });
    w.run(45_000);
    expect(ind().map((p) => p.t)).toEqual([15_050, 40_000]);
    expect(A.stats.keepalivesSent).toBe(2);
    expect(A.state).toBe('completed');
  });
});

describe('ICE core: restart (RFC 8445 section 9)', () => {
  it('new credentials, checks again, the old pair carries data until the new one is selected', () => {
    const { w, A, B } = connected();
    const oldA = A.localParameters;
    const oldB = B.localParameters;
    const oldPath = A.dataPath();
    w.run(2000);
    w.apply('A', A.restart(2000));
    const newA = A.localParameters;
    expect(newA.ufrag).not.toBe(oldA.ufrag);
    expect(A.generation).toBe(1);
    // Still connected over the old pair while the new session has nothing.
    expect(A.state).toBe('connected');
    expect(A.dataPath()).toEqual(oldPath);
    // B hears A's new parameters: B restarts too and says so.
    const actions = w.apply('B', B.setRemoteParameters(newA, 2000));
    const restart = actions.find((a) => a.type === 'restart');
    expect(restart).toEqual({ type: 'restart', parameters: B.localParameters });
    expect(B.localParameters.ufrag).not.toBe(oldB.ufrag);
    w.apply('A', A.setRemoteParameters(B.localParameters, 2000));
    // Before anyone re-sends candidates, data still flows on the old pair, and consent
    // checks on it use the old credentials.
    w.run(8000);
    expect(A.dataPath()).toEqual(oldPath);
    const consentOld = w.stun('A').filter((p) => p.msg.isRequest() && p.t > 2000 && p.t <= 8000);
    expect(consentOld.map((p) => [p.t, p.msg.get(Attr.Username)])).toEqual([[5070, `${oldB.ufrag}:${oldA.ufrag}`]]);
    // Candidates again (the same addresses), then end-of-candidates.
    for (const [me, peer, locals] of [
      [A, B, [hostB]],
      [B, A, [hostA]],
    ] as const) {
      const name = me === A ? 'A' : 'B';
      for (const c of locals) w.apply(name, me.addRemoteCandidate(signalled(c), 8000));
      w.apply(name, me.endOfRemoteCandidates(8000));
      void peer;
    }
    w.run(9000);
    const checks = w.stun('A').filter((p) => p.msg.isRequest() && p.t >= 8000);
    expect(checks[0]!.t).toBe(8000);
    expect(checks[0]!.msg.get(Attr.Username)).toBe(`${B.localParameters.ufrag}:${newA.ufrag}`);
    expect(w.states('A')).toEqual([
      [0, 'checking'],
      [70, 'connected'],
      [70, 'completed'],
      [2000, 'connected'],
      [8070, 'completed'],
    ]);
    expect(w.eventsOf('selected-pair', 'A').map((e) => e.t)).toEqual([70, 8070]);
    // Consent now runs in the new session only.
    w.run(20_000);
    const consentNew = w.stun('A').filter((p) => p.msg.isRequest() && p.t > 9000);
    expect(consentNew.map((p) => p.msg.get(Attr.Username))).toEqual([`${B.localParameters.ufrag}:${newA.ufrag}`, `${B.localParameters.ufrag}:${newA.ufrag}`]);
    expect(B.state).toBe('completed');
  });

  it('restarting a failed agent starts over', () => {
    const { w, A } = setup();
    w.drop = () => true;
    A.addLocalCandidate(hostA, 0);
    A.endOfLocalCandidates(0);
    A.setRemoteParameters({ ufrag: 'rrrr', pwd: 'p'.repeat(22) }, 0);
    A.addRemoteCandidate(signalled(hostB), 0);
    w.apply('A', A.endOfRemoteCandidates(0));
    w.run(50_000);
    expect(A.state).toBe('failed');
    w.apply('A', A.restart(50_000, { ufrag: 'new1', pwd: 'n'.repeat(22) }));
    expect(A.state).toBe('new');
    expect(A.localParameters).toEqual({ ufrag: 'new1', pwd: 'n'.repeat(22) });
    expect(A.remoteCandidates).toEqual([]);
  });
});

describe('ICE core: inputs it refuses, and close', () => {
  it('says what is wrong with a remote candidate, parameters or options', () => {
    const A = new IceCore({ randomBytes: seededBytes(1), maxRemoteCandidates: 1 });
    const r = signalled(hostB);
    const bad: Array<[Partial<typeof r>, string]> = [
      [{ address: 'abc.local' }, 'resolve .local names first'],
      [{ port: 0 }, 'port'],
      [{ component: 2 }, 'component'],
      [{ priority: 0 }, 'priority'],
      [{ type: 'stun' as never }, 'type'],
      [{ address: '0.0.0.0' }, 'unspecified or multicast'],
      [{ address: '224.0.0.251' }, 'unspecified or multicast'],
      [{ address: 'ff02::fb' }, 'unspecified or multicast'],
    ];
    expect.assertions(bad.length * 3 + 9);
    for (const [patch, words] of bad) {
      const e = thrown(IceError, () => A.addRemoteCandidate({ ...r, ...patch }, 0));
      expect(e.code).toBe('BAD_CANDIDATE');
      expect(e.message).toContain(words);
    }
    A.addRemoteCandidate(r, 0);
    expect(thrown(IceError, () => A.addRemoteCandidate({ ...r, port: 2001 }, 0)).code).toBe('TOO_MANY_CANDIDATES');
    expect(thrown(IceError, () => A.setRemoteParameters({ ufrag: 'ab', pwd: 'p'.repeat(22) }, 0)).code).toBe('BAD_PARAMETERS');
    expect(thrown(IceError, () => new IceCore({ ta: -1 })).code).toBe('BAD_OPTION');
    // RFC 8445 14.2: never more than one check every 5 ms.
    expect(thrown(IceError, () => new IceCore({ ta: 4 })).message).toMatch(/ta must be a number of at least 5/);
    expect(new IceCore({ ta: 5 }).options.ta).toBe(5);
  });

  it('close: state closed, nothing more sent, later packets counted as dropped', () => {
    const { w, A } = connected();
    w.apply('A', A.close(w.now));
    expect(A.state).toBe('closed');
    expect(w.states('A').at(-1)).toEqual([1000, 'closed']);
    expect(A.nextTimeout()).toBeUndefined();
    expect(A.dataPath()).toBeUndefined();
    expect(A.handleStun(1, Buffer.alloc(20), addr('10.0.0.2', 2000), 1001)).toEqual([]);
    expect(A.stats.dropped.closed).toBe(1);
    expect(thrown(IceError, () => A.addRemoteCandidate(signalled(hostB), 1001)).code).toBe('CLOSED');
  });

  it('two components: connected only when both have a selected pair', () => {
    const { w, A, B } = setup({ a: { components: 2 }, b: { components: 2 }, basesA: { 1: addr('10.0.0.1', 1000), 2: addr('10.0.0.1', 1001) }, basesB: { 1: addr('10.0.0.2', 2000), 2: addr('10.0.0.2', 2001) } });
    const a2 = localCandidate('host', 2, '10.0.0.1', 1001, { component: 2 });
    const b2 = localCandidate('host', 2, '10.0.0.2', 2001, { component: 2 });
    exchange(w, { name: 'A', core: A, locals: [hostA, a2] }, { name: 'B', core: B, locals: [hostB, b2] });
    w.run(2000);
    expect(A.state).toBe('completed');
    expect(A.selectedPair(1)!.local.port).toBe(1000);
    expect(A.selectedPair(2)!.local.port).toBe(1001);
    expect(B.selectedPair(2)!.remote.port).toBe(1001);
    // Component 1 is selected first; the state waits for component 2.
    const sel = w.eventsOf('selected-pair', 'A').map((e) => e.t);
    expect(sel).toHaveLength(2);
    expect(w.states('A').find(([, s]) => s === 'completed')![0]).toBe(Math.max(...sel));
  });
});

describe('ICE core: pairs added while checking (RFC 8838 section 12)', () => {
  /** A (controlling, host 10.0.0.1:1000) checking remote candidates on one remote IP (one foundation). */
  function trickled() {
    const { w, A } = setup();
    w.apply('A', A.addLocalCandidate(hostA, 0));
    w.apply('A', A.setRemoteParameters({ ufrag: 'rrrr', pwd: 'p'.repeat(22) }, 0));
    const remote = (port: number, localPreference: number) => signalled(localCandidate('host', 9, '10.9.0.1', port, { localPreference }));
    return { w, A, remote };
  }
  const states = (A: IceCore) => A.checklist.map((p) => `${p.remote.port}:${p.state}`);

  it('rule 1: a new pair that heads its foundation is Waiting, even while another of the foundation is in progress', () => {
    const { w, A, remote } = trickled();
    w.drop = () => true;
    w.apply('A', A.addRemoteCandidate(remote(4000, 100), 0));
    expect(states(A)).toEqual(['4000:in-progress']);
    // A better candidate on the same address arrives: same foundation, higher priority.
    w.apply('A', A.addRemoteCandidate(remote(4001, 200), 10));
    expect(states(A)).toEqual(['4001:waiting', '4000:in-progress']);
    // And it is checked in the next pacing slot, not after the first pair fails (39.5 s).
    w.run(60);
    expect(w.sent.filter((p) => p.to.port === 4001).map((p) => p.t)).toEqual([50]);
    // A worse one is Frozen (rule 3).
    w.apply('A', A.addRemoteCandidate(remote(4002, 50), 60));
    expect(states(A)).toEqual(['4001:in-progress', '4000:in-progress', '4002:frozen']);
  });

  it('rule 2: once a pair of the foundation succeeded, every new pair of it is Waiting', () => {
    const { w, A, remote } = trickled();
    // Nothing reaches the peer; its answer to the first check is handed to A below.
    const peerKey = shortTermKey('p'.repeat(22));
    w.drop = () => true;
    w.apply('A', A.addRemoteCandidate(remote(4000, 300), 0));
    w.apply('A', A.addRemoteCandidate(remote(4001, 200), 0));
    expect(states(A)).toEqual(['4000:in-progress', '4001:frozen']);
    // The answer to the first check: the foundation's other pair is unfrozen (RFC 8445 7.2.5.3.3).
    const m = decode(w.sent[0]!.data);
    w.apply('A', A.handleStun(1, new MessageBuilder(Method.Binding, MessageClass.SuccessResponse, Buffer.from(m.transactionId)).add(Attr.XorMappedAddress, addr('10.0.0.1', 1000)).encode({ integrity: { key: peerKey }, fingerprint: true }), addr('10.9.0.1', 4000), 5));
    expect(states(A)).toEqual(['4000:succeeded', '4001:waiting']);
    // A pair of that foundation trickled in now is Waiting too, though it heads nothing.
    w.apply('A', A.addRemoteCandidate(remote(4002, 100), 6));
    expect(states(A)).toEqual(['4000:succeeded', '4001:waiting', '4002:waiting']);
  });
});

describe('ICE core: a candidate base that closes (a TURN allocation lost)', () => {
  const relayA = localCandidate('relay', 2, '198.51.100.9', 40000, { base: addr('10.0.0.1', 1001), server: '198.51.100.9' });
  const basesA = { 1: addr('10.0.0.1', 1000), 2: addr('198.51.100.9', 40000) };

  it('under the selected pair: consent is lost at once, the agent fails and sends nothing more', () => {
    const { w, A, B } = setup({ basesA });
    exchange(w, { name: 'A', core: A, locals: [relayA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(1000);
    expect(A.selectedPair()!.local.type).toBe('relay');
    // (The wire still delivers B's checks to the closed base, and the core answers them; a
    // closed socket would not receive them.)
    const sentByA = () => w.sent.filter((p) => p.sender === 'A' && !decode(p.data).isSuccess()).length;
    const before = sentByA();
    w.apply('A', A.baseClosed(2, 1000));
    expect(w.states('A').at(-1)).toEqual([1000, 'failed']);
    expect(A.dataPath()).toBeUndefined();
    expect(A.localCandidates).toEqual([]);
    w.run(40_000);
    // No consent check, no keepalive: consent expired with the base.
    expect(sentByA()).toBe(before);
    expect(A.nextTimeout()).toBeUndefined();
  });

  it('while checking: its pairs leave the checklist and their checks stop; the other base connects', () => {
    const { w, A, B } = setup({ basesA });
    // Nothing from the host base gets through, so only the relay would work, until it closes.
    w.drop = (p) => p.t < 20;
    exchange(w, { name: 'A', core: A, locals: [hostA, relayA] }, { name: 'B', core: B, locals: [hostB] });
    expect(A.checklist.map((p) => `${p.local.type}:${p.state}`)).toEqual(['host:in-progress', 'relay:waiting']);
    w.apply('A', A.baseClosed(2, 0));
    expect(A.checklist.map((p) => `${p.local.type}:${p.state}`)).toEqual(['host:in-progress']);
    w.run(3000);
    expect(w.sent.filter((p) => p.sender === 'A' && p.baseId === 2 && decode(p.data).isRequest())).toEqual([]);
    expect(A.selectedPair()!.local.type).toBe('host');
  });
});

describe('ICE core: when checking ends (RFC 8445 8.1.2, 8.3.1)', () => {
  it('the controlled agent lets the check of a better pair run on after the selection', () => {
    // A's second address (another foundation), with a lower preference.
    const a2 = localCandidate('host', 2, '10.0.1.1', 1001, { localPreference: 100 });
    const { w, A, B } = setup({ basesA: { 1: addr('10.0.0.1', 1000), 2: addr('10.0.1.1', 1001) } });
    // The best path (10.0.0.1:1000 <-> 10.0.0.2:2000) loses everything before t = 600: A gives
    // it up and nominates the pair of its worse candidate (10.0.1.1:1001).
    const best = (p: { from: { port: number }; to: { port: number } }) => (p.from.port === 1000 && p.to.port === 2000) || (p.from.port === 2000 && p.to.port === 1000);
    w.drop = (p) => p.t < 600 && best(p);
    exchange(w, { name: 'A', core: A, locals: [hostA, a2] }, { name: 'B', core: B, locals: [hostB] });
    w.run(1000);
    expect(B.selectedPair()!.remote.port).toBe(1001);
    expect(B.state).toBe('completed');
    // B's check of the better pair keeps its RTO schedule (0, 500, then 1500, which gets through).
    w.run(2000);
    const checksToBest = w.stun('B').filter((p) => p.msg.isRequest() && p.to.port === 1000 && p.t < 5000).map((p) => p.t);
    expect(checksToBest).toEqual([0, 500, 1500]);
    expect(B.validPairs.map((p) => p.remote.port)).toEqual([1000, 1001]);
    // The selection is the controlling agent's to change: it stays.
    expect(B.selectedPair()!.remote.port).toBe(1001);
  });

  it('for three seconds after Completed a check from a new address still triggers a check back, then no more', () => {
    const { w, A, B } = connected();
    const key = shortTermKey(B.localParameters.pwd);
    const check = () =>
      forged((b) => b.add(Attr.Username, `${B.localParameters.ufrag}:${A.localParameters.ufrag}`).add(Attr.Priority, candidatePriority(110, 65535, 1)).add(Attr.IceControlling, 2n), key);
    // B completed at 60. A check from another port of A's at 2000, and one from a third at 3100.
    const triggeredTo = (port: number, t0: number) => w.stun('B').filter((p) => p.msg.isRequest() && p.to.port === port && p.t >= t0).map((p) => p.t);
    w.run(2000);
    w.apply('B', B.handleStun(1, check(), addr('10.0.0.1', 1001), 2000));
    w.run(2100);
    expect(triggeredTo(1001, 2000)).toEqual([2000]);
    w.run(3100);
    w.apply('B', B.handleStun(1, check(), addr('10.0.0.1', 1002), 3100));
    w.run(3200);
    expect(triggeredTo(1002, 3100)).toEqual([]);
    // Both were answered, and the selection did not move.
    expect(B.selectedPair()!.remote.port).toBe(1000);
  });
});

describe('ICE core: a controlled agent nobody nominates for', () => {
  it('fails one check timeout after the peer\'s last check, instead of checking forever', () => {
    // A's checks never reach B (so A never has a valid pair and never nominates); B's checks
    // reach A and are answered: B has a valid pair and waits for a nomination that never comes.
    const { w, A, B } = setup();
    w.drop = (p) => p.sender === 'A' && decode(p.data).isRequest();
    exchange(w, { name: 'A', core: A, locals: [hostA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(200);
    expect(B.validPairs).toHaveLength(1);
    w.run(200_000);
    // A's last check (the triggered one, sent at 50) failed at 39.55 s; B heard no check from
    // A, so it waited one check timeout (39.5 s) from end-of-candidates.
    expect(w.states('A').at(-1)).toEqual([39_550, 'failed']);
    expect(w.states('B')).toEqual([
      [0, 'checking'],
      [39_500, 'failed'],
    ]);
  });

  it('a nomination that comes within the wait still connects', () => {
    const { w, A, B } = setup();
    // A's ordinary checks are lost until 30 s (so nothing is nominated): B, with a valid pair,
    // waits; from 30 s on they get through and A nominates.
    w.drop = (p) => p.sender === 'A' && p.t < 30_000 && decode(p.data).isRequest();
    exchange(w, { name: 'A', core: A, locals: [hostA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(60_000);
    expect(B.state).toBe('completed');
  });
});

describe('ICE core: a nomination check that goes unanswered (RFC 8445 8.1.1)', () => {
  it('is sent again as a fresh check (up to three in all) before the valid pair fails', () => {
    const { w, A, B } = setup();
    // Every answer to a check with USE-CANDIDATE is lost until 50 s: B selects the pair at
    // once (60), A hears nothing back for its first nomination check.
    w.drop = (p) => {
      if (p.sender !== 'B' || p.t >= 50_000) return false;
      const m = decode(p.data);
      if (!m.isSuccess()) return false;
      const req = w.stun('A').find((q) => q.msg.transactionId.equals(m.transactionId));
      return req !== undefined && req.msg.has(AttrType.USE_CANDIDATE);
    };
    exchange(w, { name: 'A', core: A, locals: [hostA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(60_000);
    const nominations = w.stun('A').filter((p) => p.msg.isRequest() && p.msg.has(AttrType.USE_CANDIDATE));
    const ids = [...new Set(nominations.map((p) => p.msg.transactionId.toString('hex')))];
    // The first transaction (from 50: seven sends, timed out at 39.55 s), then a second one at
    // once, whose retransmission after 50 s is answered.
    expect(ids).toHaveLength(2);
    expect(nominations.filter((p) => p.msg.transactionId.toString('hex') === ids[1]).map((p) => p.t)[0]).toBe(39_550);
    expect(w.states('A')).toEqual([
      [0, 'checking'],
      [expect.any(Number), 'connected'],
      [expect.any(Number), 'completed'],
    ]);
    expect(w.states('A')[1]![0]).toBeGreaterThan(50_000);
    expect(A.selectedPair()!.remote.address).toBe('10.0.0.2');
    expect(B.selectedPair()!.remote.address).toBe('10.0.0.1');
  });
});

describe('ICE core: the remote candidate limit and peer-reflexive candidates (RFC 8445 7.3.1.3)', () => {
  it('a check from a new address beyond maxRemoteCandidates is answered but makes no candidate, and is counted', () => {
    const { w, A, B } = setup({ b: { maxRemoteCandidates: 1 } });
    exchange(w, { name: 'A', core: A, locals: [hostA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(1000);
    const check = forged(
      (b) => b.add(Attr.Username, `${B.localParameters.ufrag}:${A.localParameters.ufrag}`).add(Attr.Priority, candidatePriority(110, 65535, 1)).add(Attr.IceControlling, 2n),
      shortTermKey(B.localParameters.pwd),
    );
    const actions = B.handleStun(1, check, addr('10.0.0.1', 1009), 1000);
    expect(actions.filter((a) => a.type === 'send').map((a) => decode((a as { data: Buffer }).data).isSuccess())).toEqual([true]);
    expect(actions.filter((a) => a.type === 'remote-prflx')).toEqual([]);
    expect(B.remoteCandidates.map((c) => c.port)).toEqual([1000]);
    expect(B.stats.dropped['candidate-limit']).toBe(1);
  });
});
