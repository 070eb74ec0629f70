import { describe, expect, it } from 'vitest';
import { type DatagramInfo, type DatagramSocket, nodeNetwork } from '../src/index.js';
import { useCleanup } from '../../../test/helpers/cleanup.js';

const { defer } = useCleanup();

async function open(address = '127.0.0.1'): Promise<DatagramSocket> {
  const s = await nodeNetwork.createUdpSocket({ family: 'IPv4', address });
  defer(() => new Promise<void>((r) => s.close(() => r())));
  return s;
}

describe('nodeNetwork: the real network behind the Network interface', () => {
  it('binds UDP sockets that exchange datagrams with their source', async () => {
    const a = await open();
    const b = await open();
    const got = new Promise<[Buffer, DatagramInfo]>((resolve) => b.on('message', (m, r) => resolve([m, r])));
    a.send(Buffer.from('ping'), b.address().port, '127.0.0.1');
    const [msg, from] = await got;
    expect(msg.toString()).toBe('ping');
    expect(from).toMatchObject({ address: '127.0.0.1', family: 'IPv4', port: a.address().port, size: 4 });
  });

  it('rejects a bind that cannot succeed, with the error', async () => {
    const a = await open();
    await expect(nodeNetwork.createUdpSocket({ family: 'IPv4', address: '127.0.0.1', port: a.address().port })).rejects.toThrow(/EADDRINUSE/);
  });

  it('lists interface addresses with family and prefix, loopback marked internal', () => {
    const lo = nodeNetwork.interfaces().find((i) => i.address === '127.0.0.1');
    expect(lo).toMatchObject({ family: 'IPv4', internal: true, prefix: 8 });
  });

  it('looks up literal addresses without DNS', async () => {
    await expect(nodeNetwork.lookup('::1')).resolves.toEqual([{ address: '::1', family: 'IPv6' }]);
    await expect(nodeNetwork.lookup('127.0.0.1', 'IPv4')).resolves.toEqual([{ address: '127.0.0.1', family: 'IPv4' }]);
  });
});
