// Encoding: every attribute round-trips, integrity and fingerprint are computed as RFC 8489
// sections 14.5-14.7 say (checked against an HMAC computed here by hand), and bad values
// are refused with a StunEncodeError and a stable code.
import { createHmac } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  Attr,
  type AttributeDef,
  AttributeRegistry,
  AttrType,
  Method,
  MessageBuilder,
  MessageClass,
  PasswordAlgorithm,
  StunDecodeError,
  StunEncodeError,
  checkIntegrity,
  classOf,
  crc32,
  decodeMessage,
  ipToBytes,
  messageType,
  methodOf,
  shortTermKey,
  verifyFingerprint,
  verifyIntegrity,
} from '../src/index.js';
import { crc32Portable } from '../src/codec/crc32.js';
import { thrown } from '../../../test/helpers/thrown.js';

const TID = Buffer.from('b7e7a701bc34d686fa87dfae', 'hex'); // RFC 5769's
const KEY = shortTermKey('VOkJxbRl1RmTxUk/WvJxBt');

function builder(cls: number = MessageClass.SuccessResponse, tid: Buffer = TID): MessageBuilder {
  return new MessageBuilder(Method.Binding, cls, tid);
}

/** Encodes one attribute, decodes it back and checks the value and the wire length. */
function roundTrip<T>(def: AttributeDef<T>, value: T, wireLength?: number, expected: T = value) {
  const bytes = builder().add(def, value).encode();
  const msg = decodeMessage(bytes).validate();
  expect(msg.attributes.map((a) => a.type)).toEqual([def.type]);
  if (wireLength !== undefined) expect(msg.attributes[0]!.length).toBe(wireLength);
  expect(msg.get(def)).toEqual(expected);
  return { bytes, msg };
}

const encodeError = (fn: () => unknown): StunEncodeError => thrown(StunEncodeError, fn);

