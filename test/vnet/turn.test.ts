// natkit's TURN relay (TurnServer) and TURN client (TurnClient), both on the virtual network
// through their `network` option: a client behind a NAT relays to and from a public peer
// through an allocation with long-term credentials, on the network's clock (so refreshes over
// twenty minutes take milliseconds of real time).
import { type DatagramSocket, type TransportAddress } from '@natkit/stun';
import { TurnClient } from '@natkit/turn';
import { describe, expect, test } from 'vitest';
import { type NatType, type VnetLab, type VnetTurn, createVnetLab, startTurnServer } from '../helpers/vnet/index.js';

interface Setup {
  lab: VnetLab;
  turn: VnetTurn;
  peer: DatagramSocket;
  peerAddress: TransportAddress;
  atPeer: Array<{ text: string; from: string }>;
}

/** A client behind `nat` (client 0), a public peer without NAT (client 1), the TURN relay at 203.0.113.3. */
async function setup(nat: Exclude<NatType, 'none' | 'firewall'>, seed = 1, mappingTimeoutSec?: number): Promise<Setup> {
  const lab = createVnetLab({ clients: [{ nat }, { nat: 'none' }], seed, trace: true, mappingTimeoutSec });
  const turn = await startTurnServer(lab.vnet);
  const peer = await lab.clients[1]!.network.createUdpSocket({ family: 'IPv4', port: 7000 });
  const atPeer: Setup['atPeer'] = [];
  peer.on('message', (m, r) => atPeer.push({ text: m.toString(), from: `${r.address}:${r.port}` }));
  return { lab, turn, peer, atPeer, peerAddress: { family: 'IPv4', address: lab.clients[1]!.address, port: 7000 } };
}

async function teardown(s: Setup, client?: TurnClient): Promise<void> {
  const { vnet } = s.lab;
  if (client) await vnet.runUntil(client.close(), { label: 'the client closing' });
  s.peer.close();
  await s.turn.close();
  expect(vnet.openSockets()).toEqual([]);
}

function allocate(s: Setup, options: { keepaliveMs?: number } = {}): Promise<TurnClient> {
  const c = s.lab.client;
  return s.lab.vnet.runUntil(
    TurnClient.allocate({ server: { address: s.turn.address, port: s.turn.port }, username: s.turn.username, password: s.turn.password, network: c.network, clock: s.lab.vnet.clock, ...options }),
    { label: 'the allocation' },
  );
}

