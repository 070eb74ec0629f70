import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { PasswordAlgorithm } from '../codec/constants.js';
import type { PasswordAlgorithmValue } from '../codec/attributes.js';
import { StunCredentialError } from '../errors.js';
import { type Preparation, prepare } from './prep.js';

/** RFC 8489 section 9.1.1: the short-term key is OpaqueString(password). */
export function shortTermKey(password: string, how: Preparation = 'opaque'): Buffer {
  return Buffer.from(prepare(password, how), 'utf8');
}

/**
 * RFC 8489 section 9.2.2: key = MD5(username ":" OpaqueString(realm) ":" OpaqueString(password))
 * or the same with SHA-256 when PASSWORD-ALGORITHM says so. The username is used as it
 * appears in USERNAME (already prepared by whoever chose it). RFC 5389 used SASLprep;
 * pass `how: 'saslprep'` for peers that follow it with non-ASCII credentials.
 */
export function longTermKey(
  username: string,
  realm: string,
  password: string,
  algorithm: number = PasswordAlgorithm.MD5,
  how: Preparation = 'opaque',
): Buffer {
  const input = `${username}:${prepare(realm, how)}:${prepare(password, how)}`;
  if (algorithm === PasswordAlgorithm.MD5) return createHash('md5').update(input, 'utf8').digest();
  if (algorithm === PasswordAlgorithm.SHA256) return createHash('sha256').update(input, 'utf8').digest();
  throw new StunCredentialError('UNSUPPORTED_ALGORITHM', `password algorithm 0x${algorithm.toString(16)} is not MD5 (1) or SHA-256 (2)`);
}

/** RFC 8489 section 14.4: USERHASH = SHA-256(OpaqueString(username) ":" OpaqueString(realm)). */
export function userhash(username: string, realm: string, how: Preparation = 'opaque'): Buffer {
  return createHash('sha256').update(`${prepare(username, how)}:${prepare(realm, how)}`, 'utf8').digest();
}

/** Constant-time compare of two byte strings of possibly different lengths. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) {
    // Still spend the time of a compare so the length is the only thing that leaks.
    timingSafeEqual(a, a);
    return false;
  }
  return timingSafeEqual(a, b);
}

// ---------------------------------------------------------------------------------------
// RFC 8489 section 9.2 nonce cookie and security features

/** RFC 8489 section 9.2: a nonce starting with this cookie carries the security features. */
export const NONCE_COOKIE = 'obMatJos2';

/** RFC 8489 section 18.1 (IANA "STUN Security Features"): bit 0 is the most significant. */
export const SecurityFeature = {
  PasswordAlgorithms: 1 << 23,
  UsernameAnonymity: 1 << 22,
} as const;

/** A nonce with the cookie and feature set in front of `opaque` (RFC 8489 section 9.2). */
export function makeNonceCookie(features: number, opaque: string): string {
  const b = Buffer.from([(features >> 16) & 0xff, (features >> 8) & 0xff, features & 0xff]);
  return `${NONCE_COOKIE}${b.toString('base64')}${opaque}`;
}

/** The security feature bits of a nonce, or undefined if it has no cookie. */
export function nonceFeatures(nonce: string): number | undefined {
  if (!nonce.startsWith(NONCE_COOKIE) || nonce.length < NONCE_COOKIE.length + 4) return undefined;
  const b = Buffer.from(nonce.slice(NONCE_COOKIE.length, NONCE_COOKIE.length + 4), 'base64');
  if (b.length !== 3) return undefined;
  return (b[0]! << 16) | (b[1]! << 8) | b[2]!;
}

/**
 * RFC 8489 section 9.2.4 (client side): the first algorithm in the server's list that the
 * client supports; MD5 when the server offered no list.
 */
export function choosePasswordAlgorithm(offered: readonly PasswordAlgorithmValue[] | undefined): number | undefined {
  if (!offered || offered.length === 0) return PasswordAlgorithm.MD5;
  for (const a of offered) {
    if (a.algorithm === PasswordAlgorithm.SHA256 || a.algorithm === PasswordAlgorithm.MD5) return a.algorithm;
  }
  return undefined;
}

/** The PASSWORD-ALGORITHMS value a server offers: SHA-256 first, then MD5. */
export function offeredAlgorithms(algorithms: readonly number[] = [PasswordAlgorithm.SHA256, PasswordAlgorithm.MD5]): PasswordAlgorithmValue[] {
  return algorithms.map((algorithm) => ({ algorithm, parameters: Buffer.alloc(0) }));
}

/** Same list, same order, same parameters (RFC 8489 section 9.2.4 compares them). */
export function sameAlgorithms(a: readonly PasswordAlgorithmValue[], b: readonly PasswordAlgorithmValue[]): boolean {
  return a.length === b.length && a.every((x, i) => x.algorithm === b[i]!.algorithm && x.parameters.equals(b[i]!.parameters));
}

// ---------------------------------------------------------------------------------------
// Stateless nonces

/**
 * Stateless nonces (RFC 8489 section 9.2 leaves the nonce's form to the server): the
 * nonce cookie, then base64url(expiry seconds || HMAC-SHA256(secret, expiry || client))
 * truncated. A server needs no table of nonces; a nonce is tied to the client's address
 * and expires. `check` says 'ok', 'stale' (well formed but expired: answer 438) or 'bad'.
 */
export class NonceFactory {
  private secret: Buffer;
  readonly lifetimeMs: number;
  readonly features: number;

  constructor(options: { secret?: Buffer; lifetimeMs?: number; features?: number } = {}) {
    this.secret = options.secret ?? randomBytes(32);
    this.lifetimeMs = options.lifetimeMs ?? 10 * 60_000;
    this.features = options.features ?? 0;
  }

  /** Replace the secret (all earlier nonces become 'bad'). */
  rotate(secret: Buffer = randomBytes(32)): void {
    this.secret = secret;
  }

  private tag(expiry: number, client: string): Buffer {
    const h = createHmac('sha256', this.secret);
    const e = Buffer.allocUnsafe(4);
    e.writeUInt32BE(expiry >>> 0, 0);
    return h.update(e).update(client).digest().subarray(0, 12);
  }

  make(client: string, nowMs: number): string {
    const expiry = Math.floor((nowMs + this.lifetimeMs) / 1000);
    const body = Buffer.allocUnsafe(16);
    body.writeUInt32BE(expiry >>> 0, 0);
    this.tag(expiry, client).copy(body, 4);
    return makeNonceCookie(this.features, body.toString('base64url'));
  }

  check(nonce: string, client: string, nowMs: number): 'ok' | 'stale' | 'bad' {
    // The cookie with this factory's features, exactly (base64 decoding would also take
    // the URL-safe alphabet for the feature set).
    const prefix = makeNonceCookie(this.features, '');
    if (!nonce.startsWith(prefix) || nonce.length !== prefix.length + 22) return 'bad';
    const text = nonce.slice(prefix.length);
    const body = Buffer.from(text, 'base64url');
    // Only the encoding make() writes: the decoder skips stray characters and ignores the
    // last character's 4 unused bits, so other strings would decode to the same body.
    if (body.length !== 16 || body.toString('base64url') !== text) return 'bad';
    const expiry = body.readUInt32BE(0);
    if (!timingSafeEqual(this.tag(expiry, client), body.subarray(4))) return 'bad';
    return expiry * 1000 <= nowMs ? 'stale' : 'ok';
  }
}
