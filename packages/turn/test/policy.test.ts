// Unit tests of the peer policy (packages/turn/src/server/policy.ts): which peer addresses
// the relay may send to. The expectations come from the list of denied ranges and
// from RFC 6890 / RFC 4291 / RFC 6052 / RFC 3056, not from the module's own constants, so
// a range dropped from DEFAULT_DENIED_V4/V6 fails here.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { StunEncodeError, formatIPv6, ipToBytes } from '@natkit/stun';
import { DEFAULT_DENIED_V4, DEFAULT_DENIED_V6, PeerPolicy, embeddedIPv4, parseCidr } from '../src/index.js';
import { thrown } from '../../../test/helpers/thrown.js';

// ---------------------------------------------------------------------------------------
// The spec: the denied IPv4 ranges, with the first, a middle and the last address
// of each, and the addresses just outside that must stay allowed.

interface Range4 {
  cidr: string;
  inside: string[];
  outside: string[];
}

const DENIED_V4: Range4[] = [
  { cidr: '0.0.0.0/8', inside: ['0.0.0.0', '0.0.0.1', '0.128.64.32', '0.255.255.255'], outside: ['1.0.0.0'] },
  { cidr: '10.0.0.0/8', inside: ['10.0.0.0', '10.1.2.3', '10.255.255.255'], outside: ['9.255.255.255', '11.0.0.0'] },
  { cidr: '100.64.0.0/10', inside: ['100.64.0.0', '100.100.100.100', '100.127.255.255'], outside: ['100.63.255.255', '100.128.0.0'] },
  { cidr: '127.0.0.0/8', inside: ['127.0.0.0', '127.0.0.1', '127.255.255.255'], outside: ['126.255.255.255', '128.0.0.0'] },
  { cidr: '169.254.0.0/16', inside: ['169.254.0.0', '169.254.169.254', '169.254.255.255'], outside: ['169.253.255.255', '169.255.0.0'] },
  { cidr: '172.16.0.0/12', inside: ['172.16.0.0', '172.20.10.5', '172.31.255.255'], outside: ['172.15.255.255', '172.32.0.0'] },
  { cidr: '192.168.0.0/16', inside: ['192.168.0.0', '192.168.1.1', '192.168.255.255'], outside: ['192.167.255.255', '192.169.0.0'] },
  { cidr: '224.0.0.0/4', inside: ['224.0.0.0', '233.1.2.3', '239.255.255.255'], outside: ['223.255.255.255'] },
  { cidr: '240.0.0.0/4', inside: ['240.0.0.0', '250.1.2.3', '255.255.255.254', '255.255.255.255'], outside: [] },
];