describe('TURN on the virtual network', () => {
  test('a client behind a symmetric NAT relays both ways to a public peer: indications, then a channel', async () => {
    const s = await setup('symmetric');
    const { vnet } = s.lab;
    const client = await allocate(s);
    const got: Array<{ text: string; from: string }> = [];
    client.on('data', (d, from) => got.push({ text: d.toString(), from: `${from.address}:${from.port}` }));
    const relayed = client.relayed[0]!;
    expect(relayed.address).toBe('203.0.113.3');
    expect(relayed.port).toBeGreaterThanOrEqual(49152);
    // the server saw the NAT's public address, on the one mapping the symmetric NAT made towards it
    expect(client.mapped?.address).toBe(s.lab.nat.publicAddress);
    const mappings = s.lab.nat.router!.mappings();
    expect(mappings).toHaveLength(1);
    expect(client.mapped?.port).toBe(mappings[0]!.external.port);
    expect(s.turn.server.allocationCount).toBe(1);

    // without a permission the relay drops what the peer sends (RFC 8656 section 9)
    s.peer.send(Buffer.from('too early'), relayed.port, relayed.address);
    await vnet.run(200);
    expect(got).toEqual([]);

    await vnet.runUntil(client.createPermission(s.peerAddress));
    await vnet.runUntil(client.send(s.peerAddress, Buffer.from('hello peer')));
    await vnet.runUntil(() => s.atPeer.length === 1);
    expect(s.atPeer[0]).toEqual({ text: 'hello peer', from: `${relayed.address}:${relayed.port}` });
    s.peer.send(Buffer.from('hello client'), relayed.port, relayed.address);
    await vnet.runUntil(() => got.length === 1);
    expect(got[0]).toEqual({ text: 'hello client', from: '203.0.113.202:7000' });

    const channel = await vnet.runUntil(client.bindChannel(s.peerAddress));
    expect(channel).toBeGreaterThanOrEqual(0x4000);
    const mark = vnet.traceEntries().length;
    await vnet.runUntil(client.send(s.peerAddress, Buffer.from('by channel')));
    s.peer.send(Buffer.from('back by channel'), relayed.port, relayed.address);
    await vnet.runUntil(() => s.atPeer.length === 2 && got.length === 2);
    expect(s.atPeer[1]!.text).toBe('by channel');
    expect(got[1]!.text).toBe('back by channel');
    // ChannelData is 4 bytes of header (RFC 8656 section 12.4): 'by channel' is 10 bytes, so 14 on the wire to the relay
    const toRelay = vnet.traceEntries().slice(mark).filter((e) => e.event === 'deliver' && e.dst.address === '203.0.113.3' && e.dst.port === 3478);
    expect(toRelay.map((e) => e.size)).toEqual([14]);
    await teardown(s, client);
    expect(s.turn.server.allocationCount).toBe(0);
  });

  test('twenty idle minutes behind a symmetric NAT: the client refreshes on the clock, the NAT keeps its mapping, the allocation still relays', async () => {
    const s = await setup('symmetric');
    const { vnet } = s.lab;
    const client = await allocate(s);
    const got: string[] = [];
    client.on('data', (d) => got.push(d.toString()));
    await vnet.runUntil(client.bindChannel(s.peerAddress));
    const before = s.lab.nat.router!.mappings().map((m) => m.external.port);
    const errors: Error[] = [];
    client.on('error', (e) => errors.push(e));
    // the relay's sweep and the client's refreshes are clock timers: twenty minutes pass in a moment
    await vnet.run(20 * 60_000);
    expect(errors).toEqual([]);
    expect(s.turn.server.allocationCount).toBe(1);
    // permission refreshes every 4 minutes kept the NAT's 5-minute mapping alive: the same port
    expect(s.lab.nat.router!.mappings().map((m) => m.external.port)).toEqual(before);
    expect(s.lab.nat.router!.counters.mappingsExpired).toBe(0);
    s.peer.send(Buffer.from('still there?'), client.relayed[0]!.port, client.relayed[0]!.address);
    await vnet.runUntil(() => got.length === 1);
    await vnet.runUntil(client.send(s.peerAddress, Buffer.from('yes')));
    await vnet.runUntil(() => s.atPeer.some((m) => m.text === 'yes'));
    await teardown(s, client);
  });

  test('behind a NAT that forgets idle UDP mappings after 30 s, Binding indications every 15 s keep an idle allocation (and its permission) working', async () => {
    const s = await setup('port-restricted-cone', 1, 30);
    const { vnet } = s.lab;
    const client = await allocate(s);
    const got: string[] = [];
    client.on('data', (d) => got.push(d.toString()));
    const errors: Error[] = [];
    client.on('error', (e) => errors.push(e));
    await vnet.runUntil(client.createPermission(s.peerAddress));
    const mark = vnet.traceEntries().length;
    const port = s.lab.nat.router!.mappings()[0]!.external.port;
    // Ten idle minutes: the permission refreshes (every 4 min) alone would leave the mapping
    // dead for most of that time; the allocation's refresh at 300 s would come from a new one.
    await vnet.run(10 * 60_000);
    expect(errors).toEqual([]);
    expect(s.lab.nat.router!.counters.mappingsExpired).toBe(0);
    expect(s.lab.nat.router!.mappings().map((m) => m.external.port)).toEqual([port]);
    // What reached the relay from the client in those ten minutes: never more than 15 s apart
    // (the links' delays are fixed, so gaps at the relay are gaps at the client), and the
    // keepalives are 28-byte Binding indications (header and FINGERPRINT).
    const toRelay = vnet.traceEntries().slice(mark).filter((e) => e.event === 'deliver' && e.dst.address === '203.0.113.3' && e.dst.port === 3478);
    const gaps = toRelay.slice(1).map((e, i) => e.t - toRelay[i]!.t);
    expect(gaps.length).toBeGreaterThanOrEqual(39);
    expect(Math.max(...gaps)).toBeLessThanOrEqual(15_000);
    expect(toRelay.filter((e) => e.size === 28).length).toBeGreaterThanOrEqual(30);
    s.peer.send(Buffer.from('still there?'), client.relayed[0]!.port, client.relayed[0]!.address);
    await vnet.runUntil(() => got.length === 1);
    expect(got).toEqual(['still there?']);
    await teardown(s, client);
  });

  test('without keepalives (keepaliveMs: 0) behind a symmetric NAT with 30 s mappings: the refresh comes from a new mapping and the allocation is lost', async () => {
    // (A port-preserving NAT would hand the refresh the same external port again, and the
    // relay would see the same 5-tuple: the symmetric NAT's random ports show the loss.)
    const s = await setup('symmetric', 1, 30);
    const { vnet } = s.lab;
    const client = await allocate(s, { keepaliveMs: 0 });
    const closed = new Promise<void>((r) => client.once('closed', () => r()));
    const errors: Error[] = [];
    client.on('error', (e) => errors.push(e));
    await vnet.runUntil(closed, { maxMs: 10 * 60_000, label: 'the allocation being lost' });
    expect(s.lab.nat.router!.counters.mappingsExpired).toBeGreaterThan(0);
    // RFC 8656 section 7.3: a Refresh on a 5-tuple with no allocation is 437.
    expect(errors.map((e) => (e as { errorCode?: number }).errorCode)).toContain(437);
    await teardown(s, client);
  });

  test('with 20 % loss on the NAT the allocation, the permission and the data still get through (retransmissions)', async () => {
    const s = await setup('port-restricted-cone', 4);
    const { vnet } = s.lab;
    s.lab.nat.router!.wanLink.set({ loss: 0.2 });
    const client = await allocate(s);
    await vnet.runUntil(client.createPermission(s.peerAddress));
    // data is not retransmitted: send until some arrives, and some is lost
    for (let i = 0; i < 50; i++) await vnet.runUntil(client.send(s.peerAddress, Buffer.from(`d${i}`)));
    await vnet.run(500);
    const arrived = s.atPeer.length;
    expect(arrived).toBeGreaterThan(25);
    expect(arrived).toBeLessThan(50);
    const wan = s.lab.nat.router!.wanLink;
    expect(wan.out.counters.lost + wan.in.counters.lost).toBeGreaterThan(0);
    await teardown(s, client);
  });

  test('wrong credentials: the allocation is refused with 401 (AUTH_FAILED), nothing is allocated', async () => {
    const s = await setup('full-cone');
    const { vnet } = s.lab;
    const p = TurnClient.allocate({ server: { address: s.turn.address }, username: s.turn.username, password: 'wrong', network: s.lab.client.network, clock: vnet.clock });
    await expect(vnet.runUntil(p)).rejects.toMatchObject({ code: 'AUTH_FAILED', errorCode: 401 });
    expect(s.turn.server.allocationCount).toBe(0);
    await teardown(s);
  });
});
