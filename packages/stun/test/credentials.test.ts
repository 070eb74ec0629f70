// Credentials: string preparation (SASLprep, RFC 4013; OpaqueString, RFC 8265), keys
// (RFC 8489 sections 9.1.1, 9.2.2, 14.4), the nonce cookie and stateless nonces, password
// algorithm negotiation, and RFC 8489's Appendix B.1 SHA-256 sample.
import { createHash, createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  Attr,
  AttrType,
  MessageBuilder,
  MessageClass,
  Method,
  NONCE_COOKIE,
  NonceFactory,
  PasswordAlgorithm,
  SecurityFeature,
  StunCredentialError,
  StunDecodeError,
  checkIntegrity,
  choosePasswordAlgorithm,
  constantTimeEqual,
  decodeMessage,
  longTermKey,
  makeNonceCookie,
  nonceFeatures,
  offeredAlgorithms,
  opaqueString,
  prepare,
  saslprep,
  sameAlgorithms,
  shortTermKey,
  userhash,
} from '../src/index.js';
import { thrown } from '../../../test/helpers/thrown.js';

const md5 = (s: string) => createHash('md5').update(s, 'utf8').digest();
const sha256 = (s: string) => createHash('sha256').update(s, 'utf8').digest();

describe('saslprep (RFC 4013)', () => {
  it('the examples of RFC 4013 section 3', () => {
    expect(saslprep('I\u00adX')).toBe('IX'); // SOFT HYPHEN mapped to nothing
    expect(saslprep('user')).toBe('user');
    expect(saslprep('USER')).toBe('USER'); // case is preserved
    expect(saslprep('\u00aa')).toBe('a'); // NFKC
    expect(saslprep('\u2168')).toBe('IX'); // NFKC
    expect(thrown(StunCredentialError, () => saslprep('\u0007')).code).toBe('SASLPREP_PROHIBITED');
    expect(thrown(StunCredentialError, () => saslprep('\u06271')).code).toBe('SASLPREP_BIDI');
  });

  it('maps non-ASCII spaces to SPACE and zero-width characters to nothing', () => {
    expect(saslprep('a\u00a0b\u3000c')).toBe('a b c');
    expect(saslprep('a\u200bb\ufeffc\u200dd')).toBe('abcd');
  });

  it('prohibits controls, private use, non-characters and the other tables of RFC 3454 appendix C', () => {
    for (const s of ['a\u0000', '\u007f', 'x\u0085', '\ue000', '\ufdd0', '\u2ff0', '\u200e', '\u{e0001}', '\u{10fffd}']) {
      expect(thrown(StunCredentialError, () => saslprep(s)).code, s).toBe('SASLPREP_PROHIBITED');
    }
  });

  it('bidi: right-to-left text alone is fine; mixed with left-to-right, or not at both ends, is not', () => {
    expect(saslprep('\u0627\u0628')).toBe('\u0627\u0628');
    expect(saslprep('\u0627 1 \u0628')).toBe('\u0627 1 \u0628');
    expect(thrown(StunCredentialError, () => saslprep('\u0627a\u0628')).code).toBe('SASLPREP_BIDI');
    expect(thrown(StunCredentialError, () => saslprep('1\u0627')).code).toBe('SASLPREP_BIDI');
  });

  it("RFC 5769's long-term password", () => {
    expect(saslprep('The\u00adM\u00aatr\u2168')).toBe('TheMatrIX');
  });
});

