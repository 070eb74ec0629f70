// The ICE interop harnesses proved against each other, before natkit's agent is involved:
// libnice (C harness on its API), aioice (Python), werift's ICE Connection (Node) pair up
// over loopback in both role assignments and exchange data both ways; each of them
// connects to a peer it knows only from that peer's checks, which come after the peer's
// end-of-candidates (the order Chromium's unsignalled candidates produce by chance); Chromium's
// RTCPeerConnection reaches iceConnectionState 'connected' against each of them as
// controlling (offerer) and as controlled (answerer). Wrong credentials fail where the
// agent reports failure, and a malformed candidate line is reported, not swallowed.
// test/helpers/ice-peers/README.md describes the protocol and each agent's quirks.
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { ChromiumPeer } from '../helpers/ice-peers/chromium.js';
import { connect, connectLearningFromChecks, describePair, exchange, expectLoopbackPair, expectSamePair, forward, portOf } from '../helpers/ice-peers/connect.js';
import { FOREIGN_KINDS as FOREIGN, type ForeignKind, startForeign } from '../helpers/ice-peers/foreign.js';
import { type IcePeer, type Role, errors, infoOf, localCandidates, other, reachState, waitForEvent } from '../helpers/ice-peers/peer.js';

const { track } = useCleanup();
type Ctx = { skip: (note?: string) => void };
const LOOPBACK = '127.0.0.1';
const start = async (ctx: Ctx, kind: ForeignKind, role: Role): Promise<IcePeer> => track(await startForeign(ctx, kind, { role }));

describe('ICE harnesses against each other (loopback)', () => {
  for (const x of FOREIGN) {
    for (const y of FOREIGN) {
      if (x === y) continue;
      it(`${x} controlling, ${y} controlled: a pair both agree on, data both ways`, async (ctx) => {
        const a = await start(ctx, x, 'controlling');
        const b = await start(ctx, y, 'controlled');
        const info = infoOf(a, b);
        const c = await connect(a, b);
        expectLoopbackPair(c, a, b, info);
        await exchange(a, b, 10, info);
        expect(errors(a), info()).toEqual([]);
        expect(errors(b), info()).toEqual([]);
        ctx.annotate(`${x} -> ${y}: ${describePair(c.a)} in ${Math.round(c.ms)} ms`);
      });
    }
  }
});

// The case behind the Chromium flakes, made certain: the agent has the other's ufrag/pwd
// and end-of-candidates, no candidate, and only then does the other start checking
// (aioice and werift fail or hang on that order unless their harness holds the
// end-of-candidates back: see the header of aioice-peer.py and werift-peer.mjs).
describe('a peer known only from its checks, which come after its end-of-candidates', () => {
  for (const x of FOREIGN) {
    const y: ForeignKind = x === 'libnice' ? 'aioice' : 'libnice';
    for (const role of ['controlling', 'controlled'] as const) {
      it(`${x} ${role} learns ${y} (${other(role)}) as peer-reflexive: the same pair on both sides, data both ways`, async (ctx) => {
        const a = await start(ctx, x, role);
        const b = await start(ctx, y, other(role));
        const info = infoOf(a, b);
        const c = await connectLearningFromChecks(a, b);
        expectSamePair(c, info);
        expect(c.a.local, info()).toMatchObject({ address: LOOPBACK, type: 'host' });
        expect(localCandidates(a).map(portOf), info()).toContain(c.a.local.port);
        expect(c.a.remote, info()).toMatchObject({ address: LOOPBACK, type: 'prflx' });
        expect(c.b.remote, info()).toMatchObject({ address: LOOPBACK, type: 'host' });
        await exchange(a, b, 5, info);
        expect(errors(a), info()).toEqual([]);
        expect(errors(b), info()).toEqual([]);
        ctx.annotate(`${x} ${role} / ${y}: ${describePair(c.a)} in ${Math.round(c.ms)} ms`);
      });
    }
  }
});

