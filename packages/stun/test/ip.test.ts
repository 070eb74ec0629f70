// IP address text: strict parsing (no octal-looking IPv4, RFC 4291 IPv6 forms), RFC 5952
// output, and `host:port` parsing. Node's own parsers serve as independent oracles.
import { isIPv6 } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  StunEncodeError,
  canonicalIp,
  formatAddress,
  formatIPv4,
  formatIPv6,
  ipFamily,
  ipToBytes,
  parseAddress,
  parseIPv4Into,
  parseIPv6Into,
  sameAddress,
} from '../src/index.js';
import { thrown } from '../../../test/helpers/thrown.js';

function v4(s: string): number[] | undefined {
  const out = new Uint8Array(4);
  return parseIPv4Into(s, out, 0) ? [...out] : undefined;
}

function v6(s: string): string | undefined {
  const out = new Uint8Array(16);
  return parseIPv6Into(s, out, 0) ? Buffer.from(out).toString('hex') : undefined;
}

function hexBytes(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex.replace(/[\s:]/g, ''), 'hex'));
}

const encodeError = (fn: () => unknown): StunEncodeError => thrown(StunEncodeError, fn);

describe('parseIPv4Into', () => {
  it('parses dotted quads', () => {
    expect(v4('0.0.0.0')).toEqual([0, 0, 0, 0]);
    expect(v4('255.255.255.255')).toEqual([255, 255, 255, 255]);
    expect(v4('192.0.2.1')).toEqual([192, 0, 2, 1]);
    expect(v4('10.200.30.0')).toEqual([10, 200, 30, 0]);
  });

  it('writes at the offset and nowhere else', () => {
    const out = new Uint8Array(8).fill(0xee);
    expect(parseIPv4Into('1.2.3.4', out, 3)).toBe(true);
    expect([...out]).toEqual([0xee, 0xee, 0xee, 1, 2, 3, 4, 0xee]);
  });

  it('rejects leading zeros (octal in some parsers)', () => {
    for (const s of ['01.2.3.4', '1.2.3.04', '00.0.0.0', '1.2.3.000', '010.1.1.1']) expect(v4(s)).toBeUndefined();
  });

  it('rejects parts above 255', () => {
    for (const s of ['256.0.0.0', '1.2.3.256', '1.2.3.999', '1.2.3.1000']) expect(v4(s)).toBeUndefined();
  });

  it('rejects too few or too many parts and stray characters', () => {
    const bad = ['', '1', '1.2', '1.2.3', '1.2.3.4.5', '1..2.3', '.1.2.3', '1.2.3.', '1.2.3.4.', ' 1.2.3.4', '1.2.3.4 ', '1.2.3.-4', '0x1.2.3.4', '1.2.3.4/8', '１.2.3.4'];
    for (const s of bad) expect(v4(s), s).toBeUndefined();
  });

  it('parses exactly what formatIPv4 prints', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 4, maxLength: 4 }), (b) => {
        expect(v4(formatIPv4(b))).toEqual([...b]);
      }),
      { seed: 4291, numRuns: 300 },
    );
  });
});