describe('attribute round trips', () => {
  it('XOR-MAPPED-ADDRESS IPv4 (RFC 5769 section 2.2 bytes)', () => {
    const { bytes } = roundTrip(Attr.XorMappedAddress, { family: 'IPv4', address: '192.0.2.1', port: 32853 }, 8);
    expect(bytes.subarray(24, 32).toString('hex')).toBe('0001a147e112a643');
  });

  it('XOR-MAPPED-ADDRESS IPv6 (RFC 5769 section 2.3 bytes), canonical text out', () => {
    const { bytes } = roundTrip(
      Attr.XorMappedAddress,
      { family: 'IPv6', address: '2001:DB8:1234:5678:0011:2233:4455:6677', port: 32853 },
      20,
      { family: 'IPv6', address: '2001:db8:1234:5678:11:2233:4455:6677', port: 32853 },
    );
    expect(bytes.subarray(24, 44).toString('hex')).toBe('0002a1470113a9faa5d3f179bc25f4b5bed2b9d9');
  });

  it('MAPPED-ADDRESS, OTHER-ADDRESS, RESPONSE-ORIGIN, ALTERNATE-SERVER (not XORed)', () => {
    for (const def of [Attr.MappedAddress, Attr.OtherAddress, Attr.ResponseOrigin, Attr.AlternateServer]) {
      const { bytes } = roundTrip(def, { family: 'IPv4', address: '192.0.2.1', port: 3478 }, 8);
      expect(bytes.subarray(24, 32).toString('hex')).toBe('00010d96c0000201');
      roundTrip(def, { family: 'IPv6', address: '::ffff:10.1.2.3', port: 0 }, 20);
      roundTrip(def, { family: 'IPv6', address: 'fe80::1', port: 65535 }, 20);
    }
  });

  it('CHANGE-REQUEST, all four combinations', () => {
    for (const changeIp of [false, true]) {
      for (const changePort of [false, true]) {
        const { bytes } = roundTrip(Attr.ChangeRequest, { changeIp, changePort }, 4);
        expect(bytes.readUInt32BE(24)).toBe((changeIp ? 4 : 0) | (changePort ? 2 : 0));
      }
    }
  });

  it('RESPONSE-PORT: 4 bytes, port then zeros', () => {
    for (const port of [0, 3478, 65535]) {
      const { bytes } = roundTrip(Attr.ResponsePort, port, 4);
      expect(bytes.readUInt16BE(26)).toBe(0);
    }
  });

  it('PADDING of any length', () => {
    for (const n of [0, 1, 5, 8, 1500]) roundTrip(Attr.Padding, Buffer.alloc(n, 0x5a), n);
  });

  it('ERROR-CODE: class and number bytes, unicode reason', () => {
    const { bytes } = roundTrip(Attr.ErrorCode, { code: 420, reason: 'Unknown Attribute' }, 4 + 17);
    expect(bytes.subarray(24, 28).toString('hex')).toBe('00000414');
    roundTrip(Attr.ErrorCode, { code: 300, reason: '' }, 4);
    roundTrip(Attr.ErrorCode, { code: 699, reason: 'Fehlschlag — ошибка 失敗' });
  });

  it('UNKNOWN-ATTRIBUTES with an odd count (padded)', () => {
    const { bytes } = roundTrip(Attr.UnknownAttributes, [0x0030, 0x7fff, 0x0001], 6);
    expect(bytes.length).toBe(20 + 4 + 8);
    roundTrip(Attr.UnknownAttributes, [], 0);
  });

  it('PASSWORD-ALGORITHMS with parameters that need padding', () => {
    const value = [
      { algorithm: PasswordAlgorithm.SHA256, parameters: Buffer.alloc(0) },
      { algorithm: PasswordAlgorithm.MD5, parameters: Buffer.from([1]) },
      { algorithm: 0x0099, parameters: Buffer.from([1, 2, 3]) },
      { algorithm: 0xffff, parameters: Buffer.from([1, 2, 3, 4, 5]) },
    ];
    const { bytes } = roundTrip(Attr.PasswordAlgorithms, value, 4 + 8 + 8 + 12);
    // The padding inside the list is zero even when the message pads with another byte.
    const spaced = builder().add(Attr.PasswordAlgorithms, value).encode({ paddingByte: 0x20 });
    expect(spaced.equals(bytes)).toBe(true);
    expect(bytes.subarray(24).toString('hex')).toBe(
      ['00020000', '0001000101000000', '0099000301020300', 'ffff0005010203040500' + '0000'].join(''),
    );
  });

  it('PASSWORD-ALGORITHM', () => {
    roundTrip(Attr.PasswordAlgorithm, { algorithm: PasswordAlgorithm.SHA256, parameters: Buffer.alloc(0) }, 4);
    roundTrip(Attr.PasswordAlgorithm, { algorithm: 7, parameters: Buffer.from([9, 9]) }, 8);
  });

  it('USERHASH, MESSAGE-INTEGRITY and MESSAGE-INTEGRITY-SHA256 as plain bytes', () => {
    roundTrip(Attr.Userhash, Buffer.alloc(32, 0xab), 32);
    roundTrip(Attr.MessageIntegritySha256, Buffer.alloc(24, 1), 24);
  });

  it('PRIORITY, USE-CANDIDATE, ICE-CONTROLLING and ICE-CONTROLLED', () => {
    roundTrip(Attr.Priority, 0x6e0001ff, 4);
    roundTrip(Attr.Priority, 0xffffffff, 4);
    roundTrip(Attr.UseCandidate, true, 0);
    const { bytes } = roundTrip(Attr.IceControlling, 0xffffffffffffffffn, 8);
    expect(bytes.subarray(24, 32).toString('hex')).toBe('ffffffffffffffff');
    roundTrip(Attr.IceControlled, 0x932ff9b151263b36n, 8);
    roundTrip(Attr.IceControlled, 0n, 8);
  });

  it('text attributes, unicode included', () => {
    roundTrip(Attr.Software, 'natkit 0.1 ✓ 🚀 ソフト', Buffer.byteLength('natkit 0.1 ✓ 🚀 ソフト'));
    roundTrip(Attr.Username, 'マトリックス');
    roundTrip(Attr.Username, '');
    roundTrip(Attr.Realm, 'example.org');
    roundTrip(Attr.Nonce, 'obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA');
    roundTrip(Attr.AlternateDomain, 'stun.example.net');
    // A leading U+FEFF is text, not a byte order mark: it must survive.
    roundTrip(Attr.Username, '\ufeffuser');
    roundTrip(Attr.Software, '\ufeff');
  });

  it('unknown attributes added raw come back raw', () => {
    const bytes = builder().addRaw(0xc0de, Buffer.from([1, 2, 3])).encode();
    const m = decodeMessage(bytes);
    expect([...m.value(m.find(0xc0de)!)]).toEqual([1, 2, 3]);
  });

  it('keeps the order attributes were added in', () => {
    const bytes = builder()
      .add(Attr.Software, 'a')
      .add(Attr.XorMappedAddress, { family: 'IPv4', address: '1.2.3.4', port: 5 })
      .add(Attr.Software, 'b')
      .encode();
    const m = decodeMessage(bytes);
    expect(m.attributes.map((a) => a.type)).toEqual([AttrType.SOFTWARE, AttrType.XOR_MAPPED_ADDRESS, AttrType.SOFTWARE]);
    expect(m.getAll(Attr.Software)).toEqual(['a', 'b']);
  });
});

