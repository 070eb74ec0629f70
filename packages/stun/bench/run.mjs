#!/usr/bin/env node
// Runs the @natkit/stun benchmarks (codec, then server) and prints a summary table.
//
//   node bench/run.mjs [--quick] [--skip-codec] [--skip-server]
//
// (`pnpm bench` in packages/stun.) Benchmarks are scripts, not tests: nothing here fails
// on a number; it exits non-zero only if a benchmark itself breaks. Each benchmark runs in
// its own process and prints its full report; this script then prints the summary.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const tmp = mkdtempSync(join(os.tmpdir(), 'natkit-bench-run-'));

function run(script, extra) {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [join(here, script), ...(QUICK ? ['--quick'] : []), ...extra], { stdio: 'inherit' });
    child.once('exit', (code, signal) => resolve(code === 0 ? null : `${script} exited with ${code ?? signal}`));
  });
}

const failures = [];
const t0 = Date.now();
let codec;
let server;
if (!args.includes('--skip-codec')) {
  console.log(`\n=== codec benchmark (bench/codec.mjs${QUICK ? ' --quick' : ''}) ===\n`);
  const f = join(tmp, 'codec.json');
  const err = await run('codec.mjs', ['--json', f]);
  if (err) failures.push(err);
  else codec = JSON.parse(readFileSync(f, 'utf8'));
}
if (!args.includes('--skip-server')) {
  console.log(`\n=== server benchmark (bench/server.mjs${QUICK ? ' --quick' : ''}) ===\n`);
  const f = join(tmp, 'server.json');
  const err = await run('server.mjs', ['--json', f]);
  if (err) failures.push(err);
  else server = JSON.parse(readFileSync(f, 'utf8'));
}
rmSync(tmp, { recursive: true, force: true });

// ---------------------------------------------------------------------------------------

const k = (x) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : x >= 1e3 ? `${(x / 1e3).toFixed(0)}k` : x.toFixed(0));
const out = [];
out.push('');
out.push(`=== @natkit/stun benchmark summary${QUICK ? ' (--quick: short smoke run, numbers are rough)' : ''} ===`);
if (codec) {
  out.push('');
  out.push(`codec: median ops/s over ${codec.rounds} rounds (natkit/other in brackets, > 1 = natkit faster)`);
  const libs = ['natkit', 'stun', 'werift'];
  out.push(`  ${'operation'.padEnd(27)}${libs.map((l) => l.padStart(17)).join('')}`);
  for (const row of codec.rows) {
    const nat = codec.results.find((e) => e.row === row.id && e.lib === 'natkit');
    const cells = libs.map((lib) => {
      const e = codec.results.find((x) => x.row === row.id && x.lib === lib);
      if (e.status === 'cannot') return 'n/a (cannot)';
      if (e.status === 'wrong') return 'WRONG result';
      if (lib === 'natkit' || nat.status !== 'ok') return k(e.median);
      return `${k(e.median)} (${(nat.median / e.median).toFixed(1)}x)`;
    });
    out.push(`  ${row.id.padEnd(27)}${cells.map((c) => c.padStart(17)).join('')}`);
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
    `  ${'server'.padEnd(16)}${'rps'.padStart(10)}${'p50 us'.padStart(9)}${'p99 us'.padStart(9)}${'unloaded p50'.padStart(14)}${'lost'.padStart(7)}${'srv cpu'.padStart(9)}${'cpu us/req'.padStart(12)}`,
  );
  for (const s of Object.values(S)) {
    if (s.unavailable || !s.rounds) {
      out.push(`  ${s.id.padEnd(16)}NOT AVAILABLE: ${(s.unavailable ?? s.errors.join('; ')).slice(0, 200)}`);
      continue;
    }
    out.push(
      `  ${s.id.padEnd(16)}${Math.round(s.rps).toLocaleString('en-US').padStart(10)}${s.p50.toFixed(0).padStart(9)}${s.p99.toFixed(0).padStart(9)}` +
        `${(Number.isFinite(s.unloadedP50) ? s.unloadedP50.toFixed(0) : '-').padStart(14)}${String(s.lost).padStart(7)}${(Number.isFinite(s.serverCpu) ? s.serverCpu.toFixed(2) : '-').padStart(9)}${(Number.isFinite(s.cpuUsPerReq) ? s.cpuUsPerReq.toFixed(2) : '-').padStart(12)}`,
    );
  }
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
      `  load generator: C echo ${Math.round(v.ceilingRps).toLocaleString('en-US')} rps = ${v.margin.toFixed(2)}x the fastest STUN server (${v.fastest}): ` +
        (v.notTheLimit ? 'not the limit' : 'MAY BE THE LIMIT (margin < 1.2x)') +
        `; CPU-bound servers: ${v.saturatedServers.join(', ') || 'none'}`,
    );
  }
}
for (const f of failures) out.push(`FAILED: ${f}`);
out.push(`(total ${((Date.now() - t0) / 1000).toFixed(0)} s)`);
console.log(out.join('\n'));
process.exit(failures.length ? 1 : 0);
