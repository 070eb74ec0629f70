// natkit's ICE agent (IceAgent, @natkit/ice) against ICE agents nobody here wrote, over
// loopback: libnice, aioice and werift's ICE Connection in both roles (natkit controlling
// and controlled), data both ways, the selected pair the same on both sides; natkit
// learning libnice only from its checks after libnice's end-of-candidates; and
// Chromium's RTCPeerConnection reaching iceConnectionState 'connected' against natkit, as
// offerer (Chromium controlling) and as answerer (Chromium controlled). The harnesses
// (test/helpers/ice-peers, README.md there) are proved against each other in
// ice-harness.test.ts; natkit is paired with them through the same protocol
// (test/helpers/ice-peers/natkit.ts).
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../helpers/cleanup.js';
import { ChromiumPeer } from '../helpers/ice-peers/chromium.js';
import { connect, connectLearningFromChecks, describePair, exchange, expectLoopbackPair, expectSamePair, portOf } from '../helpers/ice-peers/connect.js';
import { FOREIGN_KINDS, startForeign } from '../helpers/ice-peers/foreign.js';
import { NatkitPeer } from '../helpers/ice-peers/natkit.js';
import { type IcePeer, errors, infoOf, localCandidates, other, reachState, states } from '../helpers/ice-peers/peer.js';

const { track } = useCleanup();
const LOOPBACK = '127.0.0.1';
const ROLES = ['controlling', 'controlled'] as const;

/** natkit reported checking before connected, and nothing after connected but completed. */
function expectNatkitStates(n: IcePeer, info: () => string): void {
  const s = states(n).filter((x) => x !== 'new');
  expect(s[0], info()).toBe('checking');
  expect(s, info()).toContain('connected');
  expect(
    s.slice(s.indexOf('connected')).every((x) => x === 'connected' || x === 'completed'),
    info(),
  ).toBe(true);
}

describe("natkit's IceAgent against libnice, aioice and werift", () => {
  for (const kind of FOREIGN_KINDS) {
    for (const role of ROLES) {
      it(`natkit ${role}, ${kind} ${other(role)}: the same pair on both sides, data both ways`, async (ctx) => {
        const n = track(NatkitPeer.start({ role }));
        const f = track(await startForeign(ctx, kind, { role: other(role) }));
        const info = infoOf(n, f);
        const c = await connect(n, f);
        expectLoopbackPair(c, n, f, info);
        await exchange(n, f, 10, info);
        expectNatkitStates(n, info);
        expect(errors(n), info()).toEqual([]);
        expect(errors(f), info()).toEqual([]);
        ctx.annotate(`natkit ${role} / ${kind}: ${describePair(c.a)} in ${Math.round(c.ms)} ms`);
      });
    }
  }

  // libnice can nominate either way (NICE_AGENT_OPTION_REGULAR_NOMINATION or not); natkit
  // as controlled agent must accept both, and natkit's own aggressive option must work
  // against libnice as controlled agent.
  it('libnice controlling with aggressive nomination, natkit controlled', async (ctx) => {
    const n = track(NatkitPeer.start({ role: 'controlled' }));
    const f = track(await startForeign(ctx, 'libnice', { role: 'controlling', nomination: 'aggressive' }));
    const info = infoOf(n, f);
    const c = await connect(n, f);
    expectLoopbackPair(c, n, f, info);
    await exchange(n, f, 5, info);
  });
  it('natkit controlling with aggressive nomination, libnice controlled', async (ctx) => {
    const n = track(NatkitPeer.start({ role: 'controlling', agent: { nomination: 'aggressive' } }));
    const f = track(await startForeign(ctx, 'libnice', { role: 'controlled' }));
    const info = infoOf(n, f);
    const c = await connect(n, f);
    expectLoopbackPair(c, n, f, info);
    await exchange(n, f, 5, info);
  });
});

// What Chromium's unsignalled candidates make natkit do (below), in a certain order: natkit
// has libnice's ufrag/pwd and end-of-candidates but no candidate, and libnice starts
// checking only then. natkit must wait for checks (RFC 8445 7.3.1.3, RFC 8838 section 8),
// not fail on an empty checklist.
describe('natkit learning its peer only from checks that come after end-of-candidates', () => {
  for (const role of ROLES) {
    it(`natkit ${role} learns libnice (${other(role)}) as peer-reflexive: the same pair on both sides, data both ways`, async (ctx) => {
      const n = track(NatkitPeer.start({ role }));
      const f = track(await startForeign(ctx, 'libnice', { role: other(role) }));
      const info = infoOf(n, f);
      const c = await connectLearningFromChecks(n, f);
      expectSamePair(c, info);
      expect(c.a.local, info()).toMatchObject({ address: LOOPBACK, type: 'host' });
      expect(localCandidates(n).map(portOf), info()).toContain(c.a.local.port);
      expect(c.a.remote, info()).toMatchObject({ address: LOOPBACK, type: 'prflx' });
      expect(c.b.remote, info()).toMatchObject({ address: LOOPBACK, type: 'host' });
      await exchange(n, f, 5, info);
      expectNatkitStates(n, info);
      expect(errors(n), info()).toEqual([]);
      expect(errors(f), info()).toEqual([]);
      ctx.annotate(`natkit ${role} / libnice: ${describePair(c.a)} in ${Math.round(c.ms)} ms`);
    });
  }
});

describe("Chromium's ICE agent against natkit's IceAgent", () => {
  for (const role of ROLES) {
    it(`chromium ${role} (${role === 'controlling' ? 'offerer' : 'answerer'}), natkit ${other(role)}: iceConnectionState connected on the pair natkit selected`, async (ctx) => {
      const n = track(NatkitPeer.start({ role: other(role) }));
      const chrome = track(await ChromiumPeer.start(ctx, { role }));
      const info = infoOf(chrome, n);
      // Chromium has no loopback host candidate (ice-peers/README.md): natkit gets none of
      // its candidates and learns it as peer-reflexive from its checks (RFC 8445 7.3.1.3).
      const c = await connect(chrome, n, { filter: (line) => line.split(' ')[4] === LOOPBACK });
      await reachState(chrome, 'connected');
      expectSamePair(c, info);
      expect(c.b.local, info()).toMatchObject({ address: LOOPBACK, type: 'host' });
      expect(localCandidates(n).map(portOf), info()).toContain(c.b.local.port);
      expect(c.b.remote, info()).toMatchObject({ address: LOOPBACK, type: 'prflx' });
      const stats = await chrome.stats();
      const transport = stats.find((s) => s.type === 'transport')!;
      expect(transport, info()).toMatchObject({ iceRole: role, iceState: 'connected' });
      expect(stats.find((s) => s.id === transport.selectedCandidatePairId), info()).toMatchObject({ nominated: true, writable: true });
      expectNatkitStates(n, info);
      expect(errors(n), info()).toEqual([]);
      ctx.annotate(`chromium ${role} / natkit: ${describePair(c.a)} in ${Math.round(c.ms)} ms`);
    });
  }
});
