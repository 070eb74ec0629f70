import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import {
  Attr,
  ErrorCode,
  type MessageBuilder,
  NatkitError,
  NonceFactory,
  PasswordAlgorithm,
  type PasswordAlgorithmValue,
  type Preparation,
  SecurityFeature,
  type StunMessage,
  type TransportAddress,
  checkIntegrity,
  longTermKey,
  offeredAlgorithms,
  sameAlgorithms,
  userhash,
} from '@natkit/stun';

/**
 * Long-term credentials for the relay (RFC 8489 section 9.2): static users (from a users
 * file or flags) and the TURN REST API shared secret (username `expiry:user`, password =
 * base64(HMAC-SHA1(secret, username))). Keys are derived per algorithm (MD5 or SHA-256);
 * every compare is constant-time; nonces are stateless and expire (438).
 */

export interface UserEntry {
  /** The password, or undefined when only a precomputed MD5 key is known. */
  password?: string;
  /** coturn-style precomputed key, MD5(user:realm:password); works for MD5 only. */
  md5Key?: Buffer;
}

/** A users file that cannot be read or parsed (code USERS_FILE). */
export class UsersFileError extends NatkitError {
  constructor(message: string) {
    super('USERS_FILE', message);
  }
}

/**
 * Parses a users file: one `user:password` per line (coturn's format), or `user:0xKEY`
 * with KEY the hex MD5 key. `#` starts a comment; blank lines are ignored. The first
 * colon separates user from password, so passwords may contain colons.
 */
export function parseUsers(text: string, source = 'users file'): Map<string, UserEntry> {
  const users = new Map<string, UserEntry>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const colon = line.indexOf(':');
    if (colon <= 0) throw new UsersFileError(`${source} line ${i + 1}: expected user:password`);
    const user = line.slice(0, colon);
    const secret = line.slice(colon + 1);
    if (secret === '') throw new UsersFileError(`${source} line ${i + 1}: empty password for ${user}`);
    if (/^0x[0-9a-fA-F]{32}$/.test(secret)) users.set(user, { md5Key: Buffer.from(secret.slice(2), 'hex') });
    else users.set(user, { password: secret });
  });
  return users;
}

export function readUsersFile(path: string): Map<string, UserEntry> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsersFileError(`cannot read users file ${path}: ${(err as Error).message}`);
  }
  return parseUsers(text, path);
}

/** The TURN REST API password for a username (draft-uberti-behave-turn-rest-00). */
export function restPassword(secret: string, username: string): string {
  return createHmac('sha1', secret).update(username).digest('base64');
}

/** The username's expiry (Unix seconds) in `expiry:user` form, or undefined. */
export function restExpiry(username: string, separator = ':'): number | undefined {
  const i = username.indexOf(separator);
  const head = i >= 0 ? username.slice(0, i) : username;
  return /^\d{1,12}$/.test(head) ? Number(head) : undefined;
}

/**
 * What the relay asks of authentication (RFC 8489 section 9.2, RFC 8656 section 5): a
 * decision for each request, and the REALM/NONCE challenge that goes with a 401 or 438.
 * `LongTermAuthenticator` (users, REST secrets, or your own lookup) is the default;
 * `NoAuthenticator` turns authentication off. Both are synchronous: the relay's request
 * core runs without awaiting anything.
 */
export interface Authenticator {
  /**
   * Decides one request from `client` at `nowMs` (monotonic ms). The message has been
   * validated (`msg.validate()`), so reading its attributes cannot throw.
   */
  authenticate(msg: StunMessage, client: TransportAddress, nowMs: number): AuthResult;
  /** Adds the challenge (REALM, NONCE, PASSWORD-ALGORITHMS) to a 401 or 438 answer. */
  challenge(b: MessageBuilder, client: TransportAddress, nowMs: number): void;
  /** How many users it knows, for the metrics; undefined if it cannot tell. */
  readonly userCount?: number;
}