describe('parseIPv6Into', () => {
  it('the RFC 4291 section 2.2 forms', () => {
    expect(v6('::')).toBe('0'.repeat(32));
    expect(v6('::1')).toBe('0'.repeat(30) + '01');
    expect(v6('1::')).toBe('0001' + '0'.repeat(28));
    expect(v6('2001:0db8:0000:0000:0000:ff00:0042:8329')).toBe('20010db8000000000000ff0000428329');
    expect(v6('2001:db8::ff00:42:8329')).toBe('20010db8000000000000ff0000428329');
    expect(v6('2001:DB8::FF00:42:8329')).toBe('20010db8000000000000ff0000428329');
    expect(v6('1:2:3:4:5:6:7::')).toBe('0001000200030004000500060007' + '0000');
    expect(v6('::2:3:4:5:6:7:8')).toBe('0000' + '0002000300040005000600070008');
    expect(v6('1:0:0:0:0:0:0:8')).toBe('0001' + '0'.repeat(24) + '0008');
  });

  it('embedded IPv4 in the last 32 bits', () => {
    expect(v6('::ffff:1.2.3.4')).toBe('00000000000000000000ffff01020304');
    expect(v6('::1.2.3.4')).toBe('00000000000000000000000001020304');
    expect(v6('64:ff9b::192.0.2.33')).toBe('0064ff9b0000000000000000c0000221');
    expect(v6('1:2:3:4:5:6:1.2.3.4')).toBe('00010002000300040005000601020304');
    for (const s of ['::ffff:1.2.3', '::ffff:1.2.3.256', '::ffff:01.2.3.4', '::1.2.3.4:5', '1.2.3.4::', '1:2:3:4:5:6:7:1.2.3.4']) {
      expect(v6(s), s).toBeUndefined();
    }
  });

  it('zone ids (%eth0) are accepted and dropped', () => {
    expect(v6('fe80::1%eth0')).toBe('fe80' + '0'.repeat(26) + '01');
    expect(v6('fe80::1%25')).toBe(v6('fe80::1'));
  });

  it('writes at the offset and nowhere else', () => {
    const out = new Uint8Array(20).fill(0xee);
    expect(parseIPv6Into('::1', out, 2)).toBe(true);
    expect([...out.subarray(0, 2)]).toEqual([0xee, 0xee]);
    expect([...out.subarray(2, 18)]).toEqual([...new Array<number>(15).fill(0), 1]);
    expect([...out.subarray(18)]).toEqual([0xee, 0xee]);
  });

  it('rejects malformed text', () => {
    const bad = [
      '',
      ':',
      ':::',
      '1:::2',
      '1::2::3',
      '::1::',
      ':1::',
      '1::2:',
      ':1:2:3:4:5:6:7:8',
      '1:2:3:4:5:6:7:8:',
      '1:2:3:4:5:6:7:8:9', // nine groups
      '1:2:3:4:5:6:7', // seven groups and no '::'
      '1:2:3:4::5:6:7:8', // '::' must stand for at least one group
      '12345::',
      'g::',
      '::-1',
      '1.2.3.4',
      ' ::1',
      '::1 ',
      '[::1]',
      '%eth0',
    ];
    for (const s of bad) expect(v6(s), JSON.stringify(s)).toBeUndefined();
  });

  it('agrees with node:net isIPv6 on strings made of address characters', () => {
    let valid = 0;
    const chars = fc.constantFrom(...'0123456789abcdefABCDEF:.'.split(''), ':', ':', '0', '1');
    fc.assert(
      fc.property(fc.array(chars, { maxLength: 24 }), (cs) => {
        const s = cs.join('');
        expect(v6(s) !== undefined, JSON.stringify(s)).toBe(isIPv6(s));
        if (isIPv6(s)) valid++;
      }),
      { seed: 4291, numRuns: 5000 },
    );
    // Also along the edges of valid addresses: take one apart and put it back wrong.
    const groups = fc.array(fc.oneof(fc.constant('0'), fc.constant('ffff'), fc.string({ unit: fc.constantFrom(...'0123456789abcdef'.split('')), minLength: 1, maxLength: 5 })), { minLength: 0, maxLength: 9 });
    fc.assert(
      fc.property(groups, fc.nat(9), fc.boolean(), (gs, at, dotted) => {
        const parts = [...gs];
        if (at <= parts.length) parts.splice(at, 0, '');
        let s = parts.join(':');
        if (dotted) s += ':1.2.3.4';
        expect(v6(s) !== undefined, JSON.stringify(s)).toBe(isIPv6(s));
        if (isIPv6(s)) valid++;
      }),
      { seed: 5952, numRuns: 5000 },
    );
    // Both generators must reach valid addresses often enough to mean something.
    expect(valid).toBeGreaterThan(500);
  });
});

