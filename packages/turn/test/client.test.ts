// TurnClient over an injected Network, from a given local address, with an AbortSignal on
// its Allocate, and what it reports (local address, permissions).
import * as dgram from 'node:dgram';
import { describe, expect, it } from 'vitest';
import { type Network, type TransportAddress, nodeNetwork } from '@natkit/stun';
import { TurnClient, TurnServer, parseUsers } from '../src/index.js';
import { openRawUdp } from '../../../test/helpers/udp.js';
import { useCleanup } from '../../../test/helpers/cleanup.js';

const { defer, track } = useCleanup();

async function relay(): Promise<TurnServer> {
  return track(
    await TurnServer.start({
      listen: ['127.0.0.1'],
      port: 0,
      users: parseUsers('alice:wonderland\n'),
      allowPeers: ['127.0.0.0/8'],
      relayPortMin: 45000,
      relayPortMax: 47999,
    }),
  );
}

/** nodeNetwork, counting the UDP sockets opened through it. */
function countingNetwork(): Network & { opened: Array<{ family: string; address?: string }> } {
  const opened: Array<{ family: string; address?: string }> = [];
  return {
    opened,
    createUdpSocket: (o) => {
      opened.push({ family: o.family, address: o.address });
      return nodeNetwork.createUdpSocket(o);
    },
    interfaces: () => nodeNetwork.interfaces(),
    lookup: (h, f) => nodeNetwork.lookup(h, f),
  };
}

describe('TurnClient: sockets from a Network, a bind address, an abortable Allocate', () => {
  it('allocates over a UDP socket opened through the injected Network on the bind address, relays both ways', async () => {
    const s = await relay();
    const network = countingNetwork();
    const port = s.listening.find((l) => l.transport === 'udp')!.port;
    const c = track(await TurnClient.allocate({ server: { address: '127.0.0.1', port }, username: 'alice', password: 'wonderland', network, bindAddress: '127.0.0.1' }));
    expect(network.opened).toEqual([{ family: 'IPv4', address: '127.0.0.1' }]);
    expect(c.local).toMatchObject({ family: 'IPv4', address: '127.0.0.1' });
    expect(c.local!.port).toBeGreaterThan(0);
    expect(c.mapped).toEqual(c.local);
    const p = await openRawUdp();
    defer(() => p.close());
    const peer: TransportAddress = { family: 'IPv4', address: '127.0.0.1', port: p.port };
    expect(c.hasPermission(peer)).toBe(false);
    await c.createPermission(peer);
    expect(c.hasPermission(peer)).toBe(true);
    expect(c.hasPermission('127.0.0.1')).toBe(true);
    expect(c.hasPermission('127.0.0.2')).toBe(false);
    await c.send(peer, Buffer.from('to peer'));
    const [got, from] = await p.next();
    expect(got.toString()).toBe('to peer');
    expect(from.port).toBe(c.relayed[0]!.port);
    const back = new Promise<[Buffer, TransportAddress]>((r) => c.once('data', (d, f) => r([d, f])));
    await p.send(Buffer.from('to client'), c.relayed[0]!.port, '127.0.0.1');
    const [data, fromPeer] = await back;
    expect(data.toString()).toBe('to client');
    expect(fromPeer).toEqual(peer);
  });

  it('over TCP, connects from the bind address', async () => {
    const s = await relay();
    const port = s.listening.find((l) => l.transport === 'tcp')!.port;
    const c = track(await TurnClient.allocate({ server: { address: '127.0.0.1', port, transport: 'tcp' }, username: 'alice', password: 'wonderland', bindAddress: '127.0.0.1' }));
    expect(c.local).toMatchObject({ family: 'IPv4', address: '127.0.0.1' });
    expect(c.relayed).toHaveLength(1);
  });

  it('an aborted Allocate rejects with ABORTED and closes the client', async () => {
    expect.assertions(2);
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((r) => silent.bind(0, '127.0.0.1', () => r()));
    defer(() => new Promise<void>((r) => silent.close(() => r())));
    const arrived = new Promise<void>((r) => silent.once('message', () => r()));
    const ac = new AbortController();
    const p = TurnClient.allocate({ server: { address: '127.0.0.1', port: silent.address().port }, username: 'alice', password: 'x', signal: ac.signal });
    await arrived;
    ac.abort();
    try {
      await p;
    } catch (e) {
      expect((e as { code: string }).code).toBe('ABORTED');
      expect(e).toBeInstanceOf(Error);
    }
  });
});
