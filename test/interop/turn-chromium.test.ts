// TURN interop with Chromium's WebRTC (Debian's chromium, headless, driven by
// playwright-core): two RTCPeerConnections in one page, both told to use only natkit's
// relay (iceServers turn:127.0.0.1:PORT?transport=udp|tcp with a username and
// credential, iceTransportPolicy 'relay'), signalling done inside the page, open a data
// channel and exchange messages both ways. The selected candidate pair must be relay to
// relay on both sides, on the two addresses natkit allocated, and natkit's metrics must
// show the traffic relayed and channels bound.
//
// natkit's relay runs in-process on 127.0.0.1. Each connection's peer is the other one's
// relayed address, 127.0.0.1:port, and natkit refuses loopback peers by default (SSRF
// protection): the test relay is started with allowPeers ['127.0.0.0/8'] for that, here
// only. Chromium needs no extra flag for loopback here: --allow-loopback-in-peer-connection
// is about gathering host candidates on loopback interfaces, and with the 'relay' policy it
// gathers none; a TURN server and relayed candidates on 127.0.0.1 work as they are.
//
// The page is about:blank (no HTTP server needed: RTCPeerConnection does not need a
// secure context), and the in-page code is a string so the test compiles without DOM
// types.
import type { Browser } from 'playwright-core';
import { afterEach, describe, expect, it } from 'vitest';
import { launchChromium } from '../helpers/chromium.js';
import { killAll } from '../helpers/spawn.js';
import { LOOPBACK, NATKIT_RELAY_MAX, NATKIT_RELAY_MIN, type NatkitRelay, PASS, USER, metric, startNatkitRelay } from '../helpers/interop-turn-peers.js';

let browser: Browser | undefined;
let relay: NatkitRelay | undefined;
afterEach(async () => {
  try {
    await browser?.close();
  } finally {
    browser = undefined;
    await relay?.close();
    relay = undefined;
    await killAll();
  }
});

/** What the page reports back. */
interface CandidateInfo {
  candidateType: string;
  address: string;
  port: number;
  protocol: string;
  relayProtocol?: string;
}
interface PairInfo {
  state: string;
  nominated: boolean;
  bytesSent: number;
  bytesReceived: number;
  local: CandidateInfo;
  remote: CandidateInfo;
}
interface PageResult {
  candidates: { a: string[]; b: string[] };
  errors: string[];
  fromA: string[];
  fromB: string[];
  a: PairInfo;
  b: PairInfo;
  ms: number;
}

const COUNT = 25;

/** The in-page code: an async function of { url, username, credential, count }. */
const PAGE_CODE = String.raw`async ({ url, username, credential, count }) => {
  const t0 = performance.now();
  const cfg = { iceServers: [{ urls: url, username, credential }], iceTransportPolicy: 'relay' };
  const a = new RTCPeerConnection(cfg);
  const b = new RTCPeerConnection(cfg);
  const candidates = { a: [], b: [] };
  const errors = [];
  const within = (p, ms, what) => Promise.race([p, new Promise((_, rej) => setTimeout(() => rej(new Error(what + ' within ' + ms + ' ms; ice a=' + a.iceConnectionState + ' b=' + b.iceConnectionState + '; errors: ' + errors.join(' | '))), ms))]);
  a.onicecandidate = (e) => { if (e.candidate) { candidates.a.push(e.candidate.candidate); b.addIceCandidate(e.candidate); } };
  b.onicecandidate = (e) => { if (e.candidate) { candidates.b.push(e.candidate.candidate); a.addIceCandidate(e.candidate); } };
  a.onicecandidateerror = (e) => errors.push('a ' + e.errorCode + ' ' + e.errorText + ' ' + e.url);
  b.onicecandidateerror = (e) => errors.push('b ' + e.errorCode + ' ' + e.errorText + ' ' + e.url);
  try {
    const dc = a.createDataChannel('natkit', { ordered: true });
    const remote = new Promise((res) => { b.ondatachannel = (e) => res(e.channel); });
    await a.setLocalDescription(await a.createOffer());
    await b.setRemoteDescription(a.localDescription);
    await b.setLocalDescription(await b.createAnswer());
    await a.setRemoteDescription(b.localDescription);
    await within(new Promise((res) => { dc.onopen = res; }), 20000, 'data channel did not open');
    const ch = await within(remote, 5000, 'no data channel at b');
    if (ch.readyState !== 'open') await within(new Promise((res) => { ch.onopen = res; }), 5000, 'b side did not open');
    const fromA = [];
    const fromB = [];
    ch.onmessage = (m) => { fromA.push(m.data); ch.send('echo:' + m.data); };
    const done = new Promise((res) => { dc.onmessage = (m) => { fromB.push(m.data); if (fromB.length === count) res(); }; });
    for (let i = 0; i < count; i++) dc.send('msg ' + i + ' ' + 'y'.repeat(i * 37));
    await within(done, 10000, 'echoes did not all come back');
    const pair = async (pc) => {
      const stats = await pc.getStats();
      const byId = new Map();
      stats.forEach((v) => byId.set(v.id, v));
      let p;
      stats.forEach((v) => { if (v.type === 'transport' && v.selectedCandidatePairId) p = byId.get(v.selectedCandidatePairId); });
      if (!p) throw new Error('no selected candidate pair');
      const cand = (c) => ({ candidateType: c.candidateType, address: c.address, port: c.port, protocol: c.protocol, relayProtocol: c.relayProtocol });
      return { state: p.state, nominated: p.nominated, bytesSent: p.bytesSent, bytesReceived: p.bytesReceived, local: cand(byId.get(p.localCandidateId)), remote: cand(byId.get(p.remoteCandidateId)) };
    };
    return { candidates, errors, fromA, fromB, a: await pair(a), b: await pair(b), ms: Math.round(performance.now() - t0) };
  } finally {
    a.close();
    b.close();
  }
}`;

