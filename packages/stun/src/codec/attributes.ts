import { StunDecodeError, StunEncodeError } from '../errors.js';
import { AttrType, MAGIC_COOKIE } from './constants.js';
import { type Family, type TransportAddress, formatIPv4, formatIPv6, parseIPv4Into, parseIPv6Into } from './ip.js';

/**
 * How one attribute type is read and written. `decode` gets a view of the value (no copy)
 * and the 20-byte message header (XOR addresses need the cookie and transaction id);
 * `offset` is where the value starts in the message, for error reports.
 */
export interface AttributeDef<T> {
  readonly type: number;
  readonly name: string;
  /** Value lengths the attribute may have on the wire; checked while decoding the message. */
  readonly lengths?: { min: number; max: number; multipleOf?: number } | undefined;
  decode(value: Buffer, header: Buffer, offset: number): T;
  /** Unpadded length of the encoded value. */
  size(value: T): number;
  /** Writes the value (unpadded) at `at`; `header` is the message's 20-byte header. */
  write(value: T, out: Buffer, at: number, header: Buffer): void;
}

/** The set of attribute types a decoder understands; TURN extends STUN's with its own. */
export class AttributeRegistry {
  private readonly defs = new Map<number, AttributeDef<unknown>>();

  constructor(defs: Iterable<AttributeDef<any>> = []) {
    for (const d of defs) this.defs.set(d.type, d);
  }

  /** A new registry holding these definitions and the new ones (which win on a clash). */
  extend(defs: Iterable<AttributeDef<any>>): AttributeRegistry {
    const r = new AttributeRegistry(this.defs.values());
    for (const d of defs) r.defs.set(d.type, d);
    return r;
  }

  get(type: number): AttributeDef<unknown> | undefined {
    return this.defs.get(type);
  }

  has(type: number): boolean {
    return this.defs.has(type);
  }

  name(type: number): string {
    return this.defs.get(type)?.name ?? `0x${type.toString(16).padStart(4, '0')}`;
  }

  types(): number[] {
    return [...this.defs.keys()];
  }
}

// ---------------------------------------------------------------------------------------
// Building blocks

// ignoreBOM: a leading U+FEFF is part of the value (the default would strip it, so a
// USERNAME starting with one would decode to a different string than was sent).
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * A UTF-8 text attribute. RFC 8489 bounds these by characters (fewer than 128) and says
 * a decoder may see up to 763 bytes; `maxDecodeBytes` and `maxEncodeChars` carry that.
 */
function textAttribute(type: number, name: string, maxDecodeBytes: number, maxEncodeBytes: number, maxChars?: number): AttributeDef<string> {
  return {
    type,
    name,
    lengths: { min: 0, max: maxDecodeBytes },
    decode(v, _h, offset) {
      try {
        return utf8.decode(v);
      } catch {
        throw new StunDecodeError('BAD_UTF8', `${name} is not valid UTF-8`, offset, type);
      }
    },
    size(value) {
      const n = Buffer.byteLength(value, 'utf8');
      if (n > maxEncodeBytes) throw new StunEncodeError('VALUE_TOO_LONG', `${name} is ${n} bytes; the limit is ${maxEncodeBytes}`);
      if (maxChars !== undefined && [...value].length >= maxChars) {
        throw new StunEncodeError('VALUE_TOO_LONG', `${name} must be fewer than ${maxChars} characters`);
      }
      return n;
    },
    write(value, out, at) {
      out.write(value, at, 'utf8');
    },
  };
}

function bytesAttribute(type: number, name: string, lengths: { min: number; max: number; multipleOf?: number }): AttributeDef<Buffer> {
  return {
    type,
    name,
    lengths,
    decode: (v) => v,
    size(value) {
      if (value.length < lengths.min || value.length > lengths.max || (lengths.multipleOf && value.length % lengths.multipleOf)) {
        throw new StunEncodeError('BAD_VALUE', `${name} cannot be ${value.length} bytes long`);
      }
      return value.length;
    },
    write(value, out, at) {
      value.copy(out, at);
    },
  };
}

/** A 32-bit unsigned integer (PRIORITY, FINGERPRINT, TURN's LIFETIME). */
export function u32Attribute(type: number, name: string): AttributeDef<number> {
  return {
    type,
    name,
    lengths: { min: 4, max: 4 },
    decode: (v) => v.readUInt32BE(0),
    size(value) {
      if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new StunEncodeError('BAD_VALUE', `${name} must be a 32-bit unsigned integer`);
      return 4;
    },
    write(value, out, at) {
      out.writeUInt32BE(value >>> 0, at);
    },
  };
}

