// Raw UDP for tests that script exchanges by hand (hostile bytes, RFC 5780 attributes):
// dgram-as-promised gives promise-returning bind/send/close; its recv() only listens
// while a call is pending (datagrams that arrive between calls are lost), so answers are
// queued here from the underlying socket's 'message' events instead.
import type { RemoteInfo } from 'node:dgram';
import DgramAsPromised from 'dgram-as-promised';

export interface RawUdp {
  port: number;
  send(data: Uint8Array, port: number, address: string): Promise<number>;
  /** The next datagram that arrived (waits for one). */
  next(): Promise<[Buffer, RemoteInfo]>;
  /** Datagrams received and not yet taken. */
  readonly queued: number;
  close(): Promise<void>;
}

export async function openRawUdp(address = '127.0.0.1', type: 'udp4' | 'udp6' = 'udp4'): Promise<RawUdp> {
  const sock = DgramAsPromised.createSocket(type);
  const queue: Array<[Buffer, RemoteInfo]> = [];
  const waiters: Array<(v: [Buffer, RemoteInfo]) => void> = [];
  sock.socket.on('message', (b: Buffer, r: RemoteInfo) => {
    const w = waiters.shift();
    if (w) w([b, r]);
    else queue.push([b, r]);
  });
  const info = await sock.bind({ address, port: 0 });
  return {
    port: info!.port,
    send: (data, port, addr) => sock.send(data, 0, data.length, port, addr) as Promise<number>,
    next: () => (queue.length ? Promise.resolve(queue.shift()!) : new Promise((r) => waiters.push(r))),
    get queued() {
      return queue.length;
    },
    close: async () => {
      await sock.close();
    },
  };
}
