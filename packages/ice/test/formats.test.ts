import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { thrown } from '../../../test/helpers/thrown.js';
import {
  type Candidate,
  CandidateLineError,
  type JingleCandidate,
  MAX_CANDIDATE_PRIORITY,
  TYPE_PREFERENCE,
  addressKind,
  candidateExtension,
  candidatePriority,
  formatCandidateLine,
  formatJingleLine,
  generateIceParameters,
  iceToJingle,
  isEndOfCandidates,
  jingleToIce,
  parseCandidateLine,
  parseJingleLine,
  validateIceParameters,
} from '../src/index.js';

const SEED = 8839;

describe('RFC 8839 candidate lines: parsing', () => {
  it('reads the example of the issue in all three spellings', () => {
    const want: Candidate = { foundation: '1', component: 1, transport: 'udp', priority: 2130706431, address: '192.0.2.1', port: 5000, type: 'host' };
    expect(parseCandidateLine('candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host')).toEqual(want);
    expect(parseCandidateLine('a=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host\r\n')).toEqual(want);
    expect(parseCandidateLine('1 1 udp 2130706431 192.0.2.1 5000 typ host')).toEqual(want);
  });

  it("reads RFC 8839's own examples (transport in upper case, raddr/rport)", () => {
    expect(parseCandidateLine('a=candidate:2 1 UDP 1694498815 192.0.2.3 45664 typ srflx raddr 203.0.113.141 rport 8998')).toEqual({
      foundation: '2',
      component: 1,
      transport: 'udp',
      priority: 1694498815,
      address: '192.0.2.3',
      port: 45664,
      type: 'srflx',
      relatedAddress: '203.0.113.141',
      relatedPort: 8998,
    });
  });

  it("reads Chrome's lines: extensions kept in order, mDNS host names, tcptype", () => {
    const srflx = parseCandidateLine('candidate:842163049 1 udp 1677729535 203.0.113.5 54400 typ srflx raddr 192.168.1.2 rport 54400 generation 0 ufrag EsAw network-id 1 network-cost 10');
    expect(srflx.extensions).toEqual([
      ['generation', '0'],
      ['ufrag', 'EsAw'],
      ['network-id', '1'],
      ['network-cost', '10'],
    ]);
    expect(candidateExtension(srflx, 'ufrag')).toBe('EsAw');
    expect(candidateExtension(srflx, 'nothing')).toBeUndefined();

    const mdns = parseCandidateLine('candidate:1467250027 1 udp 2122260223 1f4712db-ea17-4bcf-a596-105139dfd8bf.local 54400 typ host generation 0 ufrag EsAw network-id 1');
    expect(mdns.address).toBe('1f4712db-ea17-4bcf-a596-105139dfd8bf.local');
    expect(addressKind(mdns.address)).toBe('fqdn');

    const tcp = parseCandidateLine('candidate:3019384237 1 tcp 1518280447 192.168.1.2 9 typ host tcptype active generation 0 ufrag EsAw network-id 1');
    expect(tcp.transport).toBe('tcp');
    expect(tcp.tcpType).toBe('active');
    expect(tcp.extensions).toEqual([
      ['generation', '0'],
      ['ufrag', 'EsAw'],
      ['network-id', '1'],
    ]);
  });

  it("reads Firefox's and libnice's lines, IPv6 included", () => {
    expect(parseCandidateLine('candidate:0 1 UDP 2122252543 192.168.1.2 49203 typ host').transport).toBe('udp');
    expect(parseCandidateLine('candidate:1 1 TCP 2105524479 192.168.1.2 9 typ host tcptype active').tcpType).toBe('active');
    const v6 = parseCandidateLine('a=candidate:1 1 UDP 2013266431 2001:db8::1 47865 typ relay raddr 2001:db8::2 rport 1');
    expect(v6.address).toBe('2001:db8::1');
    expect(addressKind(v6.address)).toBe('IPv6');
    expect(v6.relatedAddress).toBe('2001:db8::2');
    expect(parseCandidateLine('candidate:x+/Y 256 udp 1 ::ffff:192.0.2.1 0 TYP PrFlx').type).toBe('prflx');
  });

  it('writes back exactly the lines it read', () => {
    for (const line of [
      'candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host',
      'candidate:842163049 1 udp 1677729535 203.0.113.5 54400 typ srflx raddr 192.168.1.2 rport 54400 generation 0 ufrag EsAw network-id 1 network-cost 10',
      'candidate:3019384237 1 tcp 1518280447 192.168.1.2 9 typ host tcptype active generation 0 ufrag EsAw network-id 1',
      'candidate:1467250027 1 udp 2122260223 1f4712db-ea17-4bcf-a596-105139dfd8bf.local 54400 typ host generation 0',
    ]) {
      expect(formatCandidateLine(parseCandidateLine(line))).toBe(line);
    }
    const c = parseCandidateLine('candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host');
    expect(formatCandidateLine(c, { prefix: 'a=candidate:' })).toBe('a=candidate:1 1 udp 2130706431 192.0.2.1 5000 typ host');
    expect(formatCandidateLine(c, { prefix: '' })).toBe('1 1 udp 2130706431 192.0.2.1 5000 typ host');
  });

  it('knows the end-of-candidates indication', () => {
    expect(isEndOfCandidates('a=end-of-candidates\r\n')).toBe(true);
    expect(isEndOfCandidates('end-of-candidates')).toBe(true);
    expect(isEndOfCandidates('candidate:1 1 udp 1 192.0.2.1 1 typ host')).toBe(false);
  });
});

