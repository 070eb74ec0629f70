import * as net from 'node:net';
import * as tls from 'node:tls';
import { Attr, type AttributeRegistry, softwareText, stunRegistry } from '../codec/attributes.js';
import { Method } from '../codec/constants.js';
import type { MessageBuilder } from '../codec/encode.js';
import { type Family, type TransportAddress, canonicalIp, formatAddress, ipFamily } from '../codec/ip.js';
import { type StunMessage, decodeMessage, isStunMessage } from '../codec/message.js';
import { StunTransactionError } from '../errors.js';
import { type Clock, realClock } from '../net/clock.js';
import { StreamFramer } from '../net/framing.js';
import { type DatagramInfo, type DatagramSocket, type Network, nodeNetwork } from '../net/network.js';
import { AuthCache, type Credentials, RequestFlow, type Transport, defaultPort, serverKey } from './flow.js';
import type { RetransmitOptions } from './transaction.js';
import { DuplicateTransactionError, TransactionTable } from './transactions.js';


/** Where to send: a literal IP address (resolve names first), port and transport. */
export interface ServerSpec {
  address: string;
  /** Default 3478, or 5349 for TLS (RFC 8489 section 6.2.3). */
  port?: number;
  transport?: Transport;
  /** TLS: the name to verify the certificate against (and send as SNI). */
  servername?: string;
  /** TLS: extra options for tls.connect (ca, rejectUnauthorized, ...). */
  tls?: tls.ConnectionOptions;
}

export interface StunClientOptions {
  clock?: Clock;
  /** Where UDP sockets come from (default: the operating system's, nodeNetwork). TCP and TLS use node:net and node:tls. */
  network?: Network;
  /** SOFTWARE attribute in requests; false for none. Default 'natkit'. */
  software?: string | false;
  /** UDP retransmission settings (RFC 8489 section 6.2.1). */
  retransmit?: RetransmitOptions;
  /** Add FINGERPRINT to requests (default true). */
  fingerprint?: boolean;
  /**
   * A bound UDP socket to use instead of the client's own (for example to learn the
   * mapping of a socket you will use for media). The client never closes it.
   */
  socket?: DatagramSocket;
  /**
   * With `socket`: false when the socket's owner listens to it and hands the client its
   * datagrams through `receive()` (so the owner decides what is not the client's).
   * Default true: the client listens to the socket itself.
   */
  listen?: boolean;
  /** Local address and port for the client's own UDP sockets (the address also for TCP/TLS connections of its family). */
  bindAddress?: string;
  bindPort?: number;
  registry?: AttributeRegistry;
  credentials?: Credentials;
  /** How many 300 (Try Alternate) redirects to follow (RFC 8489 section 10); default 3. */
  maxRedirects?: number;
  /**
   * Called with every datagram or stream frame that is not a response to a pending
   * transaction (requests, indications, ChannelData, late responses).
   */
  onUnmatched?: (data: Buffer, from: TransportAddress, transport: Transport) => void;
}

export interface RequestOptions {
  /** Default Binding. */
  method?: number;
  /** Adds attributes to the request. */
  attributes?: (b: MessageBuilder) => void;
  signal?: AbortSignal;
  retransmit?: RetransmitOptions;
  /** Overrides the client's credentials for this request; null for none. */
  credentials?: Credentials | null;
}

export interface StunResponse {
  message: StunMessage;
  /** Where the response came from. */
  from: TransportAddress;
  /** The local address the request went out of. */
  local: TransportAddress;
  /** The server that answered (after any redirects). */
  server: Required<Pick<ServerSpec, 'address' | 'port' | 'transport'>>;
  /** Round-trip time of the final transaction, ms (from the first send). */
  rtt: number;
  /** Requests sent in the final transaction (1 + retransmissions). */
  sends: number;
}

export interface BindingResult extends StunResponse {
  /** XOR-MAPPED-ADDRESS, or MAPPED-ADDRESS from servers that send only that. */
  mapped: TransportAddress;
  /** RFC 5780 OTHER-ADDRESS (or RFC 3489 CHANGED-ADDRESS). */
  otherAddress: TransportAddress | undefined;
  /** RFC 5780 RESPONSE-ORIGIN (or RFC 3489 SOURCE-ADDRESS). */
  responseOrigin: TransportAddress | undefined;
  software: string | undefined;
}


