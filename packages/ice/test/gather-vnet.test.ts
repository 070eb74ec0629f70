// The Gatherer, unchanged, on the virtual network (test/helpers/vnet): a client behind a
// symmetric NAT, natkit's StunServer (two addresses) and TurnServer on public hosts, a name
// in the vnet's DNS, a dead server, and a peer on the internet. Time is the vnet's clock
// alone: server-reflexive candidates carry the NAT's public address, and the good servers'
// candidates arrive, in virtual milliseconds, long before the dead server's time is up.
import { describe, expect, it } from 'vitest';
import type { TransportAddress } from '@natkit/stun';
import { Gatherer, type ServerOutcome } from '../src/index.js';
import { createVnetLab, startStunServer, startTurnServer } from '../../../test/helpers/vnet/index.js';
import { useCleanup } from '../../../test/helpers/cleanup.js';

const { defer } = useCleanup();

describe('gathering on the virtual network', () => {
  it('behind a symmetric NAT: host, two srflx with different mappings, relay; a dead server holds back nobody; relay data both ways', async () => {
    const lab = createVnetLab({ nat: 'symmetric', seed: 11 });
    const { vnet } = lab;
    const stun = await startStunServer(lab);
    const turn = await startTurnServer(vnet);
    defer(() => vnet.runUntil(Promise.all([stun.close(), turn.close()]), { maxMs: 60_000 }));
    vnet.dns.set('stun.vnet.test', ['203.0.113.1']);
    const timeoutMs = 4000;
    const g = new Gatherer({
      network: lab.client.network,
      clock: vnet.clock,
      serverTimeoutMs: timeoutMs,
      iceServers: [{ urls: ['stun:stun.vnet.test', 'stun:203.0.113.2:3479', 'stun:203.0.113.50'] }, turn.iceServer],
    });
    defer(() => vnet.runUntil(g.close(), { maxMs: 60_000 }));
    const outcomes = new Map<string, ServerOutcome>();
    g.on('server-done', (o) => outcomes.set(o.url, o));
    const gathering = g.gather();
    const live = ['stun:stun.vnet.test', 'stun:203.0.113.2:3479', turn.iceServer.urls];
    await vnet.runUntil(() => live.every((u) => outcomes.has(u)), { maxMs: 10_000 });
    const liveDoneAt = vnet.clock.now();
    expect(outcomes.has('stun:203.0.113.50')).toBe(false);
    expect(liveDoneAt).toBeLessThan(timeoutMs);

    const host = g.candidates.find((c) => c.type === 'host')!;
    expect(host.address).toBe(lab.client.address);
    expect(host.address.startsWith('10.0.1.')).toBe(true);
    // A symmetric NAT maps the one host socket differently towards each server: two
    // server-reflexive candidates, both on the NAT's public address, both based on the host.
    const srflx = g.candidates.filter((c) => c.type === 'srflx');
    expect(srflx).toHaveLength(2);
    for (const c of srflx) {
      expect(c).toMatchObject({ address: lab.nat.publicAddress, relatedAddress: host.address, relatedPort: host.port, baseId: host.baseId });
    }
    expect(srflx[0]!.port).not.toBe(srflx[1]!.port);
    expect(srflx[0]!.priority).not.toBe(srflx[1]!.priority);
    const relay = g.candidates.find((c) => c.type === 'relay')!;
    expect(relay).toMatchObject({ address: turn.address, relatedAddress: lab.nat.publicAddress, server: turn.iceServer.urls });
    // Each candidate's time is virtual: a few round trips across the vnet's links.
    for (const c of [...srflx, relay]) expect(c.elapsedMs!).toBeLessThan(timeoutMs);

    const report = await vnet.runUntil(gathering, { maxMs: 10_000 });
    expect(outcomes.get('stun:203.0.113.50')).toMatchObject({ ok: false, elapsedMs: timeoutMs, error: { code: 'TIMEOUT' } });
    expect(report.elapsedMs).toBe(timeoutMs);

    // The relay base carries data both ways to a peer on the internet.
    const peerHost = vnet.host('peer', { address: '203.0.113.77' });
    const peer = await peerHost.network.createUdpSocket({ family: 'IPv4', address: '203.0.113.77', port: 6000 });
    defer(() => new Promise<void>((r) => peer.close(() => r())));
    const atPeer: Array<[string, number]> = [];
    peer.on('message', (m, r) => atPeer.push([m.toString(), r.port]));
    const base = g.base(relay.baseId)!;
    const atBase: Array<[string, TransportAddress]> = [];
    base.onPacket = (d, from) => atBase.push([d.toString(), from]);
    const to: TransportAddress = { family: 'IPv4', address: '203.0.113.77', port: 6000 };
    base.send(Buffer.from('through the relay'), to);
    await vnet.runUntil(() => atPeer.length === 1, { maxMs: 5000 });
    expect(atPeer).toEqual([['through the relay', relay.port]]);
    peer.send(Buffer.from('and back'), relay.port, relay.address);
    await vnet.runUntil(() => atBase.length === 1, { maxMs: 5000 });
    expect(atBase).toEqual([['and back', to]]);
    await vnet.runUntil(g.close(), { maxMs: 60_000 });
    expect(turn.server.allAllocations()).toHaveLength(0);
  });
});