describe('opaqueString (RFC 8265 section 4.2)', () => {
  it('maps non-ASCII spaces to U+0020', () => {
    expect(opaqueString('pass\u00a0word')).toBe('pass word');
    expect(opaqueString('a\u2000b\u205fc\u3000d')).toBe('a b c d');
  });

  it('normalises to NFC, but not NFKC, and keeps case', () => {
    expect(opaqueString('e\u0301')).toBe('\u00e9');
    expect(opaqueString('\u212b')).toBe('\u00c5'); // ANGSTROM SIGN -> A WITH RING
    expect(opaqueString('\ufb01')).toBe('\ufb01'); // the "fi" ligature stays
    expect(opaqueString('\u2168')).toBe('\u2168');
    expect(opaqueString('TheMatrIX')).toBe('TheMatrIX');
  });

  it('disallows controls, ignorables, private use and unassigned code points', () => {
    for (const s of ['a\u0007', '\u0000', 'x\u007f', 'I\u00adX', '\u200b', '\ue000', '\u0378', '\ufffe']) {
      expect(thrown(StunCredentialError, () => opaqueString(s)).code, JSON.stringify(s)).toBe('PRECIS_DISALLOWED');
    }
  });

  it('refuses the empty string', () => {
    expect(thrown(StunCredentialError, () => opaqueString('')).code).toBe('PRECIS_EMPTY');
    expect(thrown(StunCredentialError, () => prepare('', 'opaque')).code).toBe('PRECIS_EMPTY');
  });

  it('prepare: printable ASCII passes through every profile; none does nothing', () => {
    for (const how of ['opaque', 'saslprep', 'none'] as const) expect(prepare('evtj:h6vY ~!', how)).toBe('evtj:h6vY ~!');
    expect(prepare('I\u00adX', 'none')).toBe('I\u00adX');
    expect(prepare('I\u00adX', 'saslprep')).toBe('IX');
    expect(thrown(StunCredentialError, () => prepare('I\u00adX', 'opaque')).code).toBe('PRECIS_DISALLOWED');
  });
});

describe('keys', () => {
  it('shortTermKey is OpaqueString(password) in UTF-8', () => {
    expect(shortTermKey('VOkJxbRl1RmTxUk/WvJxBt').equals(Buffer.from('VOkJxbRl1RmTxUk/WvJxBt'))).toBe(true);
    expect(shortTermKey('p\u00a0\u00e9').equals(Buffer.from('p \u00e9', 'utf8'))).toBe(true);
    expect(shortTermKey('e\u0301').equals(Buffer.from('\u00e9', 'utf8'))).toBe(true);
    expect(thrown(StunCredentialError, () => shortTermKey('')).code).toBe('PRECIS_EMPTY');
  });

  it('longTermKey MD5 is MD5(username:realm:password)', () => {
    expect(longTermKey('user', 'realm', 'pass').equals(md5('user:realm:pass'))).toBe(true);
    expect(longTermKey('user', 'realm', 'pass', PasswordAlgorithm.MD5).length).toBe(16);
    // Realm and password are prepared, the username is taken as it is.
    expect(longTermKey('u\u00a0', 'r\u00a0', 'p\u00a0').equals(md5('u\u00a0:r :p '))).toBe(true);
  });

  it('longTermKey SHA-256 is SHA-256(username:realm:password)', () => {
    const k = longTermKey('user', 'realm', 'pass', PasswordAlgorithm.SHA256);
    expect(k.length).toBe(32);
    expect(k.equals(sha256('user:realm:pass'))).toBe(true);
  });

  it('longTermKey with SASLprep for RFC 5389 peers', () => {
    expect(longTermKey('u', 'r', 'The\u00adM\u00aatr\u2168', PasswordAlgorithm.MD5, 'saslprep').equals(md5('u:r:TheMatrIX'))).toBe(true);
  });

  it('an unsupported algorithm is an UNSUPPORTED_ALGORITHM error', () => {
    for (const alg of [0, 3, 0xffff]) {
      expect(thrown(StunCredentialError, () => longTermKey('u', 'r', 'p', alg)).code).toBe('UNSUPPORTED_ALGORITHM');
    }
  });

  it('userhash is SHA-256(username:realm), both prepared', () => {
    expect(userhash('user', 'realm').equals(sha256('user:realm'))).toBe(true);
    expect(userhash('u\u00a0', 'e\u0301').equals(sha256('u :\u00e9'))).toBe(true);
    expect(thrown(StunCredentialError, () => userhash('u\u0007', 'r')).code).toBe('PRECIS_DISALLOWED');
  });

  it('constantTimeEqual', () => {
    expect(constantTimeEqual(Buffer.from('abc'), Buffer.from('abc'))).toBe(true);
    expect(constantTimeEqual(Buffer.from('abc'), Buffer.from('abd'))).toBe(false);
    expect(constantTimeEqual(Buffer.from('abc'), Buffer.from('abcd'))).toBe(false);
    expect(constantTimeEqual(Buffer.alloc(0), Buffer.alloc(0))).toBe(true);
  });
});

