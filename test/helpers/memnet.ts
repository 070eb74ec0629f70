// A minimal in-memory network behind natkit's `Network` interface, for adapter tests that
// must run without the kernel: hosts with addresses on one flat segment, UDP sockets that
// bind (EADDRINUSE, EADDRNOTAVAIL as the kernel would) and exchange datagrams, delivered
// in order on the microtask queue (no timers, so a ManualClock test stays deterministic).
// No NAT, loss or delay: that is the virtual network of test/helpers/vnet.
import { EventEmitter } from 'node:events';
import type { DatagramInfo, DatagramSocket, Family, InterfaceAddress, Network, UdpSocketOptions } from '@natkit/stun';

function errno(code: string, message: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${message} ${code}`), { code });
}

const key = (address: string, port: number) => `${address}|${port}`;
const wildcard = (f: Family) => (f === 'IPv6' ? '::' : '0.0.0.0');

class MemSocket extends EventEmitter implements DatagramSocket {
  closed = false;
  constructor(
    private readonly segment: MemorySegment,
    private readonly host: MemoryHost,
    readonly family: Family,
    readonly boundAddress: string,
    readonly port: number,
  ) {
    super();
  }

  address(): { address: string; family: string; port: number } {
    return { address: this.boundAddress, family: this.family, port: this.port };
  }

  send(msg: Uint8Array, port: number, address: string, callback?: (err: Error | null, bytes: number) => void): void {
    if (this.closed) throw errno('ERR_SOCKET_DGRAM_NOT_RUNNING', 'Not running');
    // A wildcard socket sends from the host's first address of its family.
    const from = this.boundAddress === wildcard(this.family) ? this.host.addresses.find((a) => a.family === this.family)!.address : this.boundAddress;
    const data = Buffer.from(msg);
    this.segment.sent++;
    queueMicrotask(() => {
      this.segment.deliver({ address: from, family: this.family, port: this.port, size: data.length }, address, port, data);
      callback?.(null, data.length);
    });
  }

  close(callback?: () => void): this {
    if (!this.closed) {
      this.closed = true;
      this.segment.unbind(this);
      queueMicrotask(() => this.emit('close'));
    }
    if (callback) queueMicrotask(callback);
    return this;
  }
}

/** One host: its interface addresses, and a `Network` that binds only those. */
export class MemoryHost implements Network {
  constructor(
    private readonly segment: MemorySegment,
    readonly addresses: InterfaceAddress[],
  ) {}

  async createUdpSocket(options: UdpSocketOptions): Promise<DatagramSocket> {
    const family = options.family;
    const address = options.address ?? wildcard(family);
    if (address !== wildcard(family) && !this.addresses.some((a) => a.address === address)) {
      throw errno('EADDRNOTAVAIL', `bind ${address}:`);
    }
    const s = this.segment.bind(this, family, address, options.port ?? 0);
    return s;
  }

  interfaces(): InterfaceAddress[] {
    return this.addresses.map((a) => ({ ...a }));
  }

  async lookup(hostname: string, family?: Family): Promise<Array<{ address: string; family: Family }>> {
    const f: Family | undefined = hostname.includes(':') ? 'IPv6' : /^\d+\.\d+\.\d+\.\d+$/.test(hostname) ? 'IPv4' : undefined;
    if (!f || (family && family !== f)) throw errno('ENOTFOUND', `getaddrinfo ${hostname}`);
    return [{ address: hostname, family: f }];
  }
}

/** The segment every host is on: sockets by address and port. */
export class MemorySegment {
  private readonly sockets = new Map<string, MemSocket>();
  private nextPort = 40000;
  /** Datagrams sent, and those dropped for want of a socket to take them. */
  sent = 0;
  undeliverable = 0;

  host(...addresses: string[]): MemoryHost {
    return new MemoryHost(
      this,
      addresses.map((address) => ({ name: 'mem0', address, family: address.includes(':') ? ('IPv6' as const) : ('IPv4' as const), internal: false, prefix: address.includes(':') ? 64 : 24 })),
    );
  }

  bind(host: MemoryHost, family: Family, address: string, port: number): MemSocket {
    if (port === 0) {
      do port = this.nextPort++;
      while (this.taken(address, family, port));
    } else if (this.taken(address, family, port)) {
      throw errno('EADDRINUSE', `bind ${address}:${port}`);
    }
    const s = new MemSocket(this, host, family, address, port);
    this.sockets.set(key(address, port), s);
    return s;
  }

  private taken(address: string, family: Family, port: number): boolean {
    return this.sockets.has(key(address, port)) || this.sockets.has(key(wildcard(family), port)) || (address === wildcard(family) && [...this.sockets.values()].some((s) => s.port === port && s.family === family));
  }

  unbind(s: MemSocket): void {
    if (this.sockets.get(key(s.boundAddress, s.port)) === s) this.sockets.delete(key(s.boundAddress, s.port));
  }

  deliver(from: DatagramInfo, address: string, port: number, data: Buffer): void {
    const family: Family = address.includes(':') ? 'IPv6' : 'IPv4';
    const to = this.sockets.get(key(address, port)) ?? this.sockets.get(key(wildcard(family), port));
    if (!to || to.closed) {
      this.undeliverable++;
      return;
    }
    to.emit('message', data, from);
  }

  /** Sockets still bound (a test checks that a server closed all of its own). */
  get open(): number {
    return this.sockets.size;
  }
}

/** A queue of what arrives on a socket: `next()` waits for the next datagram. */
export function inbox(s: DatagramSocket): { next(): Promise<[Buffer, DatagramInfo]>; readonly queued: number } {
  const queue: Array<[Buffer, DatagramInfo]> = [];
  const waiters: Array<(v: [Buffer, DatagramInfo]) => void> = [];
  s.on('message', (m, r) => {
    const w = waiters.shift();
    if (w) w([m, r]);
    else queue.push([m, r]);
  });
  return {
    next: () => (queue.length ? Promise.resolve(queue.shift()!) : new Promise((r) => waiters.push(r))),
    get queued() {
      return queue.length;
    },
  };
}
