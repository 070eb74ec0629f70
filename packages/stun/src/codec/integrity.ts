import { createHmac, timingSafeEqual } from 'node:crypto';
import { FINGERPRINT_XOR, HEADER_LENGTH } from './constants.js';
import { crc32 } from './crc32.js';
import type { StunMessage } from './message.js';

/**
 * RFC 8489 section 14.7: true if the message has a FINGERPRINT and it matches. A message
 * without one gives false; use `msg.fingerprintAt >= 0` to tell the two apart.
 */
export function verifyFingerprint(msg: StunMessage): boolean {
  const at = msg.fingerprintAt;
  if (at < 0) return false;
  const raw = msg.raw;
  if (raw.readUInt16BE(at + 2) !== 4) return false;
  return ((crc32(raw.subarray(0, at)) ^ FINGERPRINT_XOR) >>> 0) === raw.readUInt32BE(at + 4);
}

const headerScratch = Buffer.alloc(HEADER_LENGTH);

/**
 * HMAC over the message up to `at` with the header's length field set as if the message
 * ended at `end` (RFC 8489 sections 14.5 and 14.6). The message bytes are not modified.
 */
function macUpTo(msg: StunMessage, alg: 'sha1' | 'sha256', key: Buffer, at: number, end: number): Buffer {
  const raw = msg.raw;
  raw.copy(headerScratch, 0, 0, HEADER_LENGTH);
  headerScratch.writeUInt16BE(end - HEADER_LENGTH, 2);
  return createHmac(alg, key).update(headerScratch).update(raw.subarray(HEADER_LENGTH, at)).digest();
}

export type IntegrityResult = 'sha256' | 'sha1' | 'absent' | 'mismatch';

/**
 * Checks the message's integrity with `key` (RFC 8489 sections 9.1.4 and 9.2.4):
 * MESSAGE-INTEGRITY-SHA256 when present (it wins over MESSAGE-INTEGRITY), else
 * MESSAGE-INTEGRITY. The compare is constant-time. Returns which attribute matched,
 * 'absent' if there is none, or 'mismatch'.
 */
export function checkIntegrity(msg: StunMessage, key: Buffer): IntegrityResult {
  const raw = msg.raw;
  if (msg.integritySha256At >= 0) {
    const at = msg.integritySha256At;
    const len = raw.readUInt16BE(at + 2);
    if (len < 16 || len > 32 || len % 4 !== 0) return 'mismatch';
    const mac = macUpTo(msg, 'sha256', key, at, at + 4 + len);
    return timingSafeEqual(mac.subarray(0, len), raw.subarray(at + 4, at + 4 + len)) ? 'sha256' : 'mismatch';
  }
  if (msg.integrityAt >= 0) {
    const at = msg.integrityAt;
    if (raw.readUInt16BE(at + 2) !== 20) return 'mismatch';
    const mac = macUpTo(msg, 'sha1', key, at, at + 24);
    return timingSafeEqual(mac, raw.subarray(at + 4, at + 24)) ? 'sha1' : 'mismatch';
  }
  return 'absent';
}

/** True if the message carries an integrity attribute that matches `key`. */
export function verifyIntegrity(msg: StunMessage, key: Buffer): boolean {
  const r = checkIntegrity(msg, key);
  return r === 'sha1' || r === 'sha256';
}