describe('nonce cookie (RFC 8489 section 9.2)', () => {
  it('bit 0 is the most significant bit of the 24-bit feature set', () => {
    expect(NONCE_COOKIE).toBe('obMatJos2');
    expect(makeNonceCookie(SecurityFeature.PasswordAlgorithms, 'x')).toBe('obMatJos2gAAAx');
    expect(makeNonceCookie(SecurityFeature.PasswordAlgorithms, 'x').startsWith('obMatJos2gAAA')).toBe(true);
    expect(makeNonceCookie(SecurityFeature.UsernameAnonymity, '')).toBe('obMatJos2QAAA');
    expect(makeNonceCookie(SecurityFeature.PasswordAlgorithms | SecurityFeature.UsernameAnonymity, 'x').startsWith('obMatJos2wAAA')).toBe(true);
    expect(makeNonceCookie(0, 'abc')).toBe('obMatJos2AAAAabc');
  });

  it('nonceFeatures reads back what makeNonceCookie wrote', () => {
    for (const f of [0, SecurityFeature.PasswordAlgorithms, SecurityFeature.UsernameAnonymity, 0xc00000, 0x000001, 0xffffff, 0x123456]) {
      expect(nonceFeatures(makeNonceCookie(f, 'opaque'))).toBe(f);
      expect(nonceFeatures(makeNonceCookie(f, ''))).toBe(f);
    }
  });

  it('nonceFeatures is undefined without a cookie', () => {
    expect(nonceFeatures('f//499k954d6OL34oL9FSTvy64sA')).toBeUndefined();
    expect(nonceFeatures('obMatJos2')).toBeUndefined();
    expect(nonceFeatures('obMatJos2gAA')).toBeUndefined();
    expect(nonceFeatures('obMatJos2!!!!')).toBeUndefined();
    expect(nonceFeatures('')).toBeUndefined();
  });
});

