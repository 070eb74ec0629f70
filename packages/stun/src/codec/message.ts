import { StunDecodeError } from '../errors.js';
import { type AttributeDef, AttributeRegistry, stunRegistry } from './attributes.js';
import {
  AttrType,
  HEADER_LENGTH,
  MAGIC_COOKIE,
  type MessageClass,
  classOf,
  className,
  isComprehensionRequired,
  methodName,
  methodOf,
} from './constants.js';

/** One attribute as it sits in the message: its type and where its value is. */
export interface RawAttribute {
  readonly type: number;
  /** Offset of the value (after the 4-byte TLV header) in the message. */
  readonly offset: number;
  readonly length: number;
}

export interface DecodeOptions {
  /** Which attribute types are understood (default: STUN's). */
  registry?: AttributeRegistry;
  /**
   * Accept a buffer longer than the message (stream reads). Default false: a datagram
   * must hold exactly one message (RFC 8489 section 6.3).
   */
  allowTrailing?: boolean;
}

/**
 * A decoded STUN message: a view over the bytes it came from (nothing is copied; keep the
 * buffer alive and unchanged while you use the message). Typed attribute values are
 * decoded when asked for, so a malformed value in an attribute nobody reads costs nothing;
 * call `validate()` to decode every known attribute up front.
 */
export class StunMessage {
  /** The message bytes, exactly (header length + 20). */
  readonly raw: Buffer;
  readonly type: number;
  readonly method: number;
  readonly cls: MessageClass;
  /** 12 bytes; for an RFC 3489 message (no magic cookie) the 16 bytes after the length. */
  readonly transactionId: Buffer;
  /** True when the magic cookie is absent: a classic RFC 3489 message. */
  readonly rfc3489: boolean;
  /** Attributes that count, in order (those after MESSAGE-INTEGRITY are left out, RFC 8489 14.5). */
  readonly attributes: readonly RawAttribute[];
  /** Comprehension-required attribute types the registry does not know (answer 420). */
  readonly unknownRequired: readonly number[];
  /** How many attributes followed the integrity attributes and were ignored. */
  readonly ignoredAfterIntegrity: number;
  /** Offsets of the TLV starts of the integrity and fingerprint attributes, or -1. */
  readonly integrityAt: number;
  readonly integritySha256At: number;
  readonly fingerprintAt: number;
  readonly registry: AttributeRegistry;

  /** Use `decodeMessage`. */
  constructor(
    raw: Buffer,
    rfc3489: boolean,
    attributes: RawAttribute[],
    unknownRequired: number[],
    ignored: number,
    mi: number,
    mi256: number,
    fp: number,
    registry: AttributeRegistry,
  ) {
    this.raw = raw;
    this.type = raw.readUInt16BE(0);
    this.method = methodOf(this.type);
    this.cls = classOf(this.type);
    this.rfc3489 = rfc3489;
    this.transactionId = rfc3489 ? raw.subarray(4, 20) : raw.subarray(8, 20);
    this.attributes = attributes;
    this.unknownRequired = unknownRequired;
    this.ignoredAfterIntegrity = ignored;
    this.integrityAt = mi;
    this.integritySha256At = mi256;
    this.fingerprintAt = fp;
    this.registry = registry;
  }

  /** The 20-byte header (a view). */
  get header(): Buffer {
    return this.raw.subarray(0, HEADER_LENGTH);
  }

  /** The first attribute of this type, raw. */
  find(type: number): RawAttribute | undefined {
    const a = this.attributes;
    for (let i = 0; i < a.length; i++) if (a[i]!.type === type) return a[i];
    return undefined;
  }

  has(type: number): boolean {
    return this.find(type) !== undefined;
  }

  /** The value bytes of an attribute (a view). */
  value(attr: RawAttribute): Buffer {
    return this.raw.subarray(attr.offset, attr.offset + attr.length);
  }

  /** The first value of an attribute type, decoded; undefined if absent. Throws StunDecodeError if malformed. */
  get<T>(def: AttributeDef<T>): T | undefined {
    const a = this.find(def.type);
    if (!a) return undefined;
    return this.decodeWith(def, a);
  }

  /** Every value of an attribute type, in order (TURN repeats XOR-PEER-ADDRESS). */
  getAll<T>(def: AttributeDef<T>): T[] {
    const out: T[] = [];
    for (const a of this.attributes) if (a.type === def.type) out.push(this.decodeWith(def, a));
    return out;
  }

  /**
   * `decodeMessage` checked value lengths only against the registry's definitions; a
   * definition from elsewhere (another registry) gets its length checked here, so that
   * its `decode` never reads past the value.
   */
  private decodeWith<T>(def: AttributeDef<T>, a: RawAttribute): T {
    if (this.registry.get(a.type) !== def && !lengthFits(def, a.length)) {
      throw new StunDecodeError('BAD_ATTRIBUTE_LENGTH', `${def.name} cannot be ${a.length} bytes long`, a.offset - 4, a.type);
    }
    return def.decode(this.value(a), this.raw, a.offset);
  }

  /** Decodes every attribute the registry knows; throws the first StunDecodeError. */
  validate(): this {
    for (const a of this.attributes) {
      const def = this.registry.get(a.type);
      if (def) def.decode(this.value(a), this.raw, a.offset);
    }
    return this;
  }

  isRequest(): boolean {
    return this.cls === 0;
  }
  isIndication(): boolean {
    return this.cls === 1;
  }
  isSuccess(): boolean {
    return this.cls === 2;
  }
  isError(): boolean {
    return this.cls === 3;
  }