describe('RFC 8839 candidate lines: what is wrong and where', () => {
  const cases: Array<[line: string, code: string, field: string, column: number]> = [
    ['', 'EMPTY', 'line', -1],
    ['   \r\n', 'EMPTY', 'line', -1],
    ['a=candidat:1 1 udp 1 192.0.2.1 1 typ host', 'BAD_PREFIX', 'prefix', 0],
    ['candidate:', 'MISSING_FIELD', 'foundation', 10],
    ['candidate:1 1 udp 1 192.0.2.1 1', 'MISSING_FIELD', '"typ"', 31],
    ['candidate:1 1 udp 1 192.0.2.1 1 typ', 'MISSING_FIELD', 'candidate type', 35],
    ['candidate:1  1 udp 1 192.0.2.1 1 typ host', 'BAD_SEPARATOR', 'line', 12],
    ['candidate:1\t1 udp 1 192.0.2.1 1 typ host', 'BAD_CHARACTER', 'line', 11],
    ['candidate:1 1 udp 1 192.0.2.1 1 typ host é', 'BAD_CHARACTER', 'line', 41],
    ['candidate:f-1 1 udp 1 192.0.2.1 1 typ host', 'BAD_FOUNDATION', 'foundation', 10],
    [`candidate:${'a'.repeat(33)} 1 udp 1 192.0.2.1 1 typ host`, 'BAD_FOUNDATION', 'foundation', 10],
    ['candidate:1 0 udp 1 192.0.2.1 1 typ host', 'BAD_COMPONENT', 'component', 12],
    ['candidate:1 257 udp 1 192.0.2.1 1 typ host', 'BAD_COMPONENT', 'component', 12],
    ['candidate:1 1 u(p 1 192.0.2.1 1 typ host', 'BAD_TRANSPORT', 'transport', 14],
    ['candidate:1 1 udp 0 192.0.2.1 1 typ host', 'BAD_PRIORITY', 'priority', 18],
    ['candidate:1 1 udp 2147483648 192.0.2.1 1 typ host', 'BAD_PRIORITY', 'priority', 18],
    ['candidate:1 1 udp -5 192.0.2.1 1 typ host', 'BAD_PRIORITY', 'priority', 18],
    ['candidate:1 1 udp 1.5 192.0.2.1 1 typ host', 'BAD_PRIORITY', 'priority', 18],
    ['candidate:1 1 udp 1 192.0.2.256 1 typ host', 'BAD_ADDRESS', 'address', 20],
    ['candidate:1 1 udp 1 [2001:db8::1] 1 typ host', 'BAD_ADDRESS', 'address', 20],
    ['candidate:1 1 udp 1 fe80::1%eth0 1 typ host', 'BAD_ADDRESS', 'address', 20],
    ['candidate:1 1 udp 1 -bad-.local 1 typ host', 'BAD_ADDRESS', 'address', 20],
    ['candidate:1 1 udp 1 192.0.2.1 65536 typ host', 'BAD_PORT', 'port', 30],
    ['candidate:1 1 udp 1 192.0.2.1 1 type host', 'BAD_TYPE', 'typ', 32],
    ['candidate:1 1 udp 1 192.0.2.1 1 typ stun', 'BAD_TYPE', 'type', 36],
    ['candidate:1 1 udp 1 192.0.2.1 1 typ srflx raddr', 'BAD_RELATED_ADDRESS', 'raddr', 42],
    ['candidate:1 1 udp 1 192.0.2.1 1 typ srflx raddr 1.2.3 rport 5', 'BAD_RELATED_ADDRESS', 'raddr', 48],
    ['candidate:1 1 udp 1 192.0.2.1 1 typ srflx raddr 1.2.3.4 rport x', 'BAD_RELATED_PORT', 'rport', 62],
    ['candidate:1 1 udp 1 192.0.2.1 1 typ srflx generation 0 raddr 1.2.3.4', 'MISPLACED_ATTRIBUTE', 'raddr', 55],
    ['candidate:1 1 udp 1 192.0.2.1 1 typ host raddr 1.2.3.4 raddr 1.2.3.4', 'MISPLACED_ATTRIBUTE', 'raddr', 55],
    ['candidate:1 1 tcp 1 192.0.2.1 9 typ host tcptype sideways', 'BAD_TCPTYPE', 'tcptype', 49],
    ['candidate:1 1 tcp 1 192.0.2.1 9 typ host tcptype active tcptype passive', 'BAD_TCPTYPE', 'tcptype', 56],
    ['candidate:1 1 udp 1 192.0.2.1 1 typ host generation', 'BAD_EXTENSION', 'generation', 41],
    ['candidate:1 1 udp 1 192.0.2.1 1 typ host gen(eration 0', 'BAD_EXTENSION', 'extension', 41],
  ];
  it.each(cases)('%j -> %s', (line, code, field, column) => {
    const e = thrown(CandidateLineError, () => parseCandidateLine(line));
    expect(e.code).toBe(code);
    expect(e.field).toBe(field);
    if (column >= 0) {
      expect(e.column).toBe(column);
      expect(e.message).toContain(`at column ${column}`);
    }
  });

  it('refuses overlong lines before reading them', () => {
    const e = thrown(CandidateLineError, () => parseCandidateLine(`candidate:1 1 udp 1 192.0.2.1 1 typ host x ${'y'.repeat(3000)}`));
    expect(e.code).toBe('TOO_LONG');
  });

  it('refuses to write what it could not read back', () => {
    const base: Candidate = { foundation: '1', component: 1, transport: 'udp', priority: 1, address: '192.0.2.1', port: 1, type: 'host' };
    const bad: Array<[Partial<Candidate>, string]> = [
      [{ foundation: '' }, 'BAD_FOUNDATION'],
      [{ foundation: 'a b' }, 'BAD_FOUNDATION'],
      [{ component: 0 }, 'BAD_COMPONENT'],
      [{ transport: 'u p' }, 'BAD_TRANSPORT'],
      [{ priority: 0 }, 'BAD_PRIORITY'],
      [{ priority: MAX_CANDIDATE_PRIORITY + 1 }, 'BAD_PRIORITY'],
      [{ address: 'not an address' }, 'BAD_ADDRESS'],
      [{ port: 70000 }, 'BAD_PORT'],
      [{ type: 'stun' as never }, 'BAD_TYPE'],
      [{ relatedAddress: '1.2.3' }, 'BAD_RELATED_ADDRESS'],
      [{ relatedPort: -1 }, 'BAD_RELATED_PORT'],
      [{ tcpType: 'both' as never }, 'BAD_TCPTYPE'],
      [{ extensions: [['raddr', '1.2.3.4']] }, 'MISPLACED_ATTRIBUTE'],
      [{ extensions: [['ufrag', '']] }, 'BAD_EXTENSION'],
      [{ extensions: [['a b', 'x']] }, 'BAD_EXTENSION'],
      [{ extensions: [['ufrag', 'x y']] }, 'BAD_EXTENSION'],
    ];
    expect.assertions(bad.length * 2);
    for (const [patch, code] of bad) {
      const e = thrown(CandidateLineError, () => formatCandidateLine({ ...base, ...patch }));
      expect(e.code).toBe(code);
    }
  });
});

