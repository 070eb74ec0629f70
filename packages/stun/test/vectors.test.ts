import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  Attr,
  AttrType,
  Method,
  MessageBuilder,
  MessageClass,
  checkIntegrity,
  decodeMessage,
  longTermKey,
  saslprep,
  shortTermKey,
  verifyFingerprint,
} from '../src/index.js';

interface Vector {
  name: string;
  section: string;
  hex: string;
  software?: string;
  username?: string;
  password: string;
  credential: 'short-term' | 'long-term';
  realm?: string;
  nonce?: string;
  priority?: number;
  'ice-controlled'?: string;
  'xor-mapped-address'?: { family: 'IPv4' | 'IPv6'; address: string; port: number };
  fingerprint: boolean;
}

const vectors: Vector[] = JSON.parse(
  readFileSync(new URL('../../../test/vectors/rfc5769.json', import.meta.url), 'utf8'),
).vectors;

function keyFor(v: Vector): Buffer {
  return v.credential === 'short-term' ? shortTermKey(v.password) : longTermKey(v.username!, v.realm!, v.password);
}

describe('RFC 5769 test vectors', () => {
  it('has the four vectors of sections 2.1-2.4', () => {
    expect(vectors.map((v) => v.section)).toEqual(['2.1', '2.2', '2.3', '2.4']);
  });

  for (const v of vectors) {
    describe(`${v.section} ${v.name}`, () => {
      const bytes = Buffer.from(v.hex, 'hex');
      const msg = decodeMessage(bytes);

      it('decodes as a Binding message with the magic cookie', () => {
        expect(msg.method).toBe(Method.Binding);
        expect(msg.rfc3489).toBe(false);
        expect(msg.cls).toBe(v.name.includes('response') ? MessageClass.SuccessResponse : MessageClass.Request);
        expect(msg.unknownRequired).toEqual([]);
        msg.validate();
      });

      it('checks MESSAGE-INTEGRITY with the right key and fails with a wrong one', () => {
        expect(checkIntegrity(msg, keyFor(v))).toBe('sha1');
        expect(checkIntegrity(msg, Buffer.from('wrong password'))).toBe('mismatch');
      });

      it(v.fingerprint ? 'has a FINGERPRINT that checks' : 'has no FINGERPRINT', () => {
        expect(msg.fingerprintAt >= 0).toBe(v.fingerprint);
        expect(verifyFingerprint(msg)).toBe(v.fingerprint);
      });

      it('carries the values the vector lists', () => {
        if (v.software !== undefined) expect(msg.get(Attr.Software)).toBe(v.software);
        if (v.username !== undefined) expect(msg.get(Attr.Username)).toBe(v.username);
        if (v.realm !== undefined) expect(msg.get(Attr.Realm)).toBe(v.realm);
        if (v.nonce !== undefined) expect(msg.get(Attr.Nonce)).toBe(v.nonce);
        if (v.priority !== undefined) expect(msg.get(Attr.Priority)).toBe(v.priority);
        if (v['ice-controlled'] !== undefined) {
          expect(msg.get(Attr.IceControlled)).toBe(BigInt(`0x${v['ice-controlled']}`));
        }
        if (v['xor-mapped-address']) expect(msg.get(Attr.XorMappedAddress)).toEqual(v['xor-mapped-address']);
      });

      it('re-encodes to the same bytes', () => {
        // Rebuild the message from its attributes with the same transaction id, integrity
        // and fingerprint. RFC 5769 pads with spaces (0x20) in 2.1-2.3 and zeros in 2.4.
        const padded = msg.attributes.find((a) => a.length % 4 !== 0);
        const paddingByte = padded ? msg.raw[padded.offset + padded.length] : 0;
        const b = new MessageBuilder(msg.method, msg.cls, Buffer.from(msg.transactionId));
        for (const a of msg.attributes) {
          if (a.type === AttrType.MESSAGE_INTEGRITY || a.type === AttrType.FINGERPRINT) continue;
          b.addRaw(a.type, msg.value(a));
        }
        const again = b.encode({ integrity: { key: keyFor(v) }, fingerprint: v.fingerprint, paddingByte });
        expect(again.length).toBe(bytes.length);
        const m2 = decodeMessage(again);
        expect(checkIntegrity(m2, keyFor(v))).toBe('sha1');
        expect(verifyFingerprint(m2)).toBe(v.fingerprint);
        expect(m2.attributes.map((a) => [a.type, a.length])).toEqual(msg.attributes.map((a) => [a.type, a.length]));
        expect(again.toString('hex')).toBe(v.hex);
      });
    });
  }

  it('2.4: the unprepared password of RFC 5769 gives the same key through SASLprep', () => {
    // RFC 5769 section 2.4 gives the password as "The<U+00AD>M<U+00AA>tr<U+2168>".
    expect(saslprep('The\u00adM\u00aatr\u2168')).toBe('TheMatrIX');
    const v = vectors.find((x) => x.section === '2.4')!;
    const key = longTermKey(v.username!, v.realm!, 'The\u00adM\u00aatr\u2168', 1, 'saslprep');
    expect(checkIntegrity(decodeMessage(Buffer.from(v.hex, 'hex')), key)).toBe('sha1');
  });
});