describe('formatIPv6 (RFC 5952)', () => {
  const cases: Array<[string, string]> = [
    ['00000000000000000000000000000000', '::'],
    ['00000000000000000000000000000001', '::1'],
    ['00010000000000000000000000000000', '1::'],
    ['20010db8000000000000000000000001', '2001:db8::1'],
    // 4.2.1: shorten as much as possible; 4.1: no leading zeros.
    ['20010db8000000000000ff0000428329', '2001:db8::ff00:42:8329'],
    // 4.2.2: a single zero group is not compressed.
    ['20010db8000000010001000100010001', '2001:db8:0:1:1:1:1:1'],
    // 4.2.3: the longest run wins; on a tie the first.
    ['20010000000000010000000000000001', '2001:0:0:1::1'],
    ['20010db8000000000001000000000001', '2001:db8::1:0:0:1'],
    ['00000000000100000000000000000000', '0:0:1::'],
    ['00010000000000010000000000000000', '1:0:0:1::'],
    // 4.3: lower case.
    ['abcdef0000000000000000000000abcd', 'abcd:ef00::abcd'],
    ['20010db8aaaabbbbccccddddeeeeffff', '2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff'],
    // 5: IPv4-mapped addresses in mixed notation.
    ['00000000000000000000ffffc0000201', '::ffff:192.0.2.1'],
    ['00000000000000000000ffff00000000', '::ffff:0.0.0.0'],
    // Not IPv4-mapped: plain hex.
    ['00000000000000000000000001020304', '::102:304'],
    ['0000000000000000ffff000001020304', '::ffff:0:102:304'],
  ];

  for (const [hex, text] of cases) {
    it(`${hex} -> ${text}`, () => {
      expect(formatIPv6(hexBytes(hex))).toBe(text);
      expect(v6(text)).toBe(hex);
    });
  }

  it('reads at the offset', () => {
    const b = new Uint8Array(18).fill(0xff);
    b.set(hexBytes('20010db8000000000000000000000001'), 2);
    expect(formatIPv6(b, 2)).toBe('2001:db8::1');
  });

  it('matches the WHATWG URL serializer (the same rules, without mixed notation) and parses back', () => {
    const group = fc.oneof(fc.constant(0), fc.constant(0), fc.constant(0), fc.integer({ min: 0, max: 0xffff }));
    fc.assert(
      fc.property(fc.array(group, { minLength: 8, maxLength: 8 }), (gs) => {
        const b = new Uint8Array(16);
        gs.forEach((g, i) => {
          b[2 * i] = g >> 8;
          b[2 * i + 1] = g & 0xff;
        });
        const text = formatIPv6(b);
        expect(v6(text)).toBe(Buffer.from(b).toString('hex'));
        const mapped = gs.slice(0, 5).every((g) => g === 0) && gs[5] === 0xffff;
        if (!mapped) expect(text).toBe(new URL(`http://[${gs.map((g) => g.toString(16)).join(':')}]/`).hostname.slice(1, -1));
      }),
      { seed: 5952, numRuns: 2000 },
    );
  });
});

describe('ipFamily, ipToBytes, canonicalIp', () => {
  it('ipFamily', () => {
    expect(ipFamily('1.2.3.4')).toBe('IPv4');
    expect(ipFamily('::1')).toBe('IPv6');
    expect(ipFamily('::ffff:1.2.3.4')).toBe('IPv6');
    expect(ipFamily('example.com')).toBeUndefined();
    expect(ipFamily('01.2.3.4')).toBeUndefined();
  });

  it('ipToBytes, with and without a family', () => {
    expect([...ipToBytes('1.2.3.4')]).toEqual([1, 2, 3, 4]);
    expect(ipToBytes('::1').length).toBe(16);
    expect(ipToBytes('::1', 'IPv6').length).toBe(16);
    expect(encodeError(() => ipToBytes('1.2.3.4', 'IPv6')).code).toBe('BAD_ADDRESS');
    expect(encodeError(() => ipToBytes('::1', 'IPv4')).code).toBe('BAD_ADDRESS');
    expect(encodeError(() => ipToBytes('')).code).toBe('BAD_ADDRESS');
  });

  it('canonicalIp', () => {
    expect(canonicalIp('2001:DB8:0:0:0:0:0:1')).toBe('2001:db8::1');
    expect(canonicalIp('2001:0db8::0001')).toBe('2001:db8::1');
    expect(canonicalIp('::FFFF:1.2.3.4')).toBe('::ffff:1.2.3.4');
    expect(canonicalIp('::ffff:0102:0304')).toBe('::ffff:1.2.3.4');
    expect(canonicalIp('fe80::1%eth0')).toBe('fe80::1');
    expect(canonicalIp('192.0.2.1')).toBe('192.0.2.1');
    expect(encodeError(() => canonicalIp('stun.example.org')).code).toBe('BAD_ADDRESS');
  });
});

