/**
 * One request from first send to final answer, sans-I/O: builds each attempt, and decides
 * from each response whether the request succeeded, must be sent again (a 401 challenge or
 * a 438 stale nonce answered with long-term credentials, RFC 8489 section 9.2; a 300 Try
 * Alternate followed, section 10) or failed. No sockets, no timers: the owner runs each
 * attempt as a transaction (TransactionTable) and hands the response to `onResponse`.
 *
 * What a server taught about its realm and nonce is kept in an AuthCache shared by every
 * request to that server, so later requests are authenticated at once (section 9.2.3.2).
 */
import { Attr, type PasswordAlgorithmValue } from '../codec/attributes.js';
import { ErrorCode, MessageClass, Method, PasswordAlgorithm, methodName } from '../codec/constants.js';
import { MessageBuilder } from '../codec/encode.js';
import { canonicalIp, formatAddress, ipFamily } from '../codec/ip.js';
import type { StunMessage } from '../codec/message.js';
import { SecurityFeature, choosePasswordAlgorithm, longTermKey, nonceFeatures, shortTermKey, userhash } from '../credentials/keys.js';
import type { Preparation } from '../credentials/prep.js';
import { StunTransactionError } from '../errors.js';

export type Transport = 'udp' | 'tcp' | 'tls';

