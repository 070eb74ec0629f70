import * as dgram from 'node:dgram';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { Attr, type AttributeRegistry, type PasswordAlgorithmValue, softwareText, stunRegistry } from '../codec/attributes.js';
import { ErrorCode, MessageClass, Method, PasswordAlgorithm, methodName } from '../codec/constants.js';
import { MessageBuilder } from '../codec/encode.js';
import { checkIntegrity, verifyFingerprint } from '../codec/integrity.js';
import { type Family, type TransportAddress, canonicalIp, formatAddress, ipFamily } from '../codec/ip.js';
import { type StunMessage, decodeMessage } from '../codec/message.js';
import {
  SecurityFeature,
  choosePasswordAlgorithm,
  longTermKey,
  nonceFeatures,
  shortTermKey,
  userhash,
} from '../credentials/keys.js';
import type { Preparation } from '../credentials/prep.js';
import { StunTransactionError } from '../errors.js';
import { type Clock, realClock } from '../net/clock.js';
import { StreamFramer } from '../net/framing.js';
import { type RetransmitOptions, TransactionTimer } from './transaction.js';

export type Transport = 'udp' | 'tcp' | 'tls';

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

export interface Credentials {
  /** 'long-term' (default) answers 401 challenges; 'short-term' signs every request. */
  kind?: 'long-term' | 'short-term';
  username: string;
  password: string;
  /** String preparation of realm and password: OpaqueString (RFC 8489) by default. */
  preparation?: Preparation;
  /**
   * Which integrity attribute to send. 'auto' (default): MESSAGE-INTEGRITY-SHA256 when the
   * server shows it knows RFC 8489 (it offers PASSWORD-ALGORITHMS), MESSAGE-INTEGRITY
   * otherwise; short-term credentials then send both.
   */
  integrity?: 'auto' | 'sha1' | 'sha256' | 'both';
}

export interface StunClientOptions {
  clock?: Clock;
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
  socket?: dgram.Socket;
  /** Local address and port for the client's own UDP sockets. */
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

interface Pending {
  /** A matching response arrived (from `from`). */
  resolve: (message: StunMessage, from: TransportAddress) => void;
  reject: (e: Error) => void;
  accept: (m: StunMessage) => boolean;
  timer: TransactionTimer;
  handle: unknown;
  conn: StreamConn | undefined;
  cleanup: () => void;
}

interface AuthState {
  realm: string;
  nonce: string;
  algorithms: PasswordAlgorithmValue[] | undefined;
  algorithm: number;
  anonymous: boolean;
  key: Buffer;
  sha256: boolean;
}

class StreamConn {
  readonly socket: net.Socket;
  readonly framer = new StreamFramer({ acceptChannelData: true });
  readonly pending = new Set<Pending>();
  readonly remote: TransportAddress;
  closed = false;
  constructor(socket: net.Socket, remote: TransportAddress) {
    this.socket = socket;
    this.remote = remote;
  }
}

function defaultPort(t: Transport): number {
  return t === 'tls' ? 5349 : 3478;
}

function serverKey(s: { transport: Transport; address: string; port: number }): string {
  return `${s.transport}:${formatAddress({ family: ipFamily(s.address) ?? 'IPv4', address: s.address, port: s.port })}`;
}

/**
 * A STUN client: transactions over UDP (with RFC 8489 section 6.2.1 retransmissions), TCP
 * and TLS (6.2.2, 6.2.3), responses matched by transaction id, long-term credentials
 * answered on 401 and 438 (section 9.2), 300 ALTERNATE-SERVER followed (section 10), and
 * AbortSignal to cancel.
 */
export class StunClient {
  private readonly clock: Clock;
  private readonly opts: StunClientOptions;
  private readonly registry: AttributeRegistry;
  private readonly pending = new Map<string, Pending>();
  private readonly sockets = new Map<Family, dgram.Socket>();
  private readonly opening = new Map<Family, Promise<dgram.Socket>>();
  private readonly ownSockets = new Set<dgram.Socket>();
  private readonly streams = new Map<string, StreamConn>();
  private readonly auth = new Map<string, AuthState>();
  private readonly onSocketMessage = (buf: Buffer, rinfo: dgram.RemoteInfo) =>
    this.onData(buf, { family: rinfo.family as Family, address: rinfo.address, port: rinfo.port }, 'udp');
  private closed = false;
  private readonly software: string | undefined;
  /** Datagrams and frames that were not STUN or failed to decode. */
  dropped = 0;

  constructor(options: StunClientOptions = {}) {
    this.opts = options;
    this.clock = options.clock ?? realClock;
    this.registry = options.registry ?? stunRegistry;
    this.software = options.software === false ? undefined : softwareText(options.software ?? 'natkit');
    if (options.socket) {
      const s = options.socket;
      const fam = (s.address().family as Family) ?? 'IPv4';
      this.sockets.set(fam, s);
      s.on('message', this.onSocketMessage);
    }
  }

