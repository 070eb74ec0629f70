#!/usr/bin/env node
// Time to connect: natkit's IceAgent and werift 0.24.4's ICE Connection, each as two agents
// in this process paired with each other (A controlling, B controlled), host to host on
// 127.0.0.1 and relay-only through natkit's relayserver on 127.0.0.1, in the same run,
// rounds interleaved (natkit, werift, natkit, ...) so that the machine's other work falls
// on both alike. Per round: ms from start (before the agents are made) to the first
// selected pair, and to the first application datagram received (each side sends one
// the moment it has its pair). Medians over rounds, the first round of each discarded as
// warm-up, and natkit/werift ratios (issue 6's goal: at most 0.5).
//
// natkit runs twice: with its defaults (RFC 8445 regular nomination, Ta 50 ms: the
// nominating check waits one Ta after the first check, so a connection takes at least
// 50 ms), and with aggressive nomination, which is what werift always does (USE-CANDIDATE
// on every check): that row is the like-for-like comparison. A third row keeps regular
// nomination with Ta at 5 ms, the lowest RFC 8445 14.2 allows: the pacing is the whole gap.
//
//   node bench/connect.mjs [--quick] [--rounds N] [--only host,relay] [--json FILE]
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { IceAgent, NATKIT_MISSING, WERIFT_VERSION, argsOf, fx, median, natkitRound, startRelay, stop, tableRow, weriftRound } from './lib.mjs';

const { opt, quick, json } = argsOf();
const ROUNDS = Number(opt('--rounds', quick ? 4 : 21));
const SCENARIOS = (opt('--only', 'host,relay') ?? 'host,relay').split(',');
const AGENTS = [
  { id: 'natkit regular', natkit: true, run: (o) => natkitRound({ ...o, nomination: 'regular' }), unavailable: IceAgent ? undefined : NATKIT_MISSING },
  // RFC 8445 14.2: Ta is configurable (50 ms is the SHOULD default, 5 ms the floor for all of
  // an implementation's agents together): regular nomination with the pacing at its floor.
  { id: 'natkit regular Ta 5', natkit: true, run: (o) => natkitRound({ ...o, nomination: 'regular', ta: 5 }), unavailable: IceAgent ? undefined : NATKIT_MISSING },
  { id: 'natkit aggressive', natkit: true, run: (o) => natkitRound({ ...o, nomination: 'aggressive' }), unavailable: IceAgent ? undefined : NATKIT_MISSING },
  { id: `werift ${WERIFT_VERSION}`, run: weriftRound },
];

const load0 = os.loadavg();
const results = {};
let relay;
try {
  for (const scenario of SCENARIOS) {
    let relayPort;
    if (scenario === 'relay') {
      relay = await startRelay();
      relayPort = relay.port;
    }
    const per = (results[scenario] = { relayCommand: relay?.command, agents: {} });
    for (const a of AGENTS) per.agents[a.id] = { id: a.id, natkit: a.natkit === true, unavailable: a.unavailable, pair: [], byte: [], errors: [], example: undefined };
    for (let round = 0; round < ROUNDS; round++) {
      // Rotate the order each round so that no agent always runs first (or last).
      for (let k = 0; k < AGENTS.length; k++) {
        const a = AGENTS[(round + k) % AGENTS.length];
        const r = per.agents[a.id];
        if (r.unavailable) continue;
        try {
          const x = await a.run({ relayPort });
          if (round === 0) continue; // warm-up: module loading, JIT, first sockets
          r.pair.push(x.pair);
          r.byte.push(x.byte);
          r.example ??= x.pairs;
        } catch (e) {
          r.errors.push(`round ${round}: ${e.message}`);
        }
      }
    }
    if (relay) {
      await stop(relay.proc, 'SIGINT');
      relay = undefined;
    }
  }
} finally {
  if (relay) await stop(relay.proc, 'SIGINT');
}
const load1 = os.loadavg();

const out = [];
out.push(`ICE connect time, natkit vs werift ${WERIFT_VERSION}, two agents in one process on 127.0.0.1; ${ROUNDS - 1} measured rounds each (1 warm-up), interleaved`);
out.push(`machine: ${os.availableParallelism()} CPUs, Node ${process.version}; load average ${load0.map((x) => x.toFixed(2)).join(' ')} at start, ${load1.map((x) => x.toFixed(2)).join(' ')} at end`);
const W = [18, 12, 12, 12, 12, 8];
for (const scenario of SCENARIOS) {
  const per = results[scenario];
  out.push('');
  out.push(scenario === 'host' ? 'host to host (127.0.0.1 <-> 127.0.0.1):' : `relay-only (both sides relayed through natkit's relayserver: ${per.relayCommand}):`);
  out.push(`  ${tableRow(W, ['agent', 'pair p50', 'pair p90', 'byte p50', 'byte p90', 'rounds'])}`);
  for (const r of Object.values(per.agents)) {
    if (r.unavailable) {
      out.push(`  ${r.id.padEnd(W[0])}NOT MEASURED: ${r.unavailable}`);
      continue;
    }
    const q = (xs, p) => [...xs].sort((x, y) => x - y)[Math.min(xs.length - 1, Math.floor(p * xs.length))];
    r.summary = { pair50: median(r.pair), pair90: q(r.pair, 0.9), byte50: median(r.byte), byte90: q(r.byte, 0.9) };
    out.push(`  ${tableRow(W, [r.id, `${fx(r.summary.pair50, 1)} ms`, `${fx(r.summary.pair90, 1)} ms`, `${fx(r.summary.byte50, 1)} ms`, `${fx(r.summary.byte90, 1)} ms`, r.pair.length])}`);
    if (r.example) out.push(`  ${''.padEnd(W[0])}pair: A ${r.example.A ?? '?'}; B ${r.example.B ?? '?'}`);
    for (const e of r.errors.slice(0, 5)) out.push(`  ${''.padEnd(W[0])}error: ${e}`);
  }
  const w = Object.values(per.agents).find((a) => !a.natkit);
  per.ratios = {};
  for (const n of Object.values(per.agents).filter((a) => a.natkit)) {
    if (!n.summary || !w?.summary) continue;
    const ratio = (per.ratios[n.id] = { pair: n.summary.pair50 / w.summary.pair50, byte: n.summary.byte50 / w.summary.byte50 });
    out.push(`  ${n.id}/werift (medians): first pair ${fx(ratio.pair)}x, first byte ${fx(ratio.byte)}x (goal <= 0.50: ${ratio.pair <= 0.5 && ratio.byte <= 0.5 ? 'met' : 'NOT met'})`);
  }
}
console.log(out.join('\n'));
if (json) writeFileSync(json, JSON.stringify({ rounds: ROUNDS, load: { start: load0, end: load1 }, results, report: out }, null, 1));
// werift's TURN client leaves an allocation-refresh timer running after close(): exit explicitly
process.exit(0);