describe("Chromium's WebRTC through natkit's relay", () => {
  for (const transport of ['udp', 'tcp'] as const) {
    it(`two RTCPeerConnections, iceTransportPolicy relay, turn:...?transport=${transport}: a data channel both ways over a relay/relay pair`, async (ctx) => {
      const t0 = Date.now();
      // launched first: without chromium the test is skipped before the relay starts
      browser = await launchChromium(ctx);
      relay = await startNatkitRelay();
      const port = transport === 'udp' ? relay.udpPort : relay.tcpPort;
      const page = await browser.newPage();
      const console: string[] = [];
      page.on('console', (m) => console.push(m.text()));
      const url = `turn:${LOOPBACK}:${port}?transport=${transport}`;
      const r = (await page.evaluate(`(${PAGE_CODE})(${JSON.stringify({ url, username: USER, credential: PASS, count: COUNT })})`)) as PageResult;
      const info = `${JSON.stringify(r, null, 1)}\nconsole: ${console.join('\n')}\nnatkit:\n${relay.logText()}`;

      // Only relay candidates, each on 127.0.0.1, and no gathering errors.
      for (const c of [...r.candidates.a, ...r.candidates.b]) expect(c, info).toMatch(/ typ relay /);
      expect(r.candidates.a.length, info).toBeGreaterThan(0);
      expect(r.candidates.b.length, info).toBeGreaterThan(0);
      expect(r.errors, info).toEqual([]);

      // Every message and every echo arrived, in order.
      const sent = Array.from({ length: COUNT }, (_, i) => `msg ${i} ${'y'.repeat(i * 37)}`);
      expect(r.fromA, info).toEqual(sent);
      expect(r.fromB, info).toEqual(sent.map((m) => `echo:${m}`));

      // The selected pair is relay/relay on both sides, over natkit's two allocations,
      // reached over the transport asked for.
      const created = relay.log.filter((l) => l.msg === 'allocation created');
      const relayedPorts = created.flatMap((l) => (l.fields.relayed as string[]).map((x) => Number(x.split(':')[1])));
      expect(created.map((l) => String(l.fields.client).split(' ')[0]), info).toEqual([transport, transport]);
      for (const p of relayedPorts) {
        expect(p).toBeGreaterThanOrEqual(NATKIT_RELAY_MIN);
        expect(p).toBeLessThanOrEqual(NATKIT_RELAY_MAX);
      }
      for (const side of [r.a, r.b]) {
        // Data flowed over the selected pair both ways. (Its state may still read
        // 'in-progress' on the controlled side, whose own check of the pair can finish
        // after the controlling side nominated it; data may flow meanwhile.)
        expect(['succeeded', 'in-progress'], info).toContain(side.state);
        expect(side.bytesSent, info).toBeGreaterThan(0);
        expect(side.bytesReceived, info).toBeGreaterThan(0);
        expect(side.local, info).toMatchObject({ candidateType: 'relay', address: LOOPBACK, protocol: 'udp', relayProtocol: transport });
        expect(side.remote, info).toMatchObject({ candidateType: 'relay', address: LOOPBACK });
        expect(relayedPorts, info).toContain(side.local.port);
      }
      expect(r.a.remote.port, info).toBe(r.b.local.port);
      expect(r.b.remote.port, info).toBe(r.a.local.port);
      expect(r.a.local.port, info).not.toBe(r.b.local.port);

      // natkit relayed it: each message crossed the relay twice (client A -> relay A ->
      // relay B -> client B), as did each echo, plus ICE checks, DTLS and SCTP. Whatever
      // left one allocation towards its peer arrived at the other (to_client can only lag
      // by datagrams still in flight). Both sides bound a channel.
      const s = relay.server;
      const toPeer = await metric(s, 'natkit_turn_relayed_packets_total', { direction: 'to_peer' });
      const toClient = await metric(s, 'natkit_turn_relayed_packets_total', { direction: 'to_client' });
      expect(toPeer, info).toBeGreaterThanOrEqual(2 * COUNT);
      expect(toClient, info).toBeGreaterThanOrEqual(2 * COUNT);
      expect(toClient, info).toBeLessThanOrEqual(toPeer);
      const payload = sent.reduce((n, m) => n + m.length, 0);
      expect(await metric(s, 'natkit_turn_relayed_bytes_total', { direction: 'to_peer' }), info).toBeGreaterThan(2 * payload);
      expect(await metric(s, 'natkit_turn_allocations_created_total'), info).toBe(2);
      expect(await metric(s, 'natkit_turn_requests_total', { method: 'channel_bind' }), info).toBeGreaterThanOrEqual(2);
      expect(await metric(s, 'natkit_turn_requests_total', { method: 'create_permission' }), info).toBeGreaterThanOrEqual(2);
      // Per allocation (closing the peer connections may already have deleted them; natkit
      // logs their counters when it does): each carried at least its side's messages.
      const counters = [
        ...relay.log.filter((l) => l.msg === 'allocation deleted').map((l) => l.fields as { toPeerPackets: number; toClientPackets: number }),
        ...s.allAllocations().map((a) => a.counters),
      ];
      expect(counters, info).toHaveLength(2);
      for (const c of counters) {
        expect(c.toPeerPackets, info).toBeGreaterThanOrEqual(COUNT);
        expect(c.toClientPackets, info).toBeGreaterThanOrEqual(COUNT);
      }
      ctx.annotate(`chromium ${transport}: data channel open and ${COUNT} echoes in ${r.ms} ms; ${Date.now() - t0} ms with launch; relayed ${toPeer} to peers, ${toClient} to clients`);
    });
  }
});