/** A server as a transaction goes to it: literal address, port and transport. */
export interface ServerTarget {
  address: string;
  port: number;
  transport: Transport;
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

/** RFC 8489 section 6.2.3: 3478 for UDP and TCP, 5349 for TLS. */
export function defaultPort(t: Transport): number {
  return t === 'tls' ? 5349 : 3478;
}

/** A stable key for a server: `udp:192.0.2.1:3478`, `tls:[2001:db8::1]:5349`. */
export function serverKey(s: ServerTarget): string {
  return `${s.transport}:${formatAddress({ family: ipFamily(s.address) ?? 'IPv4', address: s.address, port: s.port })}`;
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

/** What each server taught about its long-term credential realm and nonce, by server. */
export class AuthCache {
  private readonly byServer = new Map<string, AuthState>();

  get(server: ServerTarget): Readonly<AuthState> | undefined {
    return this.byServer.get(serverKey(server));
  }

  forget(server: ServerTarget): void {
    this.byServer.delete(serverKey(server));
  }

  clear(): void {
    this.byServer.clear();
  }

  /**
   * Learns a challenge (401 or 438 with REALM and NONCE): the nonce's security features,
   * the password algorithm (RFC 8489 section 9.2.5: the PASSWORD-ALGORITHMS bit counts
   * only with the attribute), and the key. Throws AUTH_FAILED when no algorithm fits.
   */
  learn(server: ServerTarget, creds: Credentials, realm: string, nonce: string, msg: StunMessage): void {
    const features = nonceFeatures(nonce) ?? 0;
    const offered = msg.get(Attr.PasswordAlgorithms);
    const algorithms = features & SecurityFeature.PasswordAlgorithms && offered ? offered : undefined;
    const algorithm = choosePasswordAlgorithm(algorithms);
    if (algorithm === undefined) {
      throw new StunTransactionError('AUTH_FAILED', 'the server offers no password algorithm natkit supports', { errorCode: 401 });
    }
    this.byServer.set(serverKey(server), {
      realm,
      nonce,
      algorithms,
      algorithm,
      anonymous: (features & SecurityFeature.UsernameAnonymity) !== 0,
      key: longTermKey(creds.username, realm, creds.password, algorithm, creds.preparation),
      sha256: algorithms !== undefined || algorithm === PasswordAlgorithm.SHA256,
    });
  }
}

export interface RequestFlowOptions {
  target: ServerTarget;
  /** Default Binding. */
  method?: number;
  /** Adds attributes to each attempt. */
  attributes?: ((b: MessageBuilder) => void) | undefined;
  credentials?: Credentials | undefined;
  /** SOFTWARE value, already checked (softwareText); none when undefined. */
  software?: string | undefined;
  /** Add FINGERPRINT (default true). */
  fingerprint?: boolean | undefined;
  /** 300 redirects to follow (default 3). */
  maxRedirects?: number | undefined;
  /** Shared realm/nonce state; a fresh one when absent. */
  auth?: AuthCache | undefined;
  /** Where the attempt's transaction id comes from (tests); random by default. */
  transactionId?: (() => Buffer) | undefined;
}

/** One attempt to send as a transaction. */
export interface Attempt {
  target: ServerTarget;
  transactionId: Buffer;
  bytes: Buffer;
  /** The key the attempt was signed with: responses must be authenticated with it. */
  verifyKey: Buffer | undefined;
}

export type FlowStep =
  | { kind: 'success'; message: StunMessage; target: ServerTarget }
  /** Send `next()` again (to `target`, which may have changed after a 300). */
  | { kind: 'retry'; target: ServerTarget; why: 'challenge' | 'stale-nonce' | 'redirect' };

/**
 * A request through its 401, 438 and 300 answers. `next()` builds an attempt; the owner
 * runs it as one transaction and gives the response to `onResponse`, which returns
 * success, asks for another attempt, or throws StunTransactionError (AUTH_FAILED,
 * ERROR_RESPONSE with the code, REDIRECT_LOOP).
 */
export class RequestFlow {
  private target: ServerTarget;
  private readonly opts: RequestFlowOptions;
  private readonly auth: AuthCache;
  private readonly visited: Set<string>;
  private redirects = 0;
  private challenges = 0;
  private stale = 0;
  private current: Attempt | undefined;

  constructor(options: RequestFlowOptions) {
    this.opts = options;
    this.target = { ...options.target, address: canonicalIp(options.target.address) };
    this.auth = options.auth ?? new AuthCache();
    this.visited = new Set([serverKey(this.target)]);
  }

  get method(): number {
    return this.opts.method ?? Method.Binding;
  }

  /** The server the next attempt goes to. */
  get server(): ServerTarget {
    return this.target;
  }

  /** Builds the next attempt (RFC 8489 section 9.1.2 short-term, 9.2.3 long-term). */
  next(): Attempt {
    const creds = this.opts.credentials;
    const tid = this.opts.transactionId?.();
    const b = new MessageBuilder(this.method, MessageClass.Request, tid);
    this.opts.attributes?.(b);
    if (this.opts.software) b.add(Attr.Software, this.opts.software);
    let integrity: { key: Buffer; algorithm: 'sha1' | 'sha256' | 'both' } | undefined;
    if (creds?.kind === 'short-term') {
      // RFC 8489 section 9.1.2: USERNAME and integrity with key = OpaqueString(password).
      b.add(Attr.Username, creds.username);
      const alg = creds.integrity && creds.integrity !== 'auto' ? creds.integrity : 'both';
      integrity = { key: shortTermKey(creds.password, creds.preparation), algorithm: alg };
    } else if (creds) {
      const st = this.auth.get(this.target);
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
    this.current = { target: this.target, transactionId: b.transactionId, bytes, verifyKey: integrity?.key };
    return this.current;
  }

  /** The response to the last attempt (already matched and integrity-checked). */
  onResponse(msg: StunMessage): FlowStep {
    const target = this.target;
    if (msg.isSuccess()) return { kind: 'success', message: msg, target };
    const creds = this.opts.credentials;
    const method = this.method;
    const err = msg.get(Attr.ErrorCode);
    const code = err?.code ?? 0;
    const where = serverKey(target);
    if (code === ErrorCode.Unauthorized && creds && creds.kind !== 'short-term') {
      const realm = msg.get(Attr.Realm);
      const nonce = msg.get(Attr.Nonce);
      const prev = this.auth.get(target);
      // RFC 8489 section 9.2.5: retry once with credentials; never retry unchanged ones
      // that were already refused (a new realm is a new challenge, once).
      if (realm !== undefined && nonce !== undefined && (this.challenges === 0 || (prev && prev.realm !== realm)) && this.challenges < 2) {
        this.challenges++;
        this.auth.learn(target, creds, realm, nonce, msg);
        return { kind: 'retry', target, why: 'challenge' };
      }
      throw new StunTransactionError('AUTH_FAILED', `${methodName(method)} refused by ${where}: 401 ${err?.reason ?? ''}`.trim(), {
        errorCode: code,
        reason: err?.reason,
      });
    }
    if (code === ErrorCode.StaleNonce && creds && creds.kind !== 'short-term') {
      const nonce = msg.get(Attr.Nonce);
      const st = this.auth.get(target);
      // RFC 8489 section 9.2.5: retry with the new NONCE from the 438 (three times at most).
      if (nonce !== undefined && st && this.stale < 3) {
        this.stale++;
        this.auth.learn(target, creds, msg.get(Attr.Realm) ?? st.realm, nonce, msg);
        return { kind: 'retry', target, why: 'stale-nonce' };
      }
    }
    if (code === ErrorCode.TryAlternate) {
      // RFC 8489 section 10: follow ALTERNATE-SERVER, same transport, no loops.
      const alt = msg.get(Attr.AlternateServer);
      if (alt && this.redirects < (this.opts.maxRedirects ?? 3)) {
        const next = { ...target, address: canonicalIp(alt.address), port: alt.port };
        const k = serverKey(next);
        if (this.visited.has(k)) throw new StunTransactionError('REDIRECT_LOOP', `redirect loop at ${k}`, { errorCode: code });
        this.visited.add(k);
        this.redirects++;
        this.target = next;
        return { kind: 'retry', target: next, why: 'redirect' };
      }
      throw new StunTransactionError('REDIRECT_LOOP', `too many redirects (last to ${alt ? formatAddress(alt) : 'nowhere'})`, { errorCode: code });
    }
    throw new StunTransactionError('ERROR_RESPONSE', `${methodName(method)} error from ${where}: ${code} ${err?.reason ?? ''}`.trim(), {
      errorCode: code,
      reason: err?.reason,
    });
  }
}
