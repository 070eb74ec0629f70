// How cheap the two-peer labs are, and how many cells of issue 8's test can run side by side
// on this machine: a measurement, not a test (vitest runs *.bench.ts files only under `vitest
// bench`, never in `pnpm test`).
//
//   CI=true npx vitest bench --run test/natlab/lab-capacity.bench.ts
//
// It measures, one at a time: making and removing a two-peer lab (createPeerLab, then
// destroy; median of 9), and starting the harness's servers in it (stunserver and relayserver:
// two of the three node processes the real cell starts; signalserver is not on main yet). Then
// the 25 cells of the grid with stand-ins for the two demos (each peer runs `natcheck --json`
// through the lab's stunserver with its default timeouts: the demo starts with the same NAT
// report, and what comes after it, ICE checks, is light), at several concurrencies: the wall
// time for all 25, and each cell's own time (median, max), which grows when the machine is
// overloaded.
import { performance } from 'node:perf_hooks';
import { join } from 'node:path';
import { bench, describe } from 'vitest';
import { type NatType, createPeerLab, natLabUnavailable } from '../helpers/natlab.js';
import { ROOT, startLabServers } from './p2p-harness.js';

const TYPES: NatType[] = ['none', 'full-cone', 'restricted-cone', 'port-restricted-cone', 'symmetric'];
const NATCHECK = join(ROOT, 'packages/stun/bin/natcheck.js');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const ms = (x: number) => `${Math.round(x)} ms`;

async function standInCell(a: NatType, b: NatType): Promise<{ totalMs: number; labMs: number; serversMs: number; peersMs: number; stopMs: number }> {
  const t0 = performance.now();
  const lab = await createPeerLab(a, b);
  const t1 = performance.now();
  try {
    const servers = await startLabServers(lab, { signal: false });
    const t2 = performance.now();
    try {
      const runs = await Promise.all(lab.peers.map((p) => lab.run(p.ns, process.execPath, [NATCHECK, '--json', '203.0.113.1:3478'], { timeoutMs: 60_000 })));
      for (const r of runs) if (r.code !== 0) throw new Error(`natcheck failed: ${r.stderr}`);
    } finally {
      const t3 = performance.now();
      await servers.stop();
      await lab.destroy();
      const t4 = performance.now();
      return { totalMs: t4 - t0, labMs: t1 - t0, serversMs: t2 - t1, peersMs: t3 - t2, stopMs: t4 - t3 };
    }
  } catch (err) {
    await lab.destroy();
    throw err;
  }
}

describe('two-peer lab capacity', () => {
  bench(
    'measure',
    async () => {
      const why = await natLabUnavailable();
      if (why) throw new Error(why);
      const create: number[] = [];
      const destroy: number[] = [];
      const start: number[] = [];
      for (let i = 0; i < 9; i++) {
        const t0 = performance.now();
        const lab = await createPeerLab('port-restricted-cone', 'symmetric');
        const t1 = performance.now();
        if (i < 5) {
          const s = await startLabServers(lab, { signal: false });
          start.push(performance.now() - t1);
          await s.stop();
        }
        const t2 = performance.now();
        await lab.destroy();
        create.push(t1 - t0);
        destroy.push(performance.now() - t2);
      }
      console.log(`two-peer lab, one at a time: create ${ms(median(create))}, destroy ${ms(median(destroy))} (medians of 9); stunserver + relayserver up in ${ms(median(start))} (median of 5)`);
      const cells = TYPES.flatMap((a) => TYPES.map((b) => [a, b] as const));
      for (const concurrency of (process.env.NATKIT_CAPACITY_LEVELS ?? '1,4,8,12').split(',').map(Number)) {
        const t0 = performance.now();
        const each: Awaited<ReturnType<typeof standInCell>>[] = [];
        const failed: string[] = [];
        let next = 0;
        await Promise.all(
          Array.from({ length: concurrency }, async () => {
            while (next < cells.length) {
              const [a, b] = cells[next++]!;
              try {
                each.push(await standInCell(a, b));
              } catch (err) {
                failed.push(`${a} x ${b}: ${(err as Error).message.split('\n')[0]}`);
              }
            }
          }),
        );
        const wall = performance.now() - t0;
        const total = each.map((e) => e.totalMs);
        console.log(
          `25 stand-in cells, ${String(concurrency).padStart(2)} at a time: ${(wall / 1000).toFixed(1)} s in all; a cell ${ms(median(total))} median, ${ms(Math.max(...total))} max ` +
            `(lab ${ms(median(each.map((e) => e.labMs)))}, servers ${ms(median(each.map((e) => e.serversMs)))}, peers ${ms(median(each.map((e) => e.peersMs)))}, stop ${ms(median(each.map((e) => e.stopMs)))})` +
            `${failed.length ? `; ${failed.length} FAILED: ${failed.join(' | ')}` : ''}`,
        );
      }
    },
    { iterations: 1, warmupIterations: 0, time: 0, warmupTime: 0 },
  );
});
