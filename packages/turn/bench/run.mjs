#!/usr/bin/env node
// Runs the @natkit/turn benchmarks and prints a summary table with the exact commands used.
//
//   node bench/run.mjs [--quick] [--skip-channeldata] [--skip-uclient] [--skip-perpacket] [--skip-memory]
//
// (`pnpm bench` in packages/turn; the root `pnpm bench` builds first.) Benchmarks are
// scripts, not tests: nothing here fails on a number; it exits non-zero only if a
// benchmark itself breaks. Each runs in its own process and prints its full report:
//
//   channeldata.mjs  natkit vs coturn -m 1 under bench/turnload.c (closed-loop ChannelData,
//                    C echo peer), with a no-TURN C forwarder as the ceiling of the setup
//   uclient.mjs      natkit vs coturn -m 1 under coturn's turnutils_uclient + turnutils_peer
//   perpacket.mjs    CPU per relayed packet under uclient -y (client pairs relaying to each
//                    other): coturn -m 1 and default threads, natkit one process and
//                    --workers 2, Node's floor and a C floor; Binding answers/s on the relay
//   memory.mjs       RSS per 1,000 idle allocations (1,000 and 5,000), natkit and coturn
import os from 'node:os';
import { f0, fx, here, printSummary, resultTable, runScripts, summaryTitle, tableRow } from './lib.mjs';

const t0 = Date.now();
const argv = process.argv.slice(2);
const scripts = [['channeldata', 'channeldata.mjs'], ['uclient', 'uclient.mjs'], ['perpacket', 'perpacket.mjs'], ['memory', 'memory.mjs']];
const { quick: QUICK, results: got, failures } = await runScripts(here, scripts, argv);

// ---------------------------------------------------------------------------------------

const out = [];
out.push('');
out.push(summaryTitle('@natkit/turn', QUICK));
out.push(`machine: ${os.availableParallelism()} CPUs (${os.cpus()[0]?.model ?? '?'}), Node ${process.version}; coturn's default relay threads = number of CPUs = ${os.availableParallelism()} here (turnserver --help: "The default thread number is the number of CPUs")`);
const cmds = new Map();
const cmd = (label, c) => c && !cmds.has(label) && cmds.set(label, c);
const measured = (s) => !s.unavailable && s.rounds;

const cd = got.channeldata;
if (cd) {
  out.push('');
  out.push(
    `1a. ChannelData relaying, closed loop (bench/turnload.c): ${cd.window} in flight over ${cd.allocs} allocations, ${cd.len}-byte payloads, C echo peer; ` +
      `medians over ${cd.rounds} rounds of ${cd.durationMs} ms` + (cd.pin.server ? `; relay on CPU ${cd.pin.server}, load on CPU ${cd.pin.load}` : `; not pinned (${cd.pin.reason})`),
  );
  out.push(
    ...resultTable(
      [16, 14, 8, 8, 6, 10, 11, 11],
      ['relay', 'relayed pkt/s', 'p50 us', 'p99 us', 'lost', 'relay cpu', 'cpu us/pkt', 'load cores'],
      Object.values(cd.summary),
      (s) => [f0(s.pps), f0(s.p50), f0(s.p99), s.lost, fx(s.serverCpu), fx(s.cpuUsPerPkt), fx(s.loadgenCpu + s.peerCpu)],
      { indent: '  ', brief: true },
    ),
  );
  for (const s of Object.values(cd.summary).filter(measured)) {
    cmd(`1a ${s.id} relay`, s.commands?.relay);
    cmd(`1a ${s.id === 'forward' ? 'forward' : 'relays'} load`, s.commands?.load);
    cmd('1a peer', s.commands?.peer);
  }
  if (cd.ratio) {
    out.push(
      `  natkit/coturn-1thread: relayed pkt/s ${cd.ratio.pps.toFixed(2)}x (per-round median ${cd.ratio.ppsPairedMedian.toFixed(2)}x), CPU per packet ${cd.ratio.cpuPerPkt.toFixed(2)}x, ` +
        `p50 latency ${cd.ratio.p50.toFixed(2)}x, p99 ${cd.ratio.p99.toFixed(2)}x`,
    );
  }
  if (cd.verdict) {
    out.push(
      `  load generator: the no-TURN C forwarder reaches ${f0(cd.verdict.ceilingPps)} pkt/s = ${cd.verdict.margin.toFixed(2)}x the fastest relay (${cd.verdict.fastest}): ` +
        (cd.verdict.notTheLimit ? 'turnload + echo are not the limit' : 'MAY BE THE LIMIT (margin < 1.2x)') + `; CPU-bound relays: ${cd.verdict.saturated.join(', ') || 'none'}`,
    );
  }
  for (const s of Object.values(cd.summary)) {
    if (s.countersAgree !== null && s.countersAgree !== undefined) out.push(`  ${s.id}: relay's own counters (${s.counters[0]?.source}) ${s.countersAgree ? 'match' : 'DO NOT MATCH'} turnload's sent/echoed packets in every round`);
  }
}