describe('NonceFactory (stateless nonces)', () => {
  const secret = Buffer.alloc(32, 7);
  const T0 = 1_700_000_000_000; // a whole second, in ms

  it("a fresh nonce is 'ok' for the client it was made for", () => {
    const f = new NonceFactory({ secret, lifetimeMs: 60_000 });
    const n = f.make('192.0.2.1:3478', T0);
    expect(n.startsWith(NONCE_COOKIE)).toBe(true);
    expect(f.check(n, '192.0.2.1:3478', T0)).toBe('ok');
    expect(f.check(n, '192.0.2.1:3478', T0 + 59_999)).toBe('ok');
    // The same inputs give the same nonce (no hidden randomness or clock).
    expect(f.make('192.0.2.1:3478', T0)).toBe(n);
  });

  it("'stale' once the lifetime has passed", () => {
    const f = new NonceFactory({ secret, lifetimeMs: 60_000 });
    const n = f.make('c', T0);
    expect(f.check(n, 'c', T0 + 60_000)).toBe('stale');
    expect(f.check(n, 'c', T0 + 3_600_000)).toBe('stale');
  });

  it("'bad' for another client, a changed nonce, or a made-up one", () => {
    const f = new NonceFactory({ secret, lifetimeMs: 60_000 });
    const n = f.make('192.0.2.1:3478', T0);
    expect(f.check(n, '192.0.2.1:3479', T0)).toBe('bad');
    // Expired and for another client: the tag fails first, so 'bad', not 'stale'.
    expect(f.check(n, 'other', T0 + 120_000)).toBe('bad');
    const i = n.length - 5;
    const changed = n.slice(0, i) + (n[i] === 'A' ? 'B' : 'A') + n.slice(i + 1);
    expect(f.check(changed, '192.0.2.1:3478', T0)).toBe('bad');
    expect(f.check(n.slice(0, -1), '192.0.2.1:3478', T0)).toBe('bad');
    expect(f.check(n + 'A', '192.0.2.1:3478', T0)).toBe('bad');
    expect(f.check('obMatJos2AAAA' + 'A'.repeat(22), '192.0.2.1:3478', T0)).toBe('bad');
    expect(f.check('', '192.0.2.1:3478', T0)).toBe('bad');
    // A nonce from a factory with another secret.
    const other = new NonceFactory({ secret: Buffer.alloc(32, 8), lifetimeMs: 60_000 });
    expect(f.check(other.make('192.0.2.1:3478', T0), '192.0.2.1:3478', T0)).toBe('bad');
  });

  it("only the exact string make() wrote is 'ok', not other spellings of the same bytes", () => {
    const f = new NonceFactory({ secret, lifetimeMs: 60_000 });
    const n = f.make('c', T0);
    const text = n.slice(NONCE_COOKIE.length + 4);
    // The last of 22 base64 characters carries 2 bits and 4 unused ones: 15 other
    // characters decode to the same 16 bytes.
    const same = [...'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'].filter(
      (ch) => ch !== n.at(-1) && Buffer.from(text.slice(0, -1) + ch, 'base64url').equals(Buffer.from(text, 'base64url')),
    );
    expect(same.length).toBe(15);
    for (const ch of same) expect(f.check(n.slice(0, -1) + ch, 'c', T0)).toBe('bad');
    // '+' and '/' decode like '-' and '_'.
    let found = 0;
    for (let i = 0; i < 50; i++) {
      const m = f.make(`client${i}`, T0);
      const swapped = m.replace(/-/g, '+').replace(/_/g, '/');
      if (swapped === m) continue;
      found++;
      expect(f.check(m, `client${i}`, T0)).toBe('ok');
      expect(f.check(swapped, `client${i}`, T0)).toBe('bad');
    }
    expect(found).toBeGreaterThan(10);
  });

  it("rotate() makes every earlier nonce 'bad'", () => {
    const f = new NonceFactory({ secret, lifetimeMs: 60_000 });
    const n = f.make('c', T0);
    f.rotate(Buffer.alloc(32, 9));
    expect(f.check(n, 'c', T0)).toBe('bad');
    expect(f.check(f.make('c', T0), 'c', T0)).toBe('ok');
  });

  it('carries its security features in the cookie and insists on them', () => {
    const features = SecurityFeature.PasswordAlgorithms | SecurityFeature.UsernameAnonymity;
    const f = new NonceFactory({ secret, lifetimeMs: 60_000, features });
    const n = f.make('c', T0);
    expect(n.startsWith('obMatJos2wAAA')).toBe(true);
    expect(nonceFeatures(n)).toBe(features);
    expect(f.check(n, 'c', T0)).toBe('ok');
    // Same secret, other features: the feature bits were tampered with.
    const plain = new NonceFactory({ secret, lifetimeMs: 60_000 });
    expect(plain.check(n, 'c', T0)).toBe('bad');
    expect(f.check(plain.make('c', T0), 'c', T0)).toBe('bad');
  });
});

describe('password algorithms (RFC 8489 section 9.2.4)', () => {
  const a = (algorithm: number, parameters: number[] = []) => ({ algorithm, parameters: Buffer.from(parameters) });

  it("the server's first supported algorithm", () => {
    expect(choosePasswordAlgorithm([a(PasswordAlgorithm.SHA256), a(PasswordAlgorithm.MD5)])).toBe(PasswordAlgorithm.SHA256);
    expect(choosePasswordAlgorithm([a(PasswordAlgorithm.MD5), a(PasswordAlgorithm.SHA256)])).toBe(PasswordAlgorithm.MD5);
    expect(choosePasswordAlgorithm([a(0x99), a(0), a(PasswordAlgorithm.SHA256)])).toBe(PasswordAlgorithm.SHA256);
  });

  it('MD5 when none are offered; undefined when only unknown ones are', () => {
    expect(choosePasswordAlgorithm(undefined)).toBe(PasswordAlgorithm.MD5);
    expect(choosePasswordAlgorithm([])).toBe(PasswordAlgorithm.MD5);
    expect(choosePasswordAlgorithm([a(0x99), a(3)])).toBeUndefined();
  });

  it('offeredAlgorithms: SHA-256 then MD5 by default', () => {
    expect(offeredAlgorithms()).toEqual([a(PasswordAlgorithm.SHA256), a(PasswordAlgorithm.MD5)]);
    expect(offeredAlgorithms([PasswordAlgorithm.MD5])).toEqual([a(PasswordAlgorithm.MD5)]);
  });

  it('sameAlgorithms compares order and parameters', () => {
    const x = [a(2), a(1, [1, 2])];
    expect(sameAlgorithms(x, [a(2), a(1, [1, 2])])).toBe(true);
    expect(sameAlgorithms([], [])).toBe(true);
    expect(sameAlgorithms(x, [a(1, [1, 2]), a(2)])).toBe(false);
    expect(sameAlgorithms(x, [a(2), a(1, [1, 3])])).toBe(false);
    expect(sameAlgorithms(x, [a(2), a(1)])).toBe(false);
    expect(sameAlgorithms(x, [a(2)])).toBe(false);
    expect(sameAlgorithms(x, [...x, a(2)])).toBe(false);
  });
});

