import * as net from 'node:net';
import * as tls from 'node:tls';
import { type Family, type TransportAddress, canonicalIp } from '../codec/ip.js';
import { ServerError } from '../errors.js';
import { StreamFramer } from '../net/framing.js';

/**
 * The TCP and TLS side of natkit's servers, shared by the STUN and the TURN server: a
 * listener, connection limits (in all, and per client IP), the idle timeout, framing
 * (RFC 8489 section 6.2.2; RFC 8656 section 12.5 with ChannelData), and closing every
 * connection on close. What a frame means is the server's business: it gets each frame
 * through the handler it returns for the connection.
 */

export type StreamDrop = 'refused' | 'per_ip' | 'bad_framing' | 'idle' | 'tls_error';

export interface StreamConnection {
  readonly transport: 'tcp' | 'tls';
  readonly socket: net.Socket;
  /** The client's address as the server sees it. */
  readonly remote: TransportAddress;
  /** The server's address the client talks to. */
  readonly local: TransportAddress;
  /** Writes to the connection (nothing once it is closed). */
  send(data: Uint8Array): void;
  close(): void;
}

export interface StreamHandler {
  /** One framed message (ChannelData without its stream padding). */
  frame(buf: Buffer): void;
  /** The connection has been idle for idleTimeoutMs: return true to close it. */
  idle?(): boolean;
  /** The connection closed (either side, or a framing error). */
  closed?(): void;
}

export interface StreamListenerOptions {
  transport: 'tcp' | 'tls';
  address: string;
  port: number;
  tls?: { cert: string | Buffer; key: string | Buffer };
  /** Connections at once; more are refused by the kernel's accept path (net.Server#maxConnections). */
  maxConnections: number;
  /** Connections from one IP address at once; more are closed (default: no limit). */
  maxConnectionsPerIp?: number;
  idleTimeoutMs: number;
  /** Frames may be ChannelData (TURN). */
  acceptChannelData?: boolean;
  /**
   * false: in a node:cluster worker, share the primary's listening socket (several
   * workers on one port) instead of binding one of its own. Default true.
   */
  exclusive?: boolean;
  /** A new connection: return its handler, or undefined to close it. */
  accept(conn: StreamConnection): StreamHandler | undefined;
  /** Something was dropped: a connection refused or closed, or a framing error. */
  dropped?(why: StreamDrop): void;
  /** A socket-level error (logged by the caller). */
  warning?(err: Error): void;
}

export class StreamListener {
  readonly transport: 'tcp' | 'tls';
  readonly local: TransportAddress;
  private readonly server: net.Server;
  private readonly conns = new Set<net.Socket>();
  private readonly perIp = new Map<string, number>();
  private closed = false;

  private constructor(server: net.Server, transport: 'tcp' | 'tls', local: TransportAddress) {
    this.server = server;
    this.transport = transport;
    this.local = local;
  }

  /** Listens; rejects with a ServerError (code LISTEN, errno EADDRINUSE...) if it cannot. */
  static async listen(o: StreamListenerOptions): Promise<StreamListener> {
    let self: StreamListener | undefined;
    const onConn = (sock: net.Socket) => self?.onConnection(sock, o);
    const srv = o.transport === 'tls' ? tls.createServer({ cert: o.tls!.cert, key: o.tls!.key }, onConn) : net.createServer(onConn);
    srv.maxConnections = o.maxConnections;
    srv.on('drop', () => o.dropped?.('refused'));
    if (o.transport === 'tls') srv.on('tlsClientError', () => o.dropped?.('tls_error'));
    await new Promise<void>((resolve, reject) => {
      srv.once('error', (err: NodeJS.ErrnoException) =>
        reject(new ServerError('LISTEN', `cannot listen on ${o.transport} ${o.address.includes(':') ? `[${o.address}]` : o.address}:${o.port}: ${err.message}`, { cause: err })),
      );
      srv.listen({ host: o.address, port: o.port, exclusive: o.exclusive ?? true }, () => resolve());
    });
    srv.removeAllListeners('error');
    srv.on('error', (err) => o.warning?.(err));
    const a = srv.address() as net.AddressInfo;
    self = new StreamListener(srv, o.transport, { family: a.family as Family, address: canonicalIp(a.address), port: a.port });
    return self;
  }

  /** Connections open now. */
  get connections(): number {
    return this.conns.size;
  }

  /** Client IPs with connections now (for tests: nothing is kept after they close). */
  get clientIps(): number {
    return this.perIp.size;
  }

  private onConnection(sock: net.Socket, o: StreamListenerOptions): void {
    if (this.closed) {
      sock.destroy();
      return;
    }
    const ip = canonicalIp(sock.remoteAddress ?? '0.0.0.0');
    const already = this.perIp.get(ip) ?? 0;
    if (o.maxConnectionsPerIp !== undefined && already >= o.maxConnectionsPerIp) {
      o.dropped?.('per_ip');
      sock.destroy();
      return;
    }
    this.perIp.set(ip, already + 1);
    this.conns.add(sock);
    sock.setNoDelay(true);
    const family = this.local.family;
    const conn: StreamConnection = {
      transport: o.transport,
      socket: sock,
      remote: { family: (sock.remoteFamily as Family) ?? family, address: ip, port: sock.remotePort ?? 0 },
      local: { family, address: canonicalIp(sock.localAddress ?? this.local.address), port: sock.localPort ?? this.local.port },
      send: (data) => {
        if (!sock.destroyed) sock.write(data);
      },
      close: () => sock.destroy(),
    };
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.conns.delete(sock);
      const n = (this.perIp.get(ip) ?? 1) - 1;
      if (n <= 0) this.perIp.delete(ip);
      else this.perIp.set(ip, n);
    };
    sock.on('error', () => sock.destroy());
    let handler: StreamHandler | undefined;
    sock.on('close', () => {
      release();
      handler?.closed?.();
    });
    handler = o.accept(conn);
    if (!handler) {
      sock.destroy();
      return;
    }
    const h = handler;
    sock.setTimeout(o.idleTimeoutMs, () => {
      if (h.idle ? h.idle() : true) {
        o.dropped?.('idle');
        sock.destroy();
      }
    });
    const framer = new StreamFramer({ acceptChannelData: o.acceptChannelData });
    sock.on('data', (chunk: Buffer) => {
      try {
        framer.push(chunk, (frame) => h.frame(frame));
      } catch {
        // RFC 8489 section 6.2.2: a stream out of step cannot be resynchronised.
        o.dropped?.('bad_framing');
        sock.destroy();
      }
    });
  }

  /** Stops listening and closes every connection. */
  close(): Promise<void> {
    this.closed = true;
    const done = new Promise<void>((r) => this.server.close(() => r()));
    for (const c of this.conns) c.destroy();
    return done;
  }
}