const DENIED_V6: Array<{ cidr: string; inside: string[]; outside: string[] }> = [
  { cidr: '::/128', inside: ['::', '0:0:0:0:0:0:0:0', '0000:0000:0000:0000:0000:0000:0000:0000'], outside: [] },
  { cidr: '::1/128', inside: ['::1', '0:0:0:0:0:0:0:1', '0000:0000:0000:0000:0000:0000:0000:0001'], outside: [] },
  {
    cidr: 'fc00::/7',
    inside: ['fc00::', 'FC00::', 'fd12:3456:789a::1', 'fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'FDFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF:FFFF'],
    outside: ['fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'fe00::'],
  },
  {
    cidr: 'fe80::/10',
    inside: ['fe80::', 'fe80::1', 'FE80:0000:0000:0000:0000:0000:0000:0001', 'fe80::1%eth0', 'febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
    outside: ['fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff'],
  },
  { cidr: 'ff00::/8', inside: ['ff00::', 'ff02::1', 'FF02::1:2', 'ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff'], outside: [] },
  // RFC 8215 local-use NAT64 prefix: translates into networks the operator did not mean to open.
  { cidr: '64:ff9b:1::/48', inside: ['64:ff9b:1::', '64:ff9b:1::808:808', '64:ff9b:1:ffff:ffff:ffff:ffff:ffff'], outside: ['64:ff9b:2::808:808'] },
];

/** Public addresses that must pass in every spelling. */
const PUBLIC_V4 = ['1.1.1.1', '8.8.8.8', '198.51.100.7', '203.0.113.200', '223.255.255.255'];
const PUBLIC_V6 = ['2001:db8::1', '2606:4700:4700::1111', '2a00:1450:4001:80b::200e'];

function hex16(a: number, b: number, upper = false): string {
  const h = ((a << 8) | b).toString(16);
  return upper ? h.toUpperCase() : h;
}

/** Every way an IPv6 address can carry this IPv4 address, in the text forms an attacker might try. */
function v6Spellings(ip4: string): Array<[string, string]> {
  const [a, b, c, d] = ip4.split('.').map(Number) as [number, number, number, number];
  const lo = `${hex16(a, b)}:${hex16(c, d)}`;
  const up = `${hex16(a, b, true)}:${hex16(c, d, true)}`;
  return [
    ['IPv4-mapped', `::ffff:${ip4}`],
    ['IPv4-mapped, hex', `::ffff:${lo}`],
    ['IPv4-mapped, expanded upper case', `0000:0000:0000:0000:0000:FFFF:${up}`],
    ['IPv4-mapped, zone', `::ffff:${ip4}%lo`],
    ['NAT64 64:ff9b::/96', `64:ff9b::${ip4}`],
    ['NAT64, expanded upper case', `0064:FF9B:0:0:0:0:${up}`],
    ['IPv4-compatible ::a.b.c.d', `::${ip4}`],
    ['IPv4-compatible, expanded', `0:0:0:0:0:0:${lo}`],
    ['6to4 2002:AABB:CCDD::', `2002:${lo}::`],
    ['6to4 with subnet and host bits', `2002:${up}:ffff:1:2:3:4`],
  ];
}

// ---------------------------------------------------------------------------------------

describe('parseCidr', () => {
  it('parses IPv4 and IPv6 ranges and bare addresses (a full-length prefix)', () => {
    expect(parseCidr('10.0.0.0/8')).toMatchObject({ v6: false, prefix: 8, bytes: new Uint8Array([10, 0, 0, 0]) });
    expect(parseCidr('192.0.2.1')).toMatchObject({ v6: false, prefix: 32 });
    expect(parseCidr('fe80::/10')).toMatchObject({ v6: true, prefix: 10 });
    expect(parseCidr('::1')).toMatchObject({ v6: true, prefix: 128 });
    expect(parseCidr('0.0.0.0/0')).toMatchObject({ v6: false, prefix: 0 });
    expect(parseCidr('::/0')).toMatchObject({ v6: true, prefix: 0 });
    expect(parseCidr('FE80::/10').bytes).toEqual(ipToBytes('fe80::'));
  });

  const bad = [
    '',
    '/8',
    '10.0.0.0/',
    '10.0.0.0/33',
    '10.0.0.0/-1',
    '10.0.0.0/8.5',
    '10.0.0.0/8/9',
    '10.0.0.0/ 8',
    '10.0.0.0/0x8',
    '10.0.0.0/1e1',
    ' 10.0.0.0/8',
    '10.0.0/8',
    '10.0.0.0.0/8',
    '010.0.0.0/8', // leading zeros: octal to some parsers, refused
    '256.0.0.0/8',
    'fe80::/129',
    'fe80:::/10',
    'fe80::g/10',
    '1:2:3:4:5:6:7:8:9/64',
    'localhost',
    'example.com/24',
  ];
  for (const text of bad) {
    it(`throws for ${JSON.stringify(text)}`, () => {
      expect(() => parseCidr(text)).toThrow(Error);
      // Both the allow and the deny lists go through it, so a bad entry fails the constructor.
      expect(() => new PeerPolicy({ allow: [text] })).toThrow(/CIDR|prefix/);
      expect(() => new PeerPolicy({ deny: [text] })).toThrow(/CIDR|prefix/);
    });
  }
});

describe('embeddedIPv4', () => {
  const v4 = (s: string) => [...ipToBytes(s)];
  const emb = (s: string) => {
    const e = embeddedIPv4(ipToBytes(s));
    return e ? [...e] : undefined;
  };

  it('finds the IPv4 address in each form that carries one', () => {
    expect(emb('::ffff:10.1.2.3')).toEqual(v4('10.1.2.3'));
    expect(emb('::FFFF:0A01:0203')).toEqual(v4('10.1.2.3'));
    expect(emb('64:ff9b::10.1.2.3')).toEqual(v4('10.1.2.3'));
    expect(emb('64:ff9b::a01:203')).toEqual(v4('10.1.2.3'));
    expect(emb('::10.1.2.3')).toEqual(v4('10.1.2.3'));
    expect(emb('2002:a01:203::')).toEqual(v4('10.1.2.3'));
    expect(emb('2002:a01:203:ffff:1:2:3:4')).toEqual(v4('10.1.2.3'));
    expect(emb('::ffff:0.0.0.0')).toEqual(v4('0.0.0.0'));
    expect(emb('::ffff:255.255.255.255')).toEqual(v4('255.255.255.255'));
    expect(emb('::0.0.0.2')).toEqual(v4('0.0.0.2'));
    expect(emb('::0.0.1.0')).toEqual(v4('0.0.1.0'));
  });

  it('finds none in :: and ::1 (they are their own IPv6 addresses), in IPv4 input, and in other IPv6 addresses', () => {
    expect(emb('::')).toBeUndefined();
    expect(emb('::1')).toBeUndefined();
    expect(embeddedIPv4(ipToBytes('10.1.2.3'))).toBeUndefined();
    expect(embeddedIPv4(new Uint8Array(0))).toBeUndefined();
    expect(embeddedIPv4(new Uint8Array(15))).toBeUndefined();
    expect(emb('2001:db8::a01:203')).toBeUndefined();
    expect(emb('fe80::a01:203')).toBeUndefined();
    // Near misses of each prefix.
    expect(emb('::fffe:10.1.2.3')).toBeUndefined();
    expect(emb('1::ffff:10.1.2.3')).toBeUndefined();
    expect(emb('64:ff9b:1::10.1.2.3')).toBeUndefined(); // RFC 8215 local use, denied as a whole instead
    expect(emb('64:ff9b::1:a01:203')).toBeUndefined();
    expect(emb('64:ff9a::a01:203')).toBeUndefined();
    expect(emb('2003:a01:203::')).toBeUndefined();
    expect(emb('2001:a01:203::')).toBeUndefined();
  });

  it('returns a view of the input, not a copy', () => {
    const b = ipToBytes('::ffff:10.1.2.3');
    const e = embeddedIPv4(b)!;
    expect(e.buffer).toBe(b.buffer);
    expect(e.byteOffset).toBe(12);
  });
});

describe('PeerPolicy defaults', () => {
  const policy = new PeerPolicy();

  it('the default lists hold at least the ranges the issue names', () => {
    for (const r of DENIED_V4) expect(DEFAULT_DENIED_V4).toContain(r.cidr);
    for (const r of DENIED_V6) expect(DEFAULT_DENIED_V6).toContain(r.cidr);
  });

  for (const r of DENIED_V4) {
    it(`refuses ${r.cidr} (first, middle, last) in every spelling and allows just outside it`, () => {
      let checked = 0;
      for (const ip of r.inside) {
        const d = policy.check(ip);
        expect(d, ip).toEqual({ allowed: false, reason: `${r.cidr} is denied by default` });
        checked++;
        for (const [form, text] of v6Spellings(ip)) {
          expect(policy.allowed(text), `${form} ${text}`).toBe(false);
          checked++;
        }
      }
      for (const ip of r.outside) {
        expect(policy.check(ip), ip).toEqual({ allowed: true, reason: 'public address' });
        for (const [form, text] of v6Spellings(ip)) expect(policy.allowed(text), `${form} ${text}`).toBe(true);
      }
      expect(checked).toBe(r.inside.length * 11);
    });
  }

  it('refuses the broadcast address 255.255.255.255 in every spelling', () => {
    expect(policy.allowed('255.255.255.255')).toBe(false);
    for (const [form, text] of v6Spellings('255.255.255.255')) expect(policy.allowed(text), form).toBe(false);
  });

  for (const r of DENIED_V6) {
    it(`refuses ${r.cidr} (first, middle, last; lower, upper case and expanded) and allows just outside it`, () => {
      for (const ip of r.inside) expect(policy.check(ip), ip).toEqual({ allowed: false, reason: expect.stringMatching(/denied by default/) });
      for (const ip of r.outside) expect(policy.check(ip), ip).toEqual({ allowed: true, reason: 'public address' });
    });
  }

  it('allows public addresses in every spelling', () => {
    for (const ip of PUBLIC_V4) {
      expect(policy.check(ip)).toEqual({ allowed: true, reason: 'public address' });
      for (const [form, text] of v6Spellings(ip)) expect(policy.allowed(text), `${form} ${text}`).toBe(true);
    }
    for (const ip of PUBLIC_V6) expect(policy.allowed(ip), ip).toBe(true);
  });

  it('refuses what is not an IP address (fail closed), including sloppy IPv4 spellings other parsers accept', () => {
    for (const s of ['', 'localhost', '127.1', '0x7f.0.0.1', '0177.0.0.1', '2130706433', '127.0.0.1.', ' 127.0.0.1', '[::1]', '::1/128', '1.2.3.4:80']) {
      expect(policy.check(s), JSON.stringify(s)).toEqual({ allowed: false, reason: 'not an IP address' });
    }
  });

  it('with defaults: false nothing is denied but what is configured', () => {
    const open = new PeerPolicy({ defaults: false });
    expect(open.allowed('127.0.0.1')).toBe(true);
    expect(open.allowed('::ffff:10.0.0.1')).toBe(true);
    const some = new PeerPolicy({ defaults: false, deny: ['10.0.0.0/8'] });
    expect(some.allowed('10.0.0.1')).toBe(false);
    expect(some.allowed('64:ff9b::10.0.0.1')).toBe(false);
    expect(some.allowed('127.0.0.1')).toBe(true);
  });

  it('agrees with a model of the denied ranges for random IPv4 addresses, in every spelling (property)', () => {
    const model = (n: number) =>
      DENIED_V4.some((r) => {
        const [base, len] = r.cidr.split('/') as [string, string];
        const b = base.split('.').reduce((acc, x) => acc * 256 + Number(x), 0);
        const size = 2 ** (32 - Number(len));
        return n >= b && n < b + size;
      });
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (n) => {
        const ip = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
        const want = !model(n);
        if (policy.allowed(ip) !== want) return false;
        return v6Spellings(ip).every(([, text]) => policy.allowed(text) === want);
      }),
      { seed: 0x5eed, numRuns: 3000 },
    );
  });

  it('applies an operator range written in IPv4-mapped form to the plain IPv4 addresses too', () => {
    const p = new PeerPolicy({ deny: ['::ffff:198.51.100.0/120'] });
    expect(p.allowed('198.51.100.7')).toBe(false);
    expect(p.allowed('::ffff:198.51.100.7')).toBe(false);
    expect(p.allowed('198.51.101.7')).toBe(true);
  });

  it('denies deprecated site-local fec0::/10 and the IPv4-translated ::ffff:0:a.b.c.d form', () => {
    expect(policy.check('fec0::1')).toEqual({ allowed: false, reason: 'fec0::/10 is denied by default' });
    expect(policy.allowed('feff:ffff::1')).toBe(false);
    expect(embeddedIPv4(ipToBytes('::ffff:0:10.1.2.3'))).toEqual(new Uint8Array([10, 1, 2, 3]));
    expect(policy.allowed('::ffff:0:10.1.2.3')).toBe(false);
    expect(policy.allowed('::ffff:0:198.51.100.7')).toBe(true);
  });

  it('agrees with a model for random IPv6 addresses that carry no IPv4 address (property)', () => {
    const inV6 = (b: Uint8Array) =>
      b.every((x) => x === 0) ||
      (b.subarray(0, 15).every((x) => x === 0) && b[15] === 1) ||
      (b[0]! & 0xfe) === 0xfc ||
      (b[0] === 0xfe && (b[1]! & 0xc0) === 0x80) ||
      (b[0] === 0xfe && (b[1]! & 0xc0) === 0xc0) || // fec0::/10 site-local
      b[0] === 0xff ||
      (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && b[4] === 0 && b[5] === 1);
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.constantFrom(0x00, 0x20, 0xfc, 0xfd, 0xfe, 0xff, 0x26), (b, first) => {
        b[0] = first;
        if (embeddedIPv4(b)) return true;
        return policy.allowed(formatIPv6(b)) === !inV6(b);
      }),
      { seed: 0x5eed6, numRuns: 3000 },
    );
  });
});