  /** A short description for logs: `Binding SuccessResponse tid=... [XOR-MAPPED-ADDRESS, ...]`. */
  toString(): string {
    const names = this.attributes.map((a) => this.registry.name(a.type));
    return `${methodName(this.method)} ${className(this.cls)} tid=${this.transactionId.toString('hex')} [${names.join(', ')}]`;
  }
}

/** True if a value of `length` bytes is allowed for the attribute definition. */
function lengthFits(def: AttributeDef<unknown>, length: number): boolean {
  const l = def.lengths;
  return !l || (length >= l.min && length <= l.max && (l.multipleOf === undefined || length % l.multipleOf === 0));
}

/**
 * True if the bytes look like a STUN message with the magic cookie (RFC 8489 section 5:
 * top two bits zero, cookie at offset 4, length a multiple of 4 that fits). Cheap: for
 * demultiplexing STUN from other traffic on one socket (RFC 7983).
 */
export function isStunMessage(buf: Uint8Array): boolean {
  if (buf.length < HEADER_LENGTH || (buf[0]! & 0xc0) !== 0) return false;
  if (buf[4] !== 0x21 || buf[5] !== 0x12 || buf[6] !== 0xa4 || buf[7] !== 0x42) return false;
  const len = (buf[2]! << 8) | buf[3]!;
  return (len & 3) === 0 && len + HEADER_LENGTH <= buf.length;
}

/**
 * Decodes one STUN message (RFC 8489 sections 5, 6.3 and 14). Throws StunDecodeError with
 * a stable code and offset for anything that breaks the wire format. Messages without the
 * magic cookie are taken as RFC 3489 messages (`rfc3489` is true).
 */
export function decodeMessage(buf: Buffer, options: DecodeOptions = {}): StunMessage {
  const registry = options.registry ?? stunRegistry;
  if (buf.length < HEADER_LENGTH) throw new StunDecodeError('NOT_STUN', `${buf.length} bytes is shorter than a STUN header`, 0);
  // RFC 8489 section 5: the most significant two bits of every STUN message are zero.
  if ((buf[0]! & 0xc0) !== 0) throw new StunDecodeError('NOT_STUN', 'the first two bits are not zero', 0);
  const len = buf.readUInt16BE(2);
  // RFC 8489 section 5: the length never counts a partial attribute; always a multiple of 4.
  if ((len & 3) !== 0) throw new StunDecodeError('BAD_LENGTH', `message length ${len} is not a multiple of 4`, 2);
  const end = HEADER_LENGTH + len;
  if (end > buf.length) throw new StunDecodeError('TRUNCATED', `header says ${end} bytes, only ${buf.length} arrived`, buf.length);
  if (end < buf.length && !options.allowTrailing) {
    throw new StunDecodeError('TRAILING_BYTES', `header says ${end} bytes, ${buf.length} arrived`, end);
  }
  const raw = end === buf.length ? buf : buf.subarray(0, end);
  const rfc3489 = raw.readUInt32BE(4) !== MAGIC_COOKIE;

  const attributes: RawAttribute[] = [];
  let unknown: number[] | undefined;
  let mi = -1;
  let mi256 = -1;
  let fp = -1;
  let ignored = 0;
  let pos = HEADER_LENGTH;
  while (pos < end) {
    if (pos + 4 > end) throw new StunDecodeError('ATTRIBUTE_OVERFLOW', 'attribute header runs past the end', pos);
    const type = raw.readUInt16BE(pos);
    const alen = raw.readUInt16BE(pos + 2);
    const vstart = pos + 4;
    // RFC 8489 section 14: values are padded to a multiple of 4; the padding is in the length.
    const next = vstart + ((alen + 3) & ~3);
    if (next > end) throw new StunDecodeError('ATTRIBUTE_OVERFLOW', `attribute of ${alen} bytes runs past the end`, pos, type);
    // RFC 8489 section 14.7: FINGERPRINT is always last.
    if (fp >= 0) throw new StunDecodeError('FINGERPRINT_NOT_LAST', 'an attribute follows FINGERPRINT', pos, type);
    const tlvStart = pos;
    pos = next;
    if (type === AttrType.FINGERPRINT) {
      fp = tlvStart;
    } else if (mi256 >= 0) {
      // RFC 8489 section 14.6: after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT counts.
      ignored++;
      continue;
    } else if (type === AttrType.MESSAGE_INTEGRITY_SHA256) {
      mi256 = tlvStart;
    } else if (mi >= 0) {
      // RFC 8489 section 14.5: after MESSAGE-INTEGRITY only MESSAGE-INTEGRITY-SHA256 and
      // FINGERPRINT count.
      ignored++;
      continue;
    } else if (type === AttrType.MESSAGE_INTEGRITY) {
      mi = tlvStart;
    }
    const def = registry.get(type);
    if (def) {
      if (!lengthFits(def, alen)) {
        throw new StunDecodeError('BAD_ATTRIBUTE_LENGTH', `${def.name} cannot be ${alen} bytes long`, tlvStart, type);
      }
    } else if (isComprehensionRequired(type)) {
      (unknown ??= []).push(type);
    }
    attributes.push({ type, offset: vstart, length: alen });
  }
  return new StunMessage(raw, rfc3489, attributes, unknown ?? [], ignored, mi, mi256, fp, registry);
}
