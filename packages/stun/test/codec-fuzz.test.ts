// Property tests for the decoder, which sees whatever the network sends: on any input it
// either returns a message or throws StunDecodeError, never anything else (no RangeError
// from reading past a value, no TypeError). Valid messages round-trip byte for byte.
// Every run is seeded, so a failure reproduces.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  Attr,
  type AttributeDef,
  AttributeRegistry,
  AttrType,
  type DecodeOptions,
  type IntegrityOptions,
  MAGIC_COOKIE,
  Method,
  MessageBuilder,
  StunDecodeError,
  type StunMessage,
  type TransportAddress,
  checkIntegrity,
  decodeMessage,
  formatIPv4,
  formatIPv6,
  stunRegistry,
  verifyFingerprint,
} from '../src/index.js';

const SEED = 8489;
const KEY = Buffer.from('fuzz key');
const ALL_DEFS: AttributeDef<unknown>[] = Object.values(Attr);

/** Rethrows anything that is not a StunDecodeError. */
function onlyDecodeErrors(fn: () => unknown): StunDecodeError | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (e instanceof StunDecodeError) return e;
    throw e;
  }
}

/**
 * Decodes and then reads the message every way there is. Throws (failing the property)
 * on anything but a StunDecodeError; returns the message or undefined.
 */
function exercise(bytes: Buffer, options?: DecodeOptions): StunMessage | undefined {
  let msg: StunMessage | undefined;
  if (onlyDecodeErrors(() => (msg = decodeMessage(bytes, options)))) return undefined;
  const m = msg!;
  // Shape: views stay inside the message, FINGERPRINT is last.
  expect(m.raw.length).toBe(20 + m.raw.readUInt16BE(2));
  for (const a of m.attributes) expect(a.offset + a.length).toBeLessThanOrEqual(m.raw.length);
  if (m.fingerprintAt >= 0) expect(m.attributes.at(-1)!.offset - 4).toBe(m.fingerprintAt);
  // These never throw at all.
  m.toString();
  checkIntegrity(m, KEY);
  verifyFingerprint(m);
  // Reading values throws StunDecodeError at most; validate() passing means every read
  // of a registry type passes.
  const invalid = onlyDecodeErrors(() => m.validate());
  for (const def of ALL_DEFS) {
    const e1 = onlyDecodeErrors(() => m.get(def));
    const e2 = onlyDecodeErrors(() => m.getAll(def));
    if (!invalid && m.registry.get(def.type) === def) expect([e1, e2]).toEqual([undefined, undefined]);
  }
  return m;
}

// ---------------------------------------------------------------------------------------
// Arbitraries

const bytes = (max: number) => fc.uint8Array({ maxLength: max }).map((u) => Buffer.from(u));
const u16 = fc.integer({ min: 0, max: 0xffff });
const port = u16;
const text = (maxChars: number) =>
  fc.string({ unit: 'binary', maxLength: maxChars }).filter((s) => Buffer.from(s, 'utf8').toString('utf8') === s);

const ipv4 = fc.uint8Array({ minLength: 4, maxLength: 4 }).map((b) => formatIPv4(b));
// Zero groups are common in real addresses; bias towards them to exercise '::'.
const ipv6 = fc
  .array(fc.oneof(fc.constant(0), fc.constant(0), u16), { minLength: 8, maxLength: 8 })
  .map((groups) => {
    const b = new Uint8Array(16);
    groups.forEach((g, i) => {
      b[2 * i] = g >> 8;
      b[2 * i + 1] = g & 0xff;
    });
    return formatIPv6(b);
  });
const address: fc.Arbitrary<TransportAddress> = fc.oneof(
  fc.record({ family: fc.constant('IPv4' as const), address: ipv4, port }),
  fc.record({ family: fc.constant('IPv6' as const), address: ipv6, port }),
);
const algorithm = fc.record({ algorithm: u16, parameters: bytes(9) });

/** One attribute to add: a typed value for a known definition, or raw bytes. */
type Entry = { def: AttributeDef<any>; value: unknown } | { type: number; raw: Buffer };
const e = <T>(def: AttributeDef<T>, arb: fc.Arbitrary<T>): fc.Arbitrary<Entry> => arb.map((value) => ({ def, value }));