describe('header and padding', () => {
  it('writes the type, length, cookie and transaction id', () => {
    const bytes = new MessageBuilder(Method.Allocate, MessageClass.ErrorResponse, TID).add(Attr.Software, 'abcde').encode();
    expect(bytes.readUInt16BE(0)).toBe(0x0113);
    expect(bytes.readUInt16BE(2)).toBe(bytes.length - 20);
    expect(bytes.readUInt32BE(4)).toBe(0x2112a442);
    expect(bytes.subarray(8, 20).equals(TID)).toBe(true);
  });

  it('pads with zeros by default, or with paddingByte', () => {
    const b = builder().add(Attr.Software, 'abcde').add(Attr.Padding, Buffer.from([1]));
    const zero = b.encode();
    expect(zero.subarray(24 + 5, 24 + 8).toString('hex')).toBe('000000');
    expect(zero.subarray(36 + 1, 36 + 4).toString('hex')).toBe('000000');
    const spaces = b.encode({ paddingByte: 0x20 });
    expect(spaces.subarray(24 + 5, 24 + 8).toString('hex')).toBe('202020');
    expect(decodeMessage(spaces).get(Attr.Software)).toBe('abcde');
  });

  it('writes every byte (no uninitialised memory leaks into a message)', () => {
    const b = builder()
      .add(Attr.Software, 'x')
      .add(Attr.ErrorCode, { code: 401, reason: 'Unauthorized' })
      .add(Attr.ResponsePort, 1)
      .add(Attr.XorMappedAddress, { family: 'IPv6', address: '::1', port: 1 })
      .add(Attr.PasswordAlgorithms, [{ algorithm: 1, parameters: Buffer.from([1]) }]);
    const opts = { integrity: { key: KEY, algorithm: 'both' as const, sha256Length: 20 }, fingerprint: true };
    const first = b.encode(opts);
    // Dirty the pool Buffer.allocUnsafe draws from, then encode again.
    for (let i = 0; i < 64; i++) Buffer.allocUnsafe(first.length).fill(0xa5);
    expect(b.encode(opts).equals(first)).toBe(true);
  });

  it('a 16-byte transaction id makes an RFC 3489 message (no cookie)', () => {
    const tid = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    const bytes = new MessageBuilder(Method.Binding, MessageClass.Request, tid).add(Attr.ChangeRequest, { changeIp: true, changePort: false }).encode();
    expect(bytes.subarray(4, 20).equals(tid)).toBe(true);
    const m = decodeMessage(bytes);
    expect(m.rfc3489).toBe(true);
    expect(m.transactionId.equals(tid)).toBe(true);
    expect(m.get(Attr.ChangeRequest)).toEqual({ changeIp: true, changePort: false });
  });
});

