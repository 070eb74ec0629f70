// Issue 8, "Two peers across real NATs": two p2pdemo peers, each behind its own NAT of type
// {none, full cone, restricted cone, port-restricted cone, symmetric}, connect through
// stunserver, relayserver and signalserver in the lab's public namespace, in all 25
// combinations; the path each pair selects must be the one RFC 4787 predicts (predictCell,
// p2p-predict.ts: direct wherever a pair of mappings and filters admits it, relayed otherwise).
// Then the issue's three kinds of trouble: 10 % loss on both NATs (they still connect); UDP
// mappings that expire after 30 s idle and two minutes without application data (still
// connected: keepalives hold the mappings); a NAT that drops its mappings or changes its public
// address under a live session (the peers notice, recover, and say how long it took).
//
// All of it is one list of cells run side by side, at most CONCURRENCY at a time, each in its
// own lab (p2p-harness.ts runs a cell); the tests below each assert their part of the results.
// The results go to $NATKIT_P2P_RESULTS (default: natkit-p2p-results.json in the system's
// temporary directory), from which `node test/natlab/p2p-table.mjs FILE` rewrites the README's
// table.
//
// Cost, measured with stand-ins for the demos (test/natlab/lab-capacity.bench.ts: each peer
// runs natcheck, as the demo does first; this 2-core machine, shared): a cell (lab, stunserver
// and relayserver, two peers, teardown) takes ~9 s alone, mostly the peers' waiting. The 25
// cells took 193 s one at a time and 31 s eight at a time, each cell no slower than alone
// (load average ~5 from others' work); under heavy load from others (load ~17) 198 s one at
// a time, 60 s four, 52 s eight and 48 s twelve at a time, where single cells stretch (the
// slowest 35 s against 24 s at eight). Hence eight. The idle cells (two minutes and more each)
// start first and run beside the others, so the whole list is bounded by them, not the sum.
// With p2pdemo itself (its NAT check first, about 4.5 s behind a filtering NAT): a connect
// cell takes 12-25 s, a flush or renumber cell 20-35 s, an idle cell about 140 s; the 38
// cells took 143 s and 159 s eight at a time (load average 5 to 15 from others' work).
// Connect times run from 1 s (no NAT) to 12 s under that load, ICE's own part 0.05-1.7 s.
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { describe, expect, test } from 'vitest';
import { verdictFor } from '../helpers/natcheck-verdicts.js';
import { type NatBehaviour, type NatType, needNatLab } from '../helpers/natlab.js';
import { type CellOptions, type CellResult, describeCell, findP2pdemo, runCells, writeResults } from './p2p-harness.js';
import { pairAsPredicted } from './p2p-predict.js';

const TYPES: NatType[] = ['none', 'full-cone', 'restricted-cone', 'port-restricted-cone', 'symmetric'];
const CONCURRENCY = 8;
const RESULTS = process.env.NATKIT_P2P_RESULTS ?? join(tmpdir(), 'natkit-p2p-results.json');

