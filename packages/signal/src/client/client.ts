import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import * as net from 'node:net';
import { type Clock, realClock } from '@natkit/stun';
import { SignalClientError, SignalProtocolError } from '../errors.js';
import { LineSplitter } from '../protocol/lines.js';
import {
  type ErrorCode,
  type ErrorMessage,
  type JoinedMessage,
  type PeerLeftReason,
  type PeerMessage,
  encodeMessage,
  parseServerMessage,
  ROOM_PATTERN,
  validatePeerMessage,
} from '../protocol/messages.js';

export interface ReconnectOptions {
  /** First delay (ms). Default 250. */
  initialDelay?: number;
  /** Longest delay (ms). Default 10000. */
  maxDelay?: number;
  /** Growth per attempt. Default 2. */
  factor?: number;
  /** Random spread, a fraction of the delay (0-1). Default 0.2. */
  jitter?: number;
  /** Attempts in a row before giving up (GAVE_UP). Default unlimited. */
  maxAttempts?: number;
}

export interface SignalClientOptions {
  host?: string;
  /** Default 14141. */
  port?: number;
  /** A room (JSON protocol); without one the client is a plain party (raw lines). */
  room?: string;
  /** Session token kept across reconnects (rooms): a re-join takes its own place back. Default: random. */
  session?: string;
  /** Reconnect with backoff (default on), or false. */
  reconnect?: ReconnectOptions | false;
  /** Messages and lines kept while disconnected. Default 1000. */
  maxQueue?: number;
  /** Treat the connection as dead after this long without a byte from the server (ms); default three heartbeats as the server announces them. */
  deadAfter?: number;
  /** Give up a connect attempt after this (ms). Default 10000. */
  connectTimeout?: number;
  /**
   * Rooms: send a `ping` whenever nothing was sent for this long (ms); the server answers
   * `pong`. Default: off (the server's own pings keep a connection alive). A client behind a
   * NAT that may forget its TCP mapping (a reboot, `conntrack -F`) sets it: its next ping then
   * draws a reset at once and it reconnects, where a connection that only listens would
   * notice after TCP's keepalive or `deadAfter`.
   */
  pingInterval?: number;
  clock?: Clock;
  /** For the jitter (tests). */
  random?: () => number;
  /** Opens the TCP connection (tests may hand in their own). */
  createConnection?: (options: { host: string; port: number }) => net.Socket;
}

export type ClientState = 'idle' | 'connecting' | 'joined' | 'waiting' | 'closed';

/** Server errors after which reconnecting would not help: the client is closed. */
const FINAL: ReadonlySet<ErrorCode> = new Set(['room-full', 'replaced', 'invalid-json', 'invalid-message', 'unsupported-version', 'not-joined', 'already-joined', 'line-too-long', 'buffer-full', 'too-many-errors', 'too-many-rooms']);

export interface SignalClientEvents {
  /** Joined (rooms: after `joined`; plain: once connected). `reconnected` after the first time. */
  joined: [info: { joined?: JoinedMessage; reconnected: boolean }];
  'peer-joined': [info: { resumed: boolean }];
  'peer-left': [info: { reason: PeerLeftReason }];
  /** A message from the peer (rooms). */
  message: [message: PeerMessage];
  /** A line from the peer (plain mode), without its newline. */
  line: [line: string];
  /** A non-fatal error from the server (an invalid message of ours was dropped), or a fatal one before the close. */
  error: [error: SignalClientError];
  /** The connection dropped; the next attempt comes after `delay` ms. */
  reconnecting: [info: { attempt: number; delay: number; error?: Error }];
  /** The client is closed for good (by close(), a final server error, or giving up). */
  close: [error?: SignalClientError];
}

