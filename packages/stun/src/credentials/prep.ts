import { StunCredentialError } from '../errors.js';
import * as T from './stringprep-tables.js';

function inTable(table: readonly number[], cp: number): boolean {
  // Binary search over flat [first, last] pairs.
  let lo = 0;
  let hi = table.length / 2 - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (cp < table[2 * mid]!) hi = mid - 1;
    else if (cp > table[2 * mid + 1]!) lo = mid + 1;
    else return true;
  }
  return false;
}

const PROHIBITED = [T.C12, T.C21_C22, T.C3, T.C4, T.C5, T.C6, T.C7, T.C8, T.C9];

/**
 * SASLprep (RFC 4013), the preparation RFC 5389 used for passwords and that RFC 5769's
 * long-term vector relies on: map B.1 to nothing and C.1.2 spaces to U+0020 (section 2.1),
 * NFKC (2.2), refuse prohibited output (2.3) and check bidi (2.4, RFC 3454 section 6).
 * Unassigned code points are allowed, as for queries (RFC 4013 section 2.5).
 */
export function saslprep(input: string): string {
  let mapped = '';
  for (const ch of input) {
    const cp = ch.codePointAt(0)!;
    if (inTable(T.B1, cp)) continue;
    mapped += inTable(T.C12, cp) ? ' ' : ch;
  }
  const norm = mapped.normalize('NFKC');
  let hasRandAL = false;
  let hasL = false;
  for (const ch of norm) {
    const cp = ch.codePointAt(0)!;
    for (const t of PROHIBITED) {
      if (inTable(t, cp)) {
        throw new StunCredentialError('SASLPREP_PROHIBITED', `SASLprep prohibits U+${cp.toString(16).toUpperCase().padStart(4, '0')}`);
      }
    }
    if (inTable(T.D1, cp)) hasRandAL = true;
    if (inTable(T.D2, cp)) hasL = true;
  }
  if (hasRandAL) {
    // RFC 3454 section 6: no LCat with RandALCat, and RandALCat first and last.
    const cps = [...norm].map((c) => c.codePointAt(0)!);
    if (hasL || !inTable(T.D1, cps[0]!) || !inTable(T.D1, cps[cps.length - 1]!)) {
      throw new StunCredentialError('SASLPREP_BIDI', 'SASLprep: right-to-left text must not mix with left-to-right and must start and end right-to-left');
    }
  }
  return norm;
}

// RFC 8264 section 9.11 (FreeformClass) refuses these; JS's Unicode data is recent, which
// RFC 8264 section 5.2 allows (PRECIS is defined against the current Unicode version).
const DISALLOWED = /[\p{Cc}\p{Cs}\p{Co}\p{Cn}\p{Default_Ignorable_Code_Point}\p{Noncharacter_Code_Point}]/u;
// RFC 8265 section 4.2.1 (OpaqueString additional mapping): non-ASCII spaces become U+0020.
const NON_ASCII_SPACE = /[\u00a0\u1680\u2000-\u200a\u202f\u205f\u3000]/gu;

/**
 * The OpaqueString profile (RFC 8265 section 4.2), which RFC 8489 section 9.2.2 applies to
 * the realm and password (and the username): non-ASCII spaces to U+0020, NFC, then the
 * FreeformClass check. No case mapping. An empty result is refused.
 */
export function opaqueString(input: string): string {
  const out = input.replace(NON_ASCII_SPACE, ' ').normalize('NFC');
  if (out.length === 0) throw new StunCredentialError('PRECIS_EMPTY', 'OpaqueString: the string is empty');
  const bad = DISALLOWED.exec(out);
  if (bad) {
    const cp = bad[0].codePointAt(0)!;
    throw new StunCredentialError('PRECIS_DISALLOWED', `OpaqueString disallows U+${cp.toString(16).toUpperCase().padStart(4, '0')}`);
  }
  return out;
}

export type Preparation = 'opaque' | 'saslprep' | 'none';

/** Applies a preparation; ASCII printable strings come out unchanged under every one. */
export function prepare(s: string, how: Preparation): string {
  if (how === 'none') return s;
  // Fast path: printable ASCII is fixed by both profiles.
  if (/^[\x20-\x7e]+$/.test(s)) return s;
  return how === 'saslprep' ? saslprep(s) : opaqueString(s);
}