const entry: fc.Arbitrary<Entry> = fc.oneof(
  e(Attr.XorMappedAddress, address),
  e(Attr.MappedAddress, address),
  e(Attr.OtherAddress, address),
  e(Attr.ResponseOrigin, address),
  e(Attr.AlternateServer, address),
  e(Attr.Username, text(60)),
  e(Attr.Realm, text(60)),
  e(Attr.Nonce, text(60)),
  e(Attr.Software, text(60)),
  e(Attr.AlternateDomain, fc.string({ maxLength: 40 })),
  e(Attr.ErrorCode, fc.record({ code: fc.integer({ min: 300, max: 699 }), reason: text(40) })),
  e(Attr.UnknownAttributes, fc.array(u16, { maxLength: 7 })),
  e(Attr.PasswordAlgorithms, fc.array(algorithm, { maxLength: 4 })),
  e(Attr.PasswordAlgorithm, algorithm),
  e(Attr.Userhash, fc.uint8Array({ minLength: 32, maxLength: 32 }).map((u) => Buffer.from(u))),
  e(Attr.ChangeRequest, fc.record({ changeIp: fc.boolean(), changePort: fc.boolean() })),
  e(Attr.ResponsePort, port),
  e(Attr.Padding, bytes(30)),
  e(Attr.Priority, fc.integer({ min: 0, max: 0xffffffff })),
  e(Attr.UseCandidate, fc.constant(true as const)),
  e(Attr.IceControlled, fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
  e(Attr.IceControlling, fc.bigInt({ min: 0n, max: 2n ** 64n - 1n })),
  // Unknown comprehension-optional types (nothing in the registry is at 0xC000 or above).
  fc.record({ type: fc.integer({ min: 0xc000, max: 0xffff }), raw: bytes(20) }),
);

const integrity: fc.Arbitrary<IntegrityOptions | undefined> = fc.option(
  fc.record({
    key: fc.uint8Array({ minLength: 1, maxLength: 40 }).map((u) => Buffer.from(u)),
    algorithm: fc.constantFrom('sha1' as const, 'sha256' as const, 'both' as const),
    sha256Length: fc.constantFrom(16, 20, 24, 28, 32),
  }),
  { nil: undefined },
);

interface Spec {
  method: number;
  cls: number;
  tid: Buffer;
  entries: Entry[];
  integrity: IntegrityOptions | undefined;
  fingerprint: boolean;
  paddingByte: number;
}

const spec: fc.Arbitrary<Spec> = fc.record({
  method: fc.oneof(fc.constantFrom(...Object.values(Method)), fc.integer({ min: 0, max: 0xfff })),
  cls: fc.integer({ min: 0, max: 3 }),
  tid: fc.oneof(
    fc.uint8Array({ minLength: 12, maxLength: 12 }),
    fc.uint8Array({ minLength: 16, maxLength: 16 }), // RFC 3489
  ).map((u) => Buffer.from(u)),
  entries: fc.array(entry, { maxLength: 8 }),
  integrity,
  fingerprint: fc.boolean(),
  paddingByte: fc.constantFrom(0, 0x20, 0xff),
});

function encodeSpec(s: Spec): Buffer {
  const b = new MessageBuilder(s.method, s.cls, s.tid);
  for (const en of s.entries) {
    if ('def' in en) b.add(en.def, en.value);
    else b.addRaw(en.type, en.raw);
  }
  return b.encode({ integrity: s.integrity, fingerprint: s.fingerprint, paddingByte: s.paddingByte });
}

const validMessage = spec.map(encodeSpec);

/** A STUN-looking header (cookie, matching length) over random attribute bytes. */
const stunLooking = fc
  .record({ type: fc.integer({ min: 0, max: 0x3fff }), tid: fc.uint8Array({ minLength: 12, maxLength: 12 }), body: bytes(160) })
  .map(({ type, tid, body }) => {
    const padded = Buffer.concat([body, Buffer.alloc((4 - (body.length % 4)) % 4)]);
    const h = Buffer.alloc(20);
    h.writeUInt16BE(type, 0);
    h.writeUInt16BE(padded.length, 2);
    h.writeUInt32BE(MAGIC_COOKIE, 4);
    h.set(tid, 8);
    return Buffer.concat([h, padded]);
  });

/** TLVs with types the decoder knows (and some it does not) and lengths that may lie. */
const KNOWN_TYPES = stunRegistry.types();
const tlvSoup = fc
  .array(
    fc.record({
      type: fc.oneof(fc.constantFrom(...KNOWN_TYPES), u16),
      value: bytes(40),
      lie: fc.oneof(fc.constant(0), fc.constant(0), fc.integer({ min: -8, max: 8 })),
    }),
    { maxLength: 8 },
  )
  .map((tlvs) => {
    const parts: Buffer[] = [];
    for (const t of tlvs) {
      const tl = Buffer.alloc(4);
      tl.writeUInt16BE(t.type, 0);
      tl.writeUInt16BE(Math.max(0, t.value.length + t.lie), 2);
      parts.push(tl, t.value, Buffer.alloc((4 - (t.value.length % 4)) % 4));
    }
    const body = Buffer.concat(parts);
    const h = Buffer.alloc(20);
    h.writeUInt16BE(0x0101, 0);
    h.writeUInt16BE(body.length, 2);
    h.writeUInt32BE(MAGIC_COOKIE, 4);
    return Buffer.concat([h, body]);
  });

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'length'; value: number }
  | { kind: 'attrLength'; which: number; value: number }
  | { kind: 'byte'; at: number; value: number }
  | { kind: 'append'; extra: Buffer };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: fc.nat(), bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('length' as const), value: u16 }),
  fc.record({ kind: fc.constant('attrLength' as const), which: fc.nat(), value: u16 }),
  fc.record({ kind: fc.constant('byte' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('append' as const), extra: bytes(12) }),
);