const uc = got.uclient;
if (uc?.unavailable) out.push('', `1b. uclient: NOT AVAILABLE: ${uc.unavailable}`);
else if (uc) {
  out.push('');
  out.push(
    `1b. turnutils_uclient load: ${uc.clients} clients x ${uc.messages} messages of ${uc.len} bytes, one per ${uc.intervalMs} ms each (offered ${f0(uc.offeredPps)} relayed pkt/s), ` +
      `channels, turnutils_peer echo; medians over ${uc.rounds} rounds, rate while all clients send`,
  );
  const counters = (s) => {
    const agree = s.counters.every((k) => k.toClient === k.ucReceived && k.toPeer <= k.ucSent);
    return [
      `relay's own counters: ${s.counters.map((k) => `${f0(k.toPeer)} to peer / ${f0(k.toClient)} to client`).join('; ')} ` +
        `(uclient: ${s.counters.map((k) => `${f0(k.ucSent)} sent / ${f0(k.ucReceived)} back`).join('; ')}) ${agree ? 'consistent' : 'INCONSISTENT'}`,
    ];
  };
  out.push(
    ...resultTable(
      [16, 14, 10, 8, 8, 10, 11, 13],
      ['relay', 'relayed pkt/s', 'offered', 'loss %', 'RTT ms', 'relay cpu', 'cpu us/pkt', 'uclient+peer'],
      Object.values(uc.summary),
      (s) => [f0(s.pps), f0(s.offeredPps), fx(s.lostPct), fx(s.rttMs, 1), fx(s.relayCpu), fx(s.cpuUsPerPkt), fx(s.uclientCpu + s.peerCpu)],
      { indent: '  ', brief: true, after: counters },
    ),
  );
  for (const s of Object.values(uc.summary).filter(measured)) {
    cmd(`1b ${s.id} relay`, s.commands?.relay);
    cmd('1b load', s.commands?.load);
    cmd('1b peer', s.commands?.peer);
  }
  if (uc.ratio) out.push(`  natkit/coturn-1thread: relayed pkt/s ${uc.ratio.pps.toFixed(2)}x (per-round median ${uc.ratio.ppsPairedMedian.toFixed(2)}x), CPU per packet ${uc.ratio.cpuPerPkt.toFixed(2)}x, average RTT ${uc.ratio.rtt.toFixed(2)}x`);
  for (const s of Object.values(uc.summary)) {
    if (!s.rounds) continue;
    const keptUp = s.pps >= 0.97 * s.offeredPps;
    out.push(
      `  ${s.id}: ` +
        (keptUp
          ? `relayed all that uclient offered: the load set the rate, not the relay`
          : `relayed ${fx((100 * s.pps) / s.offeredPps, 0)}% of what uclient sent with ${fx(s.relayCpu)} of its CPU busy` +
            (s.relayCpu >= 0.9 ? ': the relay is the limit' : ': not clearly CPU-bound')) +
        ` (uclient ${fx(s.uclientCpu)} + turnutils_peer ${fx(s.peerCpu)} cores on the load CPU)`,
    );
  }
}