// Arbitraries for candidates that the grammar allows.
const iceChars = fc.stringMatching(/^[A-Za-z0-9+/]{1,32}$/);
const token = fc.stringMatching(/^[a-z0-9\-.!%*_+`'~]{1,12}$/);
const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((p) => p.join('.'));
const ipv6 = fc.ipV6();
const fqdn = fc.uuid().map((u) => `${u}.local`);
const address = fc.oneof(ipv4, ipv6, fqdn);
const port = fc.integer({ min: 0, max: 65535 });
const extName = token.filter((n) => !['raddr', 'rport', 'typ', 'tcptype'].includes(n.toLowerCase()));
const extValue = fc.stringMatching(/^[\x21-\x7e]{1,16}$/);
const candidate: fc.Arbitrary<Candidate> = fc
  .record(
    {
      foundation: iceChars,
      component: fc.integer({ min: 1, max: 256 }),
      transport: fc.oneof(fc.constant('udp'), fc.constant('tcp'), token),
      priority: fc.integer({ min: 1, max: MAX_CANDIDATE_PRIORITY }),
      address,
      port,
      type: fc.constantFrom('host', 'srflx', 'prflx', 'relay'),
      relatedAddress: address,
      relatedPort: port,
      tcpType: fc.constantFrom('active', 'passive', 'so'),
      extensions: fc.array(fc.tuple(extName, extValue), { minLength: 1, maxLength: 5 }),
    },
    { requiredKeys: ['foundation', 'component', 'transport', 'priority', 'address', 'port', 'type'] },
  )
  .map((c) => c as Candidate);

describe('RFC 8839 candidate lines: properties', () => {
  it('parse(write(c)) == c for every candidate the grammar allows, in each spelling', () => {
    fc.assert(
      fc.property(candidate, fc.constantFrom('candidate:', 'a=candidate:', '') as fc.Arbitrary<'candidate:' | 'a=candidate:' | ''>, (c, prefix) => {
        const line = formatCandidateLine(c, { prefix });
        expect(parseCandidateLine(line)).toEqual(c);
        expect(parseCandidateLine(`${line}\r\n`)).toEqual(c);
      }),
      { seed: SEED, numRuns: 500 },
    );
  });

  it('on any input, returns a candidate or throws CandidateLineError, nothing else', () => {
    const hostile = fc.oneof(
      fc.string({ maxLength: 200 }),
      fc.string({ unit: 'binary', maxLength: 200 }),
      // Valid lines with one character replaced, inserted or deleted.
      fc.tuple(candidate, fc.nat(), fc.string({ maxLength: 3 }), fc.nat(3)).map(([c, at, s, del]) => {
        const line = formatCandidateLine(c);
        const i = at % (line.length + 1);
        return line.slice(0, i) + s + line.slice(i + del);
      }),
      // Token soup built from the grammar's own words.
      fc.array(fc.constantFrom('candidate:1', '1', 'udp', 'typ', 'host', 'raddr', 'rport', '0', '65536', '::1', 'x.local', 'tcptype', 'so', '', ' '), { maxLength: 20 }).map((a) => a.join(' ')),
    );
    fc.assert(
      fc.property(hostile, (line) => {
        let c: Candidate;
        try {
          c = parseCandidateLine(line);
        } catch (e) {
          if (!(e instanceof CandidateLineError)) throw e;
          expect(e.message.length).toBeLessThan(300);
          return;
        }
        // Whatever parses is valid: it writes and reads back the same.
        expect(parseCandidateLine(formatCandidateLine(c))).toEqual(c);
      }),
      { seed: SEED, numRuns: 3000 },
    );
  });
});

describe('ICE parameters (RFC 8445 5.3, RFC 8839 5.4)', () => {
  it('generates ufrag and pwd of the right length and alphabet', () => {
    const p = generateIceParameters();
    expect(p.ufrag).toMatch(/^[A-Za-z0-9+/]{8}$/);
    expect(p.pwd).toMatch(/^[A-Za-z0-9+/]{24}$/);
    expect(() => validateIceParameters(p)).not.toThrow();
    expect(generateIceParameters().pwd).not.toBe(p.pwd);
    const fixed = generateIceParameters((n) => Buffer.alloc(n, 0xff));
    expect(fixed).toEqual({ ufrag: '////////', pwd: '/'.repeat(24) });
  });

  it('refuses short, long and non-ice-char values, without echoing the password', () => {
    const cases: Array<[{ ufrag: string; pwd: string }, string]> = [
      [{ ufrag: 'abc', pwd: 'p'.repeat(22) }, 'ufrag'],
      [{ ufrag: 'a'.repeat(257), pwd: 'p'.repeat(22) }, 'ufrag'],
      [{ ufrag: 'ab:c', pwd: 'p'.repeat(22) }, 'ufrag'],
      [{ ufrag: 'abcd', pwd: 'p'.repeat(21) }, 'pwd'],
      [{ ufrag: 'abcd', pwd: `${'s'.repeat(21)}!` }, 'pwd'],
      [{ ufrag: 'abcd', pwd: 'p'.repeat(257) }, 'pwd'],
    ];
    expect.assertions(cases.length * 4);
    for (const [p, field] of cases) {
      const e = thrown(CandidateLineError, () => validateIceParameters(p));
      expect(e.code).toBe('BAD_CREDENTIAL');
      expect(e.field).toBe(field);
      expect(e.message).not.toContain(p.pwd);
    }
  });
});

describe('the libjingle tutorial line ("%s %d %s %f %s %s %s\\n")', () => {
  const j: JingleCandidate = { address: '192.0.2.1', port: 5000, protocol: 'udp', preference: 1, type: 'local', username: 'Ab3+', password: 'Q'.repeat(22) };

  it('writes what the tutorial writes and reads it back', () => {
    const line = formatJingleLine(j);
    expect(line).toBe(`192.0.2.1 5000 udp 1.000000 local Ab3+ ${'Q'.repeat(22)}\n`);
    expect(parseJingleLine(line)).toEqual(j);
    expect(parseJingleLine(line.trimEnd())).toEqual(j);
    expect(formatJingleLine({ ...j, address: '2001:db8::1', preference: 0.5, type: 'relay' })).toBe(`2001:db8::1 5000 udp 0.500000 relay Ab3+ ${'Q'.repeat(22)}\n`);
  });

  it('reads what a tutorial client sends (libjingle usernames and passwords)', () => {
    expect(parseJingleLine('200.184.118.140 7000 udp 0.900000 stun h2VZbYuSvQtXQS2o 8CfXgeZqJDrl8PfN\n')).toEqual({
      address: '200.184.118.140',
      port: 7000,
      protocol: 'udp',
      preference: 0.9,
      type: 'stun',
      username: 'h2VZbYuSvQtXQS2o',
      password: '8CfXgeZqJDrl8PfN',
    });
  });

  it('says what is wrong and where', () => {
    const cases: Array<[string, string, string]> = [
      ['', 'EMPTY', 'line'],
      ['192.0.2.1 5000 udp 1.0 local user', 'BAD_FIELD_COUNT', 'line'],
      ['192.0.2.1 5000 udp 1.0 local user pass extra', 'BAD_FIELD_COUNT', 'line'],
      ['192.0.2.1  5000 udp 1.0 local user pass', 'BAD_SEPARATOR', 'line'],
      ['host.example 5000 udp 1.0 local user pass', 'BAD_ADDRESS', 'address'],
      ['192.0.2.1 70000 udp 1.0 local user pass', 'BAD_PORT', 'port'],
      ['192.0.2.1 5000 u/p 1.0 local user pass', 'BAD_TRANSPORT', 'protocol'],
      ['192.0.2.1 5000 udp 1.5 local user pass', 'BAD_PREFERENCE', 'preference'],
      ['192.0.2.1 5000 udp -0.5 local user pass', 'BAD_PREFERENCE', 'preference'],
      ['192.0.2.1 5000 udp nan local user pass', 'BAD_PREFERENCE', 'preference'],
      ['192.0.2.1 5000 udp 1e0 local user pass', 'BAD_PREFERENCE', 'preference'],
      ['192.0.2.1 5000 udp 1.0 host user pass', 'BAD_TYPE', 'type'],
      [`192.0.2.1 5000 udp 1.0 local ${'u'.repeat(100)} pass`, 'TOO_LONG', 'field'],
      ['192.0.2.1 5000 udp 1.0 local us\u0000r pass', 'BAD_CHARACTER', 'line'],
    ];
    expect.assertions(cases.length * 3 + 2);
    for (const [line, code, field] of cases) {
      const e = thrown(CandidateLineError, () => parseJingleLine(line));
      expect(e.code).toBe(code);
      expect(e.field).toBe(field);
    }
    expect(thrown(CandidateLineError, () => parseJingleLine('192.0.2.1 5000 udp 1.0 lokal user pass')).column).toBe(23);
  });

  it("refuses to write what would overflow the tutorial's buffers or split its fields", () => {
    expect(thrown(CandidateLineError, () => formatJingleLine({ ...j, password: 'p'.repeat(100) })).code).toBe('BAD_CREDENTIAL');
    expect(thrown(CandidateLineError, () => formatJingleLine({ ...j, username: 'a b' })).code).toBe('BAD_CREDENTIAL');
    expect(thrown(CandidateLineError, () => formatJingleLine({ ...j, preference: 2 })).code).toBe('BAD_PREFERENCE');
    expect(thrown(CandidateLineError, () => formatJingleLine({ ...j, address: 'a.local' })).code).toBe('BAD_ADDRESS');
  });

  it('maps to ICE: type, priority from preference, credentials', () => {
    const { candidate, parameters } = jingleToIce(j);
    expect(parameters).toEqual({ ufrag: 'Ab3+', pwd: 'Q'.repeat(22) });
    expect(candidate).toMatchObject({ component: 1, transport: 'udp', priority: 2130706431, address: '192.0.2.1', port: 5000, type: 'host' });
    expect(candidate.foundation).toMatch(/^[0-9]+$/);
    expect(jingleToIce({ ...j, type: 'stun', preference: 1 }).candidate).toMatchObject({ type: 'srflx', priority: 1694498815 });
    expect(jingleToIce({ ...j, type: 'relay', preference: 0.5 }).candidate).toMatchObject({ type: 'relay', priority: candidatePriority(0, 32768, 1) });
    // The tutorial's own libjingle credentials are too short for ICE: a clear error.
    const e = thrown(CandidateLineError, () => jingleToIce({ ...j, password: '8CfXgeZqJDrl8PfN' }));
    expect(e.code).toBe('BAD_CREDENTIAL');
    expect(e.field).toBe('pwd');
  });

  it('maps from ICE and back exactly for RFC 8445 priorities', () => {
    const types = [
      ['host', 'local'],
      ['srflx', 'stun'],
      ['relay', 'relay'],
    ] as const;
    const params = { ufrag: 'Ab3+', pwd: 'Q'.repeat(22) };
    fc.assert(
      fc.property(fc.constantFrom(...types), fc.integer({ min: 0, max: 65535 }), ipv4, port, ([iceType, jType], localPref, addr, p) => {
        const priority = candidatePriority(TYPE_PREFERENCE[iceType], localPref, 1);
        const c: Candidate = { foundation: '7', component: 1, transport: 'udp', priority, address: addr, port: p, type: iceType };
        const jl = iceToJingle(c, params);
        expect(jl.type).toBe(jType);
        // Through the text line, as a tutorial pipe carries it.
        const back = jingleToIce(parseJingleLine(formatJingleLine(jl)));
        expect(back.candidate).toMatchObject({ priority, type: iceType, address: addr, port: p, component: 1 });
        expect(back.parameters).toEqual(params);
      }),
      { seed: SEED, numRuns: 500 },
    );
    expect(iceToJingle({ foundation: '1', component: 1, transport: 'udp', priority: 1862270975, address: '192.0.2.1', port: 1, type: 'prflx' }, params).type).toBe('stun');
  });

  it('parse(write(x)) == x, and hostile input only ever gives CandidateLineError', () => {
    const cred = fc.stringMatching(/^[\x21-\x7e]{1,99}$/);
    const jingle: fc.Arbitrary<JingleCandidate> = fc.record({
      address: fc.oneof(ipv4, ipv6),
      port,
      protocol: fc.constantFrom('udp', 'tcp', 'ssltcp'),
      preference: fc.integer({ min: 0, max: 1_000_000 }).map((n) => n / 1e6),
      type: fc.constantFrom('local', 'stun', 'relay'),
      username: cred,
      password: cred,
    });
    fc.assert(
      fc.property(jingle, (x) => {
        expect(parseJingleLine(formatJingleLine(x))).toEqual(x);
      }),
      { seed: SEED, numRuns: 500 },
    );
    fc.assert(
      fc.property(fc.oneof(fc.string({ maxLength: 120 }), fc.array(fc.constantFrom('1.2.3.4', '5', 'udp', '0.5', '1', 'local', 'stun', 'x', '', '::'), { maxLength: 9 }).map((a) => a.join(' '))), (line) => {
        try {
          const x = parseJingleLine(line);
          expect(parseJingleLine(formatJingleLine(x))).toEqual(x);
        } catch (e) {
          if (!(e instanceof CandidateLineError)) throw e;
        }
      }),
      { seed: SEED, numRuns: 2000 },
    );
  });
});