describe('MESSAGE-INTEGRITY, MESSAGE-INTEGRITY-SHA256 and FINGERPRINT', () => {
  function signed(algorithm: 'sha1' | 'sha256' | 'both', sha256Length?: number, fingerprint = true): Buffer {
    return new MessageBuilder(Method.Binding, MessageClass.Request, TID)
      .add(Attr.Software, 'STUN test client')
      .add(Attr.Username, 'evtj:h6vY')
      .add(Attr.Priority, 0x6e0001ff)
      .encode({ integrity: { key: KEY, algorithm, sha256Length }, fingerprint });
  }

  /** The HMAC RFC 8489 asks for, computed here independently of the codec. */
  function expectedMac(bytes: Buffer, alg: 'sha1' | 'sha256', at: number, len: number): Buffer {
    const covered = Buffer.from(bytes.subarray(0, at));
    covered.writeUInt16BE(at + 4 + len - 20, 2); // length as if the message ended after it
    return createHmac(alg, KEY).update(covered).digest().subarray(0, len);
  }

  it("'sha1': MESSAGE-INTEGRITY then FINGERPRINT", () => {
    const bytes = signed('sha1');
    const m = decodeMessage(bytes);
    expect(m.attributes.slice(-2).map((a) => a.type)).toEqual([AttrType.MESSAGE_INTEGRITY, AttrType.FINGERPRINT]);
    expect(m.get(Attr.MessageIntegrity)!.equals(expectedMac(bytes, 'sha1', m.integrityAt, 20))).toBe(true);
    expect(checkIntegrity(m, KEY)).toBe('sha1');
    expect(verifyIntegrity(m, KEY)).toBe(true);
    expect(verifyFingerprint(m)).toBe(true);
  });

  it("'sha256': MESSAGE-INTEGRITY-SHA256 of 32 bytes by default", () => {
    const bytes = signed('sha256');
    const m = decodeMessage(bytes);
    expect(m.attributes.slice(-2).map((a) => a.type)).toEqual([AttrType.MESSAGE_INTEGRITY_SHA256, AttrType.FINGERPRINT]);
    expect(m.integrityAt).toBe(-1);
    const mac = m.get(Attr.MessageIntegritySha256)!;
    expect(mac.length).toBe(32);
    expect(mac.equals(expectedMac(bytes, 'sha256', m.integritySha256At, 32))).toBe(true);
    expect(checkIntegrity(m, KEY)).toBe('sha256');
  });

  it('sha256Length 16 to 32 in steps of 4 (truncated HMAC)', () => {
    for (const len of [16, 20, 24, 28, 32]) {
      const bytes = signed('sha256', len, false);
      const m = decodeMessage(bytes);
      const mac = m.get(Attr.MessageIntegritySha256)!;
      expect(mac.length).toBe(len);
      expect(bytes.length).toBe(m.integritySha256At + 4 + len);
      expect(mac.equals(expectedMac(bytes, 'sha256', m.integritySha256At, len))).toBe(true);
      expect(checkIntegrity(m, KEY)).toBe('sha256');
    }
  });

  it("'both': MESSAGE-INTEGRITY, then MESSAGE-INTEGRITY-SHA256 (covering it), then FINGERPRINT", () => {
    const bytes = signed('both', 24);
    const m = decodeMessage(bytes);
    expect(m.attributes.slice(-3).map((a) => a.type)).toEqual([
      AttrType.MESSAGE_INTEGRITY,
      AttrType.MESSAGE_INTEGRITY_SHA256,
      AttrType.FINGERPRINT,
    ]);
    expect(m.integritySha256At).toBe(m.integrityAt + 24);
    expect(m.fingerprintAt).toBe(m.integritySha256At + 28);
    expect(m.get(Attr.MessageIntegrity)!.equals(expectedMac(bytes, 'sha1', m.integrityAt, 20))).toBe(true);
    expect(m.get(Attr.MessageIntegritySha256)!.equals(expectedMac(bytes, 'sha256', m.integritySha256At, 24))).toBe(true);
    // SHA-256 wins when both are present.
    expect(checkIntegrity(m, KEY)).toBe('sha256');
    expect(verifyFingerprint(m)).toBe(true);
  });

  it("'both' with a broken MESSAGE-INTEGRITY-SHA256 is a mismatch even though MESSAGE-INTEGRITY matches", () => {
    const bytes = signed('both', 32, false);
    bytes[bytes.length - 1]! ^= 1;
    const m = decodeMessage(bytes);
    expect(checkIntegrity(m, KEY)).toBe('mismatch');
  });

  it("'mismatch' with a wrong key, 'absent' without integrity", () => {
    for (const alg of ['sha1', 'sha256', 'both'] as const) {
      const m = decodeMessage(signed(alg));
      expect(checkIntegrity(m, shortTermKey('wrong'))).toBe('mismatch');
      expect(checkIntegrity(m, Buffer.alloc(0))).toBe('mismatch');
      expect(verifyIntegrity(m, shortTermKey('wrong'))).toBe(false);
    }
    const plain = decodeMessage(builder().add(Attr.Software, 'x').encode({ fingerprint: true }));
    expect(checkIntegrity(plain, KEY)).toBe('absent');
    expect(verifyIntegrity(plain, KEY)).toBe(false);
    expect(verifyFingerprint(plain)).toBe(true);
    // Integrity attributes of lengths RFC 8489 sections 14.5 and 14.6 do not allow, read
    // through a registry that checks no lengths: a mismatch whatever the key, and never a
    // match for an empty MAC (which any HMAC truncated to 0 bytes would equal).
    for (const [type, lengths] of [
      [AttrType.MESSAGE_INTEGRITY_SHA256, [0, 4, 18, 36]],
      [AttrType.MESSAGE_INTEGRITY, [0, 16, 24]],
    ] as const) {
      for (const len of lengths) {
        const bytes = builder(MessageClass.Request).addRaw(type, Buffer.alloc(len)).encode();
        const m = decodeMessage(bytes, { registry: new AttributeRegistry() });
        expect(type === AttrType.MESSAGE_INTEGRITY ? m.integrityAt : m.integritySha256At).toBe(20);
        expect(checkIntegrity(m, KEY), `${type} of ${len} bytes`).toBe('mismatch');
        expect(checkIntegrity(m, Buffer.alloc(0)), `${type} of ${len} bytes, empty key`).toBe('mismatch');
      }
    }
  });

  it('no FINGERPRINT: verifyFingerprint is false and fingerprintAt is -1', () => {
    const m = decodeMessage(signed('sha1', undefined, false));
    expect(m.fingerprintAt).toBe(-1);
    expect(verifyFingerprint(m)).toBe(false);
  });

  it('a flipped bit anywhere before MESSAGE-INTEGRITY is never accepted', () => {
    const bytes = signed('sha1', undefined, false);
    const good = decodeMessage(bytes);
    const miAt = good.integrityAt;
    // TLV headers of the attributes before MESSAGE-INTEGRITY.
    const tlvHeaders = new Set<number>();
    for (const a of good.attributes) for (let i = a.offset - 4; i < a.offset; i++) tlvHeaders.add(i);
    let mismatches = 0;
    for (let bit = 0; bit < miAt * 8; bit++) {
      const byte = bit >> 3;
      const b = Buffer.from(bytes);
      b[byte]! ^= 0x80 >> (bit & 7);
      let m;
      try {
        m = decodeMessage(b);
      } catch (e) {
        expect(e).toBeInstanceOf(StunDecodeError);
        // Only the top bits, the length field and TLV headers can break the framing.
        expect(byte < 4 || tlvHeaders.has(byte)).toBe(true);
        continue;
      }
      const r = checkIntegrity(m, KEY);
      if (tlvHeaders.has(byte)) {
        expect(r === 'mismatch' || r === 'absent').toBe(true);
      } else {
        expect(r).toBe('mismatch');
        mismatches++;
      }
    }
    // Every bit of the type (but the top two), cookie, transaction id, values and padding
    // gave a plain mismatch.
    const before = good.attributes.filter((a) => a.offset < miAt).length;
    expect(mismatches).toBe(14 + (miAt - 4 - 4 * before) * 8);
  });

  it('attributes appended after MESSAGE-INTEGRITY do not break it, and are ignored', () => {
    const bytes = signed('sha1', undefined, false);
    const extra = Buffer.from('80220004' + '6c617465' + '77770000', 'hex'); // SOFTWARE "late", 0x7777 empty
    const b = Buffer.concat([bytes, extra]);
    b.writeUInt16BE(b.length - 20, 2);
    const m = decodeMessage(b);
    expect(m.ignoredAfterIntegrity).toBe(2);
    expect(m.unknownRequired).toEqual([]);
    expect(m.getAll(Attr.Software)).toEqual(['STUN test client']);
    expect(checkIntegrity(m, KEY)).toBe('sha1');
  });

  it('the same after MESSAGE-INTEGRITY-SHA256', () => {
    const bytes = signed('sha256', 16, false);
    const b = Buffer.concat([bytes, Buffer.from('000800140000000000000000000000000000000000000000', 'hex')]);
    b.writeUInt16BE(b.length - 20, 2);
    const m = decodeMessage(b);
    expect(m.ignoredAfterIntegrity).toBe(1);
    expect(m.integrityAt).toBe(-1);
    expect(checkIntegrity(m, KEY)).toBe('sha256');
  });

  it('a changed FINGERPRINT or message fails verifyFingerprint', () => {
    const bytes = signed('sha1');
    const b = Buffer.from(bytes);
    b[b.length - 1]! ^= 0x10;
    expect(verifyFingerprint(decodeMessage(b))).toBe(false);
    const c = Buffer.from(bytes);
    c[25]! ^= 0x01; // inside SOFTWARE
    expect(verifyFingerprint(decodeMessage(c))).toBe(false);
  });
});

