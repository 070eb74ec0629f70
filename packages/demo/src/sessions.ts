import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import type { IceParameters } from '@natkit/ice';

/**
 * ICE sessions of one p2pdemo peer, numbered, and the rule that makes two peers agree on
 * one session after a path breaks, whatever each of them noticed and when.
 *
 * A session is one ICE agent with its own parameters (RFC 8445 section 5.3) and its own
 * candidates. An ICE restart (RFC 8445 section 9: new ufrag and pwd, candidates exchanged
 * again) starts a new session; p2pdemo gathers anew for it, because what broke the path (a
 * NAT that forgot its mappings or changed its public address) usually made the old
 * server-reflexive candidates and the old TURN allocation useless too.
 *
 * Each session has a number, written at the front of its ufrag: `3+kV9xQ2aZ` is session 3
 * (RFC 8839 ice-chars allow "+"; the 8 characters after it are random, 48 bits, more than
 * RFC 8445 5.3's 24). The number travels wherever the ufrag does, so the rule works in the
 * tutorial's plain line format too, where a line carries nothing but a candidate and its
 * session's ufrag and password. When a peer hears of a session of the other peer:
 *
 *  - a lower number than its own session's: stale (sent before the other peer moved on), ignored;
 *  - a higher number: the other peer restarted; follow it, with a new session of that number;
 *  - the same number, and no peer parameters yet: the answer to our restart, or both peers
 *    restarted at once; take them;
 *  - the same number and other peer parameters already: a different process on the other
 *    end (the peer was restarted) that counted from the same place; lead to the next number.
 *
 * Restarting on its own (the path broke, a session did not connect in time) a peer takes
 * one more than the highest number it has seen. Every message moves a peer only up, and at
 * most one session per number per peer, so the two meet at the highest number either
 * reached, with no extra message, however many restarts crossed on the wire. A peer whose
 * ufrags carry no number (another ICE client speaking the same lines) is followed whenever
 * its parameters change.
 */

/** RFC 8839 ice-chars without "+" and "/": the random part stays clear of the separator. */
const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
const UFRAG = /^(\d{1,9})\+[A-Za-z0-9]{8}$/;
export const MAX_SESSION = 999_999_999;

function pick(random: (n: number) => Uint8Array, n: number, alphabet: string): string {
  // Rejection sampling keeps every character equally likely (62 does not divide 256).
  let s = '';
  while (s.length < n) {
    for (const b of random(n)) {
      if (b < 248 && s.length < n) s += alphabet[b % 62];
    }
  }
  return s;
}

/** Parameters for session `n`: ufrag `n+XXXXXXXX`, a 24-character password (143 bits). */
export function sessionParameters(n: number, random: (n: number) => Uint8Array = cryptoRandomBytes): IceParameters {
  if (!Number.isInteger(n) || n < 0 || n > MAX_SESSION) throw new RangeError(`session number ${n} is not 0-${MAX_SESSION}`);
  return { ufrag: `${n}+${pick(random, 8, ALPHABET)}`, pwd: pick(random, 24, ALPHABET) };
}

/** The session number in a ufrag, or undefined for a ufrag that carries none (another client's). */
export function sessionOf(ufrag: string): number | undefined {
  const m = UFRAG.exec(ufrag);
  return m ? Number(m[1]) : undefined;
}

/** What a peer knows of its current session when the other peer's parameters arrive. */
export interface SessionView {
  /** Our current session's number. */
  number: number;
  /** The other peer's parameters our current session has, if any. */
  remoteUfrag: string | undefined;
  /** The highest session number seen from either side. */
  highest: number;
}

export type SessionDecision =
  /** The parameters of our current session's peer, again (a repeated line): nothing to do. */
  | { action: 'same' }
  /** Sent before the other peer moved on: drop it (and its candidates). */
  | { action: 'stale' }
  /** Our current session's peer parameters: set them. */
  | { action: 'accept' }
  /** Start session `number`; with `adopt`, the incoming parameters are its peer's. */
  | { action: 'new-session'; number: number; adopt: boolean; why: 'peer-restarted' | 'peer-replaced' };

/** The rule above, for the other peer's parameters with ufrag `ufrag`. */
export function decide(view: SessionView, ufrag: string): SessionDecision {
  if (view.remoteUfrag === ufrag) return { action: 'same' };
  const n = sessionOf(ufrag);
  if (n === undefined) {
    // Another client's ufrag: take it if we have none; new ones mean it restarted.
    if (view.remoteUfrag === undefined) return { action: 'accept' };
    return { action: 'new-session', number: Math.min(MAX_SESSION, Math.max(view.number, view.highest) + 1), adopt: true, why: 'peer-restarted' };
  }
  if (n < view.number) return { action: 'stale' };
  if (n > view.number) return { action: 'new-session', number: n, adopt: true, why: 'peer-restarted' };
  if (view.remoteUfrag === undefined) return { action: 'accept' };
  return { action: 'new-session', number: Math.min(MAX_SESSION, Math.max(view.number, view.highest) + 1), adopt: false, why: 'peer-replaced' };
}