const pp = got.perpacket;
if (pp?.unavailable) out.push('', `1c. perpacket: NOT AVAILABLE: ${pp.unavailable}`);
else if (pp) {
  for (const load of pp.loads) {
    out.push('');
    out.push(
      `1c. per relayed packet under turnutils_uclient -y -c -z 1 -l ${pp.len} (client pairs relaying to each other over channels), ${load.id}: ` +
        `${load.clients} clients, ${f0(load.clients * 1000)} packets/s offered; medians over ${pp.rounds} rounds (one packet = 2 receives + 2 sends on the relay)`,
    );
    out.push(
      ...resultTable(
        [16, 12, 8, 9, 8, 8, 7, 6],
        ['server', 'relayed/s', 'loss %', 'us/pkt', 'user', 'system', 'cores', 'RSS'],
        Object.values(pp.summary).map((s) => ({ ...s, ...s.loads[load.id], errors: s.loads[load.id]?.errors ?? [] })),
        (s) => [f0(s.pps), fx(s.stretchLossPct), fx(s.cpuUs, 1), fx(s.userUs, 1), fx(s.systemUs, 1), fx(s.cores), fx(s.rssMiB, 0)],
        { indent: '  ', brief: true },
      ),
    );
    for (const [k, r] of Object.entries(pp.ratios[load.id] ?? {})) {
      out.push(`  ${k}: relayed/s ${r.pps ? `${r.pps.ratio.toFixed(2)}x` : '-'}, CPU per packet ${r.cpu ? `${r.cpu.ratio.toFixed(2)}x` : '-'}`);
    }
  }
  const withBinding = Object.values(pp.summary).filter((s) => s.binding);
  if (withBinding.length) {
    out.push('');
    out.push('1d. STUN Binding answers/s on the relay port (loadgen, 128 in flight over 8 sockets)');
    out.push(`  ${tableRow([16, 12, 10], ['server', 'answers/s', 'us/answer'])}`);
    for (const s of withBinding) out.push(`  ${tableRow([16, 12, 10], [s.id, f0(s.binding.rps), fx(s.binding.cpuUs)])}`);
    for (const [k, r] of Object.entries(pp.bindingRatios ?? {})) out.push(`  ${k}: answers/s ${r.rps.toFixed(2)}x, CPU per answer ${r.cpu.toFixed(2)}x`);
  }
  for (const s of Object.values(pp.summary)) {
    const c = s.commands?.saturating ?? s.commands?.fixed;
    if (c) cmd(`1c ${s.id}`, c.server);
  }
  const l = Object.values(pp.summary).map((s) => s.commands?.saturating ?? s.commands?.fixed).find(Boolean);
  if (l) cmd('1c load', l.load);
}

const mem = got.memory;
if (mem) {
  out.push('');
  out.push(`2. memory: relay VmRSS before and after N idle allocations (one permission + one channel each), per 1,000 allocations`);
  const W = [16, 6, 12, 12, 15, 10];
  out.push(`  ${tableRow(W, ['relay', 'N', 'RSS before', 'RSS after', 'MiB per 1,000', 'KiB each'])}`);
  for (const r of mem.results) {
    if (r.unavailable || r.error) {
      out.push(`  ${tableRow(W, [r.id, r.n])}  ${r.unavailable ? `NOT AVAILABLE: ${r.unavailable}` : `ERROR: ${r.error}`.slice(0, 200)}`);
      continue;
    }
    const cells = [r.id, r.n, `${fx(r.rssBeforeKb / 1024, 1)} MiB`, `${fx(r.rssAfterKb / 1024, 1)} MiB`, fx(r.perThousandMiB), fx((r.rssAfterKb - r.rssBeforeKb) / r.made, 1)];
    out.push(`  ${tableRow(W, cells)}${r.made !== r.n ? `  (only ${r.made} made)` : ''}`);
  }
  if (Number.isFinite(mem.ratio)) out.push(`  natkit/coturn-1thread: ${mem.ratio.toFixed(2)}x memory per idle allocation`);
  for (const [id, c] of Object.entries(mem.commands)) cmd(`2 ${id} relay`, c.relay);
}

const entry = cd?.natkitEntry ?? uc?.natkitEntry ?? pp?.natkitEntry ?? mem?.natkitEntry;
out.push('');
out.push(`commands (natkit relay started from the ${entry ?? '?'}; PID/ports vary per run; each relay and peer under taskset -c CPU):`);
for (const [label, c] of cmds) out.push(`  [${label}] ${c}`);
printSummary(out, failures, t0);