describe('encode errors', () => {
  it('BAD_VALUE for ports outside 0-65535', () => {
    for (const port of [-1, 65536, 1.5, Number.NaN]) {
      for (const def of [Attr.XorMappedAddress, Attr.MappedAddress]) {
        expect(encodeError(() => builder().add(def, { family: 'IPv4', address: '1.2.3.4', port })).code).toBe('BAD_VALUE');
      }
      expect(encodeError(() => builder().add(Attr.ResponsePort, port)).code).toBe('BAD_VALUE');
    }
  });

  it('BAD_ADDRESS for addresses that do not parse or do not match the family', () => {
    const bad = [
      { family: 'IPv4', address: '1.2.3.256' },
      { family: 'IPv4', address: '01.2.3.4' },
      { family: 'IPv4', address: '::1' },
      { family: 'IPv6', address: '1.2.3.4' },
      { family: 'IPv6', address: '1::2::3' },
      { family: 'IPv4', address: 'localhost' },
    ] as const;
    for (const a of bad) {
      const b = builder().add(Attr.XorMappedAddress, { ...a, port: 1 });
      expect(encodeError(() => b.encode()).code).toBe('BAD_ADDRESS');
    }
    expect(encodeError(() => ipToBytes('nope')).code).toBe('BAD_ADDRESS');
  });

  it('VALUE_TOO_LONG for long SOFTWARE, REALM, NONCE and USERNAME', () => {
    expect(builder().add(Attr.Software, 'a'.repeat(127)).encode().length).toBe(20 + 4 + 128);
    expect(encodeError(() => builder().add(Attr.Software, 'a'.repeat(128))).code).toBe('VALUE_TOO_LONG');
    // Fewer than 128 characters (RFC 8489 section 14.9): 127 four-byte ones are 508 bytes.
    expect(decodeMessage(builder().add(Attr.Realm, '😀'.repeat(127)).encode()).get(Attr.Realm)).toBe('😀'.repeat(127));
    expect(encodeError(() => builder().add(Attr.Realm, '😀'.repeat(128))).code).toBe('VALUE_TOO_LONG');
    expect(encodeError(() => builder().add(Attr.Nonce, 'n'.repeat(200))).code).toBe('VALUE_TOO_LONG');
    builder().add(Attr.Username, 'u'.repeat(508));
    expect(encodeError(() => builder().add(Attr.Username, 'u'.repeat(509))).code).toBe('VALUE_TOO_LONG');
    expect(encodeError(() => builder().add(Attr.Username, 'é'.repeat(255))).code).toBe('VALUE_TOO_LONG');
  });

  it('BAD_TRANSACTION_ID for ids that are not 12 (or 16) bytes', () => {
    for (const n of [0, 11, 13, 15, 17, 20]) {
      expect(encodeError(() => new MessageBuilder(Method.Binding, MessageClass.Request, Buffer.alloc(n))).code).toBe('BAD_TRANSACTION_ID');
    }
  });

  it('BAD_VALUE for a method or class out of range', () => {
    expect(encodeError(() => new MessageBuilder(0x1000, MessageClass.Request, TID)).code).toBe('BAD_VALUE');
    expect(encodeError(() => new MessageBuilder(-1, MessageClass.Request, TID)).code).toBe('BAD_VALUE');
    expect(encodeError(() => new MessageBuilder(Method.Binding, 4, TID)).code).toBe('BAD_VALUE');
  });

  it('BAD_VALUE for a bad sha256Length', () => {
    for (const len of [0, 12, 18, 36, 64]) {
      const b = builder().add(Attr.Software, 'x');
      expect(encodeError(() => b.encode({ integrity: { key: KEY, algorithm: 'sha256', sha256Length: len } })).code).toBe('BAD_VALUE');
      expect(encodeError(() => b.encode({ integrity: { key: KEY, algorithm: 'both', sha256Length: len } })).code).toBe('BAD_VALUE');
    }
  });

  it('BAD_VALUE for ERROR-CODE outside 300-699', () => {
    for (const code of [0, 200, 299, 700, 999, 420.5]) {
      expect(encodeError(() => builder().add(Attr.ErrorCode, { code, reason: 'x' })).code).toBe('BAD_VALUE');
    }
    // The reason phrase: fewer than 128 characters (RFC 8489 section 14.8).
    builder().add(Attr.ErrorCode, { code: 400, reason: 'r'.repeat(127) });
    expect(encodeError(() => builder().add(Attr.ErrorCode, { code: 400, reason: 'r'.repeat(128) })).code).toBe('VALUE_TOO_LONG');
    expect(encodeError(() => builder().add(Attr.ErrorCode, { code: 400, reason: 'é'.repeat(255) })).code).toBe('VALUE_TOO_LONG');
  });

  it('BAD_VALUE for numbers out of range and fixed-size byte strings of the wrong size', () => {
    expect(encodeError(() => builder().add(Attr.Priority, -1)).code).toBe('BAD_VALUE');
    expect(encodeError(() => builder().add(Attr.Priority, 2 ** 32)).code).toBe('BAD_VALUE');
    expect(encodeError(() => builder().add(Attr.IceControlling, -1n)).code).toBe('BAD_VALUE');
    expect(encodeError(() => builder().add(Attr.IceControlled, 2n ** 64n)).code).toBe('BAD_VALUE');
    // A number where a bigint belongs (from untyped callers) is refused, not a TypeError.
    expect(encodeError(() => builder().add(Attr.IceControlled, 5 as unknown as bigint)).code).toBe('BAD_VALUE');
    expect(encodeError(() => builder().add(Attr.Userhash, Buffer.alloc(31))).code).toBe('BAD_VALUE');
    expect(encodeError(() => builder().add(Attr.MessageIntegrity, Buffer.alloc(21))).code).toBe('BAD_VALUE');
    expect(encodeError(() => builder().add(Attr.MessageIntegritySha256, Buffer.alloc(18))).code).toBe('BAD_VALUE');
  });

  it('BAD_VALUE for 16-bit fields inside values (not a RangeError)', () => {
    expect(encodeError(() => builder().add(Attr.UnknownAttributes, [1, 0x10000])).code).toBe('BAD_VALUE');
    expect(encodeError(() => builder().add(Attr.UnknownAttributes, [-1])).code).toBe('BAD_VALUE');
    expect(encodeError(() => builder().add(Attr.PasswordAlgorithm, { algorithm: 0x10000, parameters: Buffer.alloc(0) })).code).toBe('BAD_VALUE');
    expect(encodeError(() => builder().add(Attr.PasswordAlgorithms, [{ algorithm: -2, parameters: Buffer.alloc(0) }])).code).toBe('BAD_VALUE');
    expect(encodeError(() => builder().addRaw(0x10000, Buffer.alloc(0))).code).toBe('BAD_VALUE');
  });

  it('VALUE_TOO_LONG for a raw attribute or a message longer than 65535', () => {
    expect(encodeError(() => builder().addRaw(0x8fff, Buffer.alloc(65536))).code).toBe('VALUE_TOO_LONG');
    const b = builder().add(Attr.Padding, Buffer.alloc(65000)).add(Attr.Padding, Buffer.alloc(600));
    expect(encodeError(() => b.encode()).code).toBe('VALUE_TOO_LONG');
    // Right at the limit (65532, the largest multiple of 4) is fine; FINGERPRINT then
    // pushes it over.
    const edge = builder().addRaw(0x8fff, Buffer.alloc(65528));
    expect(edge.encode().length).toBe(20 + 65532);
    expect(encodeError(() => edge.encode({ fingerprint: true })).code).toBe('VALUE_TOO_LONG');
  });
});