describe('RFC 8489 Appendix B.1: long-term credentials with MESSAGE-INTEGRITY-SHA256 and USERHASH', () => {
  const username = '\u30de\u30c8\u30ea\u30c3\u30af\u30b9'; // マトリックス
  const realm = 'example.org';
  const password = 'TheMatrIX';
  const nonce = 'obMatJos2AAACf//499k954d6OL34oL9FSTvy64sA';
  const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');

  // The bytes as corrected by verified erratum EID 6268 (https://www.rfc-editor.org/errata/eid6268).
  // The RFC as published left out the PASSWORD-ALGORITHM attribute that a request using
  // SHA-256 must carry (RFC 8489 section 9.2.4) and had a wrong length field; see below.
  const corrected = hex(`
    00 01 00 90  21 12 a4 42  78 ad 34 33  c6 ad 72 c0  29 da 41 2e
    00 1e 00 20  4a 3c f3 8f  ef 69 92 bd  a9 52 c6 78  04 17 da 0f
                 24 81 94 15  56 9e 60 b2  05 c4 6e 41  40 7f 17 04
    00 15 00 29  6f 62 4d 61  74 4a 6f 73  32 41 41 41  43 66 2f 2f
                 34 39 39 6b  39 35 34 64  36 4f 4c 33  34 6f 4c 39
                 46 53 54 76  79 36 34 73  41 00 00 00
    00 14 00 0b  65 78 61 6d  70 6c 65 2e  6f 72 67 00
    00 1d 00 04  00 02 00 00
    00 1c 00 20  b5 c7 bf 00  5b 6c 52 a2  1c 51 c5 e8  92 f8 19 24
                 13 62 96 cb  92 7c 43 14  93 09 27 8c  c6 51 8e 65`);

  // The bytes as published in RFC 8489 (what EID 6268 says the section "says").
  const published = hex(`
    00 01 00 9c  21 12 a4 42  78 ad 34 33  c6 ad 72 c0  29 da 41 2e
    00 1e 00 20  4a 3c f3 8f  ef 69 92 bd  a9 52 c6 78  04 17 da 0f
                 24 81 94 15  56 9e 60 b2  05 c4 6e 41  40 7f 17 04
    00 15 00 29  6f 62 4d 61  74 4a 6f 73  32 41 41 41  43 66 2f 2f
                 34 39 39 6b  39 35 34 64  36 4f 4c 33  34 6f 4c 39
                 46 53 54 76  79 36 34 73  41 00 00 00
    00 14 00 0b  65 78 61 6d  70 6c 65 2e  6f 72 67 00
    00 1c 00 20  e4 68 6c 8f  0e de b5 90  13 e0 70 90  01 0a 93 ef
                 cc bc cc 54  4c 0a 45 d9  f8 30 aa 6d  6f 73 5a 01`);

  const key = longTermKey(username, realm, password, PasswordAlgorithm.SHA256);

  it('decodes, and MESSAGE-INTEGRITY-SHA256 checks with the SHA-256 long-term key', () => {
    const m = decodeMessage(corrected).validate();
    expect([m.method, m.cls]).toEqual([Method.Binding, MessageClass.Request]);
    expect(m.attributes.map((a) => a.type)).toEqual([
      AttrType.USERHASH,
      AttrType.NONCE,
      AttrType.REALM,
      AttrType.PASSWORD_ALGORITHM,
      AttrType.MESSAGE_INTEGRITY_SHA256,
    ]);
    expect(m.unknownRequired).toEqual([]);
    expect(checkIntegrity(m, key)).toBe('sha256');
    // The MD5 key of the same credentials does not fit.
    expect(checkIntegrity(m, longTermKey(username, realm, password, PasswordAlgorithm.MD5))).toBe('mismatch');
  });

  it('USERHASH is userhash(username, realm); the other values are as listed', () => {
    const m = decodeMessage(corrected);
    expect(m.get(Attr.Userhash)!.equals(userhash(username, realm))).toBe(true);
    expect(userhash(username, realm).toString('hex')).toBe('4a3cf38fef6992bda952c6780417da0f24819415569e60b205c46e41407f1704');
    expect(m.get(Attr.Nonce)).toBe(nonce);
    expect(m.get(Attr.Realm)).toBe(realm);
    expect(m.get(Attr.PasswordAlgorithm)).toEqual({ algorithm: PasswordAlgorithm.SHA256, parameters: Buffer.alloc(0) });
    // The nonce has the cookie. Its feature set "AAAC" is 0x000002, which sets neither
    // bit 0 (password algorithms) nor bit 1 (username anonymity) when bit 0 is the most
    // significant bit; the sample does not exercise the feature bits.
    expect(nonceFeatures(nonce)).toBe(0x000002);
  });

  it('re-encodes to the same bytes', () => {
    const b = new MessageBuilder(Method.Binding, MessageClass.Request, hex('78ad3433c6ad72c029da412e'))
      .add(Attr.Userhash, userhash(username, realm))
      .add(Attr.Nonce, nonce)
      .add(Attr.Realm, realm)
      .add(Attr.PasswordAlgorithm, { algorithm: PasswordAlgorithm.SHA256, parameters: Buffer.alloc(0) });
    expect(b.encode({ integrity: { key, algorithm: 'sha256' } }).equals(corrected)).toBe(true);
  });

  it('the password as the RFC gives it before preparation needs SASLprep, not OpaqueString', () => {
    // B.1 says the password is "The<U+00AD>M<U+00AA>tr<U+2168>" before OpaqueString and
    // "TheMatrIX" after. That mapping is SASLprep's (RFC 4013, used by RFC 5389 and RFC
    // 5769): OpaqueString does not map SOFT HYPHEN to nothing (it disallows it) and does
    // not apply NFKC.
    const raw = 'The\u00adM\u00aatr\u2168';
    const viaSaslprep = longTermKey(username, realm, raw, PasswordAlgorithm.SHA256, 'saslprep');
    expect(viaSaslprep.equals(key)).toBe(true);
    expect(thrown(StunCredentialError, () => longTermKey(username, realm, raw, PasswordAlgorithm.SHA256)).code).toBe('PRECIS_DISALLOWED');
  });

  it('the published bytes do not decode, and their HMAC explains erratum 6268', () => {
    // The header's length field says 0x9c = 156, the length of the whole message, not of
    // the 136 bytes after the header; a strict decoder must refuse it.
    expect(published.length).toBe(156);
    expect(thrown(StunDecodeError, () => decodeMessage(published)).code).toBe('TRUNCATED');
    // The published HMAC was computed over the header with that wrong length (0x9c) and
    // without PASSWORD-ALGORITHM, with the right SHA-256 key:
    const miAt = published.length - 36;
    const mac = createHmac('sha256', key).update(published.subarray(0, miAt)).digest();
    expect(mac.equals(published.subarray(miAt + 4))).toBe(true);
    // With the length field made right the message decodes, but the HMAC no longer
    // matches: the sample cannot be verified as published, hence the erratum.
    const fixed = Buffer.from(published);
    fixed.writeUInt16BE(published.length - 20, 2);
    const m = decodeMessage(fixed);
    expect(m.get(Attr.Userhash)!.equals(userhash(username, realm))).toBe(true);
    expect(checkIntegrity(m, key)).toBe('mismatch');
  });
});