export type AuthResult =
  | {
      ok: true;
      username: string;
      /** The key answers are signed with; undefined: answers are not signed (no authentication). */
      key: Buffer | undefined;
      integrity: 'sha1' | 'sha256';
      /** No authentication: quotas per user do not apply, and answers are not signed. */
      anonymous?: boolean;
    }
  | { ok: false; code: number; reason: string; challenge: boolean; username?: string };

/**
 * Authentication off: every request is accepted as the anonymous user and answers are not
 * signed. Only for closed networks; relayserver says so loudly with --no-auth.
 */
export class NoAuthenticator implements Authenticator {
  authenticate(): AuthResult {
    return { ok: true, username: '', key: undefined, integrity: 'sha1', anonymous: true };
  }

  challenge(): void {}
}

export interface AuthOptions {
  realm: string;
  users?: Map<string, UserEntry>;
  /**
   * Your own user lookup (a database, an API token store...), asked for usernames that
   * are not in `users`; return undefined for an unknown user. It must answer at once
   * (keep what it reads in memory): the request core does not wait.
   */
  lookup?: (username: string, realm: string, client: TransportAddress) => UserEntry | undefined;
  /** REST API shared secrets; several may be valid at once (rotation). */
  secrets?: readonly string[];
  restSeparator?: string;
  nonceLifetimeMs?: number;
  /** Set the username-anonymity bit in nonces (clients must then send USERHASH). */
  requireUserhash?: boolean;
  preparation?: Preparation;
  nonceSecret?: Buffer;
  /**
   * Unix time in ms, for REST usernames' expiry (default Date.now). Nonces use the
   * monotonic time passed to authenticate(); expiries are wall-clock by definition.
   */
  wallClock?: () => number;
}

/**
 * Long-term credentials: static users, your own lookup, and TURN REST API secrets, with
 * stateless nonces bound to the client's address (438 when stale or another client's).
 */
export class LongTermAuthenticator implements Authenticator {
  readonly realm: string;
  private users: Map<string, UserEntry>;
  private secrets: readonly string[];
  private byHash = new Map<string, string>();
  private readonly separator: string;
  private readonly nonces: NonceFactory;
  private readonly prep: Preparation;
  private readonly wallClock: () => number;
  private readonly lookup: AuthOptions['lookup'];
  readonly offered: PasswordAlgorithmValue[] = offeredAlgorithms();

  constructor(options: AuthOptions) {
    this.realm = options.realm;
    this.separator = options.restSeparator ?? ':';
    this.prep = options.preparation ?? 'opaque';
    this.wallClock = options.wallClock ?? Date.now;
    this.lookup = options.lookup;
    this.users = new Map();
    this.secrets = [];
    const features = SecurityFeature.PasswordAlgorithms | (options.requireUserhash ? SecurityFeature.UsernameAnonymity : 0);
    this.nonces = new NonceFactory({ lifetimeMs: options.nonceLifetimeMs ?? 10 * 60_000, features, secret: options.nonceSecret });
    this.reload(options.users ?? new Map(), options.secrets ?? []);
  }

  /** Replaces users and secrets (SIGHUP); allocations made with old credentials live on. */
  reload(users: Map<string, UserEntry>, secrets: readonly string[]): void {
    this.users = users;
    this.secrets = [...secrets];
    this.byHash = new Map();
    for (const u of users.keys()) this.byHash.set(userhash(u, this.realm, this.prep).toString('hex'), u);
  }

  get userCount(): number {
    return this.users.size;
  }

  /** A fresh nonce for a client (bound to its IP address). */
  nonce(client: TransportAddress, nowMs: number): string {
    return this.nonces.make(client.address, nowMs);
  }

  /** Adds REALM, NONCE and PASSWORD-ALGORITHMS to a 401 or 438 answer. */
  challenge(b: MessageBuilder, client: TransportAddress, nowMs: number): void {
    b.add(Attr.Realm, this.realm).add(Attr.Nonce, this.nonce(client, nowMs)).add(Attr.PasswordAlgorithms, this.offered);
  }

