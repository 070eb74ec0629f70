import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { type Family, type TransportAddress, canonicalIp, ipFamily } from '../codec/ip.js';
import { NatkitError } from '../errors.js';
import { type Clock, realClock } from '../net/clock.js';
import { StreamFramer } from '../net/framing.js';
import { type DatagramSocket, type Network, nodeNetwork } from '../net/network.js';
import { BindingService, type BindingServiceOptions, type BindingStats } from './binding.js';

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
}

export interface Listening {
  transport: 'udp' | 'tcp' | 'tls';
  family: Family;
  address: string;
  port: number;
}

export class StunServerError extends NatkitError {}

/**
 * A listening UDP socket every client shares: larger kernel buffers (1 MiB asked; the
 * kernel caps it at net.core.rmem_max/wmem_max) so bursts wait instead of being dropped.
 */
function bindUdp(network: Network, family: Family, address: string, port: number): Promise<DatagramSocket> {
  return network.createUdpSocket({ family, address, port, recvBufferSize: 1 << 20, sendBufferSize: 1 << 20 });
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
  private readonly servers: net.Server[] = [];
  private readonly conns = new Set<net.Socket>();
  private readonly clock: Clock;
  private readonly opts: StunServerOptions;
  private closed = false;
  /** Connections refused because of maxConnections, and streams closed for bad framing. */
  streamDrops = { refused: 0, badFraming: 0, idle: 0 };

  private constructor(service: BindingService, opts: StunServerOptions) {
    super();
    this.service = service;
    this.opts = opts;
    this.clock = opts.clock ?? realClock;
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
        if (options.port !== 0 || (err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 20) throw err;
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
          const sAP = await bindUdp(network, family, address, port);
          sockets = [sAP];
          const P = sAP.address().port;
          if (alt !== undefined) {
            const sAP2 = await bindUdp(network, family, address, options.alternatePort ?? (port === 0 ? 0 : port + 1));
            sockets.push(sAP2);
            const P2 = sAP2.address().port;
            sockets.push(await bindUdp(network, family, alt, P));
            sockets.push(await bindUdp(network, family, alt, P2));
          }
          break;
        } catch (err) {
          await Promise.all(sockets.map(closeUdp));
          sockets = [];
          if (port !== 0 || attempt >= 20) throw err;
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
    const onConn = (sock: net.Socket) => this.onConnection(sock);
    const srv =
      transport === 'tls'
        ? tls.createServer({ cert: this.opts.tls!.cert, key: this.opts.tls!.key }, onConn)
        : net.createServer(onConn);
    srv.maxConnections = this.opts.maxConnections ?? 1024;
    srv.on('drop', () => this.streamDrops.refused++);
    srv.on('error', (err) => this.emit('warning', err));
    if (transport === 'tls') srv.on('tlsClientError', () => this.streamDrops.badFraming++);
    await new Promise<void>((resolve, reject) => {
      srv.once('error', reject);
      srv.listen({ host: address, port, exclusive: true }, () => {
        srv.off('error', reject);
        resolve();
      });
    });
    this.servers.push(srv);
    const a = srv.address() as net.AddressInfo;
    this.listening.push({ transport, family: a.family as Family, address: canonicalIp(a.address), port: a.port });
  }

  private onConnection(sock: net.Socket): void {
    if (this.closed) {
      sock.destroy();
      return;
    }
    this.conns.add(sock);
    sock.setNoDelay(true);
    sock.setTimeout(this.opts.idleTimeoutMs ?? 30_000, () => {
      this.streamDrops.idle++;
      sock.destroy();
    });
    const from: TransportAddress = {
      family: (sock.remoteFamily as Family) ?? 'IPv4',
      address: sock.remoteAddress ?? '0.0.0.0',
      port: sock.remotePort ?? 0,
    };
    const framer = new StreamFramer();
    sock.on('data', (chunk: Buffer) => {
      try {
        framer.push(chunk, (frame) => {
          let reply: Buffer | undefined;
          try {
            reply = this.service.handleStream(frame, from, this.clock.now());
          } catch (err) {
            this.service.stats.dropped.internalError++;
            this.emit('warning', err);
          }
          if (reply && !sock.destroyed) sock.write(reply);
        });
      } catch {
        // RFC 8489 section 6.2.2: a stream that is out of step cannot be resynchronised.
        this.streamDrops.badFraming++;
        sock.destroy();
      }
    });
    sock.on('error', () => sock.destroy());
    sock.on('close', () => this.conns.delete(sock));
  }

  /** Stops listening, closes every socket and connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const waits: Promise<void>[] = this.udp.filter(Boolean).map(closeUdp);
    for (const srv of this.servers) waits.push(new Promise((r) => srv.close(() => r())));
    for (const c of this.conns) c.destroy();
    await Promise.all(waits);
  }
}