describe('parseAddress', () => {
  it('ip:port and [v6]:port', () => {
    expect(parseAddress('192.0.2.1:3478')).toEqual({ family: 'IPv4', address: '192.0.2.1', port: 3478 });
    expect(parseAddress('[::1]:5349')).toEqual({ family: 'IPv6', address: '::1', port: 5349 });
    expect(parseAddress('[2001:DB8:0::1]:0')).toEqual({ family: 'IPv6', address: '2001:db8::1', port: 0 });
    expect(parseAddress('1.2.3.4:65535')).toEqual({ family: 'IPv4', address: '1.2.3.4', port: 65535 });
  });

  it('a bare address takes the default port', () => {
    expect(parseAddress('192.0.2.1', 3478)).toEqual({ family: 'IPv4', address: '192.0.2.1', port: 3478 });
    expect(parseAddress('[::1]', 3478)).toEqual({ family: 'IPv6', address: '::1', port: 3478 });
    // Without brackets every colon belongs to the address.
    expect(parseAddress('::1', 3478)).toEqual({ family: 'IPv6', address: '::1', port: 3478 });
    expect(parseAddress('2001:db8::1:80', 3478)).toEqual({ family: 'IPv6', address: '2001:db8::1:80', port: 3478 });
    // An explicit port wins over the default.
    expect(parseAddress('1.2.3.4:1', 3478).port).toBe(1);
  });

  it('errors are BAD_ADDRESS', () => {
    const bad: Array<[string, number?]> = [
      ['1.2.3.4'], // no port and no default
      ['[::1]'],
      ['1.2.3.4:'],
      ['1.2.3.4:65536'],
      ['1.2.3.4:-1'],
      ['1.2.3.4:80x'],
      ['1.2.3.4:123456'],
      ['[::1]:abc'],
      ['[::1'],
      ['[::1]x', 1],
      ['[::1]:', 1],
      ['stun.example.org:3478'],
      ['localhost', 3478],
      ['', 3478],
      ['1.2.3.4.5:80'],
    ];
    for (const [text, def] of bad) {
      expect(encodeError(() => parseAddress(text, def)).code, text).toBe('BAD_ADDRESS');
    }
  });

  it('formatAddress is the inverse', () => {
    for (const text of ['192.0.2.1:3478', '[::1]:5349', '[2001:db8::1]:1']) expect(formatAddress(parseAddress(text))).toBe(text);
  });
});

describe('sameAddress', () => {
  it('compares family, canonical address and port', () => {
    const a = { family: 'IPv6' as const, address: '2001:db8::1', port: 3478 };
    expect(sameAddress(a, { ...a, address: '2001:DB8:0:0:0:0:0:1' })).toBe(true);
    expect(sameAddress(a, { ...a, address: '2001:db8:0::0:1' })).toBe(true);
    expect(sameAddress(a, { ...a, port: 3479 })).toBe(false);
    expect(sameAddress(a, { ...a, address: '2001:db8::2' })).toBe(false);
    const b = { family: 'IPv4' as const, address: '1.2.3.4', port: 1 };
    expect(sameAddress(b, { ...b })).toBe(true);
    expect(sameAddress(b, { family: 'IPv6', address: '::ffff:1.2.3.4', port: 1 })).toBe(false);
  });
});