/**
 * A signalserver client: connects, joins a room (or is a plain party), sends and receives
 * typed messages (or raw lines), answers the server's pings, watches for a dead
 * connection, and reconnects with exponential backoff and jitter, joining again with the
 * same session, so it takes its own place back even before the server noticed the old
 * connection was gone. What is sent while disconnected is queued and goes after the
 * re-join; what was in flight when a connection dropped may be lost (TCP gives no way to
 * know), so treat a re-join as a reason to restart ICE if it was under way.
 */
export class SignalClient extends EventEmitter<SignalClientEvents> {
  readonly host: string;
  readonly port: number;
  readonly room: string | undefined;
  readonly session: string;
  private readonly opts: SignalClientOptions;
  private readonly clock: Clock;
  private readonly backoff: Required<ReconnectOptions> | undefined;
  private sock: net.Socket | undefined;
  private splitter: LineSplitter | undefined;
  private queue: string[] = [];
  private _state: ClientState = 'idle';
  private attempt = 0;
  private everJoined = false;
  private timer: unknown;
  private watchdog: unknown;
  private pinger: unknown;
  private lastRecv = 0;
  private lastSend = 0;
  private deadAfter = 0;
  private connectWaiters: Array<{ resolve: () => void; reject: (e: Error) => void }> = [];
  private finalError: SignalClientError | undefined;
  private closedPromise: Promise<void> | undefined;

  constructor(options: SignalClientOptions = {}) {
    super();
    this.opts = options;
    this.host = options.host ?? '127.0.0.1';
    this.port = options.port ?? 14141;
    this.room = options.room;
    if (this.room !== undefined && !ROOM_PATTERN.test(this.room)) throw new SignalClientError('PROTOCOL', `room ${JSON.stringify(this.room)}: 1-64 letters, digits, ".", "_", "~" or "-"`);
    this.session = options.session ?? randomBytes(16).toString('base64url');
    this.clock = options.clock ?? realClock;
    this.backoff = options.reconnect === false ? undefined : { initialDelay: 250, maxDelay: 10_000, factor: 2, jitter: 0.2, maxAttempts: Number.POSITIVE_INFINITY, ...options.reconnect };
  }

  get state(): ClientState {
    return this._state;
  }

  /** Connects and joins; resolves once joined (the first time), rejects on a final error. */
  connect(): Promise<void> {
    if (this._state === 'closed') return Promise.reject(this.finalError ?? new SignalClientError('CLOSED', 'the client is closed'));
    if (this._state === 'joined') return Promise.resolve();
    const p = new Promise<void>((resolve, reject) => this.connectWaiters.push({ resolve, reject }));
    if (this._state === 'idle') this.open();
    return p;
  }

  /** Sends a message to the peer (rooms); queued while not joined. */
  send(message: PeerMessage): void {
    if (this.room === undefined) throw new SignalClientError('NOT_CONNECTED', 'this client is a plain party: use sendLine()');
    this.enqueue(encodeMessage(validatePeerMessage(message)));
  }

  /** Sends a raw line (plain mode); a newline is added. */
  sendLine(line: string): void {
    if (this.room !== undefined) throw new SignalClientError('NOT_CONNECTED', 'this client is in a room: use send()');
    if (line.includes('\n')) throw new SignalClientError('PROTOCOL', 'a line cannot contain a newline');
    this.enqueue(`${line}\n`);
  }

  private enqueue(text: string): void {
    if (this._state === 'closed') throw new SignalClientError('CLOSED', 'the client is closed');
    if (this._state === 'joined' && this.sock) {
      this.write(this.sock, text);
      return;
    }
    if (this.queue.length >= (this.opts.maxQueue ?? 1000)) throw new SignalClientError('NOT_CONNECTED', `not connected and ${this.queue.length} messages are queued already`);
    this.queue.push(text);
  }

  /** Leaves the room (the peer is told "bye") and closes. */
  async bye(): Promise<void> {
    if (this.room !== undefined && this._state === 'joined' && this.sock) this.sock.write(encodeMessage({ type: 'bye' }));
    await this.close();
  }