/** What the client keeps per transaction in its TransactionTable. */
interface Pending {
  /** A matching response arrived (from `from`). */
  resolve: (message: StunMessage, from: TransportAddress) => void;
  reject: (e: Error) => void;
  /** Sends the request (again); a no-op until the UDP socket is ready. */
  send: () => void;
  /** `udp 192.0.2.1:3478`, for error messages. */
  describe: string;
  conn: StreamConn | undefined;
}

class StreamConn {
  readonly socket: net.Socket;
  readonly framer = new StreamFramer({ acceptChannelData: true });
  readonly pending = new Set<Buffer>();
  readonly remote: TransportAddress;
  closed = false;
  constructor(socket: net.Socket, remote: TransportAddress) {
    this.socket = socket;
    this.remote = remote;
  }
}

/**
 * A STUN client: transactions over UDP (with RFC 8489 section 6.2.1 retransmissions), TCP
 * and TLS (6.2.2, 6.2.3), responses matched by transaction id, long-term credentials
 * answered on 401 and 438 (section 9.2), 300 ALTERNATE-SERVER followed (section 10), and
 * AbortSignal to cancel. The protocol state is sans-I/O (TransactionTable, RequestFlow);
 * this class owns the sockets and the one timer that drives the table.
 */
export class StunClient {
  private readonly clock: Clock;
  private readonly network: Network;
  private readonly opts: StunClientOptions;
  private readonly registry: AttributeRegistry;
  private readonly table = new TransactionTable<Pending>();
  private readonly authCache = new AuthCache();
  private timer: unknown;
  private timerAt: number | undefined;
  private readonly sockets = new Map<Family, DatagramSocket>();
  private readonly opening = new Map<Family, Promise<DatagramSocket>>();
  private readonly ownSockets = new Set<DatagramSocket>();
  private readonly streams = new Map<string, StreamConn>();
  private readonly onSocketMessage = (buf: Buffer, rinfo: DatagramInfo) =>
    this.onData(buf, { family: rinfo.family, address: rinfo.address, port: rinfo.port }, 'udp');
  private closed = false;
  private readonly software: string | undefined;
  /** Responses to the client's transactions that failed to decode or failed their checks (FINGERPRINT, integrity). */
  dropped = 0;
  /** Datagrams `sendDatagram` handed to a socket that then failed to send them. */
  sendErrors = 0;
  private readonly onDatagramSent = (err: Error | null): void => {
    if (err) this.sendErrors++;
  };

  constructor(options: StunClientOptions = {}) {
    this.opts = options;
    this.clock = options.clock ?? realClock;
    this.network = options.network ?? nodeNetwork;
    this.registry = options.registry ?? stunRegistry;
    this.software = options.software === false ? undefined : softwareText(options.software ?? 'natkit');
    if (options.socket) {
      const s = options.socket;
      const fam = (s.address().family as Family) ?? 'IPv4';
      this.sockets.set(fam, s);
      if (options.listen !== false) s.on('message', this.onSocketMessage);
    }
  }

  /**
   * A datagram that arrived on the client's socket, from an owner that listens to it itself
   * (`listen: false`). Returns true when it belonged to the client (a response to one of its
   * transactions, taken or dropped by the checks); false when it is the owner's to handle.
   */
  receive(data: Buffer, from: TransportAddress): boolean {
    return this.consume(data, from) === 'consumed';
  }

  /** The local address of the UDP socket for a family (creating and binding it if needed). */
  async localAddress(family: Family = 'IPv4'): Promise<TransportAddress> {
    const s = await this.udpSocket(family);
    const a = s.address();
    return { family: a.family as Family, address: a.address, port: a.port };
  }

  private udpSocket(family: Family): Promise<DatagramSocket> {
    const have = this.sockets.get(family);
    if (have) return Promise.resolve(have);
    if (this.closed) return Promise.reject(new StunTransactionError('CLOSED', 'the client is closed'));
    // Concurrent first requests share one socket: remember the bind in progress.
    let opening = this.opening.get(family);
    if (opening) return opening;
    const bindAddress = this.opts.bindAddress && ipFamily(this.opts.bindAddress) === family ? this.opts.bindAddress : undefined;
    opening = this.network.createUdpSocket({ family, address: bindAddress, port: bindAddress ? (this.opts.bindPort ?? 0) : 0 }).then(
      (s) => {
        this.opening.delete(family);
        if (this.closed) {
          s.close();
          throw new StunTransactionError('CLOSED', 'the client is closed');
        }
        this.ownSockets.add(s);
        s.on('message', this.onSocketMessage);
        s.on('error', () => {
          // Errors on an unconnected UDP socket concern one send; sends report their own.
        });
        this.sockets.set(family, s);
        return s;
      },
      (err: Error) => {
        this.opening.delete(family);
        throw err;
      },
    );
    this.opening.set(family, opening);
    return opening;
  }

