// Decoding is strict about the wire format (RFC 8489 sections 5, 6.3 and 14) and lenient
// only where the RFC says so. Every negative test checks the error class and its code.
import { describe, expect, it } from 'vitest';
import {
  Attr,
  type AttributeDef,
  AttributeRegistry,
  AttrType,
  MAGIC_COOKIE,
  Method,
  MessageClass,
  StunDecodeError,
  decodeMessage,
  isStunMessage,
  stunRegistry,
} from '../src/index.js';
import { thrown } from '../../../test/helpers/thrown.js';

const TID = Buffer.from('0102030405060708090a0b0c', 'hex');

/** One TLV: type, value and (to lie about it) the length written in the TLV header. */
type Tlv = [type: number, value: Buffer | number[] | string, declaredLength?: number];

/** Builds a message by hand, byte by byte, so that broken ones can be made too. */
function build(
  attrs: Tlv[],
  opts: { type?: number; cookie?: boolean; tid?: Buffer; length?: number } = {},
): Buffer {
  const parts: Buffer[] = [];
  for (const [type, v, declared] of attrs) {
    const value = typeof v === 'string' ? Buffer.from(v, 'utf8') : Buffer.from(v);
    const tl = Buffer.alloc(4);
    tl.writeUInt16BE(type, 0);
    tl.writeUInt16BE(declared ?? value.length, 2);
    parts.push(tl, value, Buffer.alloc((4 - (value.length % 4)) % 4));
  }
  const body = Buffer.concat(parts);
  const h = Buffer.alloc(20);
  h.writeUInt16BE(opts.type ?? 0x0001, 0);
  h.writeUInt16BE(opts.length ?? body.length, 2);
  if (opts.cookie === false) {
    (opts.tid ?? Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex')).copy(h, 4);
  } else {
    h.writeUInt32BE(MAGIC_COOKIE, 4);
    (opts.tid ?? TID).copy(h, 8);
  }
  return Buffer.concat([h, body]);
}

const decodeError = (fn: () => unknown): StunDecodeError => thrown(StunDecodeError, fn);

describe('message framing', () => {
  it('NOT_STUN: shorter than a header', () => {
    expect(decodeError(() => decodeMessage(Buffer.alloc(0)))).toMatchObject({ code: 'NOT_STUN', offset: 0 });
    expect(decodeError(() => decodeMessage(build([]).subarray(0, 19)))).toMatchObject({ code: 'NOT_STUN', offset: 0 });
  });

  it('NOT_STUN: either of the two top bits set', () => {
    for (const top of [0x80, 0x40, 0xc0]) {
      const b = build([]);
      b[0]! |= top;
      expect(decodeError(() => decodeMessage(b))).toMatchObject({ code: 'NOT_STUN', offset: 0 });
      expect(isStunMessage(b)).toBe(false);
    }
  });

  it('BAD_LENGTH: a length that is not a multiple of 4', () => {
    for (const len of [1, 2, 3, 5]) {
      const b = Buffer.concat([build([], { length: len }), Buffer.alloc(len)]);
      expect(decodeError(() => decodeMessage(b))).toMatchObject({ code: 'BAD_LENGTH', offset: 2 });
    }
  });

  it('TRUNCATED: fewer bytes than the header says', () => {
    const b = build([[AttrType.PRIORITY, [0, 0, 0, 1]]]);
    const short = b.subarray(0, b.length - 4);
    expect(decodeError(() => decodeMessage(short))).toMatchObject({ code: 'TRUNCATED', offset: short.length });
    expect(isStunMessage(short)).toBe(false);
  });

  it('TRAILING_BYTES: more bytes than the header says, unless allowTrailing', () => {
    const msg = build([[AttrType.PRIORITY, [0, 0, 0, 1]]]);
    const b = Buffer.concat([msg, Buffer.from([0xde, 0xad, 0xbe, 0xef])]);
    expect(decodeError(() => decodeMessage(b))).toMatchObject({ code: 'TRAILING_BYTES', offset: msg.length });
    const m = decodeMessage(b, { allowTrailing: true });
    expect(m.raw.length).toBe(msg.length);
    expect(m.raw.equals(msg)).toBe(true);
    expect(m.get(Attr.Priority)).toBe(1);
  });

  it('ATTRIBUTE_OVERFLOW: an attribute value that runs past the end', () => {
    // The TLV says 8 bytes but only 4 are left in the message.
    const b = build([[AttrType.SOFTWARE, 'abcd', 8]]);
    expect(decodeError(() => decodeMessage(b))).toMatchObject({ code: 'ATTRIBUTE_OVERFLOW', offset: 20, attribute: AttrType.SOFTWARE });
    // The same after a good attribute, with the largest length a TLV can claim.
    const c = build([[AttrType.PRIORITY, [0, 0, 0, 1]], [0x8fff, 'abcd', 0xffff]]);
    expect(decodeError(() => decodeMessage(c))).toMatchObject({ code: 'ATTRIBUTE_OVERFLOW', offset: 28, attribute: 0x8fff });
  });

  // A partial TLV header (fewer than 4 bytes left) cannot happen: the message length and
  // every padded attribute are multiples of 4, so the value is the only thing that can
  // overflow.

  it('an empty message (no attributes) decodes', () => {
    const m = decodeMessage(build([], { type: 0x0101 }));
    expect(m.method).toBe(Method.Binding);
    expect(m.cls).toBe(MessageClass.SuccessResponse);
    expect(m.attributes).toEqual([]);
    expect(m.transactionId.equals(TID)).toBe(true);
    expect(m.rfc3489).toBe(false);
  });
});

describe('FINGERPRINT placement', () => {
  const fp: Tlv = [AttrType.FINGERPRINT, [0, 0, 0, 0]];

  it('FINGERPRINT_NOT_LAST: an attribute after FINGERPRINT', () => {
    const b = build([fp, [AttrType.SOFTWARE, 'x']]);
    expect(decodeError(() => decodeMessage(b))).toMatchObject({ code: 'FINGERPRINT_NOT_LAST', offset: 28, attribute: AttrType.SOFTWARE });
  });

  it('FINGERPRINT_NOT_LAST: two FINGERPRINTs, or MESSAGE-INTEGRITY after FINGERPRINT', () => {
    expect(decodeError(() => decodeMessage(build([fp, fp])))).toMatchObject({ code: 'FINGERPRINT_NOT_LAST', attribute: AttrType.FINGERPRINT });
    const mi: Tlv = [AttrType.MESSAGE_INTEGRITY, Buffer.alloc(20)];
    expect(decodeError(() => decodeMessage(build([fp, mi])))).toMatchObject({
      code: 'FINGERPRINT_NOT_LAST',
      attribute: AttrType.MESSAGE_INTEGRITY,
    });
  });

  it('FINGERPRINT last is found', () => {
    const m = decodeMessage(build([[AttrType.SOFTWARE, 'x'], fp]));
    expect(m.fingerprintAt).toBe(28);
    expect(m.attributes.map((a) => a.type)).toEqual([AttrType.SOFTWARE, AttrType.FINGERPRINT]);
  });
});

describe('fixed-size attributes: BAD_ATTRIBUTE_LENGTH at decode', () => {
  const cases: Array<{ name: string; type: number; bad: number[]; good: number[] }> = [
    { name: 'MESSAGE-INTEGRITY', type: AttrType.MESSAGE_INTEGRITY, bad: [0, 16, 19, 21, 32], good: [20] },
    { name: 'MESSAGE-INTEGRITY-SHA256', type: AttrType.MESSAGE_INTEGRITY_SHA256, bad: [0, 12, 15, 17, 18, 30, 33, 36], good: [16, 20, 24, 28, 32] },
    { name: 'FINGERPRINT', type: AttrType.FINGERPRINT, bad: [0, 3, 5, 8], good: [4] },
    { name: 'USERHASH', type: AttrType.USERHASH, bad: [0, 20, 31, 33], good: [32] },
    { name: 'CHANGE-REQUEST', type: AttrType.CHANGE_REQUEST, bad: [0, 3, 5, 8], good: [4] },
    { name: 'PRIORITY', type: AttrType.PRIORITY, bad: [0, 2, 8], good: [4] },
    { name: 'ICE-CONTROLLED', type: AttrType.ICE_CONTROLLED, bad: [0, 4, 7, 9, 16], good: [8] },
    { name: 'ICE-CONTROLLING', type: AttrType.ICE_CONTROLLING, bad: [4, 16], good: [8] },
    { name: 'USE-CANDIDATE', type: AttrType.USE_CANDIDATE, bad: [1, 4], good: [0] },
    { name: 'USERNAME', type: AttrType.USERNAME, bad: [513, 600], good: [0, 1, 508, 512] },
    { name: 'REALM', type: AttrType.REALM, bad: [764, 1000], good: [763] },
    { name: 'NONCE', type: AttrType.NONCE, bad: [764], good: [763] },
    { name: 'SOFTWARE', type: AttrType.SOFTWARE, bad: [764], good: [763] },
    { name: 'ERROR-CODE', type: AttrType.ERROR_CODE, bad: [0, 3, 768], good: [4, 767] },
    { name: 'XOR-MAPPED-ADDRESS', type: AttrType.XOR_MAPPED_ADDRESS, bad: [0, 4, 7, 24], good: [] },
    { name: 'UNKNOWN-ATTRIBUTES', type: AttrType.UNKNOWN_ATTRIBUTES, bad: [1, 3], good: [0, 2, 6] },
    { name: 'RESPONSE-PORT', type: AttrType.RESPONSE_PORT, bad: [0, 1, 5, 8], good: [2, 4] },
  ];

  for (const c of cases) {
    it(`${c.name}: rejects ${c.bad.join(', ')}; accepts ${c.good.join(', ') || 'none of these'}`, () => {
      for (const len of c.bad) {
        // 'a' bytes: valid text, so the length is the only thing wrong.
        const b = build([[AttrType.PRIORITY, [0, 0, 0, 7]], [c.type, Buffer.alloc(len, 0x61)]]);
        const err = decodeError(() => decodeMessage(b));
        expect(err).toMatchObject({ code: 'BAD_ATTRIBUTE_LENGTH', offset: 28, attribute: c.type });
      }
      for (const len of c.good) {
        const value = Buffer.alloc(len, 0x61);
        if (c.type === AttrType.ERROR_CODE) value.set([0, 0, 4, 20]);
        const m = decodeMessage(build([[c.type, value]]));
        expect(m.attributes).toEqual([{ type: c.type, offset: 24, length: len }]);
        m.validate();
      }
    });
  }

  it('RESPONSE-PORT of 3 bytes is refused when read', () => {
    const m = decodeMessage(build([[AttrType.RESPONSE_PORT, [0x0d, 0x96, 0]]]));
    expect(decodeError(() => m.get(Attr.ResponsePort))).toMatchObject({ code: 'BAD_ATTRIBUTE_LENGTH', attribute: AttrType.RESPONSE_PORT });
    expect(decodeMessage(build([[AttrType.RESPONSE_PORT, [0x0d, 0x96]]])).get(Attr.ResponsePort)).toBe(3478);
  });
});

describe('address attributes', () => {
  it('BAD_ADDRESS_FAMILY for a family other than 0x01 and 0x02', () => {
    for (const fam of [0x00, 0x03, 0xff]) {
      const m = decodeMessage(build([[AttrType.XOR_MAPPED_ADDRESS, [0, fam, 0, 80, 1, 2, 3, 4]]]));
      expect(decodeError(() => m.get(Attr.XorMappedAddress))).toMatchObject({
        code: 'BAD_ADDRESS_FAMILY',
        offset: 24,
        attribute: AttrType.XOR_MAPPED_ADDRESS,
      });
      expect(decodeError(() => m.validate()).code).toBe('BAD_ADDRESS_FAMILY');
    }
  });

  it('IPv4 with a 20-byte value and IPv6 with an 8-byte value are BAD_ATTRIBUTE_LENGTH', () => {
    const v4long = [0, 1, 0, 80, ...new Array<number>(16).fill(1)];
    const m1 = decodeMessage(build([[AttrType.MAPPED_ADDRESS, v4long]]));
    expect(decodeError(() => m1.get(Attr.MappedAddress))).toMatchObject({ code: 'BAD_ATTRIBUTE_LENGTH', attribute: AttrType.MAPPED_ADDRESS });
    const m2 = decodeMessage(build([[AttrType.XOR_MAPPED_ADDRESS, [0, 2, 0, 80, 1, 2, 3, 4]]]));
    expect(decodeError(() => m2.get(Attr.XorMappedAddress))).toMatchObject({ code: 'BAD_ATTRIBUTE_LENGTH' });
    // 12 bytes fits the 8..20 range, but is right for no family.
    const m3 = decodeMessage(build([[AttrType.MAPPED_ADDRESS, [0, 1, 0, 80, 1, 2, 3, 4, 5, 6, 7, 8]]]));
    expect(decodeError(() => m3.get(Attr.MappedAddress))).toMatchObject({ code: 'BAD_ATTRIBUTE_LENGTH' });
  });

  it('reads MAPPED-ADDRESS and XOR-MAPPED-ADDRESS', () => {
    // RFC 5769 section 2.2: 192.0.2.1 port 32853.
    const m = decodeMessage(
      build([
        [AttrType.MAPPED_ADDRESS, [0, 1, 0x80, 0x55, 192, 0, 2, 1]],
        [AttrType.XOR_MAPPED_ADDRESS, [0, 1, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43]],
      ]),
    );
    expect(m.get(Attr.MappedAddress)).toEqual({ family: 'IPv4', address: '192.0.2.1', port: 32853 });
    expect(m.get(Attr.XorMappedAddress)).toEqual({ family: 'IPv4', address: '192.0.2.1', port: 32853 });
  });
});

describe('text and ERROR-CODE values', () => {
  it('BAD_UTF8 in text attributes', () => {
    const bad = [[0xff], [0xc0, 0x80] /* overlong NUL */, [0xed, 0xa0, 0x80] /* surrogate */, [0xe2, 0x82] /* cut short */];
    for (const bytes of bad) {
      for (const [type, def] of [
        [AttrType.SOFTWARE, Attr.Software],
        [AttrType.USERNAME, Attr.Username],
        [AttrType.REALM, Attr.Realm],
        [AttrType.NONCE, Attr.Nonce],
      ] as const) {
        const m = decodeMessage(build([[type, bytes]]));
        expect(decodeError(() => m.get(def))).toMatchObject({ code: 'BAD_UTF8', offset: 24, attribute: type });
      }
    }
  });

  it('BAD_UTF8 in the ERROR-CODE reason phrase', () => {
    const m = decodeMessage(build([[AttrType.ERROR_CODE, [0, 0, 4, 0, 0xff]]]));
    expect(decodeError(() => m.get(Attr.ErrorCode))).toMatchObject({ code: 'BAD_UTF8', attribute: AttrType.ERROR_CODE });
  });

  it('keeps a leading U+FEFF (it is not a byte order mark here)', () => {
    const m = decodeMessage(build([[AttrType.USERNAME, '\ufeffuser']]));
    expect(m.get(Attr.Username)).toBe('\ufeffuser');
  });

  it('ERROR-CODE: class 3-6 and number 0-99 only', () => {
    for (const [cls, num] of [
      [0, 0],
      [2, 99],
      [7, 0],
      [4, 100],
      [4, 255],
    ]) {
      const m = decodeMessage(build([[AttrType.ERROR_CODE, [0, 0, cls!, num!]]]));
      expect(decodeError(() => m.get(Attr.ErrorCode))).toMatchObject({ code: 'BAD_VALUE', offset: 24, attribute: AttrType.ERROR_CODE });
    }
    const ok = (cls: number, num: number, reason: string) =>
      decodeMessage(build([[AttrType.ERROR_CODE, Buffer.concat([Buffer.from([0, 0, cls, num]), Buffer.from(reason)])]])).get(Attr.ErrorCode);
    expect(ok(3, 0, 'Try Alternate')).toEqual({ code: 300, reason: 'Try Alternate' });
    expect(ok(6, 99, '')).toEqual({ code: 699, reason: '' });
    // The 21 reserved bits are ignored (RFC 8489 section 14.8).
    expect(ok(0xf8 | 4, 20, 'Unknown Attribute')).toEqual({ code: 420, reason: 'Unknown Attribute' });
  });
});

describe('RFC 3489 messages', () => {
  it('without the magic cookie: rfc3489, 16-byte transaction id', () => {
    const tid = Buffer.from('f0e0d0c0b0a090807060504030201000', 'hex');
    const b = build([[AttrType.MAPPED_ADDRESS, [0, 1, 0x0d, 0x96, 10, 0, 0, 1]]], { cookie: false, tid, type: 0x0101 });
    const m = decodeMessage(b);
    expect(m.rfc3489).toBe(true);
    expect(m.transactionId.length).toBe(16);
    expect(m.transactionId.equals(tid)).toBe(true);
    expect(m.get(Attr.MappedAddress)).toEqual({ family: 'IPv4', address: '10.0.0.1', port: 3478 });
    expect(isStunMessage(b)).toBe(false);
  });

  it('with the magic cookie: 12-byte transaction id', () => {
    const m = decodeMessage(build([]));
    expect(m.rfc3489).toBe(false);
    expect(m.transactionId.length).toBe(12);
    expect(isStunMessage(build([]))).toBe(true);
  });
});

describe('attribute lists', () => {
  it('keeps repeated attributes in order', () => {
    // XOR-PEER-ADDRESS repeats in TURN; XOR-MAPPED-ADDRESS stands in for it here.
    const m = decodeMessage(
      build([
        [AttrType.XOR_MAPPED_ADDRESS, [0, 1, 0xa1, 0x47, 0xe1, 0x12, 0xa6, 0x43]],
        [AttrType.SOFTWARE, 'between'],
        // 10.0.0.9 port 80, XORed with the cookie 21 12 a4 42 by hand.
        [AttrType.XOR_MAPPED_ADDRESS, [0, 1, 0x21 ^ 0, 0x12 ^ 80, 0x21 ^ 10, 0x12 ^ 0, 0xa4 ^ 0, 0x42 ^ 9]],
      ]),
    );
    expect(m.getAll(Attr.XorMappedAddress)).toEqual([
      { family: 'IPv4', address: '192.0.2.1', port: 32853 },
      { family: 'IPv4', address: '10.0.0.9', port: 80 },
    ]);
    expect(m.get(Attr.XorMappedAddress)).toEqual({ family: 'IPv4', address: '192.0.2.1', port: 32853 });
    expect(m.getAll(Attr.Priority)).toEqual([]);
    expect(m.get(Attr.Priority)).toBeUndefined();
  });

  it('keeps an unknown comprehension-optional attribute raw and does not report it', () => {
    const m = decodeMessage(build([[0xc001, [9, 8, 7]], [AttrType.SOFTWARE, 'x']]));
    expect(m.unknownRequired).toEqual([]);
    expect(m.attributes[0]).toEqual({ type: 0xc001, offset: 24, length: 3 });
    expect([...m.value(m.find(0xc001)!)]).toEqual([9, 8, 7]);
    expect(m.has(0xc001)).toBe(true);
    m.validate();
  });

  it('reports unknown comprehension-required attributes in order, and keeps them', () => {
    const m = decodeMessage(build([[0x7fff, [1]], [AttrType.SOFTWARE, 'x'], [0x0030, []], [0x8030, []]]));
    expect(m.unknownRequired).toEqual([0x7fff, 0x0030]);
    expect(m.attributes.map((a) => a.type)).toEqual([0x7fff, AttrType.SOFTWARE, 0x0030, 0x8030]);
  });

  it('ignores attributes after MESSAGE-INTEGRITY except MESSAGE-INTEGRITY-SHA256 and FINGERPRINT', () => {
    const m = decodeMessage(
      build([
        [AttrType.SOFTWARE, 'before'],
        [AttrType.MESSAGE_INTEGRITY, Buffer.alloc(20, 1)],
        [AttrType.SOFTWARE, 'after'],
        [0x7abc, [1, 2]], // unknown and comprehension-required, but ignored: not reported
        [AttrType.PRIORITY, [1, 2]], // a wrong length, but ignored: no error
        [AttrType.MESSAGE_INTEGRITY_SHA256, Buffer.alloc(32, 2)],
        [AttrType.FINGERPRINT, [0, 0, 0, 0]],
      ]),
    );
    expect(m.attributes.map((a) => a.type)).toEqual([
      AttrType.SOFTWARE,
      AttrType.MESSAGE_INTEGRITY,
      AttrType.MESSAGE_INTEGRITY_SHA256,
      AttrType.FINGERPRINT,
    ]);
    expect(m.ignoredAfterIntegrity).toBe(3);
    expect(m.unknownRequired).toEqual([]);
    expect(m.getAll(Attr.Software)).toEqual(['before']);
    expect(m.integrityAt).toBe(32);
    expect(m.integritySha256At).toBe(32 + 24 + 12 + 8 + 8);
    expect(m.fingerprintAt).toBe(m.integritySha256At + 36);
  });

  it('after MESSAGE-INTEGRITY-SHA256 only FINGERPRINT counts', () => {
    const m = decodeMessage(
      build([
        [AttrType.MESSAGE_INTEGRITY_SHA256, Buffer.alloc(16, 2)],
        [AttrType.MESSAGE_INTEGRITY, Buffer.alloc(20, 1)],
        [AttrType.MESSAGE_INTEGRITY_SHA256, Buffer.alloc(32, 3)],
        [AttrType.USERNAME, 'late'],
        [AttrType.FINGERPRINT, [0, 0, 0, 0]],
      ]),
    );
    expect(m.attributes.map((a) => a.type)).toEqual([AttrType.MESSAGE_INTEGRITY_SHA256, AttrType.FINGERPRINT]);
    expect(m.ignoredAfterIntegrity).toBe(3);
    expect(m.integrityAt).toBe(-1);
    expect(m.integritySha256At).toBe(20);
    expect(m.get(Attr.MessageIntegritySha256)!.length).toBe(16);
  });

  it('counts nothing as ignored without integrity', () => {
    const m = decodeMessage(build([[AttrType.SOFTWARE, 'a'], [AttrType.SOFTWARE, 'b']]));
    expect(m.ignoredAfterIntegrity).toBe(0);
    expect(m.integrityAt).toBe(-1);
    expect(m.integritySha256At).toBe(-1);
    expect(m.fingerprintAt).toBe(-1);
  });

  it('validate() returns the message, or throws the first malformed known attribute', () => {
    const good = decodeMessage(build([[AttrType.SOFTWARE, 'ok'], [0xc001, [0xff]]]));
    expect(good.validate()).toBe(good);
    const bad = decodeMessage(build([[AttrType.SOFTWARE, [0xff]], [AttrType.ERROR_CODE, [0, 0, 9, 0]]]));
    expect(decodeError(() => bad.validate())).toMatchObject({ code: 'BAD_UTF8', attribute: AttrType.SOFTWARE });
  });

  it('toString names the method, class and attributes', () => {
    const m = decodeMessage(build([[AttrType.SOFTWARE, 'x'], [0xc001, []]], { type: 0x0111 }));
    expect(m.toString()).toBe(`Binding ErrorResponse tid=${TID.toString('hex')} [SOFTWARE, 0xc001]`);
  });
});

describe('zero copy', () => {
  it('msg.raw, the transaction id and values are views of the input', () => {
    const src = build([
      [AttrType.USERHASH, Buffer.alloc(32, 7)],
      [AttrType.SOFTWARE, 'abc'],
    ]);
    // Put the message in the middle of a larger buffer, as a socket read might.
    const backing = Buffer.alloc(src.length + 64, 0xee);
    src.copy(backing, 40);
    const input = backing.subarray(40, 40 + src.length);
    const m = decodeMessage(input);
    expect(m.raw.buffer).toBe(backing.buffer);
    expect(m.raw.byteOffset).toBe(input.byteOffset);
    expect(m.raw.length).toBe(src.length);
    expect(m.transactionId.buffer).toBe(backing.buffer);
    expect(m.transactionId.byteOffset).toBe(input.byteOffset + 8);
    const hash = m.get(Attr.Userhash)!;
    expect(hash.buffer).toBe(backing.buffer);
    expect(hash.byteOffset).toBe(input.byteOffset + 24);
    const sw = m.value(m.find(AttrType.SOFTWARE)!);
    expect(sw.byteOffset).toBe(input.byteOffset + 24 + 32 + 4);
    // Writing the input shows through every view.
    input[24] = 0x99;
    input[9] = 0x42;
    expect(hash[0]).toBe(0x99);
    expect(m.transactionId[1]).toBe(0x42);
  });

  it('allowTrailing gives a view of just the message', () => {
    const src = build([[AttrType.SOFTWARE, 'abc']]);
    const input = Buffer.concat([src, Buffer.alloc(12, 0xaa)]);
    const m = decodeMessage(input, { allowTrailing: true });
    expect(m.raw.buffer).toBe(input.buffer);
    expect(m.raw.byteOffset).toBe(input.byteOffset);
    expect(m.raw.length).toBe(src.length);
  });
});

describe('AttributeRegistry', () => {
  // A stand-in for a TURN attribute: CHANNEL-NUMBER (RFC 8656 section 18.1), type 0x000C.
  const ChannelNumber: AttributeDef<number> = {
    type: 0x000c,
    name: 'CHANNEL-NUMBER',
    lengths: { min: 4, max: 4 },
    decode: (v) => v.readUInt16BE(0),
    size: () => 4,
    write(value, out, at) {
      out.writeUInt16BE(value, at);
      out.writeUInt16BE(0, at + 2);
    },
  };
  const turnRegistry = stunRegistry.extend([ChannelNumber]);

  it('extend adds types so they are no longer unknown', () => {
    const b = build([[0x000c, [0x40, 0x01, 0, 0]]]);
    expect(decodeMessage(b).unknownRequired).toEqual([0x000c]);
    const m = decodeMessage(b, { registry: turnRegistry });
    expect(m.unknownRequired).toEqual([]);
    expect(m.get(ChannelNumber)).toBe(0x4001);
    expect(m.toString()).toContain('[CHANNEL-NUMBER]');
  });

  it('extended types get their length checked', () => {
    const b = build([[0x000c, [0x40, 0x01]]]);
    expect(decodeMessage(b).unknownRequired).toEqual([0x000c]);
    expect(decodeError(() => decodeMessage(b, { registry: turnRegistry }))).toMatchObject({ code: 'BAD_ATTRIBUTE_LENGTH', attribute: 0x000c });
  });

  it('the base registry is unchanged and the extension keeps every base type', () => {
    expect(stunRegistry.has(0x000c)).toBe(false);
    expect(stunRegistry.name(0x000c)).toBe('0x000c');
    expect(turnRegistry.has(0x000c)).toBe(true);
    for (const t of stunRegistry.types()) expect(turnRegistry.get(t)).toBe(stunRegistry.get(t));
    expect(turnRegistry.types().length).toBe(stunRegistry.types().length + 1);
  });

  it('a definition given to extend wins over the base one, in the new registry only', () => {
    const Lax: AttributeDef<string> = { ...Attr.Software, name: 'LAX-SOFTWARE', lengths: undefined };
    const r = stunRegistry.extend([Lax]);
    expect(r.get(AttrType.SOFTWARE)).toBe(Lax);
    expect(stunRegistry.get(AttrType.SOFTWARE)).toBe(Attr.Software);
  });

  it('get() with a definition the registry does not hold still checks its length', () => {
    // Decoded with an empty registry nothing was length-checked; reading must not run
    // past the value (a RangeError) but report the bad length.
    const b = build([
      [AttrType.XOR_MAPPED_ADDRESS, [0, 1]],
      [AttrType.PRIORITY, [1, 2]],
      [0x000c, [0x40]],
    ]);
    const m = decodeMessage(b, { registry: new AttributeRegistry() });
    expect(m.unknownRequired).toEqual([AttrType.XOR_MAPPED_ADDRESS, AttrType.PRIORITY, 0x000c]);
    expect(decodeError(() => m.get(Attr.XorMappedAddress))).toMatchObject({ code: 'BAD_ATTRIBUTE_LENGTH', offset: 20 });
    expect(decodeError(() => m.getAll(Attr.Priority))).toMatchObject({ code: 'BAD_ATTRIBUTE_LENGTH', offset: 28 });
    expect(decodeError(() => decodeMessage(build([[0x000c, [0x40]]])).get(ChannelNumber))).toMatchObject({ code: 'BAD_ATTRIBUTE_LENGTH', attribute: 0x000c });
  });
});
