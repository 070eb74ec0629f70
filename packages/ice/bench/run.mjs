#!/usr/bin/env node
// Runs the @natkit/ice benchmarks, each in its own process, and prints a summary with the
// commands. Scripts, not tests: nothing fails on a number; it exits non-zero only if a
// benchmark itself breaks.
//
//   node bench/run.mjs [--quick] [--skip-connect] [--skip-checks]
//
//   connect.mjs  time to the first selected pair and the first application byte, natkit
//                vs werift, host to host and relay-only (natkit's relayserver), medians
//                and natkit/werift ratios (issue 6's goal: natkit at most half of werift)
//   checks.mjs   connectivity checks per second one agent drives with many pairs, and CPU
//                per check
//
// (`pnpm bench` in packages/ice; the root `pnpm bench` builds first.)
import { fx, here, printSummary, runScripts, summaryTitle } from './lib.mjs';

const t0 = Date.now();
const argv = process.argv.slice(2);
const { quick, results, failures } = await runScripts(here, [['connect', 'connect.mjs'], ['checks', 'checks.mjs']], argv);

const out = ['', summaryTitle('@natkit/ice', quick)];
const c = results.connect;
if (c) {
  out.push('', `1. connect time (bench/connect.mjs${quick ? ' --quick' : ''}): ${c.rounds - 1} measured rounds per agent and case`);
  for (const [scenario, per] of Object.entries(c.results)) {
    const cells = Object.values(per.agents).map((a) =>
      a.summary ? `${a.id}: pair ${fx(a.summary.pair50, 1)} ms, byte ${fx(a.summary.byte50, 1)} ms` : `${a.id}: ${a.unavailable ?? a.errors.slice(0, 2).join('; ')}`,
    );
    out.push(`  ${scenario.padEnd(6)} ${cells.join(' | ')}`);
    for (const [id, r] of Object.entries(per.ratios ?? {})) out.push(`         ${id}/werift: pair ${fx(r.pair)}x, byte ${fx(r.byte)}x (goal <= 0.50)`);
  }
  out.push(`  load average ${c.load.start.map((x) => x.toFixed(2)).join(' ')} -> ${c.load.end.map((x) => x.toFixed(2)).join(' ')}`);
}
const k = results.checks;
if (k) {
  out.push('', `2. checks per second (bench/checks.mjs${quick ? ' --quick' : ''}, natkit Ta ${k.ta} ms):`);
  for (const r of k.rows) out.push(`  ${r.id.padEnd(22)} N=${String(r.n).padStart(5)}: ${fx(r.checksPerSec, 0)} checks/s, ${fx(r.cpuUsPerCheck, 1)} us CPU per check`);
  for (const e of k.errors) out.push(`  error: ${e}`);
  out.push(...k.report.filter((l) => l.startsWith('natkit: NOT MEASURED')).map((l) => `  ${l}`));
}
printSummary(out, failures, t0);