function mutate(original: Buffer, muts: Mutation[]): Buffer {
  let b = Buffer.from(original);
  for (const m of muts) {
    switch (m.kind) {
      case 'flip':
        if (b.length) b[m.at % b.length]! ^= 1 << m.bit;
        break;
      case 'truncate':
        b = b.subarray(0, m.at % (b.length + 1));
        break;
      case 'length':
        if (b.length >= 4) b.writeUInt16BE(m.value, 2);
        break;
      case 'attrLength': {
        // Walk the TLVs as written and change the length of one of them.
        const starts: number[] = [];
        for (let p = 20; p + 4 <= b.length; p += 4 + ((b.readUInt16BE(p + 2) + 3) & ~3)) starts.push(p);
        if (starts.length) b.writeUInt16BE(m.value, starts[m.which % starts.length]! + 2);
        break;
      }
      case 'byte':
        if (b.length) b[m.at % b.length] = m.value;
        break;
      case 'append':
        b = Buffer.concat([b, m.extra]);
        break;
    }
  }
  return b;
}

// ---------------------------------------------------------------------------------------

describe('decodeMessage on hostile input', () => {
  it('arbitrary bytes: a message or a StunDecodeError', () => {
    fc.assert(
      fc.property(bytes(120), (b) => {
        exercise(b);
        exercise(b, { allowTrailing: true });
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });

  it('a valid header over arbitrary attribute bytes', () => {
    let decoded = 0;
    fc.assert(
      fc.property(stunLooking, (b) => {
        if (exercise(b)) decoded++;
      }),
      { seed: SEED, numRuns: 2000 },
    );
    // The generator is only useful if it gets past the header checks often.
    expect(decoded).toBeGreaterThan(100);
  });

  it('known attribute types with random values and lying lengths', () => {
    let decoded = 0;
    let invalidValues = 0;
    fc.assert(
      fc.property(tlvSoup, (b) => {
        // A registry that knows nothing checks no lengths while decoding; reading with the
        // STUN definitions must still only throw StunDecodeError.
        exercise(b, { registry: new AttributeRegistry() });
        const m = exercise(b);
        if (m) {
          decoded++;
          if (onlyDecodeErrors(() => m.validate())) invalidValues++;
        }
      }),
      { seed: SEED, numRuns: 2000 },
    );
    expect(decoded).toBeGreaterThan(200);
    expect(invalidValues).toBeGreaterThan(20);
  });

  it('mutated valid messages: bit flips, truncation, length edits, appended bytes', () => {
    fc.assert(
      fc.property(validMessage, fc.array(mutation, { minLength: 1, maxLength: 4 }), (msg, muts) => {
        const b = mutate(msg, muts);
        exercise(b);
        exercise(b, { allowTrailing: true });
      }),
      { seed: SEED, numRuns: 1500 },
    );
  });

  it('every truncation of a valid message is refused with a StunDecodeError', () => {
    fc.assert(
      fc.property(validMessage, (msg) => {
        for (let n = 0; n < msg.length; n++) {
          const err = onlyDecodeErrors(() => decodeMessage(msg.subarray(0, n)));
          expect(err?.code).toBe(n < 20 ? 'NOT_STUN' : 'TRUNCATED');
        }
      }),
      { seed: SEED, numRuns: 100 },
    );
  });
});

describe('encode/decode round trip', () => {
  it('decodes what it encodes, values and integrity included, and re-encodes the same bytes', () => {
    fc.assert(
      fc.property(spec, (s) => {
        const bytes = encodeSpec(s);
        const msg = exercise(bytes)!;
        expect(msg).toBeDefined();
        msg.validate();
        expect([msg.method, msg.cls]).toEqual([s.method, s.cls]);
        expect(msg.transactionId.equals(s.tid)).toBe(true);
        expect(msg.rfc3489).toBe(s.tid.length === 16);
        expect(msg.unknownRequired).toEqual([]);
        expect(msg.ignoredAfterIntegrity).toBe(0);

        // The attributes come back in order with the values that went in.
        const trailer = new Set<number>([AttrType.MESSAGE_INTEGRITY, AttrType.MESSAGE_INTEGRITY_SHA256, AttrType.FINGERPRINT]);
        const body = msg.attributes.filter((a) => !trailer.has(a.type));
        const back: Entry[] = body.map((a) => {
          const def = stunRegistry.get(a.type);
          return def ? { def, value: def.decode(msg.value(a), msg.raw, a.offset) } : { type: a.type, raw: msg.value(a) };
        });
        expect(back).toEqual(s.entries);

        // Integrity and fingerprint check with the key used.
        const expected = !s.integrity ? 'absent' : s.integrity.algorithm === 'sha1' ? 'sha1' : 'sha256';
        expect(checkIntegrity(msg, s.integrity?.key ?? KEY)).toBe(expected);
        expect(verifyFingerprint(msg)).toBe(s.fingerprint);

        // Building again from the decoded values gives the same bytes.
        const again = encodeSpec({ ...s, tid: Buffer.from(msg.transactionId), entries: back });
        expect(again.equals(bytes)).toBe(true);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });
});