function u64Attribute(type: number, name: string): AttributeDef<bigint> {
  return {
    type,
    name,
    lengths: { min: 8, max: 8 },
    decode: (v) => v.readBigUInt64BE(0),
    size(value) {
      if (typeof value !== 'bigint' || value < 0n || value > 0xffffffffffffffffn) throw new StunEncodeError('BAD_VALUE', `${name} must be a 64-bit unsigned integer`);
      return 8;
    },
    write(value, out, at) {
      out.writeBigUInt64BE(value, at);
    },
  };
}

function flagAttribute(type: number, name: string): AttributeDef<true> {
  return {
    type,
    name,
    lengths: { min: 0, max: 0 },
    decode: () => true,
    size: () => 0,
    write() {},
  };
}

/** Port 0 to 65535. */
function checkPort(port: number, name: string): void {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new StunEncodeError('BAD_VALUE', `${name}: bad port ${port}`);
}

const scratch16 = new Uint8Array(16);

/**
 * RFC 8489 section 14.1 (MAPPED-ADDRESS) and 14.2 (XOR-MAPPED-ADDRESS): one reserved
 * byte, the family (0x01 IPv4, 0x02 IPv6), the port and 4 or 16 address bytes. With `xor`,
 * the port is XORed with the cookie's top 16 bits and the address with the cookie (IPv4)
 * or the cookie and the transaction id (IPv6).
 */
export function addressAttribute(type: number, name: string, xor: boolean): AttributeDef<TransportAddress> {
  return {
    type,
    name,
    lengths: { min: 8, max: 20 },
    decode(v, header, offset) {
      const fam = v[1];
      if (fam === 0x01) {
        if (v.length !== 8) throw new StunDecodeError('BAD_ATTRIBUTE_LENGTH', `${name} with IPv4 must be 8 bytes, is ${v.length}`, offset, type);
      } else if (fam === 0x02) {
        if (v.length !== 20) throw new StunDecodeError('BAD_ATTRIBUTE_LENGTH', `${name} with IPv6 must be 20 bytes, is ${v.length}`, offset, type);
      } else {
        throw new StunDecodeError('BAD_ADDRESS_FAMILY', `${name} has unknown address family 0x${(fam ?? 0).toString(16)}`, offset, type);
      }
      let port = v.readUInt16BE(2);
      if (xor) port ^= MAGIC_COOKIE >>> 16;
      if (fam === 0x01) {
        if (!xor) return { family: 'IPv4', address: formatIPv4(v, 4), port };
        for (let i = 0; i < 4; i++) scratch16[i] = v[4 + i]! ^ header[4 + i]!;
        return { family: 'IPv4', address: formatIPv4(scratch16, 0), port };
      }
      if (!xor) return { family: 'IPv6', address: formatIPv6(v, 4), port };
      for (let i = 0; i < 16; i++) scratch16[i] = v[4 + i]! ^ header[4 + i]!;
      return { family: 'IPv6', address: formatIPv6(scratch16, 0), port };
    },
    size(value) {
      checkPort(value.port, name);
      return value.family === 'IPv6' ? 20 : 8;
    },
    write(value, out, at, header) {
      out[at] = 0;
      const v6 = value.family === 'IPv6';
      out[at + 1] = v6 ? 0x02 : 0x01;
      out.writeUInt16BE(xor ? value.port ^ (MAGIC_COOKIE >>> 16) : value.port, at + 2);
      const ok = v6 ? parseIPv6Into(value.address, out, at + 4) : parseIPv4Into(value.address, out, at + 4);
      if (!ok) throw new StunEncodeError('BAD_ADDRESS', `${name}: ${JSON.stringify(value.address)} is not an ${value.family} address`);
      if (xor) {
        const n = v6 ? 16 : 4;
        for (let i = 0; i < n; i++) out[at + 4 + i]! ^= header[4 + i]!;
      }
    },
  };
}

// ---------------------------------------------------------------------------------------
// RFC 8489 attributes

export interface ErrorCodeValue {
  code: number;
  reason: string;
}

/**
 * The error number and reason coding of ERROR-CODE (RFC 8489 section 14.8), which TURN's
 * ADDRESS-ERROR-CODE (RFC 8656 section 18.12) reuses after its own first two bytes: class
 * (3-6) in the low bits of byte 2, number (0-99) in byte 3, UTF-8 reason from byte 4.
 */
