import { EventEmitter } from 'node:events';
import { type Family, type TransportAddress, canonicalIp, ipFamily } from '../codec/ip.js';
import { type ServerError, StunServerError } from '../errors.js';
import { type Clock, realClock } from '../net/clock.js';
import { type DatagramSocket, type Network, nodeNetwork } from '../net/network.js';
import { BindingService, type BindingServiceOptions, type BindingStats } from './binding.js';
import { stunMetrics } from './metrics.js';
import { StreamListener } from './streams.js';
import type { Registry } from 'prom-client';


export interface StunServerOptions extends BindingServiceOptions {
  /** Primary address (A). Default 0.0.0.0; must be specific for RFC 5780 full mode. */
  address?: string;
  /** Primary port (P). Default 3478; 0 picks free ports. */
  port?: number;
  /** Second address (A2): turns on RFC 5780 full mode (four UDP sockets). */
  alternateAddress?: string;
  /** Second port (P2). Default port + 1 (a free one when port is 0). */
  alternatePort?: number;
  /** Serve UDP (default true). */
  udp?: boolean;
  /** Serve TCP on the primary address and port (default true). */
  tcp?: boolean;
  /** Serve TLS with this certificate and key (PEM), default port 5349. */
  tls?: { cert: string | Buffer; key: string | Buffer; port?: number };
  /** Most TCP/TLS connections at once (default 1024); more are refused. */
  maxConnections?: number;
  /** Close TCP/TLS connections idle this long (default 30 s). */
  idleTimeoutMs?: number;
  clock?: Clock;
  /**
   * The network UDP sockets are opened on (default: the operating system's). TCP and TLS
   * listeners always use node:net and node:tls.
   */
  network?: Network;
  /**
   * Share the ports with other processes (stunserver --workers): UDP sockets with
   * SO_REUSEPORT (Node >= 22.12 on Linux), TCP/TLS listeners through node:cluster's primary.
   */
  reusePort?: boolean;
}

export interface Listening {
  transport: 'udp' | 'tcp' | 'tls';
  family: Family;
  address: string;
  port: number;
}

/**
 * A listening UDP socket every client shares: larger kernel buffers (1 MiB asked; the
 * kernel caps it at net.core.rmem_max/wmem_max) so bursts wait instead of being dropped.
 */
async function bindUdp(network: Network, family: Family, address: string, port: number, reusePort?: boolean): Promise<DatagramSocket> {
  try {
    return await network.createUdpSocket({ family, address, port, recvBufferSize: 1 << 20, sendBufferSize: 1 << 20, reusePort });
  } catch (err) {
    throw new StunServerError('LISTEN', `cannot listen on udp ${family === 'IPv6' ? `[${address}]` : address}:${port}: ${(err as Error).message}`, { cause: err });
  }
}

function closeUdp(s: DatagramSocket): Promise<void> {
  return new Promise((r) => {
    try {
      s.close(() => r());
    } catch {
      r();
    }
  });
}

/**
 * The STUN Binding server over UDP, TCP and TLS, with RFC 5780 full mode when given a
 * second address. Malformed input is dropped and counted; error answers to one source are
 * rate-limited.
 */
export class StunServer extends EventEmitter {
  readonly service: BindingService;
  readonly listening: Listening[] = [];
  private readonly udp: DatagramSocket[] = [];
  private readonly streams: StreamListener[] = [];
  private readonly clock: Clock;
  private readonly opts: StunServerOptions;
  private closed = false;
  /** Connections refused because of maxConnections, and streams closed for bad framing. */
  streamDrops = { refused: 0, badFraming: 0, idle: 0 };
  /** prom-client registry with the server's metrics (read from its counters when scraped). */
  readonly metrics: Registry;

  private constructor(service: BindingService, opts: StunServerOptions) {
    super();
    this.service = service;
    this.opts = opts;
    this.clock = opts.clock ?? realClock;
    this.metrics = stunMetrics(this);
  }

  get stats(): BindingStats {
    return this.service.stats;
  }

  /** True when serving RFC 5780 behaviour discovery. */
  get full(): boolean {
    return this.service.full;
  }

  static async start(options: StunServerOptions = {}): Promise<StunServer> {
    // With port 0 the kernel picks the UDP port and TCP must get the same one, which some
    // other program may hold: try again with another.
    for (let attempt = 0; ; attempt++) {
      try {
        return await StunServer.startOnce(options);
      } catch (err) {
        if (options.port !== 0 || (err as ServerError).errno !== 'EADDRINUSE' || attempt >= 20) throw err;
      }
    }
  }