describe("Chromium's ICE agent against the harnesses (loopback)", () => {
  for (const y of FOREIGN) {
    for (const role of ['controlling', 'controlled'] as const) {
      it(`chromium ${role} (${role === 'controlling' ? 'offerer' : 'answerer'}), ${y} ${other(role)}: iceConnectionState connected on one pair`, async (ctx) => {
        const b = await start(ctx, y, other(role));
        const a = track(await ChromiumPeer.start(ctx, { role }));
        const info = infoOf(a, b);
        // Only Chromium's loopback candidates would be signalled; it has none (README.md),
        // so the harness learns it as peer-reflexive from its checks.
        const c = await connect(a, b, { filter: (line) => line.split(' ')[4] === LOOPBACK });
        await reachState(a, 'connected');
        expectSamePair(c, info);
        expect(c.a.local.address, info()).toBe(LOOPBACK);
        expect(c.a.remote, info()).toMatchObject({ address: LOOPBACK, type: 'host' });
        expect(localCandidates(b).map(portOf), info()).toContain(c.b.local.port);
        expect(c.b.remote.type, info()).toBe('prflx');
        // Chromium's own view: the role it was given, ICE connected, the pair nominated.
        const stats = await a.stats();
        const transport = stats.find((s) => s.type === 'transport')!;
        expect(transport, info()).toMatchObject({ iceRole: role, iceState: 'connected' });
        const pair = stats.find((s) => s.id === transport.selectedCandidatePairId)!;
        expect(pair, info()).toMatchObject({ nominated: true, writable: true });
        expect(errors(a), info()).toEqual([]);
        expect(errors(b), info()).toEqual([]);
        ctx.annotate(`chromium ${role} / ${y}: ${describePair(c.a)} in ${Math.round(c.ms)} ms`);
      });
    }
  }
});

describe('the harnesses report failure and bad input', () => {
  // werift is left out: on a 401 it retries the same check forever (README.md), so it
  // never reports failure.
  for (const x of ['libnice', 'aioice'] as const) {
    it(`${x} given the wrong remote password fails (the other side answers its checks with an error)`, async (ctx) => {
      const a = await start(ctx, x, 'controlling');
      const b = await start(ctx, 'libnice', 'controlled');
      const info = infoOf(a, b);
      forward(a, b);
      b.subscribe((e) => {
        if (e.ev === 'local-params') a.setRemoteParameters({ ufrag: e.ufrag, pwd: 'wrongwrongwrongwrong22' });
        else if (e.ev === 'candidate') a.addRemoteCandidate(e.line);
        else if (e.ev === 'end-of-candidates') a.endOfRemoteCandidates();
      });
      await reachState(a, 'failed', 45_000);
      expect(a.events.some((e) => e.ev === 'selected-pair'), info()).toBe(false);
      expect(b.events.some((e) => e.ev === 'selected-pair'), info()).toBe(false);
    });
  }

  for (const x of [...FOREIGN, 'chromium'] as const) {
    it(`${x} reports a malformed candidate line as an error and goes on`, async (ctx) => {
      const p = x === 'chromium' ? track(await ChromiumPeer.start(ctx, { role: 'controlling' })) : await start(ctx, x, 'controlled');
      await waitForEvent(p, 'local params', (e) => (e.ev === 'local-params' ? true : undefined));
      p.setRemoteParameters({ ufrag: 'abcd', pwd: 'abcdefghijklmnopqrstuv' });
      p.addRemoteCandidate('candidate:1 1 udp notanumber');
      const message = await waitForEvent(p, 'an error event', (e) => (e.ev === 'error' ? e.message : undefined));
      expect(message, p.diagnostics()).toContain('candidate');
      // still alive: a command after it is answered
      p.send(Buffer.from('x'));
      await waitForEvent(p, 'a second error (send before a pair)', (e) => (e.ev === 'error' && e.message !== message ? true : undefined));
    });
  }
});
