import { createHmac, randomFillSync } from 'node:crypto';
import { StunEncodeError } from '../errors.js';
import type { AttributeDef } from './attributes.js';
import { AttrType, FINGERPRINT_XOR, HEADER_LENGTH, MAGIC_COOKIE, messageType } from './constants.js';
import { crc32 } from './crc32.js';

export type IntegrityAlgorithm = 'sha1' | 'sha256' | 'both';

export interface IntegrityOptions {
  /** The HMAC key (see `shortTermKey` / `longTermKey`). */
  key: Buffer;
  /**
   * Which integrity attributes to add: MESSAGE-INTEGRITY (HMAC-SHA1, RFC 8489 14.5),
   * MESSAGE-INTEGRITY-SHA256 (14.6) or both. Default 'sha1'.
   */
  algorithm?: IntegrityAlgorithm;
  /** Length of MESSAGE-INTEGRITY-SHA256: 16 to 32 in steps of 4; default 32. */
  sha256Length?: number;
}

export interface EncodeOptions {
  integrity?: IntegrityOptions | undefined;
  /** Add FINGERPRINT (RFC 8489 section 14.7). */
  fingerprint?: boolean | undefined;
  /**
   * The byte that pads values to a multiple of 4 (RFC 8489 section 14: any value, ignored
   * by receivers). Default 0; RFC 5769's vectors use 0x20.
   */
  paddingByte?: number | undefined;
}

/** A fresh random 96-bit transaction id (RFC 8489 section 5: uniformly random). */
export function newTransactionId(): Buffer {
  return randomFillSync(Buffer.allocUnsafe(12));
}

interface Entry {
  def: AttributeDef<any> | undefined;
  type: number;
  value: unknown;
  size: number;
}

/**
 * Builds one STUN message into one buffer. Attributes are written in the order added;
 * MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT are added last, in that
 * order, by `encode()`.
 */
export class MessageBuilder {
  private readonly entries: Entry[] = [];
  private bodyLength = 0;
  readonly method: number;
  readonly cls: number;
  /** 12 bytes, or 16 for an RFC 3489 message (which then has no magic cookie). */
  readonly transactionId: Buffer;

  constructor(method: number, cls: number, transactionId: Buffer = newTransactionId()) {
    if (transactionId.length !== 12 && transactionId.length !== 16) {
      throw new StunEncodeError('BAD_TRANSACTION_ID', `a transaction id is 12 bytes (16 for RFC 3489), not ${transactionId.length}`);
    }
    if (!Number.isInteger(method) || method < 0 || method > 0xfff) throw new StunEncodeError('BAD_VALUE', `method 0x${method.toString(16)} does not fit 12 bits`);
    if (cls !== 0 && cls !== 1 && cls !== 2 && cls !== 3) throw new StunEncodeError('BAD_VALUE', `message class ${cls} is not 0-3`);
    this.method = method;
    this.cls = cls;
    this.transactionId = transactionId;
  }

  /** Adds a typed attribute. */
  add<T>(def: AttributeDef<T>, value: T): this {
    const size = def.size(value);
    this.entries.push({ def, type: def.type, value, size });
    this.bodyLength += 4 + ((size + 3) & ~3);
    return this;
  }

  /** Adds an attribute from raw value bytes (for types without a definition). */
  addRaw(type: number, value: Uint8Array): this {
    if (!Number.isInteger(type) || type < 0 || type > 0xffff) throw new StunEncodeError('BAD_VALUE', `attribute type ${type} is not 16 bits`);
    if (value.length > 0xffff) throw new StunEncodeError('VALUE_TOO_LONG', `attribute 0x${type.toString(16)} is longer than 65535 bytes`);
    this.entries.push({ def: undefined, type, value, size: value.length });
    this.bodyLength += 4 + ((value.length + 3) & ~3);
    return this;
  }

  /** Writes the message. */
  encode(options: EncodeOptions = {}): Buffer {
    const integ = options.integrity;
    const alg = integ ? (integ.algorithm ?? 'sha1') : undefined;
    const withSha1 = alg === 'sha1' || alg === 'both';
    const withSha256 = alg === 'sha256' || alg === 'both';
    const sha256Len = integ?.sha256Length ?? 32;
    if (withSha256 && (sha256Len < 16 || sha256Len > 32 || sha256Len % 4 !== 0)) {
      throw new StunEncodeError('BAD_VALUE', `MESSAGE-INTEGRITY-SHA256 length ${sha256Len} is not 16-32 in steps of 4`);
    }
    const miAt = HEADER_LENGTH + this.bodyLength;
    const mi256At = miAt + (withSha1 ? 24 : 0);
    const fpAt = mi256At + (withSha256 ? 4 + sha256Len : 0);
    const total = fpAt + (options.fingerprint ? 8 : 0);
    if (total - HEADER_LENGTH > 0xffff) throw new StunEncodeError('VALUE_TOO_LONG', `message body of ${total - HEADER_LENGTH} bytes exceeds 65535`);

    const out = Buffer.allocUnsafe(total);
    out.writeUInt16BE(messageType(this.method, this.cls), 0);
    if (this.transactionId.length === 16) {
      this.transactionId.copy(out, 4);
    } else {
      out.writeUInt32BE(MAGIC_COOKIE, 4);
      this.transactionId.copy(out, 8);
    }
    // The header must be complete before XOR addresses are written (they read it).
    out.writeUInt16BE(total - HEADER_LENGTH, 2);
    const padByte = options.paddingByte ?? 0;
    let at = HEADER_LENGTH;
    for (const e of this.entries) {
      out.writeUInt16BE(e.type, at);
      out.writeUInt16BE(e.size, at + 2);
      if (e.def) e.def.write(e.value, out, at + 4, out);
      else out.set(e.value as Uint8Array, at + 4);
      const padded = (e.size + 3) & ~3;
      if (padded !== e.size) out.fill(padByte, at + 4 + e.size, at + 4 + padded);
      at += 4 + padded;
    }
    if (withSha1) {
      // RFC 8489 section 14.5: the length field counts up to the end of MESSAGE-INTEGRITY.
      out.writeUInt16BE(miAt + 24 - HEADER_LENGTH, 2);
      const mac = createHmac('sha1', integ!.key).update(out.subarray(0, miAt)).digest();
      out.writeUInt16BE(AttrType.MESSAGE_INTEGRITY, miAt);
      out.writeUInt16BE(20, miAt + 2);
      mac.copy(out, miAt + 4);
    }
    if (withSha256) {
      // RFC 8489 section 14.6: likewise, up to the end of MESSAGE-INTEGRITY-SHA256.
      out.writeUInt16BE(mi256At + 4 + sha256Len - HEADER_LENGTH, 2);
      const mac = createHmac('sha256', integ!.key).update(out.subarray(0, mi256At)).digest();
      out.writeUInt16BE(AttrType.MESSAGE_INTEGRITY_SHA256, mi256At);
      out.writeUInt16BE(sha256Len, mi256At + 2);
      mac.copy(out, mi256At + 4, 0, sha256Len);
    }
    out.writeUInt16BE(total - HEADER_LENGTH, 2);
    if (options.fingerprint) {
      // RFC 8489 section 14.7: CRC-32 of everything before it, XOR 0x5354554e.
      out.writeUInt16BE(AttrType.FINGERPRINT, fpAt);
      out.writeUInt16BE(4, fpAt + 2);
      out.writeUInt32BE((crc32(out.subarray(0, fpAt)) ^ FINGERPRINT_XOR) >>> 0, fpAt + 4);
    }
    return out;
  }
}
