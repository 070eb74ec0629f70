#!/usr/bin/env node
// Runs the @natkit/stun benchmarks (codec, then server) and prints a summary table.
//
//   node bench/run.mjs [--quick] [--skip-codec] [--skip-server]
//
// (`pnpm bench` in packages/stun.) Benchmarks are scripts, not tests: nothing here fails
// on a number; it exits non-zero only if a benchmark itself breaks. Each benchmark runs in
// its own process and prints its full report; this script then prints the summary.
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { f0, fx, printSummary, resultTable, runScripts, summaryTitle, tableRow } from './common/bench-lib.mjs';

const t0 = Date.now();
const argv = process.argv.slice(2);
const scripts = [['codec', 'codec.mjs'], ['server', 'server.mjs']];
const { quick: QUICK, results, failures } = await runScripts(dirname(fileURLToPath(import.meta.url)), scripts, argv);
const { codec, server } = results;

// ---------------------------------------------------------------------------------------

const k = (x) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : x >= 1e3 ? `${(x / 1e3).toFixed(0)}k` : x.toFixed(0));
const out = [];
out.push('');
out.push(summaryTitle('@natkit/stun', QUICK));
if (codec) {
  out.push('');
  out.push(`codec: median ops/s over ${codec.rounds} rounds (natkit/other in brackets, > 1 = natkit faster)`);
  const libs = ['natkit', 'stun', 'werift'];
  const W = [27, 17, 17, 17];
  out.push(`  ${tableRow(W, ['operation', ...libs])}`);
  for (const row of codec.rows) {
    const nat = codec.results.find((e) => e.row === row.id && e.lib === 'natkit');
    const cells = libs.map((lib) => {
      const e = codec.results.find((x) => x.row === row.id && x.lib === lib);
      if (e.status === 'cannot') return 'n/a (cannot)';
      if (e.status === 'wrong') return 'WRONG result';
      if (lib === 'natkit' || nat.status !== 'ok') return k(e.median);
      return `${k(e.median)} (${(nat.median / e.median).toFixed(1)}x)`;
    });
    out.push(`  ${tableRow(W, [row.id, ...cells])}`);
  }
  const odd = codec.results.filter((e) => e.status !== 'ok');
  for (const e of odd) out.push(`  ${e.row} / ${e.lib}: ${e.status === 'wrong' ? 'wrong result, not timed' : 'cannot'}: ${e.note}`);
}
if (server) {
  const S = server.summary;
  out.push('');
  out.push(
    `server: Binding requests, ${server.window} in flight over ${server.sockets} sockets, medians over ${server.rounds} rounds of ${server.durationMs} ms` +
      (server.pin.server ? `; server on CPU ${server.pin.server}, load generator on CPU ${server.pin.loadgen}` : `; not pinned (${server.pin.reason})`),
  );
  out.push(
    ...resultTable(
      [16, 10, 9, 9, 14, 7, 9, 12],
      ['server', 'rps', 'p50 us', 'p99 us', 'unloaded p50', 'lost', 'srv cpu', 'cpu us/req'],
      Object.values(S),
      (s) => [f0(s.rps), s.p50.toFixed(0), s.p99.toFixed(0), fx(s.unloadedP50, 0), s.lost, fx(s.serverCpu), fx(s.cpuUsPerReq)],
      { indent: '  ', brief: true },
    ),
  );
  for (const [key, r] of Object.entries(server.ratios)) {
    if (!r) {
      out.push(`  ${key}: no ratio (natkit stunserver not available)`);
      continue;
    }
    out.push(
      `  ${key}: rps ${r.rps.toFixed(2)}x (per-round median ${r.rpsPairedMedian.toFixed(2)}x), CPU/request ${r.cpuPerReq.toFixed(2)}x, ` +
        `p50 latency ${r.p50.toFixed(2)}x, p99 ${r.p99.toFixed(2)}x, unloaded p50 ${r.unloadedP50.toFixed(2)}x`,
    );
  }
  out.push('  (rps and CPU/request ratios: natkit/coturn, rps > 1 and CPU/request < 1 favour natkit; latency ratios < 1 favour natkit)');
  const v = server.loadgenVerdict;
  if (v) {
    out.push(
      `  load generator: C echo ${f0(v.ceilingRps)} rps = ${v.margin.toFixed(2)}x the fastest STUN server (${v.fastest}): ` +
        (v.notTheLimit ? 'not the limit' : 'MAY BE THE LIMIT (margin < 1.2x)') +
        `; CPU-bound servers: ${v.saturatedServers.join(', ') || 'none'}`,
    );
  }
}
printSummary(out, failures, t0);