describe('PeerPolicy allow and deny', () => {
  it('an allow opens exactly its range: non-octet-aligned /10 and /12 edges', () => {
    const p = new PeerPolicy({ allow: ['100.96.0.0/11', '172.16.0.0/13'] });
    // 100.96.0.0/11 is the top half of 100.64.0.0/10.
    expect(p.check('100.96.0.0')).toEqual({ allowed: true, reason: 'allowed by --allow-peer 100.96.0.0/11' });
    expect(p.allowed('100.127.255.255')).toBe(true);
    expect(p.check('100.95.255.255')).toEqual({ allowed: false, reason: '100.64.0.0/10 is denied by default' });
    expect(p.allowed('100.64.0.0')).toBe(false);
    // 172.16.0.0/13 is the bottom half of 172.16.0.0/12.
    expect(p.allowed('172.16.0.0')).toBe(true);
    expect(p.allowed('172.23.255.255')).toBe(true);
    expect(p.allowed('172.24.0.0')).toBe(false);
    expect(p.allowed('172.31.255.255')).toBe(false);
    // Other denied ranges are untouched.
    expect(p.allowed('10.0.0.1')).toBe(false);
    expect(p.allowed('127.0.0.1')).toBe(false);
  });

  it('an allow of a /32 or /128 opens one address only', () => {
    const p = new PeerPolicy({ allow: ['10.1.2.3/32', 'fd00::5', 'fe80::1/128'] });
    expect(p.allowed('10.1.2.3')).toBe(true);
    expect(p.allowed('10.1.2.2')).toBe(false);
    expect(p.allowed('10.1.2.4')).toBe(false);
    expect(p.allowed('fd00::5')).toBe(true);
    expect(p.allowed('fd00::4')).toBe(false);
    expect(p.allowed('fd00::6')).toBe(false);
    expect(p.allowed('fe80::1')).toBe(true);
    expect(p.allowed('fe80::2')).toBe(false);
  });

  it('an allowed IPv4 range is allowed in its IPv6 spellings too, and nothing next to it is', () => {
    const p = new PeerPolicy({ allow: ['10.1.0.0/16'] });
    for (const [form, text] of v6Spellings('10.1.200.7')) expect(p.allowed(text), form).toBe(true);
    for (const [form, text] of v6Spellings('10.2.0.0')) expect(p.allowed(text), form).toBe(false);
    for (const [form, text] of v6Spellings('10.0.255.255')) expect(p.allowed(text), form).toBe(false);
  });

  it('an allow of an IPv6 range does not open IPv4 ranges, and an IPv4 allow does not open IPv6 ranges', () => {
    const p = new PeerPolicy({ allow: ['fd00::/8', '10.0.0.0/8'] });
    expect(p.allowed('fd12::1')).toBe(true);
    expect(p.allowed('fc00::1')).toBe(false);
    expect(p.allowed('127.0.0.1')).toBe(false);
    expect(p.allowed('::ffff:192.168.0.1')).toBe(false);
    expect(p.allowed('fe80::1')).toBe(false);
  });

  it('/0 allows (or denies) every address of its family and no other', () => {
    const all4 = new PeerPolicy({ allow: ['0.0.0.0/0'] });
    expect(all4.allowed('127.0.0.1')).toBe(true);
    expect(all4.allowed('::ffff:127.0.0.1')).toBe(true); // the IPv4 address it carries is allowed
    expect(all4.allowed('::1')).toBe(false);
    expect(all4.allowed('fe80::1')).toBe(false);
    const none4 = new PeerPolicy({ deny: ['0.0.0.0/0'] });
    expect(none4.check('8.8.8.8')).toEqual({ allowed: false, reason: 'denied by --deny-peer 0.0.0.0/0' });
    expect(none4.allowed('64:ff9b::8.8.8.8')).toBe(false);
    expect(none4.allowed('2001:db8::1')).toBe(true);
    const none6 = new PeerPolicy({ deny: ['::/0'] });
    expect(none6.allowed('2001:db8::1')).toBe(false);
    expect(none6.allowed('::ffff:8.8.8.8')).toBe(false);
    expect(none6.allowed('8.8.8.8')).toBe(true);
  });

  it('an explicit deny beats an allow, in every spelling', () => {
    const p = new PeerPolicy({ allow: ['10.0.0.0/8', '8.8.8.0/24'], deny: ['10.1.2.0/24', '8.8.8.8/32'] });
    expect(p.check('10.1.2.3')).toEqual({ allowed: false, reason: 'denied by --deny-peer 10.1.2.0/24' });
    for (const [form, text] of v6Spellings('10.1.2.3')) expect(p.allowed(text), form).toBe(false);
    expect(p.check('10.1.3.0')).toEqual({ allowed: true, reason: 'allowed by --allow-peer 10.0.0.0/8' });
    expect(p.allowed('8.8.8.8')).toBe(false);
    for (const [form, text] of v6Spellings('8.8.8.8')) expect(p.allowed(text), form).toBe(false);
    expect(p.allowed('8.8.8.9')).toBe(true);
    // The same range in both lists: deny wins.
    const both = new PeerPolicy({ allow: ['192.168.0.0/16'], deny: ['192.168.0.0/16'] });
    expect(both.allowed('192.168.1.1')).toBe(false);
    // A deny written in IPv4-mapped form closes that spelling.
    const v6deny = new PeerPolicy({ deny: ['::ffff:8.8.8.0/120'] });
    expect(v6deny.allowed('::ffff:8.8.8.8')).toBe(false);
  });

  it('a deny can close public ranges, with the boundaries exact on non-octet-aligned prefixes', () => {
    const p = new PeerPolicy({ deny: ['198.51.100.64/26', '2001:db8:8000::/33'] });
    expect(p.allowed('198.51.100.63')).toBe(true);
    expect(p.allowed('198.51.100.64')).toBe(false);
    expect(p.allowed('198.51.100.127')).toBe(false);
    expect(p.allowed('198.51.100.128')).toBe(true);
    expect(p.allowed('2001:db8:7fff:ffff:ffff:ffff:ffff:ffff')).toBe(true);
    expect(p.allowed('2001:db8:8000::')).toBe(false);
    expect(p.allowed('2001:db8:ffff:ffff:ffff:ffff:ffff:ffff')).toBe(false);
    expect(p.allowed('2001:db9::')).toBe(true);
  });

  it('host bits set in a CIDR are ignored (10.1.2.3/8 is 10.0.0.0/8)', () => {
    const p = new PeerPolicy({ defaults: false, deny: ['10.1.2.3/8', 'fe80::1234/10'] });
    expect(p.allowed('10.200.0.1')).toBe(false);
    expect(p.allowed('11.0.0.0')).toBe(true);
    expect(p.allowed('febf::1')).toBe(false);
    expect(p.allowed('fec0::1')).toBe(true);
  });
});

