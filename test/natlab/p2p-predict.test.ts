// The prediction the two-peer lab test (p2p.test.ts) holds p2pdemo to: pure, runs anywhere.
import { describe, expect, test } from 'vitest';
import type { Dependence, NatBehaviour, NatType } from '../helpers/natlab.js';
import { predictPath } from '../helpers/vnet/index.js';
import { type CellNat, pairAsPredicted, predictCell } from './p2p-predict.js';

const TYPES: NatType[] = ['none', 'full-cone', 'restricted-cone', 'port-restricted-cone', 'symmetric'];

describe('predictCell', () => {
  test("issue 8's 5x5: direct everywhere but port-restricted/symmetric and symmetric/symmetric", () => {
    const table = TYPES.map((a) => TYPES.map((b) => (predictCell(a, b).path === 'direct' ? 'D' : 'R')).join(''));
    expect(table).toEqual([
      // none, full, restricted, port-restricted, symmetric
      'DDDDD', // none
      'DDDDD', // full cone
      'DDDDD', // restricted cone
      'DDDDR', // port-restricted cone
      'DDDRR', // symmetric
    ]);
  });

  test('is the same both ways round, with the sides swapped', () => {
    for (const a of TYPES) {
      for (const b of TYPES) {
        const ab = predictCell(a, b);
        const ba = predictCell(b, a);
        expect(ba.path).toBe(ab.path);
        expect([ba.a, ba.b]).toEqual([ab.b, ab.a]);
      }
    }
  });

  test('names the candidates of each side and says why', () => {
    expect(predictCell('none', 'none')).toMatchObject({ path: 'direct', a: { local: 'host', remote: 'host' }, b: { local: 'host', remote: 'host' } });
    expect(predictCell('port-restricted-cone', 'port-restricted-cone')).toMatchObject({ a: { local: 'srflx', remote: 'srflx' } });
    // the symmetric peer's checks come from a new mapping: peer-reflexive on both ends
    const rs = predictCell('restricted-cone', 'symmetric');
    expect(rs).toMatchObject({ path: 'direct', a: { local: 'srflx', remote: 'prflx' }, b: { local: 'prflx', remote: 'srflx' } });
    expect(rs.why).toMatch(/restricted-cone's address-dependent filter lets symmetric's checks in/);
    expect(predictCell('port-restricted-cone', 'symmetric').why).toMatch(
      /symmetric's address-and-port-dependent filter drops port-restricted-cone's checks \(its mapping has only talked to the STUN server\); port-restricted-cone's address-and-port-dependent filter drops symmetric's checks \(from a port it never addressed\): relayed/,
    );
  });

  // Every behaviour the lab can build, in front of either peer: the lab's reasoning and the
  // virtual network's (written apart, by different people) must agree on all of them.
  const DEPS: Dependence[] = ['endpoint-independent', 'address-dependent', 'address-and-port-dependent'];
  const ALL: CellNat[] = [...TYPES, 'firewall', ...DEPS.flatMap((mapping) => DEPS.map((filtering): NatBehaviour => ({ mapping, filtering })))];
  test(`agrees with the virtual network's predictPath on all ${ALL.length * ALL.length} pairs of behaviours`, () => {
    let direct = 0;
    for (const a of ALL) {
      for (const b of ALL) {
        const mine = predictCell(a, b);
        const theirs = predictPath(a, b);
        const why = `${JSON.stringify(a)} / ${JSON.stringify(b)}: ${mine.why} | vnet: ${theirs.why}`;
        expect(mine.path, why).toBe(theirs.path === 'relay' ? 'relayed' : 'direct');
        expect([mine.a, mine.b], why).toEqual([theirs.a, theirs.b]);
        if (mine.path === 'direct') direct++;
      }
    }
    // neither side is trivially "always direct" or "always relayed"
    expect(direct).toBeGreaterThan(ALL.length);
    expect(direct).toBeLessThan(ALL.length * ALL.length);
  });

  test('pairAsPredicted: the predicted types, or prflx for a predicted srflx (learnt before it was gathered or signalled), nothing else', () => {
    const ss = { local: 'srflx', remote: 'srflx' } as const;
    expect(pairAsPredicted(ss, ss)).toBe(true);
    expect(pairAsPredicted(ss, { local: 'prflx', remote: 'prflx' })).toBe(true);
    expect(pairAsPredicted(ss, { local: 'host', remote: 'srflx' })).toBe(false);
    expect(pairAsPredicted(ss, { local: 'srflx', remote: 'relay' })).toBe(false);
    expect(pairAsPredicted({ local: 'host', remote: 'prflx' }, { local: 'prflx', remote: 'prflx' })).toBe(false);
    expect(pairAsPredicted({ local: 'prflx', remote: 'srflx' }, { local: 'srflx', remote: 'srflx' })).toBe(false);
  });
});