export function decodeErrorNumber(v: Buffer, offset: number, type: number, name: string): ErrorCodeValue {
  const cls = v[2]! & 0x07;
  const num = v[3]!;
  if (cls < 3 || cls > 6 || num > 99) {
    throw new StunDecodeError('BAD_VALUE', `${name} class ${cls} number ${num} is out of range`, offset, type);
  }
  let reason: string;
  try {
    reason = utf8.decode(v.subarray(4));
  } catch {
    throw new StunDecodeError('BAD_UTF8', `${name} reason is not valid UTF-8`, offset, type);
  }
  return { code: cls * 100 + num, reason };
}

/** The encoded size of an error number and reason; checks both (fewer than 128 characters). */
export function errorNumberSize(value: ErrorCodeValue, name: string): number {
  if (!Number.isInteger(value.code) || value.code < 300 || value.code > 699) {
    throw new StunEncodeError('BAD_VALUE', `${name} ${value.code} is outside 300-699`);
  }
  const n = Buffer.byteLength(value.reason, 'utf8');
  if (n > 509 || [...value.reason].length >= 128) throw new StunEncodeError('VALUE_TOO_LONG', `${name} reason must be fewer than 128 characters (509 bytes)`);
  return 4 + n;
}

/** Writes bytes 2 onwards (the caller writes the first two). */
export function writeErrorNumber(value: ErrorCodeValue, out: Buffer, at: number): void {
  out[at + 2] = Math.floor(value.code / 100);
  out[at + 3] = value.code % 100;
  out.write(value.reason, at + 4, 'utf8');
}

/** RFC 8489 section 14.8: 21 reserved bits, then the error number and reason. */
const ErrorCodeAttr: AttributeDef<ErrorCodeValue> = {
  type: AttrType.ERROR_CODE,
  name: 'ERROR-CODE',
  lengths: { min: 4, max: 4 + 763 },
  decode: (v, _h, offset) => decodeErrorNumber(v, offset, AttrType.ERROR_CODE, 'ERROR-CODE'),
  size: (value) => errorNumberSize(value, 'ERROR-CODE'),
  write(value, out, at) {
    out.writeUInt16BE(0, at);
    writeErrorNumber(value, out, at);
  },
};

/** RFC 8489 section 14.9: a list of 16-bit attribute types. */
const UnknownAttributesAttr: AttributeDef<number[]> = {
  type: AttrType.UNKNOWN_ATTRIBUTES,
  name: 'UNKNOWN-ATTRIBUTES',
  lengths: { min: 0, max: 65532, multipleOf: 2 },
  decode(v) {
    const out: number[] = [];
    for (let i = 0; i + 1 < v.length; i += 2) out.push(v.readUInt16BE(i));
    return out;
  },
  size(value) {
    for (const t of value) {
      if (!Number.isInteger(t) || t < 0 || t > 0xffff) throw new StunEncodeError('BAD_VALUE', `UNKNOWN-ATTRIBUTES: ${t} is not a 16-bit attribute type`);
    }
    return value.length * 2;
  },
  write(value, out, at) {
    for (let i = 0; i < value.length; i++) out.writeUInt16BE(value[i]!, at + 2 * i);
  },
};

export interface PasswordAlgorithmValue {
  algorithm: number;
  parameters: Buffer;
}

function readAlgorithm(v: Buffer, pos: number, offset: number, type: number): [PasswordAlgorithmValue, number] {
  if (pos + 4 > v.length) throw new StunDecodeError('BAD_ATTRIBUTE_LENGTH', 'password algorithm entry is truncated', offset + pos, type);
  const algorithm = v.readUInt16BE(pos);
  const len = v.readUInt16BE(pos + 2);
  const end = pos + 4 + len;
  if (end > v.length) throw new StunDecodeError('BAD_ATTRIBUTE_LENGTH', 'password algorithm parameters overflow the attribute', offset + pos, type);
  return [{ algorithm, parameters: v.subarray(pos + 4, end) }, pos + 4 + ((len + 3) & ~3)];
}

function algorithmSize(a: PasswordAlgorithmValue): number {
  if (!Number.isInteger(a.algorithm) || a.algorithm < 0 || a.algorithm > 0xffff) {
    throw new StunEncodeError('BAD_VALUE', `password algorithm ${a.algorithm} is not a 16-bit number`);
  }
  if (a.parameters.length > 0xffff) throw new StunEncodeError('VALUE_TOO_LONG', 'password algorithm parameters are longer than 65535 bytes');
  return 4 + ((a.parameters.length + 3) & ~3);
}