describe("PeerPolicy: the server's own addresses", () => {
  it('refuses its own public addresses in every spelling, by bytes not by text', () => {
    const p = new PeerPolicy({ ownAddresses: ['203.0.113.9', '2001:DB8:0:0::9'] });
    expect(p.check('203.0.113.9')).toEqual({ allowed: false, reason: "the server's own address" });
    for (const [form, text] of v6Spellings('203.0.113.9')) expect(p.allowed(text), form).toBe(false);
    expect(p.allowed('2001:db8::9')).toBe(false);
    expect(p.allowed('2001:0db8:0000:0000:0000:0000:0000:0009')).toBe(false);
    // Only those addresses: their neighbours are public.
    expect(p.allowed('203.0.113.8')).toBe(true);
    expect(p.allowed('203.0.113.10')).toBe(true);
    expect(p.allowed('2001:db8::8')).toBe(true);
  });

  it('addOwnAddress adds one later (e.g. an interface address learnt at start)', () => {
    const p = new PeerPolicy();
    expect(p.allowed('198.51.100.1')).toBe(true);
    p.addOwnAddress('198.51.100.1');
    expect(p.allowed('198.51.100.1')).toBe(false);
    expect(p.allowed('::ffff:198.51.100.1')).toBe(false);
    expect(p.allowed('64:ff9b::c633:6401')).toBe(false);
    expect(thrown(StunEncodeError, () => p.addOwnAddress('not an address')).code).toBe('BAD_ADDRESS');
  });

  it('an explicit deny still beats everything; own addresses are refused without any defaults', () => {
    const p = new PeerPolicy({ defaults: false, ownAddresses: ['192.0.2.1'] });
    expect(p.allowed('192.0.2.1')).toBe(false);
    expect(p.allowed('127.0.0.1')).toBe(true);
  });
});
