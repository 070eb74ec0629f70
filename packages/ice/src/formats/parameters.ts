import { randomBytes as cryptoRandomBytes } from 'node:crypto';
import { isIceChars } from './candidate-line.js';
import { CandidateLineError } from './errors.js';

/**
 * ICE session parameters: the username fragment and password an agent signals to its
 * peer (RFC 8445 section 5.3, RFC 8839 section 5.4), and whether it is an ICE-lite agent.
 */
export interface IceParameters {
  /** ice-ufrag: 4 to 256 ice-chars, at least 24 random bits. */
  ufrag: string;
  /** ice-pwd: 22 to 256 ice-chars, at least 128 random bits. */
  pwd: string;
  /** The agent is ICE-lite (RFC 8445 section 2.5; a=ice-lite). */
  lite?: boolean;
}

const ICE_CHAR_ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/**
 * Fresh parameters: an 8-character ufrag (48 random bits) and a 24-character password (144
 * random bits), from the 64 ice-chars so that every byte maps to one character uniformly.
 * `random` defaults to node:crypto; tests pass a seeded source.
 */
export function generateIceParameters(random: (n: number) => Uint8Array = cryptoRandomBytes): IceParameters {
  const pick = (n: number) => {
    const b = random(n);
    let s = '';
    for (let i = 0; i < n; i++) s += ICE_CHAR_ALPHABET[b[i]! & 63];
    return s;
  };
  return { ufrag: pick(8), pwd: pick(24) };
}

/**
 * Checks parameters received from a peer or given by the user (RFC 8839 section 5.4:
 * ice-ufrag = 4*256ice-char, ice-pwd = 22*256ice-char). Throws CandidateLineError with
 * code BAD_CREDENTIAL naming the field.
 */
export function validateIceParameters(p: { ufrag: string; pwd: string }): void {
  if (typeof p?.ufrag !== 'string' || p.ufrag.length < 4 || !isIceChars(p.ufrag, 256)) {
    throw new CandidateLineError('BAD_CREDENTIAL', 'ufrag', `ice-ufrag ${JSON.stringify(clip(p?.ufrag))} is not 4 to 256 ice-chars (letters, digits, "+", "/")`);
  }
  if (typeof p.pwd !== 'string' || p.pwd.length < 22 || !isIceChars(p.pwd, 256)) {
    // The password itself is never echoed into an error message.
    throw new CandidateLineError('BAD_CREDENTIAL', 'pwd', `ice-pwd (${typeof p.pwd === 'string' ? p.pwd.length : typeof p.pwd} characters) is not 22 to 256 ice-chars`);
  }
}

function clip(s: unknown): unknown {
  return typeof s === 'string' && s.length > 40 ? `${s.slice(0, 40)}...` : s;
}
