// The Gatherer against coturn's turnserver (Debian coturn), a STUN/TURN server nobody here
// wrote: server-reflexive from its STUN side, relayed over UDP, TCP and TLS, a wrong password
// answered 401, a dead server next to it, and relay bases carrying data both ways to a peer,
// with coturn's own account of the traffic after the allocation is deleted.
import { fileURLToPath } from 'node:url';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ManualClock, type TransportAddress } from '@natkit/stun';
import { Gatherer, type ServerOutcome } from '../src/index.js';
import { RelayBase } from '../src/gather/bases.js';
import { needProgram } from '../../../test/helpers/programs.js';
import { type CoturnRelay, PASS, USER, coturnPeerUsage, startCoturnRelay } from '../../../test/helpers/interop-turn-peers.js';
import { openRawUdp } from '../../../test/helpers/udp.js';
import { useCleanup } from '../../../test/helpers/cleanup.js';
import { loopbackNetwork, silentServer, until } from './gather-helpers.js';

const cleanup = useCleanup();
const { defer, track } = cleanup;

const fixtures = new URL('../../../test/fixtures/', import.meta.url);
const certPath = fileURLToPath(new URL('tls-cert.pem', fixtures));
const keyPath = fileURLToPath(new URL('tls-key.pem', fixtures));
const cert = readFileSync(certPath);

/**
 * turnserver on 127.0.0.1 (test/helpers/interop-turn-peers.ts): long-term credentials
 * USER:PASS, TLS with the test certificate on a second port, relay ports in a free window,
 * loopback peers allowed (every peer here is on loopback), no DTLS, no CLI, logging to
 * stdout; ready when it has printed its listeners and answered a Binding request.
 */
async function startCoturn(program: string): Promise<CoturnRelay & { tlsPort: number }> {
  const c = await startCoturnRelay(program, 'long-term', { tls: { cert: certPath, key: keyPath } });
  return { ...c, tlsPort: c.tlsPort! };
}