  /** Sends a request and resolves with the success response; see RequestOptions. */
  async request(server: ServerSpec, options: RequestOptions = {}): Promise<StunResponse> {
    const transport = server.transport ?? 'udp';
    const creds = options.credentials === undefined ? this.opts.credentials : (options.credentials ?? undefined);
    const flow = new RequestFlow({
      target: { address: canonicalIp(server.address), port: server.port ?? defaultPort(transport), transport },
      method: options.method ?? Method.Binding,
      attributes: options.attributes,
      credentials: creds,
      software: this.software,
      fingerprint: this.opts.fingerprint ?? true,
      maxRedirects: this.opts.maxRedirects,
      auth: this.authCache,
    });
    for (;;) {
      if (options.signal?.aborted) throw new StunTransactionError('ABORTED', 'the request was aborted');
      const attempt = flow.next();
      const res = await this.transact({ ...server, ...attempt.target }, attempt.bytes, attempt.transactionId, {
        signal: options.signal,
        retransmit: options.retransmit,
        verifyKey: attempt.verifyKey,
      });
      const step = flow.onResponse(res.message);
      if (step.kind === 'success') return { ...res, server: { ...step.target } };
    }
  }

  /** A Binding request; resolves with the mapped address and RFC 5780 details. */
  async binding(server: ServerSpec, options: Omit<RequestOptions, 'method'> = {}): Promise<BindingResult> {
    const r = await this.request(server, { ...options, method: Method.Binding });
    const m = r.message;
    const mapped = m.get(Attr.XorMappedAddress) ?? m.get(Attr.MappedAddress);
    if (!mapped) throw new StunTransactionError('BAD_RESPONSE', 'Binding success response without XOR-MAPPED-ADDRESS or MAPPED-ADDRESS');
    return {
      ...r,
      mapped,
      otherAddress: m.get(Attr.OtherAddress) ?? m.get(Attr.ChangedAddress),
      responseOrigin: m.get(Attr.ResponseOrigin) ?? m.get(Attr.SourceAddress),
      software: m.get(Attr.Software),
    };
  }

  /** Binding requests to several servers at once; one settled result per server, in order. */
  bindingAll(servers: ServerSpec[], options: Omit<RequestOptions, 'method'> = {}): Promise<PromiseSettledResult<BindingResult>[]> {
    return Promise.allSettled(servers.map((s) => this.binding(s, options)));
  }

  /**
   * Sends bytes that need no answer (an indication, TURN ChannelData) to a server over
   * the transport the client uses for it (the same UDP socket, or the same connection).
   */
  async send(server: ServerSpec, data: Buffer): Promise<void> {
    const transport = server.transport ?? 'udp';
    const port = server.port ?? defaultPort(transport);
    const family = ipFamily(server.address);
    if (!family) throw new StunTransactionError('SOCKET_ERROR', `not an IP address: ${server.address}`);
    if (transport === 'udp') {
      const s = await this.udpSocket(family);
      await new Promise<void>((resolve, reject) =>
        s.send(data, port, server.address, (err) => (err ? reject(new StunTransactionError('SOCKET_ERROR', `send failed: ${err.message}`, { cause: err })) : resolve())),
      );
      return;
    }
    const conn = this.stream({ ...server, transport, port, address: canonicalIp(server.address) });
    conn.socket.write(data);
  }

  /**
   * Sends a datagram now, without a promise, over the client's UDP socket of `family` (a
   * data path: TURN ChannelData and Send indications, one per application datagram). Returns
   * false, sending nothing, when that socket is not open yet (use `send`); a failed send is
   * counted in `sendErrors`, as a lost datagram.
   */
  sendDatagram(family: Family, address: string, port: number, data: Uint8Array): boolean {
    const s = this.sockets.get(family);
    if (!s || this.closed) return false;
    try {
      s.send(data, port, address, this.onDatagramSent);
    } catch {
      this.sendErrors++;
    }
    return true;
  }

  /** Re-arms the one timer that drives the transaction table to its next deadline. */
  private arm(): void {
    const at = this.table.nextTimeout();
    if (at === this.timerAt) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
    this.timerAt = at;
    if (at === undefined) return;
    this.timer = this.clock.setTimeout(() => this.onTimer(), Math.max(0, at - this.clock.now()));
  }