  private static async startOnce(options: StunServerOptions): Promise<StunServer> {
    const address = canonicalIp(options.address ?? '0.0.0.0');
    const family = ipFamily(address)!;
    const alt = options.alternateAddress === undefined ? undefined : canonicalIp(options.alternateAddress);
    if (alt !== undefined) {
      if (ipFamily(alt) !== family) throw new StunServerError('CONFIG', `the alternate address ${alt} is not of the same family as ${address}`);
      if (address === '0.0.0.0' || address === '::' || alt === '0.0.0.0' || alt === '::') {
        throw new StunServerError('CONFIG', 'RFC 5780 mode needs two specific addresses (not a wildcard)');
      }
      if (alt === address) throw new StunServerError('CONFIG', 'the alternate address must differ from the primary');
    }
    const port = options.port ?? 3478;
    const udpOn = options.udp ?? true;
    const network = options.network ?? nodeNetwork;
    let sockets: DatagramSocket[] = [];
    let endpoints: TransportAddress[] = [];
    if (udpOn) {
      // With port 0 the kernel picks P and P2; A2 must then get the same two, which may be
      // taken, so try a few times.
      for (let attempt = 0; ; attempt++) {
        try {
          const sAP = await bindUdp(network, family, address, port, options.reusePort);
          sockets = [sAP];
          const P = sAP.address().port;
          if (alt !== undefined) {
            const sAP2 = await bindUdp(network, family, address, options.alternatePort ?? (port === 0 ? 0 : port + 1), options.reusePort);
            sockets.push(sAP2);
            const P2 = sAP2.address().port;
            sockets.push(await bindUdp(network, family, alt, P, options.reusePort));
            sockets.push(await bindUdp(network, family, alt, P2, options.reusePort));
          }
          break;
        } catch (err) {
          await Promise.all(sockets.map(closeUdp));
          sockets = [];
          if (port !== 0 || (err as ServerError).errno !== 'EADDRINUSE' || attempt >= 20) throw err;
        }
      }
      endpoints = sockets.map((s) => {
        const a = s.address();
        return { family, address: canonicalIp(a.address), port: a.port };
      });
    } else {
      endpoints = [{ family, address, port }];
    }
    const service = new BindingService(endpoints, options);
    const server = new StunServer(service, options);
    sockets.forEach((s, i) => server.attachUdp(s, i));
    try {
      const tcpPort = sockets[0]?.address().port ?? port;
      if (options.tcp ?? true) await server.listenStream('tcp', address, tcpPort);
      if (options.tls) await server.listenStream('tls', address, options.tls.port ?? 5349);
    } catch (err) {
      await server.close();
      throw err;
    }
    return server;
  }

  private attachUdp(s: DatagramSocket, index: number): void {
    this.udp[index] = s;
    const a = s.address();
    this.listening.push({ transport: 'udp', family: a.family as Family, address: canonicalIp(a.address), port: a.port });
    const family = a.family as Family;
    const service = this.service;
    const clock = this.clock;
    const sockets = this.udp;
    // One listener per socket, made once; nothing is allocated here per packet beyond the
    // reply itself.
    s.on('message', (buf, rinfo) => {
      // One bad packet must cost that packet only, never the server.
      try {
        const reply = service.handleDatagram(buf, { family, address: rinfo.address, port: rinfo.port }, index, clock.now());
        if (reply) sockets[reply.via]!.send(reply.data, reply.port, reply.address);
      } catch (err) {
        service.stats.dropped.internalError++;
        this.emit('warning', err);
      }
    });
    s.on('error', (err) => this.emit('warning', err));
  }

  private async listenStream(transport: 'tcp' | 'tls', address: string, port: number): Promise<void> {
    const l = await StreamListener.listen({
      transport,
      address,
      port,
      tls: this.opts.tls,
      maxConnections: this.opts.maxConnections ?? 1024,
      idleTimeoutMs: this.opts.idleTimeoutMs ?? 30_000,
      exclusive: !this.opts.reusePort,
      accept: (conn) => {
        if (this.closed) return undefined;
        const from = conn.remote;
        return {
          frame: (frame) => {
            let reply: Buffer | undefined;
            try {
              reply = this.service.handleStream(frame, from, this.clock.now());
            } catch (err) {
              this.service.stats.dropped.internalError++;
              this.emit('warning', err);
            }
            if (reply) conn.send(reply);
          },
        };
      },
      dropped: (why) => {
        if (why === 'refused') this.streamDrops.refused++;
        else if (why === 'idle') this.streamDrops.idle++;
        else this.streamDrops.badFraming++;
      },
      warning: (err) => this.emit('warning', err),
    });
    this.streams.push(l);
    this.listening.push({ transport, family: l.local.family, address: l.local.address, port: l.local.port });
  }

  /** TCP/TLS connections open now. */
  get connections(): number {
    let n = 0;
    for (const l of this.streams) n += l.connections;
    return n;
  }

  /** Stops listening, closes every socket and connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all([...this.udp.filter(Boolean).map(closeUdp), ...this.streams.map((l) => l.close())]);
  }
}