// The trouble, on cells that cover each way of connecting: direct through two
// server-reflexive candidates (port-restricted x port-restricted), direct through a
// peer-reflexive one (restricted x symmetric), relayed (port-restricted x symmetric,
// symmetric x symmetric). Long waits run once, not per cell (the brief's CI budget).
// Flushes: a port-preserving cone hands the same mappings back at the next packet out, so
// the path is kept (nothing to notice); the same cone with random ports, and a symmetric
// NAT, hand out new ones, so the path breaks and the peers must recover.
const RANDOM_PORT_CONE: NatBehaviour = { mapping: 'endpoint-independent', filtering: 'address-and-port-dependent', portAllocation: 'random' };
const TROUBLE: CellOptions[] = [
  { a: 'port-restricted-cone', b: 'port-restricted-cone', scenario: 'idle', mappingTimeoutSec: 30, idleSec: 120 },
  { a: 'symmetric', b: 'symmetric', scenario: 'idle', mappingTimeoutSec: 30, idleSec: 120 },
  ...(['port-restricted-cone', 'symmetric'] as const).flatMap((b) =>
    (['port-restricted-cone', 'restricted-cone', 'symmetric'] as const).map((a): CellOptions => ({ a, b, scenario: 'connect', loss: 10 })),
  ),
  { a: 'port-restricted-cone', b: 'restricted-cone', scenario: 'flush' },
  { a: RANDOM_PORT_CONE, b: 'restricted-cone', scenario: 'flush' },
  { a: 'symmetric', b: 'full-cone', scenario: 'flush' },
  { a: 'port-restricted-cone', b: 'restricted-cone', scenario: 'renumber' },
  { a: 'port-restricted-cone', b: 'symmetric', scenario: 'renumber' },
];
const CELLS: CellOptions[] = [...TROUBLE, ...TYPES.flatMap((a) => TYPES.map((b): CellOptions => ({ a, b })))];

let run: Promise<CellResult[]> | undefined;
/** Runs every cell once (on first demand), writes the results file, and hands the results to each test. */
function results(): Promise<CellResult[]> {
  run ??= (async () => {
    const demo = findP2pdemo();
    if (!demo) throw new Error('p2pdemo is not there: see findP2pdemo() in p2p-harness.ts for where it is looked for');
    const t0 = performance.now();
    const cells = await runCells(demo, CELLS, CONCURRENCY);
    const wallMs = Math.round(performance.now() - t0);
    writeResults(RESULTS, {
      made: new Date().toISOString().slice(0, 10),
      node: process.version,
      command: 'CI=true npx vitest run test/natlab/p2p.test.ts',
      concurrency: CONCURRENCY,
      wallMs,
      cells,
    });
    console.log(`two-peer lab: ${cells.length} cells in ${Math.round(wallMs / 1000)} s, ${CONCURRENCY} at a time; results in ${RESULTS}`);
    return cells;
  })();
  return run;
}

const pick = (all: CellResult[], f: (o: CellOptions) => boolean) => CELLS.flatMap((o, i) => (f(o) ? [all[i]!] : []));