  /** Closes for good. */
  close(): Promise<void> {
    if (!this.closedPromise) this.closedPromise = this.shutdown();
    return this.closedPromise;
  }

  private async shutdown(err?: SignalClientError): Promise<void> {
    if (this._state === 'closed') return;
    this._state = 'closed';
    this.finalError = err;
    this.clearTimers();
    const s = this.sock;
    this.sock = undefined;
    if (s && !s.destroyed) {
      await new Promise<void>((resolve) => {
        s.once('close', () => resolve());
        s.end();
        const t = this.clock.setTimeout(() => s.destroy(), 2000);
        s.once('close', () => this.clock.clearTimeout(t));
      });
    }
    for (const w of this.connectWaiters.splice(0)) w.reject(err ?? new SignalClientError('CLOSED', 'the client was closed'));
    this.emit('close', err);
  }

  private clearTimers(): void {
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    if (this.watchdog !== undefined) this.clock.clearTimeout(this.watchdog);
    if (this.pinger !== undefined) this.clock.clearTimeout(this.pinger);
    this.timer = this.watchdog = this.pinger = undefined;
  }

  private write(sock: net.Socket, text: string): void {
    this.lastSend = this.clock.now();
    sock.write(text);
  }

  /** pingInterval: a ping when nothing was sent for that long (rooms, while joined). */
  private armPinger(): void {
    const every = this.opts.pingInterval;
    if (!every || this.room === undefined) return;
    if (this.pinger !== undefined) this.clock.clearTimeout(this.pinger);
    const tick = () => {
      this.pinger = undefined;
      if (!this.sock || this._state !== 'joined') return;
      const quiet = this.clock.now() - this.lastSend;
      if (quiet >= every) this.write(this.sock, encodeMessage({ type: 'ping' }));
      this.pinger = this.clock.setTimeout(tick, quiet >= every ? every : every - quiet);
    };
    this.pinger = this.clock.setTimeout(tick, every);
  }

  private open(): void {
    this._state = 'connecting';
    const sock = (this.opts.createConnection ?? ((o) => net.createConnection(o)))({ host: this.host, port: this.port });
    this.sock = sock;
    sock.setNoDelay(true);
    sock.setKeepAlive(true, 30_000);
    this.splitter = new LineSplitter(16 * 1024 * 1024);
    let failure: Error | undefined;
    const connectTimer = this.clock.setTimeout(() => {
      failure = new Error(`no connection to ${this.host}:${this.port} within ${this.opts.connectTimeout ?? 10_000} ms`);
      sock.destroy();
    }, this.opts.connectTimeout ?? 10_000);
    sock.once('connect', () => {
      this.clock.clearTimeout(connectTimer);
      this.lastRecv = this.clock.now();
      if (this.room !== undefined) {
        this.write(sock, encodeMessage({ type: 'join', room: this.room, session: this.session }));
        // Until `joined` tells the heartbeat, the server's join timeout is the bound.
        this.armWatchdog(this.opts.deadAfter ?? 15_000);
      } else {
        this.onJoined(undefined);
      }
    });
    sock.on('data', (chunk: Buffer) => this.onData(sock, chunk));
    sock.on('error', (err) => {
      failure ??= err;
    });
    sock.on('close', () => {
      this.clock.clearTimeout(connectTimer);
      if (this.sock !== sock) return;
      this.sock = undefined;
      if (this._state === 'closed') return;
      this.onDrop(failure ?? new Error('the server closed the connection'));
    });
  }

