import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import { type Clock, realClock } from '@natkit/stun';
import { type CoreOptions, SignalCore } from '../core/core.js';
import { LocalDirectory } from '../core/directory.js';
import { Driver } from '../core/driver.js';
import type { ConnId, Directory } from '../core/types.js';
import { SignalServerError } from '../errors.js';
import type { RedisLink, RedisOptions } from './redis.js';

export type LogFn = (level: 'debug' | 'info' | 'warn' | 'error', msg: string, fields?: Record<string, unknown>) => void;

export interface SignalServerOptions extends CoreOptions {
  /** Address to listen on. Default 0.0.0.0. */
  host?: string;
  /** TCP port. Default 14141 (the tutorial's); 0 picks a free one. */
  port?: number;
  /** Share rooms with other instances through Redis (a redis:// URL, or options). */
  redis?: string | RedisOptions;
  /** Time, for the timeouts. */
  clock?: Clock;
  /** Log lines (connections closed for limits, Redis coming and going). */
  log?: LogFn;
  /** TCP keepalive: first probe after this much silence (ms), so half-open plain connections end. Default 60000. */
  keepAlive?: number;
  /** How long a closing connection may take to flush what it was sent (ms) before it is cut. Default 5000. */
  closeGrace?: number;
  /** Least time between timer ticks (ms). Default 100. */
  tickResolution?: number;
}

interface SockState {
  sock: net.Socket;
  blocked: boolean;
  closing: boolean;
}

/**
 * signalserver as a library: the Node adapter (DESIGN.md, layer 3) that owns the TCP
 * listener and the sockets and runs a SignalCore, whose logic decides everything. With
 * `redis`, rooms are shared with other instances (see redis.ts).
 */
export class SignalServer extends EventEmitter {
  readonly core: SignalCore;
  private readonly driver: Driver;
  private readonly server: net.Server;
  private readonly socks = new Map<ConnId, SockState>();
  private readonly closeGrace: number;
  private readonly keepAlive: number;
  private readonly log: LogFn;
  private nextId = 0;
  private closed = false;
  private redisLink: RedisLink | undefined;

  private constructor(options: SignalServerOptions, directory: Directory, redisLink: RedisLink | undefined) {
    super();
    this.log = options.log ?? (() => {});
    this.core = new SignalCore({ ...options, ...(redisLink ? { instance: redisLink.instance } : {}) });
    this.closeGrace = options.closeGrace ?? 5000;
    this.keepAlive = options.keepAlive ?? 60_000;
    this.redisLink = redisLink;
    this.driver = new Driver(
      this.core,
      directory,
      {
        write: (conn, data) => this.write(conn, data),
        close: (conn, graceful) => this.closeConn(conn, graceful),
        publish: (instance, packet) => this.redisLink?.publish(instance, packet),
        log: (level, msg, fields) => this.log(level, msg, fields),
      },
      options.clock ?? realClock,
      options.tickResolution ?? 100,
    );
    this.server = net.createServer({ noDelay: true }, (sock) => this.onConnection(sock));
    this.server.on('error', (err) => this.emit('warning', err));
  }

  /** Listens; rejects if the port cannot be had or Redis cannot be reached. */
  static async start(options: SignalServerOptions = {}): Promise<SignalServer> {
    checkOptions(options);
    let redisLink: RedisLink | undefined;
    if (options.redis !== undefined) {
      // Loaded only here: without --redis nothing needs ioredis.
      const { connectRedis } = await import('./redis.js');
      redisLink = await connectRedis(typeof options.redis === 'string' ? { url: options.redis } : options.redis, options.log ?? (() => {}));
    }
    const server = new SignalServer(options, redisLink?.directory ?? new LocalDirectory(), redisLink);
    redisLink?.attach(server.driver);
    try {
      await new Promise<void>((resolve, reject) => {
        server.server.once('error', reject);
        server.server.listen({ host: options.host ?? '0.0.0.0', port: options.port ?? 14141, exclusive: true }, () => {
          server.server.off('error', reject);
          resolve();
        });
      });
    } catch (err) {
      server.driver.stop();
      await redisLink?.close();
      throw err;
    }
    return server;
  }

  /** Where it listens. */
  get address(): { address: string; port: number; family: string } {
    const a = this.server.address() as net.AddressInfo;
    return { address: a.address, port: a.port, family: a.family };
  }