  /** Candidate keys for a username under an algorithm (several with rotated secrets). */
  private keys(username: string, algorithm: number, client: TransportAddress): Buffer[] | 'expired' | undefined {
    const u = this.users.get(username) ?? this.lookup?.(username, this.realm, client);
    if (u) {
      if (u.password !== undefined) return [longTermKey(username, this.realm, u.password, algorithm, this.prep)];
      if (u.md5Key && algorithm === PasswordAlgorithm.MD5) return [u.md5Key];
      return undefined;
    }
    if (this.secrets.length === 0) return undefined;
    const expiry = restExpiry(username, this.separator);
    if (expiry === undefined) return undefined;
    if (expiry * 1000 <= this.wallClock()) return 'expired';
    return this.secrets.map((s) => longTermKey(username, this.realm, restPassword(s, username), algorithm, this.prep));
  }

  /**
   * RFC 8489 section 9.2.4 for one request from `client` at `nowMs`. The message must have
   * been validated (`msg.validate()`), so reading its attributes cannot throw. On failure the
   * result says which error to answer and whether to add a challenge (REALM, NONCE).
   */
  authenticate(msg: StunMessage, client: TransportAddress, nowMs: number): AuthResult {
    const hasMi = msg.integrityAt >= 0 || msg.integritySha256At >= 0;
    if (!hasMi) return { ok: false, code: ErrorCode.Unauthorized, reason: 'credentials required', challenge: true };
    // The caller has validated the message: these reads do not throw.
    let username = msg.get(Attr.Username);
    const hash = msg.get(Attr.Userhash);
    const realm = msg.get(Attr.Realm);
    const nonce = msg.get(Attr.Nonce);
    const algorithms = msg.get(Attr.PasswordAlgorithms);
    const algorithm = msg.get(Attr.PasswordAlgorithm);
    if ((username === undefined && hash === undefined) || realm === undefined || nonce === undefined) {
      return { ok: false, code: ErrorCode.BadRequest, reason: 'USERNAME or USERHASH, REALM and NONCE are required with MESSAGE-INTEGRITY', challenge: false };
    }
    const n = this.nonces.check(nonce, client.address, nowMs);
    if (n !== 'ok') return { ok: false, code: ErrorCode.StaleNonce, reason: n === 'stale' ? 'nonce expired' : 'unknown nonce', challenge: true };
    if (realm !== this.realm) return { ok: false, code: ErrorCode.Unauthorized, reason: 'wrong realm', challenge: true };
    // RFC 8489 section 9.2.4: with the password-algorithms bit in our nonce, a request
    // that names an algorithm must echo our list exactly and pick from it; one that names
    // neither is taken as MD5.
    let alg: number = PasswordAlgorithm.MD5;
    if (algorithms !== undefined || algorithm !== undefined) {
      if (!algorithms || !algorithm || !sameAlgorithms(algorithms, this.offered) || !this.offered.some((a) => a.algorithm === algorithm!.algorithm)) {
        return { ok: false, code: ErrorCode.BadRequest, reason: 'PASSWORD-ALGORITHMS does not match what the server offered', challenge: false };
      }
      alg = algorithm.algorithm;
    }
    if (username === undefined) {
      username = this.byHash.get(hash!.toString('hex'));
      if (username === undefined) return { ok: false, code: ErrorCode.Unauthorized, reason: 'unknown user', challenge: true };
    }
    const keys = this.keys(username, alg, client);
    if (keys === 'expired') return { ok: false, code: ErrorCode.Unauthorized, reason: 'credentials expired', challenge: true, username };
    if (!keys) {
      // Spend the time of a key check anyway, so unknown users do not answer faster.
      checkIntegrity(msg, longTermKey('-', this.realm, '-', alg));
      return { ok: false, code: ErrorCode.Unauthorized, reason: 'unknown user', challenge: true, username };
    }
    for (const key of keys) {
      const r = checkIntegrity(msg, key);
      if (r === 'sha1' || r === 'sha256') return { ok: true, username, key, integrity: r };
    }
    return { ok: false, code: ErrorCode.Unauthorized, reason: 'wrong credentials', challenge: true, username };
  }
}