  private onTimer(): void {
    this.timer = undefined;
    this.timerAt = undefined;
    const now = this.clock.now();
    for (const a of this.table.onTimeout(now)) {
      const p = a.transaction.context;
      if (a.type === 'retransmit') p.send();
      else {
        p.reject(
          new StunTransactionError(
            'TIMEOUT',
            `no response from ${p.describe} after ${a.transaction.sends} request(s) in ${Math.round(now - a.transaction.startedAt)} ms`,
          ),
        );
      }
    }
    this.arm();
  }

  /**
   * One transaction: sends `bytes` (a request with transaction id `tid`) and resolves with
   * the first matching response, success or error. Over UDP it retransmits; over TCP/TLS
   * it waits Ti. With `verifyKey`, responses other than 401/438 must carry integrity
   * that matches, or they are ignored as if never received (RFC 8489 section 9.1.4, 9.2.5).
   */
  transact(
    server: ServerSpec & { transport?: Transport },
    bytes: Buffer,
    tid: Buffer,
    options: { signal?: AbortSignal | undefined; retransmit?: RetransmitOptions | undefined; verifyKey?: Buffer | undefined } = {},
  ): Promise<{ message: StunMessage; from: TransportAddress; local: TransportAddress; rtt: number; sends: number }> {
    const transport = server.transport ?? 'udp';
    const port = server.port ?? defaultPort(transport);
    const address = server.address;
    const family = ipFamily(address);
    if (!family) return Promise.reject(new StunTransactionError('SOCKET_ERROR', `not an IP address: ${address}`));
    if (this.closed) return Promise.reject(new StunTransactionError('CLOSED', 'the client is closed'));
    if (options.signal?.aborted) return Promise.reject(new StunTransactionError('ABORTED', 'the request was aborted'));
    return new Promise((resolve, reject) => {
      const reliable = transport !== 'udp';
      let local: TransportAddress = { family, address: family === 'IPv6' ? '::' : '0.0.0.0', port: 0 };
      let cleanup = () => {};
      const p: Pending = {
        resolve: () => {},
        reject: () => {},
        send: () => {},
        describe: `${transport} ${formatAddress({ family, address, port })}`,
        conn: undefined,
      };
      let tx: ReturnType<TransactionTable<Pending>['start']>;
      try {
        tx = this.table.start(tid, bytes, this.clock.now(), { retransmit: { ...this.opts.retransmit, ...options.retransmit, reliable }, verifyKey: options.verifyKey, context: p });
      } catch (err) {
        if (err instanceof DuplicateTransactionError) reject(new StunTransactionError('SOCKET_ERROR', 'duplicate transaction id', { cause: err }));
        else reject(err as Error);
        return;
      }
      let settled = false;
      const finish = () => {
        settled = true;
        this.table.cancel(tid);
        p.conn?.pending.delete(tid);
        cleanup();
        this.arm();
      };
      const fail = (e: Error) => {
        if (settled) return;
        finish();
        reject(e);
      };
      p.reject = fail;
      p.resolve = (message, from) => {
        if (settled) return;
        finish();
        resolve({ message, from, local, rtt: this.clock.now() - tx.startedAt, sends: tx.sends });
      };
      if (options.signal) {
        const signal = options.signal;
        const onAbort = () => fail(new StunTransactionError('ABORTED', 'the request was aborted'));
        signal.addEventListener('abort', onAbort, { once: true });
        cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      this.arm();
      if (transport === 'udp') {
        this.udpSocket(family).then(
          (s) => {
            if (settled) return;
            try {
              const a = s.address();
              local = { family: a.family as Family, address: a.address, port: a.port };
            } catch (err) {
              fail(new StunTransactionError('SOCKET_ERROR', `the UDP socket is not usable: ${(err as Error).message}`, { cause: err }));
              return;
            }
            p.send = () => {
              s.send(bytes, port, address, (err) => {
                if (err) fail(new StunTransactionError('SOCKET_ERROR', `send to ${formatAddress({ family, address, port })} failed: ${err.message}`, { cause: err }));
              });
            };
            p.send();
          },
          (err: Error) => fail(err instanceof StunTransactionError ? err : new StunTransactionError('SOCKET_ERROR', `cannot open a UDP socket: ${err.message}`, { cause: err })),
        );
      } else {
        let conn: StreamConn;
        try {
          conn = this.stream({ ...server, transport, port, address });
        } catch (err) {
          fail(err as Error);
          return;
        }
        p.conn = conn;
        conn.pending.add(tid);
        const sock = conn.socket;
        const setLocal = () => {
          if (sock.localAddress) local = { family: (sock.localFamily as Family) ?? family, address: sock.localAddress, port: sock.localPort ?? 0 };
        };
        if (sock.localAddress) setLocal();
        else sock.once(transport === 'tls' ? 'secureConnect' : 'connect', setLocal);
        sock.write(bytes);
      }
    });
  }

  private stream(server: Required<Pick<ServerSpec, 'address' | 'port' | 'transport'>> & ServerSpec): StreamConn {
    const key = serverKey(server);
    const have = this.streams.get(key);
    if (have && !have.closed) return have;
    const family = ipFamily(server.address)!;
    const remote = { family, address: server.address, port: server.port };
    const bind = this.opts.bindAddress && ipFamily(this.opts.bindAddress) === family ? { localAddress: this.opts.bindAddress } : {};
    const socket =
      server.transport === 'tls'
        ? tls.connect({ host: server.address, port: server.port, servername: server.servername, ...bind, ...server.tls })
        : net.connect({ host: server.address, port: server.port, ...bind });
    socket.setNoDelay(true);
    const conn = new StreamConn(socket, remote);
    this.streams.set(key, conn);
    const onClose = (why: string, cause?: Error) => {
      if (conn.closed) return;
      conn.closed = true;
      if (this.streams.get(key) === conn) this.streams.delete(key);
      for (const id of [...conn.pending]) {
        this.table
          .get(id)
          ?.context.reject(new StunTransactionError('SOCKET_ERROR', `${server.transport} connection to ${formatAddress(remote)} ${why}`, { cause }));
      }
      socket.destroy();
    };
    socket.on('data', (chunk: Buffer) => {
      try {
        conn.framer.push(chunk, (frame) => this.onData(frame, remote, server.transport));
      } catch (err) {
        onClose('sent bytes that are not STUN', err as Error);
      }
    });
    socket.on('error', (err) => onClose(`failed: ${err.message}`, err));
    socket.on('close', () => onClose('closed'));
    return conn;
  }

  private onData(buf: Buffer, from: TransportAddress, transport: Transport): void {
    const r = this.consume(buf, from);
    if (r === 'unmatched') this.opts.onUnmatched?.(buf, from, transport);
    else if (r === 'undecodable') this.dropped++;
  }

  /**
   * Matches a datagram or frame against the transaction table (RFC 8489 section 6.3). Only
   * a response to a transaction under way is decoded here. What cannot be one (no magic
   * cookie, a length that does not fit: RFC 7983's DTLS and ZRTP datagrams on a shared
   * socket, RFC 3489 messages; requests, indications and other transactions' responses) is
   * handed on undecoded: a socket shared with ICE sees such datagrams at the data rate, and
   * their owner (the ICE agent, the TURN client's Data indications) decodes them itself.
   */
  private consume(buf: Buffer, from: TransportAddress): 'consumed' | 'unmatched' | 'undecodable' {
    if (!isStunMessage(buf) || !this.table.awaits(buf)) return 'unmatched';
    let msg: StunMessage;
    try {
      msg = decodeMessage(buf, { registry: this.registry });
    } catch {
      return 'undecodable';
    }
    const r = this.table.match(msg, this.clock.now());
    if (r.kind === 'unmatched') return 'unmatched';
    if (r.kind === 'dropped') this.dropped++;
    else r.transaction.context.resolve(msg, from);
    return 'consumed';
  }

  /** Cancels pending transactions and closes the client's own sockets and connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of [...this.table.values()]) t.context.reject(new StunTransactionError('CLOSED', 'the client was closed'));
    this.table.clear();
    this.arm();
    // A socket still binding closes itself when the bind completes (it sees `closed`).
    await Promise.allSettled([...this.opening.values()]);
    const waits: Promise<void>[] = [];
    for (const s of this.sockets.values()) {
      s.off('message', this.onSocketMessage);
      if (this.ownSockets.has(s)) waits.push(new Promise((r) => s.close(() => r())));
    }
    for (const c of this.streams.values()) {
      waits.push(
        new Promise((r) => {
          if (c.socket.destroyed) return r();
          c.socket.once('close', () => r());
          c.socket.destroy();
        }),
      );
    }
    this.sockets.clear();
    this.streams.clear();
    await Promise.all(waits);
  }
}

/** One Binding request with a throwaway client. */
export async function stunBinding(server: ServerSpec, options: StunClientOptions & Omit<RequestOptions, 'method'> = {}): Promise<BindingResult> {
  const client = new StunClient(options);
  try {
    return await client.binding(server, options);
  } finally {
    await client.close();
  }
}