function writeAlgorithm(a: PasswordAlgorithmValue, out: Buffer, at: number): number {
  out.writeUInt16BE(a.algorithm, at);
  out.writeUInt16BE(a.parameters.length, at + 2);
  a.parameters.copy(out, at + 4);
  const padded = (a.parameters.length + 3) & ~3;
  out.fill(0, at + 4 + a.parameters.length, at + 4 + padded);
  return at + 4 + padded;
}

/** RFC 8489 section 14.11: a list of (algorithm, parameters) entries, each padded. */
const PasswordAlgorithmsAttr: AttributeDef<PasswordAlgorithmValue[]> = {
  type: AttrType.PASSWORD_ALGORITHMS,
  name: 'PASSWORD-ALGORITHMS',
  decode(v, _h, offset) {
    const out: PasswordAlgorithmValue[] = [];
    let pos = 0;
    while (pos < v.length) {
      const [a, next] = readAlgorithm(v, pos, offset, AttrType.PASSWORD_ALGORITHMS);
      out.push(a);
      pos = next;
    }
    return out;
  },
  size: (value) => value.reduce((n, a) => n + algorithmSize(a), 0),
  write(value, out, at) {
    for (const a of value) at = writeAlgorithm(a, out, at);
  },
};

/** RFC 8489 section 14.12: one (algorithm, parameters) entry. */
const PasswordAlgorithmAttr: AttributeDef<PasswordAlgorithmValue> = {
  type: AttrType.PASSWORD_ALGORITHM,
  name: 'PASSWORD-ALGORITHM',
  lengths: { min: 4, max: 65535 },
  decode(v, _h, offset) {
    const [a, next] = readAlgorithm(v, 0, offset, AttrType.PASSWORD_ALGORITHM);
    if (next < v.length) throw new StunDecodeError('BAD_ATTRIBUTE_LENGTH', 'PASSWORD-ALGORITHM holds more than one entry', offset, AttrType.PASSWORD_ALGORITHM);
    return a;
  },
  size: algorithmSize,
  write(value, out, at) {
    writeAlgorithm(value, out, at);
  },
};

// ---------------------------------------------------------------------------------------
// RFC 5780 attributes

export interface ChangeRequestValue {
  changeIp: boolean;
  changePort: boolean;
}

/** RFC 5780 section 7.2 (and RFC 3489 11.2.4): flag A (0x4) change IP, B (0x2) change port. */
const ChangeRequestAttr: AttributeDef<ChangeRequestValue> = {
  type: AttrType.CHANGE_REQUEST,
  name: 'CHANGE-REQUEST',
  lengths: { min: 4, max: 4 },
  decode(v) {
    const f = v.readUInt32BE(0);
    return { changeIp: (f & 0x4) !== 0, changePort: (f & 0x2) !== 0 };
  },
  size: () => 4,
  write(value, out, at) {
    out.writeUInt32BE((value.changeIp ? 0x4 : 0) | (value.changePort ? 0x2 : 0), at);
  },
};

/** RFC 5780 section 7.5: a 16-bit port followed by 2 bytes of padding (errata 2844: 0-65535). */
const ResponsePortAttr: AttributeDef<number> = {
  type: AttrType.RESPONSE_PORT,
  name: 'RESPONSE-PORT',
  // A value of 2 bytes (the port, padded by the TLV rules) is accepted from lax senders.
  lengths: { min: 2, max: 4 },
  decode: (v, _h, offset) => {
    if (v.length === 3) throw new StunDecodeError('BAD_ATTRIBUTE_LENGTH', 'RESPONSE-PORT must be 4 bytes', offset, AttrType.RESPONSE_PORT);
    return v.readUInt16BE(0);
  },
  size(value) {
    checkPort(value, 'RESPONSE-PORT');
    return 4;
  },
  write(value, out, at) {
    out.writeUInt16BE(value, at);
    out.writeUInt16BE(0, at + 2);
  },
};

// ---------------------------------------------------------------------------------------
// The definitions, exported by the name used in code.