describe('message type: method and class bits (RFC 8489 section 5)', () => {
  it('known types', () => {
    const known: Array<[number, number, number]> = [
      [Method.Binding, MessageClass.Request, 0x0001],
      [Method.Binding, MessageClass.Indication, 0x0011],
      [Method.Binding, MessageClass.SuccessResponse, 0x0101],
      [Method.Binding, MessageClass.ErrorResponse, 0x0111],
      [Method.Allocate, MessageClass.Request, 0x0003],
      [Method.Allocate, MessageClass.SuccessResponse, 0x0103],
      [Method.Allocate, MessageClass.ErrorResponse, 0x0113],
      [Method.Refresh, MessageClass.Request, 0x0004],
      [Method.Refresh, MessageClass.ErrorResponse, 0x0114],
      [Method.Send, MessageClass.Indication, 0x0016],
      [Method.Data, MessageClass.Indication, 0x0017],
      [Method.CreatePermission, MessageClass.Request, 0x0008],
      [Method.CreatePermission, MessageClass.SuccessResponse, 0x0108],
      [Method.ChannelBind, MessageClass.Request, 0x0009],
      [Method.ChannelBind, MessageClass.SuccessResponse, 0x0109],
      [Method.ChannelBind, MessageClass.ErrorResponse, 0x0119],
      [0xfff, MessageClass.ErrorResponse, 0x3fff],
      [0x080, MessageClass.Request, 0x0200], // GOOG-PING: M7 is bit 9
      [0x010, MessageClass.Request, 0x0020], // M4 is bit 5
    ];
    for (const [method, cls, type] of known) {
      expect(messageType(method, cls)).toBe(type);
      expect(methodOf(type)).toBe(method);
      expect(classOf(type)).toBe(cls);
    }
  });

  it('every method and class round-trips and keeps the top two bits zero', () => {
    for (let method = 0; method <= 0xfff; method++) {
      for (let cls = 0; cls < 4; cls++) {
        const t = messageType(method, cls);
        if (t > 0x3fff || methodOf(t) !== method || classOf(t) !== cls) {
          expect.unreachable(`method 0x${method.toString(16)} class ${cls} gave 0x${t.toString(16)}`);
        }
      }
    }
  });

  it('every method and class of every TURN method survives an encode/decode', () => {
    for (const method of Object.values(Method)) {
      for (const cls of Object.values(MessageClass)) {
        const m = decodeMessage(new MessageBuilder(method, cls, TID).encode());
        expect([m.method, m.cls]).toEqual([method, cls]);
      }
    }
  });
});

describe('crc32', () => {
  it('the check value of CRC-32/ISO-HDLC', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32Portable(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.alloc(0))).toBe(0);
    expect(crc32Portable(Buffer.alloc(0))).toBe(0);
  });

  it('crc32 equals crc32Portable on random data', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 3000 }), (data) => {
        expect(crc32(data)).toBe(crc32Portable(data));
        expect(crc32(data)).toBeGreaterThanOrEqual(0);
      }),
      { seed: 5769, numRuns: 300 },
    );
  });
});