  private onData(sock: net.Socket, chunk: Buffer): void {
    if (this.sock !== sock) return;
    this.lastRecv = this.clock.now();
    this.splitter!.push(chunk, (line) => {
      if (this.sock !== sock) return false;
      const text = line.toString('utf8');
      if (this.room === undefined) {
        this.emit('line', text);
        return true;
      }
      if (text.trim() === '') return true;
      let m;
      try {
        m = parseServerMessage(text);
      } catch (err) {
        this.emit('error', new SignalClientError('PROTOCOL', `the server sent something that is not the protocol: ${(err as SignalProtocolError).message}`, undefined, { cause: err }));
        return true;
      }
      switch (m.type) {
        case 'joined':
          this.onJoined(m);
          break;
        case 'ping':
          this.write(sock, encodeMessage({ type: 'pong' }));
          break;
        case 'pong':
          break;
        case 'peer-joined':
          this.emit('peer-joined', { resumed: m.resumed });
          break;
        case 'peer-left':
          this.emit('peer-left', { reason: m.reason });
          break;
        case 'error':
          this.onServerError(sock, m);
          break;
        default:
          this.emit('message', m);
      }
      return true;
    });
  }

  private onServerError(sock: net.Socket, m: ErrorMessage): void {
    const err = new SignalClientError('SERVER_ERROR', `server: ${m.code}: ${m.reason}`, m.code);
    if (!m.fatal) {
      this.emit('error', err);
      return;
    }
    if (FINAL.has(m.code) || !this.backoff) {
      this.emit('error', err);
      this.sock = undefined;
      sock.destroy();
      void this.shutdown(err);
      return;
    }
    // shutdown, unavailable, timeouts: the connection ends; reconnect.
    this.sock = undefined;
    sock.destroy();
    this.onDrop(err);
  }

  private onJoined(m: JoinedMessage | undefined): void {
    this._state = 'joined';
    this.attempt = 0;
    const reconnected = this.everJoined;
    this.everJoined = true;
    if (m) this.armWatchdog(this.opts.deadAfter ?? Math.max(3 * m.heartbeat, 1000));
    const q = this.queue;
    this.queue = [];
    for (const t of q) this.write(this.sock!, t);
    if (m) this.armPinger();
    this.emit('joined', { ...(m ? { joined: m } : {}), reconnected });
    for (const w of this.connectWaiters.splice(0)) w.resolve();
  }

  /** Checks that the server was heard from within `ms`; if not, the connection is dead. */
  private armWatchdog(ms: number): void {
    this.deadAfter = ms;
    if (this.watchdog !== undefined) this.clock.clearTimeout(this.watchdog);
    const check = () => {
      this.watchdog = undefined;
      if (!this.sock || this._state === 'closed') return;
      const quiet = this.clock.now() - this.lastRecv;
      if (quiet >= this.deadAfter) {
        const s = this.sock;
        this.sock = undefined;
        s.destroy();
        this.onDrop(new Error(`nothing from the server for ${Math.round(quiet)} ms`));
        return;
      }
      this.watchdog = this.clock.setTimeout(check, this.deadAfter - quiet);
    };
    this.watchdog = this.clock.setTimeout(check, ms);
  }

  private onDrop(error: Error): void {
    if (this.watchdog !== undefined) this.clock.clearTimeout(this.watchdog);
    if (this.pinger !== undefined) this.clock.clearTimeout(this.pinger);
    this.watchdog = this.pinger = undefined;
    if (this._state === 'closed') return;
    const b = this.backoff;
    if (!b) {
      void this.shutdown(error instanceof SignalClientError ? error : new SignalClientError('CLOSED', `connection lost: ${error.message}`, undefined, { cause: error }));
      return;
    }
    this.attempt++;
    if (this.attempt > b.maxAttempts) {
      void this.shutdown(new SignalClientError('GAVE_UP', `gave up after ${b.maxAttempts} attempts: ${error.message}`, undefined, { cause: error }));
      return;
    }
    const base = Math.min(b.maxDelay, b.initialDelay * b.factor ** (this.attempt - 1));
    const r = (this.opts.random ?? Math.random)();
    const delay = Math.max(0, Math.round(base * (1 + b.jitter * (2 * r - 1))));
    this._state = 'waiting';
    this.emit('reconnecting', { attempt: this.attempt, delay, error });
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      if (this._state === 'waiting') this.open();
    }, delay);
  }
}