export const Attr = {
  MappedAddress: addressAttribute(AttrType.MAPPED_ADDRESS, 'MAPPED-ADDRESS', false),
  XorMappedAddress: addressAttribute(AttrType.XOR_MAPPED_ADDRESS, 'XOR-MAPPED-ADDRESS', true),
  // RFC 8489 section 14.3: fewer than 509 bytes; RFC 5389 allowed fewer than 513, so a
  // decoder takes up to 512.
  Username: textAttribute(AttrType.USERNAME, 'USERNAME', 512, 508),
  // RFC 8489 section 14.4: SHA-256 of the username and realm, 32 bytes.
  Userhash: bytesAttribute(AttrType.USERHASH, 'USERHASH', { min: 32, max: 32 }),
  // RFC 8489 section 14.5: HMAC-SHA1, 20 bytes.
  MessageIntegrity: bytesAttribute(AttrType.MESSAGE_INTEGRITY, 'MESSAGE-INTEGRITY', { min: 20, max: 20 }),
  // RFC 8489 section 14.6: HMAC-SHA256, truncated to 16-32 bytes in steps of 4.
  MessageIntegritySha256: bytesAttribute(AttrType.MESSAGE_INTEGRITY_SHA256, 'MESSAGE-INTEGRITY-SHA256', { min: 16, max: 32, multipleOf: 4 }),
  Fingerprint: u32Attribute(AttrType.FINGERPRINT, 'FINGERPRINT'),
  ErrorCode: ErrorCodeAttr,
  // RFC 8489 sections 14.9, 14.10, 14.14: fewer than 128 characters (up to 763 bytes).
  Realm: textAttribute(AttrType.REALM, 'REALM', 763, 509, 128),
  Nonce: textAttribute(AttrType.NONCE, 'NONCE', 763, 509, 128),
  Software: textAttribute(AttrType.SOFTWARE, 'SOFTWARE', 763, 509, 128),
  UnknownAttributes: UnknownAttributesAttr,
  PasswordAlgorithms: PasswordAlgorithmsAttr,
  PasswordAlgorithm: PasswordAlgorithmAttr,
  AlternateServer: addressAttribute(AttrType.ALTERNATE_SERVER, 'ALTERNATE-SERVER', false),
  // RFC 8489 section 14.16: a domain name for certificate checks after a 300 over TLS.
  AlternateDomain: textAttribute(AttrType.ALTERNATE_DOMAIN, 'ALTERNATE-DOMAIN', 763, 255),
  // RFC 5780
  ChangeRequest: ChangeRequestAttr,
  ResponsePort: ResponsePortAttr,
  Padding: bytesAttribute(AttrType.PADDING, 'PADDING', { min: 0, max: 65535 }),
  ResponseOrigin: addressAttribute(AttrType.RESPONSE_ORIGIN, 'RESPONSE-ORIGIN', false),
  OtherAddress: addressAttribute(AttrType.OTHER_ADDRESS, 'OTHER-ADDRESS', false),
  // RFC 3489
  ResponseAddress: addressAttribute(AttrType.RESPONSE_ADDRESS, 'RESPONSE-ADDRESS', false),
  SourceAddress: addressAttribute(AttrType.SOURCE_ADDRESS, 'SOURCE-ADDRESS', false),
  ChangedAddress: addressAttribute(AttrType.CHANGED_ADDRESS, 'CHANGED-ADDRESS', false),
  ReflectedFrom: addressAttribute(AttrType.REFLECTED_FROM, 'REFLECTED-FROM', false),
  // RFC 8445 section 7.1.1 and 16.1: ICE
  Priority: u32Attribute(AttrType.PRIORITY, 'PRIORITY'),
  UseCandidate: flagAttribute(AttrType.USE_CANDIDATE, 'USE-CANDIDATE'),
  IceControlled: u64Attribute(AttrType.ICE_CONTROLLED, 'ICE-CONTROLLED'),
  IceControlling: u64Attribute(AttrType.ICE_CONTROLLING, 'ICE-CONTROLLING'),
} as const;

/**
 * A SOFTWARE value padded with spaces to a multiple of 4 bytes. RFC 8489 pads attributes
 * itself, but RFC 3489 peers do not know that: Vovida's stund refuses a SERVER-NAME
 * (0x8022) whose length is not a multiple of 4, and node-stun skips an attribute by its
 * unpadded length and loses its place. Trailing spaces keep the text the same to a reader.
 */
export function softwareText(text: string): string {
  const n = Buffer.byteLength(text, 'utf8');
  return n % 4 === 0 ? text : text + ' '.repeat(4 - (n % 4));
}

/** The attributes of RFC 8489, RFC 5780, RFC 3489 and ICE. */
export const stunRegistry = new AttributeRegistry(Object.values(Attr));

export type { Family, TransportAddress };
