import {
  BindingService,
  type BindingServiceOptions,
  type BindingStats,
  type Clock,
  type DatagramSocket,
  type Family,
  type Network,
  type TransportAddress,
  canonicalIp,
  ipFamily,
} from '@natkit/stun';

// natkit's STUN Binding service (the sans-I/O BindingService that StunServer wraps) on
// sockets of the virtual network: one socket for a basic server, four for RFC 5780's full
// mode (A:P, A:P2, A2:P, A2:P2, numbered as BindingService expects: changing the IP flips
// bit 1, the port bit 0). This is what StunServer's UDP adapter does, over a `Network`.

export interface VnetStunServerOptions extends BindingServiceOptions {
  /** The primary address (A): a specific address of the host. */
  address: string;
  /** The second address (A2): turns on RFC 5780 full mode. */
  alternateAddress?: string;
  /** P, default 3478. */
  port?: number;
  /** P2, default 3479. */
  alternatePort?: number;
  clock: Clock;
}

export class VnetStunServer {
  private constructor(
    readonly service: BindingService,
    readonly sockets: DatagramSocket[],
    readonly endpoints: TransportAddress[],
  ) {}

  get stats(): BindingStats {
    return this.service.stats;
  }

  /** The primary transport address (A:P). */
  get primary(): TransportAddress {
    return this.endpoints[0]!;
  }

  /** OTHER-ADDRESS of the primary (A2:P2), in full mode. */
  get other(): TransportAddress | undefined {
    return this.endpoints[3];
  }

  static async start(network: Network, o: VnetStunServerOptions): Promise<VnetStunServer> {
    const a = canonicalIp(o.address);
    const family = ipFamily(a) as Family;
    const p = o.port ?? 3478;
    const plan: Array<[string, number]> = [[a, p]];
    if (o.alternateAddress !== undefined) {
      const a2 = canonicalIp(o.alternateAddress);
      const p2 = o.alternatePort ?? p + 1;
      plan.push([a, p2], [a2, p], [a2, p2]);
    }
    const sockets: DatagramSocket[] = [];
    try {
      for (const [address, port] of plan) sockets.push(await network.createUdpSocket({ family, address, port }));
    } catch (err) {
      for (const s of sockets) s.close();
      throw err;
    }
    const endpoints = sockets.map((s) => {
      const x = s.address();
      return { family, address: x.address, port: x.port };
    });
    const service = new BindingService(endpoints, o);
    const server = new VnetStunServer(service, sockets, endpoints);
    sockets.forEach((s, index) => {
      s.on('message', (buf, rinfo) => {
        const reply = service.handleDatagram(buf, { family, address: rinfo.address, port: rinfo.port }, index, o.clock.now());
        if (reply) sockets[reply.via]!.send(reply.data, reply.port, reply.address);
      });
    });
    return server;
  }

  async close(): Promise<void> {
    await Promise.all(this.sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}