  /** The local address of the UDP socket for a family (creating and binding it if needed). */
  async localAddress(family: Family = 'IPv4'): Promise<TransportAddress> {
    const s = await this.udpSocket(family);
    const a = s.address();
    return { family: a.family as Family, address: a.address, port: a.port };
  }

  private udpSocket(family: Family): Promise<dgram.Socket> {
    const have = this.sockets.get(family);
    if (have) return Promise.resolve(have);
    if (this.closed) return Promise.reject(new StunTransactionError('CLOSED', 'the client is closed'));
    // Concurrent first requests share one socket: remember the bind in progress.
    let opening = this.opening.get(family);
    if (opening) return opening;
    const s = dgram.createSocket({ type: family === 'IPv6' ? 'udp6' : 'udp4' });
    this.ownSockets.add(s);
    s.on('message', this.onSocketMessage);
    s.on('error', () => {
      // Errors on an unconnected UDP socket concern one send; sends report their own.
    });
    opening = new Promise<dgram.Socket>((resolve, reject) => {
      const onError = (err: Error) => {
        this.opening.delete(family);
        this.ownSockets.delete(s);
        s.close();
        reject(err);
      };
      s.once('error', onError);
      s.bind({ address: this.opts.bindAddress ?? (family === 'IPv6' ? '::' : '0.0.0.0'), port: this.opts.bindPort ?? 0 }, () => {
        s.off('error', onError);
        this.opening.delete(family);
        if (this.closed) {
          s.close();
          reject(new StunTransactionError('CLOSED', 'the client is closed'));
          return;
        }
        this.sockets.set(family, s);
        resolve(s);
      });
    });
    this.opening.set(family, opening);
    return opening;
  }

  /** Sends a request and resolves with the success response; see RequestOptions. */
  async request(server: ServerSpec, options: RequestOptions = {}): Promise<StunResponse> {
    const transport = server.transport ?? 'udp';
    let target = { ...server, transport, port: server.port ?? defaultPort(transport), address: canonicalIp(server.address) };
    const creds = options.credentials === undefined ? this.opts.credentials : (options.credentials ?? undefined);
    const method = options.method ?? Method.Binding;
    const visited = new Set([serverKey(target)]);
    let redirects = 0;
    let challenges = 0;
    let stale = 0;
    for (;;) {
      if (options.signal?.aborted) throw new StunTransactionError('ABORTED', 'the request was aborted');
      const b = new MessageBuilder(method, MessageClass.Request);
      options.attributes?.(b);
      if (this.software) b.add(Attr.Software, this.software);
      const key = serverKey(target);
      let integrity: { key: Buffer; algorithm: 'sha1' | 'sha256' | 'both' } | undefined;
      if (creds?.kind === 'short-term') {
        // RFC 8489 section 9.1.2: USERNAME and integrity with key = OpaqueString(password).
        b.add(Attr.Username, creds.username);
        const alg = creds.integrity && creds.integrity !== 'auto' ? creds.integrity : 'both';
        integrity = { key: shortTermKey(creds.password, creds.preparation), algorithm: alg };
      } else if (creds) {
        const st = this.auth.get(key);
        if (st) {
          // RFC 8489 section 9.2.3.2: subsequent requests carry the realm, nonce and
          // algorithm learned from the server.
          if (st.anonymous) b.add(Attr.Userhash, userhash(creds.username, st.realm, creds.preparation));
          else b.add(Attr.Username, creds.username);
          b.add(Attr.Realm, st.realm);
          b.add(Attr.Nonce, st.nonce);
          if (st.algorithms) {
            b.add(Attr.PasswordAlgorithms, st.algorithms);
            b.add(Attr.PasswordAlgorithm, { algorithm: st.algorithm, parameters: Buffer.alloc(0) });
          }
          const pref = creds.integrity ?? 'auto';
          integrity = { key: st.key, algorithm: pref === 'auto' ? (st.sha256 ? 'sha256' : 'sha1') : pref };
        }
      }
      const bytes = b.encode({ integrity, fingerprint: this.opts.fingerprint ?? true });
      const res = await this.transact(target, bytes, b.transactionId, {
        signal: options.signal,
        retransmit: options.retransmit,
        verifyKey: integrity?.key,
      });
      const msg = res.message;
      const server = { address: target.address, port: target.port, transport: target.transport };
      if (msg.isSuccess()) return { ...res, server };
      const err = msg.get(Attr.ErrorCode);
      const code = err?.code ?? 0;
      if (code === ErrorCode.Unauthorized && creds && creds.kind !== 'short-term') {
        const realm = msg.get(Attr.Realm);
        const nonce = msg.get(Attr.Nonce);
        const prev = this.auth.get(key);
        // RFC 8489 section 9.2.5: retry once with credentials; never retry unchanged ones
        // that were already refused.
        if (realm !== undefined && nonce !== undefined && (challenges === 0 || (prev && prev.realm !== realm)) && challenges < 2) {
          challenges++;
          this.learnChallenge(key, creds, realm, nonce, msg);
          continue;
        }
        throw new StunTransactionError('AUTH_FAILED', `${methodName(method)} refused by ${serverKey(target)}: 401 ${err?.reason ?? ''}`.trim(), {
          errorCode: code,
          reason: err?.reason,
        });
      }
      if (code === ErrorCode.StaleNonce && creds && creds.kind !== 'short-term') {
        const nonce = msg.get(Attr.Nonce);
        const st = this.auth.get(key);
        // RFC 8489 section 9.2.5: retry with the new NONCE from the 438.
        if (nonce !== undefined && st && stale < 3) {
          stale++;
          const realm = msg.get(Attr.Realm) ?? st.realm;
          this.learnChallenge(key, creds, realm, nonce, msg);
          continue;
        }
      }
      if (code === ErrorCode.TryAlternate) {
        // RFC 8489 section 10: follow ALTERNATE-SERVER, same transport, no loops.
        const alt = msg.get(Attr.AlternateServer);
        if (alt && redirects < (this.opts.maxRedirects ?? 3)) {
          const next = { ...target, address: alt.address, port: alt.port };
          const k = serverKey(next);
          if (visited.has(k)) throw new StunTransactionError('REDIRECT_LOOP', `redirect loop at ${k}`, { errorCode: code });
          visited.add(k);
          redirects++;
          target = next;
          continue;
        }
        throw new StunTransactionError('REDIRECT_LOOP', `too many redirects (last to ${alt ? formatAddress(alt) : 'nowhere'})`, { errorCode: code });
      }
      throw new StunTransactionError('ERROR_RESPONSE', `${methodName(method)} error from ${serverKey(target)}: ${code} ${err?.reason ?? ''}`.trim(), {
        errorCode: code,
        reason: err?.reason,
      });
    }
  }