describe("gathering against coturn's turnserver", () => {
  it('STUN, TURN over UDP, TCP and TLS, a wrong password and a dead server at once: each with its outcome; the dead one holds back nobody', async (ctx) => {
    const coturn = await startCoturn(needProgram(ctx, 'turnserver'));
    defer(() => coturn.stop());
    const dead = await silentServer(cleanup);
    const clock = new ManualClock();
    const urls = {
      stun: `stun:127.0.0.1:${coturn.port}`,
      udp: `turn:127.0.0.1:${coturn.port}`,
      tcp: `turn:127.0.0.1:${coturn.port}?transport=tcp`,
      tls: `turns:127.0.0.1:${coturn.tlsPort}`,
      wrong: `turn:127.0.0.1:${coturn.port}?transport=udp`,
      dead: `turn:127.0.0.1:${dead.port}`,
    };
    const g = track(
      new Gatherer({
        network: loopbackNetwork(),
        clock,
        serverTimeoutMs: 5000,
        tls: { ca: cert },
        iceServers: [
          { urls: urls.stun },
          { urls: [urls.udp, urls.tcp, urls.tls, urls.dead], username: USER, credential: PASS },
          { urls: urls.wrong, username: USER, credential: 'not the password' },
        ],
      }),
    );
    const outcomes = new Map<string, ServerOutcome>();
    const order: string[] = [];
    g.on('candidate', (c) => order.push(`candidate ${c.type} ${c.server ?? ''}`.trim()));
    g.on('server-done', (o) => {
      outcomes.set(o.url, o);
      order.push(`done ${o.url}`);
    });
    const gathering = g.gather();
    const info = () => `${order.join('\n')}\ncoturn:\n${coturn.proc.stdout().slice(-4000)}`;
    await until(() => [urls.stun, urls.udp, urls.tcp, urls.tls, urls.wrong].every((u) => outcomes.has(u)), 'coturn to answer every request');
    expect(outcomes.has(urls.dead), info()).toBe(false);
    expect(clock.now()).toBe(0);
    // Loopback has no NAT: coturn maps the host socket to itself, so the srflx is redundant.
    const host = g.candidates.find((c) => c.type === 'host')!;
    expect(outcomes.get(urls.stun), info()).toMatchObject({ ok: true, candidates: [], mapped: [{ local: host.base, mapped: host.base }] });
    for (const [u, t] of [[urls.udp, 'udp'], [urls.tcp, 'tcp'], [urls.tls, 'tls']] as const) {
      const o = outcomes.get(u)!;
      expect(o, info()).toMatchObject({ ok: true, kind: 'turn', transport: t });
      expect(o.candidates).toHaveLength(1);
      const c = o.candidates[0]!;
      expect(c).toMatchObject({ type: 'relay', address: '127.0.0.1', relatedAddress: '127.0.0.1', server: u });
      // coturn's relay port window.
      expect(c.port).toBeGreaterThanOrEqual(coturn.relayMin);
      expect(c.port).toBeLessThanOrEqual(coturn.relayMax);
      expect(g.base(c.baseId)).toBeInstanceOf(RelayBase);
    }
    expect(outcomes.get(urls.wrong), info()).toMatchObject({ ok: false, error: { code: 'AUTH_FAILED', errorCode: 401 } });
    clock.advance(5000);
    const report = await gathering;
    expect(outcomes.get(urls.dead)).toMatchObject({ ok: false, error: { code: 'TIMEOUT' }, elapsedMs: 5000 });
    // Every candidate came out before the dead server's outcome.
    expect(order.slice(order.indexOf(`done ${urls.dead}`) + 1)).toEqual([]);
    expect(report.candidates.filter((c) => c.type === 'relay')).toHaveLength(3);
  });

  it('a relay base through coturn carries data both ways (indications, then a channel); coturn counts it once the allocation is deleted', async (ctx) => {
    const coturn = await startCoturn(needProgram(ctx, 'turnserver'));
    defer(() => coturn.stop());
    const g = new Gatherer({ network: loopbackNetwork(), policy: 'relay', iceServers: [{ urls: `turn:127.0.0.1:${coturn.port}`, username: USER, credential: PASS }] });
    defer(() => g.close());
    const report = await g.gather();
    expect(report.candidates.map((c) => c.type)).toEqual(['relay']);
    const relay = report.candidates[0]!;
    const base = g.base(relay.baseId)!;
    const peer = await openRawUdp();
    defer(() => peer.close());
    const to: TransportAddress = { family: 'IPv4', address: '127.0.0.1', port: peer.port };
    const got: string[] = [];
    base.onPacket = (d, from) => {
      expect(from).toEqual(to);
      got.push(d.toString());
    };
    base.send(Buffer.from('hello peer'), to);
    const [m1, f1] = await peer.next();
    expect(m1.toString()).toBe('hello peer');
    expect(f1).toMatchObject({ address: relay.address, port: relay.port });
    await peer.send(Buffer.from('hello agent'), relay.port, relay.address);
    await until(() => got.length === 1, 'a Data indication from coturn');
    await base.bindChannel!(to);
    base.send(Buffer.from('over a channel'), to);
    const [m2] = await peer.next();
    expect(m2.toString()).toBe('over a channel');
    await peer.send(Buffer.from('channel back'), relay.port, relay.address);
    await until(() => got.length === 2, 'ChannelData from coturn');
    expect(got).toEqual(['hello agent', 'channel back']);
    await g.close();
    // The Refresh with LIFETIME 0 deleted the session: coturn prints its account of it.
    const usage = await coturnPeerUsage(coturn.proc, USER);
    expect(usage).toEqual({ rp: 2, rb: 'hello agent'.length + 'channel back'.length, sp: 2, sb: 'hello peer'.length + 'over a channel'.length });
  });
});
