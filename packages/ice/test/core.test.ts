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
      [70, 'completed'],
    ]);
    expect(w.states('B')).toEqual([
      [0, 'checking'],
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
      [70, 'completed'],
    ]);
    expect(A.selectedPair()!.local.type).toBe('relay');
  });

  it('a better pair that goes unanswered holds the nomination for three sends, then the valid relay pair is nominated', () => {
    const { w, A, B } = setup({ basesA });
    // The direct path is blocked both ways; the relay path works.
    w.drop = (p) => p.from.address.startsWith('10.0.0.') && p.to.address.startsWith('10.0.0.');
    exchange(w, { name: 'A', core: A, locals: [hostA, relayA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(3000);
    const hostSends = w.sent.filter((p) => p.sender === 'A' && p.from.port === 1000 && decode(p.data).isRequest()).map((p) => p.t);
    expect(hostSends.slice(0, 3)).toEqual([0, 500, 1500]);
    const nominations = w.stun('A').filter((p) => p.msg.isRequest() && p.msg.has(AttrType.USE_CANDIDATE));
    // The third send of the host pair at 1500 is what lets the relay pair be nominated, at
    // once (the pacing slot is free).
    expect(nominations.map((p) => p.t)).toEqual([1500]);
    expect(nominations[0]!.from.port).toBe(40000);
    expect(A.selectedPair()!.local.type).toBe('relay');
    expect(B.selectedPair()!.remote.address).toBe('198.51.100.9');
  });

  it('a better pair that answers within that time wins over the valid relay pair', () => {
    const { w, A, B } = setup({ basesA });
    // The direct path loses only what is sent in the first 300 ms.
    w.drop = (p) => p.t < 300 && p.from.address.startsWith('10.0.0.') && p.to.address.startsWith('10.0.0.');
    exchange(w, { name: 'A', core: A, locals: [hostA, relayA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(3000);
    expect(A.selectedPair()!.local.type).toBe('host');
    expect(B.selectedPair()!.remote.address).toBe('10.0.0.1');
    expect(w.eventsOf('selected-pair')).toHaveLength(2);
  });

  it('aggressive nomination: every check carries USE-CANDIDATE and the first success is selected', () => {
    const { w, A, B } = setup({ a: { nomination: 'aggressive' } });
    exchange(w, { name: 'A', core: A, locals: [hostA] }, { name: 'B', core: B, locals: [hostB] });
    w.run(1000);
    expect(w.stun('A').filter((p) => p.msg.isRequest())[0]!.msg.has(AttrType.USE_CANDIDATE)).toBe(true);
    expect(w.states('A')).toEqual([
      [0, 'checking'],
      [20, 'completed'],
    ]);
    expect(w.states('B')).toEqual([
      [0, 'checking'],
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
      [70, 'completed'],
    ]);
    expect(w.states('B')).toEqual([
      [10, 'checking'],
      [60, 'completed'],
    ]);
    expect(w.stun('B').filter((p) => p.msg.isRequest())).toEqual([]);
    // A keeps consent (every 5 s); B takes A's checks as its evidence and stays completed.
    expect(w.stun('A').filter((p) => p.msg.isRequest()).map((p) => p.t)).toEqual([0, 50, 5070, 10070]);
    expect(B.state).toBe('completed');
  });
});