  private learnChallenge(key: string, creds: Credentials, realm: string, nonce: string, msg: StunMessage): void {
    const features = nonceFeatures(nonce) ?? 0;
    const offered = msg.get(Attr.PasswordAlgorithms);
    // RFC 8489 section 9.2.5: the password-algorithms bit counts only with the attribute.
    const algorithms = features & SecurityFeature.PasswordAlgorithms && offered ? offered : undefined;
    const algorithm = choosePasswordAlgorithm(algorithms);
    if (algorithm === undefined) {
      throw new StunTransactionError('AUTH_FAILED', 'the server offers no password algorithm natkit supports', { errorCode: 401 });
    }
    this.auth.set(key, {
      realm,
      nonce,
      algorithms,
      algorithm,
      anonymous: (features & SecurityFeature.UsernameAnonymity) !== 0,
      key: longTermKey(creds.username, realm, creds.password, algorithm, creds.preparation),
      sha256: algorithms !== undefined || algorithm === PasswordAlgorithm.SHA256,
    });
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
    const key = tid.toString('latin1');
    if (this.pending.has(key)) return Promise.reject(new StunTransactionError('SOCKET_ERROR', 'duplicate transaction id'));
    const verifyKey = options.verifyKey;
    return new Promise((resolve, reject) => {
      const reliable = transport !== 'udp';
      const retransmit = { ...this.opts.retransmit, ...options.retransmit, reliable };
      const start = this.clock.now();
      let local: TransportAddress = { family, address: family === 'IPv6' ? '::' : '0.0.0.0', port: 0 };
      let send: () => void = () => {};
      const p: Pending = {
        resolve: () => {},
        reject,
        accept: (m) => {
          if (!verifyKey) return true;
          const code = m.isError() ? m.get(Attr.ErrorCode)?.code : undefined;
          if (code === ErrorCode.Unauthorized || code === ErrorCode.StaleNonce) return true;
          const r = checkIntegrity(m, verifyKey);
          return r === 'sha1' || r === 'sha256';
        },
        timer: new TransactionTimer(start, retransmit),
        handle: undefined,
        conn: undefined,
        cleanup: () => {},
      };
      const finish = () => {
        p.timer.finish();
        this.clock.clearTimeout(p.handle);
        this.pending.delete(key);
        p.conn?.pending.delete(p);
        p.cleanup();
      };
      const fail = (e: Error) => {
        finish();
        reject(e);
      };
      p.resolve = (message, from) => {
        finish();
        resolve({ message, from, local, rtt: this.clock.now() - start, sends: p.timer.sendCount });
      };
      p.reject = fail;
      const schedule = () => {
        const at = p.timer.nextTimeout();
        if (at === undefined) return;
        p.handle = this.clock.setTimeout(onTimer, Math.max(0, at - this.clock.now()));
      };
      const onTimer = () => {
        const action = p.timer.onTimeout(this.clock.now());
        if (action === 'retransmit') {
          send();
          schedule();
        } else if (action === 'timeout') {
          fail(
            new StunTransactionError(
              'TIMEOUT',
              `no response from ${transport} ${formatAddress({ family, address, port })} after ${p.timer.sendCount} request(s) in ${Math.round(this.clock.now() - start)} ms`,
            ),
          );
        } else {
          schedule();
        }
      };
      if (options.signal) {
        const signal = options.signal;
        if (signal.aborted) {
          reject(new StunTransactionError('ABORTED', 'the request was aborted'));
          return;
        }
        const onAbort = () => fail(new StunTransactionError('ABORTED', 'the request was aborted'));
        signal.addEventListener('abort', onAbort, { once: true });
        p.cleanup = () => signal.removeEventListener('abort', onAbort);
      }
      this.pending.set(key, p);
      if (transport === 'udp') {
        this.udpSocket(family).then(
          (s) => {
            if (p.timer.finished) return;
            try {
              const a = s.address();
              local = { family: a.family as Family, address: a.address, port: a.port };
            } catch (err) {
              fail(new StunTransactionError('SOCKET_ERROR', `the UDP socket is not usable: ${(err as Error).message}`, { cause: err }));
              return;
            }
            send = () =>
              s.send(bytes, port, address, (err) => {
                if (err) fail(new StunTransactionError('SOCKET_ERROR', `send to ${address}:${port} failed: ${err.message}`, { cause: err }));
              });
            send();
            schedule();
          },
          (err: Error) => fail(new StunTransactionError('SOCKET_ERROR', `cannot open a UDP socket: ${err.message}`, { cause: err })),
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
        conn.pending.add(p);
        const sock = conn.socket;
        const setLocal = () => {
          if (sock.localAddress) local = { family: (sock.localFamily as Family) ?? family, address: sock.localAddress, port: sock.localPort ?? 0 };
        };
        if (sock.localAddress) setLocal();
        else sock.once(transport === 'tls' ? 'secureConnect' : 'connect', setLocal);
        sock.write(bytes);
        schedule();
      }
    });
  }

  private stream(server: Required<Pick<ServerSpec, 'address' | 'port' | 'transport'>> & ServerSpec): StreamConn {
    const key = serverKey(server);
    const have = this.streams.get(key);
    if (have && !have.closed) return have;
    const family = ipFamily(server.address)!;
    const remote = { family, address: server.address, port: server.port };
    const socket =
      server.transport === 'tls'
        ? tls.connect({ host: server.address, port: server.port, servername: server.servername, ...server.tls })
        : net.connect({ host: server.address, port: server.port });
    socket.setNoDelay(true);
    const conn = new StreamConn(socket, remote);
    this.streams.set(key, conn);
    const onClose = (why: string, cause?: Error) => {
      if (conn.closed) return;
      conn.closed = true;
      if (this.streams.get(key) === conn) this.streams.delete(key);
      for (const p of [...conn.pending]) p.reject(new StunTransactionError('SOCKET_ERROR', `${server.transport} connection to ${formatAddress(remote)} ${why}`, { cause }));
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
    if (buf.length < 20 || (buf[0]! & 0xc0) !== 0) {
      this.opts.onUnmatched?.(buf, from, transport);
      return;
    }
    let msg: StunMessage;
    try {
      msg = decodeMessage(buf, { registry: this.registry });
    } catch {
      this.dropped++;
      return;
    }
    if (msg.cls === MessageClass.Request || msg.cls === MessageClass.Indication || msg.rfc3489) {
      this.opts.onUnmatched?.(buf, from, transport);
      return;
    }
    const p = this.pending.get(msg.transactionId.toString('latin1'));
    if (!p) {
      this.opts.onUnmatched?.(buf, from, transport);
      return;
    }
    // RFC 8489 section 7.3: a FINGERPRINT that does not match means it is not STUN.
    if (msg.fingerprintAt >= 0 && !verifyFingerprint(msg)) {
      this.dropped++;
      return;
    }
    if (!p.accept(msg)) {
      this.dropped++;
      return;
    }
    p.resolve(msg, from);
  }

  /** Cancels pending transactions and closes the client's own sockets and connections. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const p of [...this.pending.values()]) p.reject(new StunTransactionError('CLOSED', 'the client was closed'));
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