  /** With Redis: this instance's id, and whether Redis is reachable now. */
  get redis(): { instance: string; up: boolean } | undefined {
    return this.redisLink ? { instance: this.redisLink.instance, up: this.redisLink.up } : undefined;
  }

  private onConnection(sock: net.Socket): void {
    if (this.closed) {
      sock.destroy();
      return;
    }
    const id = ++this.nextId;
    const st: SockState = { sock, blocked: false, closing: false };
    this.socks.set(id, st);
    sock.setKeepAlive(true, this.keepAlive);
    sock.on('data', (data: Buffer) => this.driver.feed({ type: 'data', conn: id, data }));
    sock.on('drain', () => {
      if (!st.blocked) return;
      st.blocked = false;
      this.driver.feed({ type: 'drained', conn: id });
    });
    // The client ended its side (the tutorial's server sees recv() return ""): it has left.
    sock.on('end', () => {
      if (!st.closing) this.driver.feed({ type: 'closed', conn: id });
    });
    sock.on('error', () => {});
    sock.on('close', () => {
      this.socks.delete(id);
      if (!st.closing) {
        st.closing = true;
        this.driver.feed({ type: 'closed', conn: id });
      }
      if (this.closed && this.socks.size === 0) this.emit('idle');
    });
    let ip = sock.remoteAddress ?? '';
    if (ip.startsWith('::ffff:')) ip = ip.slice(7);
    this.driver.feed({ type: 'open', conn: id, ip });
  }

  private write(conn: ConnId, data: Buffer | string): void {
    const st = this.socks.get(conn);
    if (!st || st.sock.destroyed || st.sock.writableEnded) return;
    if (!st.sock.write(data) && !st.blocked) {
      st.blocked = true;
      this.driver.feed({ type: 'blocked', conn });
    }
  }

  private closeConn(conn: ConnId, graceful: boolean): void {
    const st = this.socks.get(conn);
    if (!st) return;
    st.closing = true;
    if (!graceful) {
      st.sock.destroy();
      return;
    }
    st.sock.end();
    const t = setTimeout(() => st.sock.destroy(), this.closeGrace);
    t.unref();
    st.sock.once('close', () => clearTimeout(t));
  }

  /**
   * Stops: new connections are refused, every party is told (JSON: `shutdown`; peers on
   * other instances: peer-left), sockets get `closeGrace` to flush, then are cut; Redis is
   * left last.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const listening = new Promise<void>((r) => this.server.close(() => r()));
    this.driver.feed({ type: 'shutdown' });
    if (this.socks.size > 0) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          for (const st of this.socks.values()) st.sock.destroy();
        }, this.closeGrace);
        this.once('idle', () => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    await listening;
    await this.driver.settle();
    this.driver.stop();
    await this.redisLink?.close();
  }
}

function checkOptions(o: SignalServerOptions): void {
  const positive: Array<keyof SignalServerOptions> = ['maxLine', 'maxBuffer', 'maxRooms', 'maxConnections', 'maxConnectionsPerIp', 'maxErrors'];
  for (const k of positive) {
    const v = o[k];
    if (v !== undefined && (typeof v !== 'number' || !Number.isInteger(v) || v < 1)) throw new SignalServerError('BAD_OPTION', `${k} must be a whole number of at least 1, got ${String(v)}`);
  }
  const times: Array<keyof SignalServerOptions> = ['detectTimeout', 'joinTimeout', 'heartbeatInterval', 'heartbeatTimeout', 'idleTimeout', 'slowReaderTimeout', 'retransmitInterval', 'linkTimeout', 'keepAlive', 'closeGrace', 'tickResolution'];
  for (const k of times) {
    const v = o[k];
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) throw new SignalServerError('BAD_OPTION', `${k} must be a number of milliseconds, got ${String(v)}`);
  }
  if (o.heartbeatInterval !== undefined && o.heartbeatTimeout !== undefined && o.heartbeatTimeout <= o.heartbeatInterval) {
    throw new SignalServerError('BAD_OPTION', `heartbeatTimeout (${o.heartbeatTimeout}) must be longer than heartbeatInterval (${o.heartbeatInterval})`);
  }
  if (o.mode !== undefined && !['auto', 'plain', 'rooms'].includes(o.mode)) throw new SignalServerError('BAD_OPTION', `mode must be auto, plain or rooms, got ${String(o.mode)}`);
}