describe('two p2pdemo peers across real NATs (issue 8)', () => {
  test('all 25 pairs of NAT types connect, directly where RFC 4787 allows, relayed where it does not', async (ctx) => {
    await needNatLab(ctx);
    const cells = pick(await results(), (o) => (o.scenario ?? 'connect') === 'connect' && !o.loss);
    expect(cells).toHaveLength(25);
    const wrong = cells.filter((c) => !c.connected || c.error || c.path !== c.predicted.path);
    expect(wrong.map(describeCell).join('\n\n')).toBe('');
    for (const c of cells) {
      // both peers agree, their lines kept the contract, and each demo named the NAT it is behind
      // (as natcheck must classify the lab's NATs: natcheck-verdicts.ts)
      const settled = c.peers.map((p) => p.pathChanges?.at(-1) ?? p.path);
      expect(settled.map((p) => p?.kind), describeCell(c)).toEqual([c.path, c.path]);
      if (c.peers.some((p) => p.pathChanges)) console.log(`the selected pair changed before it settled: ${describeCell(c)}`);
      // a direct path through the candidates predictCell names (host, srflx or prflx on each end)
      const { a, b } = c.predicted;
      if (a && b) {
        const types = settled.map((p) => ({ local: p!.local.type, remote: p!.remote.type }));
        expect([pairAsPredicted(a, types[0]!), pairAsPredicted(b, types[1]!)], `${describeCell(c)}\npredicted A ${a.local}-${a.remote}, B ${b.local}-${b.remote}`).toEqual([true, true]);
      }
      expect(c.peers.flatMap((p) => p.broken), describeCell(c)).toEqual([]);
      expect(c.peers.map((p) => p.nat), describeCell(c)).toEqual([verdictFor(c.a).classic, verdictFor(c.b).classic]);
    }
  }, 900_000);

  test('with 10 % loss on both NATs (each way) they still connect; never direct where RFC 4787 allows none', async (ctx) => {
    await needNatLab(ctx);
    const cells = pick(await results(), (o) => !!o.loss);
    expect(cells).toHaveLength(6);
    for (const c of cells) {
      expect(c.connected && !c.error, describeCell(c)).toBe(true);
      expect(c.peers.map((p) => (p.pathChanges?.at(-1) ?? p.path)?.kind), describeCell(c)).toEqual([c.path, c.path]);
      // Where a direct path exists it may still come out relayed: when the checks that open it
      // are lost long enough, the controlling agent settles for the relayed pair it has (RFC
      // 8445 regular nomination; @natkit/ice gives a better pair two unanswered sends, about
      // 0.5 s, before it nominates a worse one). A direct path where none can exist would be
      // wrong either way.
      if (c.predicted.path === 'relayed') expect(c.path, describeCell(c)).toBe('relayed');
      else if (c.path !== 'direct') console.log(`10 % loss: ${c.a} x ${c.b} settled for the relay (checks lost): ${describeCell(c)}`);
    }
  }, 900_000);

  test('behind NATs whose UDP mappings expire after 30 s, two minutes without application data: still connected', async (ctx) => {
    await needNatLab(ctx);
    const cells = pick(await results(), (o) => o.scenario === 'idle');
    expect(cells).toHaveLength(2);
    for (const c of cells) {
      expect(c.error, describeCell(c)).toBeUndefined();
      // the demo really sent nothing for two minutes (else this proves nothing)...
      expect(c.idleData, describeCell(c)).toBe(0);
      // ...and nothing broke, and bytes arrive both ways after it
      expect(c.heldIdle, describeCell(c)).toBe(true);
    }
  }, 900_000);

  test('when a NAT drops its mappings or changes its public address, the peers recover and say how long it took', async (ctx) => {
    await needNatLab(ctx);
    const cells = pick(await results(), (o) => o.scenario === 'flush' || o.scenario === 'renumber');
    // at least one of each that must break (the test would prove little otherwise)
    expect(cells.filter((c) => c.expectBreak && c.scenario === 'flush').length).toBeGreaterThanOrEqual(1);
    expect(cells.filter((c) => c.scenario === 'renumber').length).toBeGreaterThanOrEqual(1);
    for (const c of cells) {
      expect(c.error, describeCell(c)).toBeUndefined();
      if (!c.expectBreak) {
        // a port-preserving NAT gave the same mappings back: no break, bytes kept flowing
        expect(c.outcome, describeCell(c)).toBe('kept');
        expect(c.breaks, describeCell(c)).toBe(0);
        console.log(`${c.a} x ${c.b}, ${c.scenario}: the path was kept (the NAT handed out the same mappings again)`);
        continue;
      }
      expect(c.outcome, describeCell(c)).toBe('recovered');
      expect(c.recovered, describeCell(c)).toBe(true);
      for (const p of c.peers) {
        expect(p.recoveryMs, describeCell(c)).toBeGreaterThan(0);
        // the demo reports it too (its own clock: from when it saw the path break)
        expect(p.reportedRecoveryMs, describeCell(c)).toBeGreaterThan(0);
        expect(p.reportedRecoveryMs!, describeCell(c)).toBeLessThanOrEqual(p.recoveryMs! + 1000);
      }
      console.log(
        `${c.a} x ${c.b}, ${c.scenario}: recovered in ${c.peers.map((p) => `${p.recoveryMs} ms`).join(' / ')} after the change ` +
          `(the demo: ${c.peers.map((p) => `${p.reportedRecoveryMs} ms after noticing${p.reportedOutageMs !== undefined ? `, ${p.reportedOutageMs} ms since the last consent answer` : ''}`).join(' / ')})`,
      );
    }
  }, 900_000);
});
