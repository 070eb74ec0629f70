import { describe, expect, it } from 'vitest';
import { TYPE_PREFERENCE, candidateFoundation, candidatePriority, pairPriority } from '../src/index.js';

describe('candidate priority (RFC 8445 section 5.1.2.1)', () => {
  it('gives the numbers browsers and libnice put on the wire', () => {
    // host, local preference 65535, component 1: the priority of most host candidates seen in SDP.
    expect(candidatePriority(TYPE_PREFERENCE.host, 65535, 1)).toBe(2130706431);
    expect(candidatePriority(TYPE_PREFERENCE.prflx, 65535, 1)).toBe(1862270975);
    expect(candidatePriority(TYPE_PREFERENCE.srflx, 65535, 1)).toBe(1694498815);
    expect(candidatePriority(TYPE_PREFERENCE.relay, 65535, 1)).toBe(16777215);
    // component 2 (RTCP) is one less.
    expect(candidatePriority(TYPE_PREFERENCE.host, 65535, 2)).toBe(2130706430);
  });

  it('stays unsigned with the top bit set', () => {
    expect(candidatePriority(126, 65535, 1)).toBeGreaterThan(0);
    expect(candidatePriority(0, 0, 256)).toBe(0);
  });

  it('refuses values outside the ranges RFC 8445 allows', () => {
    expect(() => candidatePriority(127, 0, 1)).toThrow(RangeError);
    expect(() => candidatePriority(126, 65536, 1)).toThrow(RangeError);
    expect(() => candidatePriority(126, 0, 0)).toThrow(RangeError);
    expect(() => candidatePriority(126, 0, 257)).toThrow(RangeError);
    expect(() => candidatePriority(1.5, 0, 1)).toThrow(RangeError);
  });
});

describe('pair priority (RFC 8445 section 6.1.2.3), exact beyond 2^53', () => {
  it('matches worked numbers', () => {
    // G = host 2130706431 (controlling), D = relay 16777215 (controlled):
    // 2^32 * 16777215 + 2 * 2130706431 + 1.
    expect(pairPriority(2130706431, 16777215)).toBe(72057594004373503n);
    // The same pair seen from the other side: G < D, so no +1.
    expect(pairPriority(16777215, 2130706431)).toBe(72057594004373502n);
    // srflx (controlling) against host (controlled).
    expect(pairPriority(1694498815, 2130706431)).toBe(7277816997797167102n);
    // Both at 2^32 - 1: the result needs 65 bits.
    expect(pairPriority(4294967295, 4294967295)).toBe(18446744078004518910n);
  });

  it('is not what werift computes with (1 << 32)', () => {
    const g = 2130706431;
    const d = 16777215;
    const wrong = (1 << 32) * Math.min(g, d) + 2 * Math.max(g, d) + (g > d ? 1 : 0);
    expect(BigInt(wrong)).not.toBe(pairPriority(g, d));
  });

  it('orders pairs by the lower priority first, then the higher, then the role bit', () => {
    expect(pairPriority(100, 200) > pairPriority(300, 50)).toBe(true);
    expect(pairPriority(200, 100) > pairPriority(100, 200)).toBe(true);
  });
});

describe('foundations (RFC 8445 section 5.1.1.3)', () => {
  it('are equal exactly when type, base IP, server IP and transport are', () => {
    const f = candidateFoundation('srflx', '10.0.0.2', '203.0.113.1', 'udp');
    expect(f).toMatch(/^[0-9]{1,10}$/);
    expect(candidateFoundation('srflx', '10.0.0.2', '203.0.113.1', 'UDP')).toBe(f);
    expect(candidateFoundation('srflx', '10.0.0.3', '203.0.113.1', 'udp')).not.toBe(f);
    expect(candidateFoundation('srflx', '10.0.0.2', '203.0.113.9', 'udp')).not.toBe(f);
    expect(candidateFoundation('relay', '10.0.0.2', '203.0.113.1', 'udp')).not.toBe(f);
    expect(candidateFoundation('srflx', '10.0.0.2', '203.0.113.1', 'tcp')).not.toBe(f);
    // One address, two spellings: one foundation.
    expect(candidateFoundation('host', '2001:db8:0:0::1', undefined)).toBe(candidateFoundation('host', '2001:db8::1', undefined));
  });
});
