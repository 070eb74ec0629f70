#!/usr/bin/env node
// The relay's cost per packet under many allocations (issue 9): coturn's turnutils_uclient
// in client-to-client mode against coturn with one relay thread and with its default
// threads, natkit's relayserver with one process and with --workers 2 (on a Node with
// dgram reusePort: this one if >= 22.12, else --node24 PATH or Node 24 through npx), Node's
// floor (bench/floor-node.mjs: the same four socket operations per relayed packet and no
// TURN logic) and a C floor (bench/floor.c), all in the same run; then each relay's STUN
// Binding answers/s under bench/.build/loadgen (the STUN bench's closed-loop generator,
// 128 requests in flight over 8 sockets) on its own port.
//
//   node bench/perpacket.mjs [--quick] [--rounds N] [--loads saturating,fixed] [--messages N]
//                            [--only id,id] [--variants name=path/to/relayserver.js,...]
//                            [--sweep 40,60,...] [--node24 PATH] [--nice N] [--noise-limit CORES]
//                            [--skip-binding] [--json FILE]
//
// Configurations (c2c.mjs): coturn-1thread, coturn-default, natkit, natkit-w2, floor-node,
// floor-c by default; also natkit-node24 (one process on the Node of natkit-w2),
// floor-node-connect, floor-node-connect-all, floor-c-mmsg,
// floor-c-mmsg-connect with --only; --variants adds prototypes of the relay (a patched
// copy of the package) as natkit-<name>, compared with natkit.
//
// One relayed packet = one uclient message delivered to the other client of its pair:
// the relay receives it as ChannelData on its listening port, sends the payload from the
// sender's relay socket to the receiver's relayed address, receives it there and sends it
// to the receiver as ChannelData (two receives and two sends). Loads: `saturating` = 150
// clients each sending one 120-byte message per millisecond (150k packets/s offered, more
// than any of these relays forwards on one core); `fixed` = 20 clients (20k/s), below every
// relay's limit, where CPU per packet compares the same work. Rates are over the stretch
// when every client is sending (uclient prints its counts once a second).
//
// Single-threaded servers run on one CPU (taskset) and uclient on the other; servers that
// use several cores (coturn's default threads, natkit --workers 2) are not pinned (on this
// 2-core machine "every core" includes the load's). CPU per packet = the server's exact
// CPU time (scheduler runtime of its whole process tree) over the stretch / packets
// delivered in it; its user/system split is /proc/PID/stat's, tick-sampled (an estimate).
// RSS = VmRSS summed over the tree at the end of the stretch. The measured programs run at
// nice -20, each in a session and scheduling group of its own (see launch in bench-lib),
// so that other sessions on a shared machine do not take their CPU.
//
// pion/turn is not in this run: it is not installed and cannot be fetched offline.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { STRETCH_FROM, allConfigs, between, findNode24, runUclient, startServer, stopServer, variantConfigs } from './c2c.mjs';
import {
  BUILD, UCLIENT, argsOf, buildC, f0, freeTcpPort, freeUdpPort, fx, launch, loadAverage, median, natkitEntry, pairedRatios, pin, rotated, scrapeMetrics, shown,
  sleep, sum, tableRow, treeUsage, udpRcvbufErrors,
} from './lib.mjs';

const { opt, flag, quick: QUICK, json: JSON_OUT } = argsOf();
const ROUNDS = Number(opt('--rounds', QUICK ? 1 : 3));
const MESSAGES = Number(opt('--messages', QUICK ? 9000 : 12000));
const LEN = Number(opt('--len', 120));
const BIND_MS = Number(opt('--binding-ms', QUICK ? 2000 : 3000));
// A run during which other work took more than this many cores is repeated (once),
// keeping the least disturbed. (Below saturation the measured programs leave most of the
// machine idle, and other sessions' work fills it: the check is for bursts, not for that.)
const NOISE = Number(opt('--noise-limit', 1.5));
// The measured server and its load run at this niceness, each in a scheduling group of
// its own (root only; 0 = as started), so that other work on a shared machine takes less
// of their CPUs. CPU per packet hardly depends on it; throughput and loss at saturation do.
const NICE = process.getuid?.() === 0 ? Number(opt('--nice', -20)) : 0;
const LOADS = [
  { id: 'saturating', clients: Number(opt('--clients', 150)) },
  { id: 'fixed', clients: Number(opt('--fixed-clients', 20)) },
].filter((l) => (opt('--loads', undefined)?.split(',') ?? ['saturating', 'fixed']).includes(l.id));
// --sweep 40,60,80,...: more loads (that many clients each), to find the most each server
// relays with under 1 % loss (the issue's goal: coturn's throughput at under 1 % loss).
const SWEEP = (opt('--sweep', '') || '').split(',').filter(Boolean).map(Number);
for (const n of SWEEP) LOADS.push({ id: `sweep-${n}`, clients: n, sweep: true });
const LOADGEN = join(BUILD, 'loadgen');
const STRETCH_TO = 1 + MESSAGES / 1000;

// By default: coturn both ways, natkit one process and two workers, Node's floor and the
// C floor; the other floors (connect(), recvmmsg) with --only.
const DEFAULT_IDS = ['coturn-1thread', 'coturn-default', 'natkit', 'natkit-w2', 'floor-node', 'floor-c'];
const wanted = opt('--only', undefined)?.split(',') ?? DEFAULT_IDS;
const NODE24 = wanted.includes('natkit-w2') || wanted.includes('natkit-node24') ? findNode24(opt('--node24', process.env.NATKIT_BENCH_NODE24)) : undefined;
const CONFIGS = [...allConfigs({ node24: NODE24 }).filter((c) => wanted.includes(c.id)), ...variantConfigs(opt('--variants', undefined))];

if (!UCLIENT) {
  console.log('perpacket benchmark: NOT AVAILABLE: turnutils_uclient not installed (Debian package coturn)');
  if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify({ unavailable: 'turnutils_uclient not installed' }));
  process.exit(0);
}
buildC();
const tmp = mkdtempSync(join(os.tmpdir(), 'natkit-turn-perpacket-'));
const t0 = Date.now();
const entry = natkitEntry();

console.error(
  `perpacket bench: ${ROUNDS} rounds; loads ${LOADS.map((l) => `${l.id} (${l.clients} clients)`).join(', ')}; ${MESSAGES} messages of ${LEN} bytes per client, one per ms; ` +
    (pin.server ? `single-threaded servers on CPU ${pin.server}, uclient on CPU ${pin.load}` : `not pinned (${pin.reason})`) +
    `; measured processes at nice ${NICE}; load average ${loadAverage()}`,
);
for (const c of CONFIGS) if (c.missing) console.error(`  ${c.id}: NOT AVAILABLE: ${c.missing}`);

// ---------------------------------------------------------------------------------------
// One uclient run

async function relayRun(cfg, load) {
  const port = await freeUdpPort();
  const metricsPort = cfg.kind === 'natkit' ? await freeTcpPort() : undefined;
  const loadavg = loadAverage();
  const server = await startServer(cfg, { port, metricsPort, tmp, nice: NICE });
  const run = { loadavg };
  try {
    // With workers the primary serves the metrics, possibly a moment after a worker answered.
    let metrics0;
    for (let i = 0; metricsPort && !metrics0; i++) {
      metrics0 = await scrapeMetrics(metricsPort).catch((e) => {
        if (i >= 50) throw new Error(`metrics on port ${metricsPort}: ${e.message}`);
      });
      if (!metrics0) await sleep(100);
    }
    const rcv0 = udpRcvbufErrors();
    const r = await runUclient(server, { port, clients: load.clients, messages: MESSAGES, len: LEN, nice: NICE });
    run.commands = r.commands;
    run.uclient = r.uclient;
    run.rcvbufErrors = udpRcvbufErrors() - rcv0;
    const win = between(r, STRETCH_FROM, STRETCH_TO);
    if (win.length < 2) throw new Error(`only ${win.length} stats lines inside the stretch when all clients send`);
    const a = win[0];
    const b = win[win.length - 1];
    const dt = b.t - a.t;
    const pps = (b.R - a.R) / dt;
    const busy = (s) => sum(s.cpus.map((c) => c.task + c.intr));
    // CPU: exact runtime (schedstat); its user/system split from /proc/PID/stat's ticks.
    const srvCores = (b.srv.runtime - a.srv.runtime) / dt;
    const du = b.srv.user - a.srv.user;
    const ds = b.srv.system - a.srv.system;
    const userShare = du + ds > 0 ? du / (du + ds) : NaN;
    run.plateau = {
      seconds: dt,
      pps,
      offeredPps: (b.S - a.S) / dt,
      // Loss inside the stretch: what was sent and not received in it (uclient's own loss
      // figure covers the whole run, start and end included).
      stretchLossPct: Math.max(0, 100 * (1 - (b.R - a.R) / (b.S - a.S))),
      cpuUs: (srvCores / pps) * 1e6,
      userUs: ((userShare * srvCores) / pps) * 1e6,
      systemUs: (((1 - userShare) * srvCores) / pps) * 1e6,
      cores: srvCores,
      uclientCores: (b.uc - a.uc) / dt,
      other: Math.max(0, (busy(b) - busy(a)) / dt - srvCores - (b.uc - a.uc) / dt),
      rssMiB: b.srv.rssKb / 1024,
      processes: r.pids.length,
      // Threads (of every process of the server) that used more than 5 % of a core: how
      // many did the work, and how much each.
      busyThreads: [...b.threads].map(([k, v]) => (v - (a.threads.get(k) ?? v)) / dt).filter((c) => c > 0.05).sort((x, y) => y - x).map((c) => Number(c.toFixed(2))),
    };
    if (metricsPort) {
      const m = await scrapeMetrics(metricsPort);
      run.counters = { toPeer: m.toPeer - metrics0.toPeer, toClient: m.toClient - metrics0.toClient, allocations: m.allocations, drops: m.drops };
    }
  } finally {
    run.stop = await stopServer(cfg, server);
  }
  return run;
}

// ---------------------------------------------------------------------------------------
// Binding answers/s on the relay's port (closed loop, 128 in flight over 8 sockets)

async function bindingRun(cfg) {
  const port = await freeUdpPort();
  const loadavg = loadAverage();
  const server = await startServer(cfg, { port, tmp, nice: NICE });
  try {
    await sleep(300);
    const pids = server.tree();
    const WARM = 500;
    const lg = launch(LOADGEN, ['--port', String(port), '--window', '128', '--sockets', '8', '--duration-ms', String(BIND_MS), '--warmup-ms', String(WARM), '--timeout-ms', '250'], { cpu: pin.load, ...(NICE ? { nice: NICE } : {}) });
    await sleep(WARM);
    const a = { t: performance.now(), u: treeUsage(pids) };
    await sleep(BIND_MS);
    const b = { t: performance.now(), u: treeUsage(pids) };
    const x = await lg.exited;
    if (x.code !== 0) throw new Error(`loadgen exited ${x.code ?? x.signal}: ${lg.output().slice(-300)}`);
    const r = JSON.parse(lg.stdout().trim().split('\n').pop());
    const dt = (b.t - a.t) / 1000;
    const cores = (b.u.runtime - a.u.runtime) / dt;
    return { loadavg, rps: r.rps, lost: r.lost, cores, cpuUs: (cores / r.rps) * 1e6, rssMiB: b.u.rssKb / 1024, command: shown(server.command) };
  } finally {
    await stopServer(cfg, server);
  }
}

// ---------------------------------------------------------------------------------------

const state = new Map(CONFIGS.map((c) => [c.id, { cfg: c, unavailable: c.missing, runs: Object.fromEntries(LOADS.map((l) => [l.id, []])), binding: [], commands: {} }]));
const live = CONFIGS.filter((c) => !c.missing);
for (let round = 0; round < ROUNDS; round++) {
  for (const load of LOADS) {
    for (const cfg of rotated(live, round)) {
      const st = state.get(cfg.id);
      if (st.unavailable) continue;
      let run;
      try {
        for (let attempt = 0; ; attempt++) {
          const r = await relayRun(cfg, load);
          if (!run || r.plateau.other < run.plateau.other) run = { ...r, noisyAttempts: [...(run?.noisyAttempts ?? []), ...(run ? [run.plateau.other] : [])] };
          else run.noisyAttempts = [...(run.noisyAttempts ?? []), r.plateau.other];
          if (run.plateau.other <= NOISE || attempt >= 1) break;
          console.error(`  [round ${round + 1}] ${load.id} ${cfg.id}: other work used ${fx(run.plateau.other)} cores, measuring again`);
        }
      } catch (e) {
        if (e.unavailable) {
          st.unavailable = e.message;
          console.error(`  [round ${round + 1}] ${cfg.id}: NOT AVAILABLE: ${e.message}`);
          continue;
        }
        run = { error: e.message };
      }
      run.round = round + 1;
      st.commands[load.id] ??= run.commands;
      st.runs[load.id].push(run);
      const p = run.plateau;
      console.error(
        `  [round ${round + 1}] ${load.id.padEnd(10)} ${cfg.id.padEnd(18)} ` +
          (run.error
            ? `ERROR ${run.error}`
            : `${f0(p.pps)} pkt/s (offered ${f0(p.offeredPps)}, stretch loss ${fx(p.stretchLossPct, 1)}%, uclient loss ${fx(run.uclient.lostPct, 1)}%), ` +
              `server ${fx(p.cores)} cores = ${fx(p.cpuUs, 1)} us/pkt (user ${fx(p.userUs, 1)}, sys ${fx(p.systemUs, 1)}), RSS ${fx(p.rssMiB, 0)} MiB, ` +
              `busy threads [${p.busyThreads.join(' ')}], uclient ${fx(p.uclientCores)}, other ${fx(p.other)}, rcvbuf drops ${run.rcvbufErrors}, load avg ${run.loadavg}` +
              (run.counters ? `; relay counted ${run.counters.toPeer}/${run.counters.toClient}, ${run.counters.allocations} allocations${run.counters.drops.length ? `, drops ${run.counters.drops.join(' ')}` : ''}` : '')),
      );
    }
  }
  if (flag('--skip-binding')) continue;
  for (const cfg of rotated(live, round)) {
    const st = state.get(cfg.id);
    if (st.unavailable || cfg.binding === false) continue;
    let r;
    try {
      r = await bindingRun(cfg);
    } catch (e) {
      r = { error: e.message };
    }
    st.binding.push(r);
    st.commands.binding ??= r.command;
    console.error(
      `  [round ${round + 1}] binding    ${cfg.id.padEnd(18)} ` +
        (r.error ? `ERROR ${r.error}` : `${f0(r.rps)} answers/s, lost ${r.lost}, server ${fx(r.cores)} cores = ${fx(r.cpuUs, 2)} us/answer, load avg ${r.loadavg}`),
    );
  }
}
rmSync(tmp, { recursive: true, force: true });

// ---------------------------------------------------------------------------------------
// Summary

const summary = {};
for (const [id, st] of state) {
  const s = { id, label: st.cfg.label, unavailable: st.unavailable ?? null, commands: st.commands, loads: {}, binding: null };
  for (const load of LOADS) {
    const ok = st.runs[load.id].filter((r) => r.plateau);
    const P = (k) => median(ok.map((r) => r.plateau[k]));
    s.loads[load.id] = {
      rounds: ok.length,
      errors: st.runs[load.id].filter((r) => r.error).map((r) => `round ${r.round}: ${r.error}`),
      pps: P('pps'), offeredPps: P('offeredPps'), stretchLossPct: P('stretchLossPct'), lossPct: median(ok.map((r) => r.uclient.lostPct)),
      cpuUs: P('cpuUs'), userUs: P('userUs'), systemUs: P('systemUs'), cores: P('cores'), rssMiB: P('rssMiB'), other: P('other'), uclientCores: P('uclientCores'),
      loadavg: median(ok.map((r) => r.loadavg)),
      byRound: Object.fromEntries(ok.map((r) => [r.round, r.plateau.pps])),
      cpuByRound: Object.fromEntries(ok.map((r) => [r.round, r.plateau.cpuUs])),
    };
  }
  const b = st.binding.filter((r) => !r.error);
  if (b.length) s.binding = { rounds: b.length, rps: median(b.map((r) => r.rps)), cpuUs: median(b.map((r) => r.cpuUs)), cores: median(b.map((r) => r.cores)), lost: median(b.map((r) => r.lost)) };
  summary[id] = s;
}

const ratio = (a, b, load, k = 'pps') => {
  const x = summary[a]?.loads[load];
  const y = summary[b]?.loads[load];
  if (!x?.rounds || !y?.rounds) return null;
  const byRound = k === 'pps' ? 'byRound' : 'cpuByRound';
  return { ratio: x[k] / y[k], paired: median(pairedRatios(x[byRound], y[byRound])) };
};
const PAIRS = [
  ['natkit', 'coturn-1thread'],
  ['natkit', 'coturn-default'],
  ['natkit-w2', 'coturn-1thread'],
  ['natkit-node24', 'natkit'],
  ['natkit', 'floor-node'],
  ['floor-node', 'coturn-1thread'],
  ['floor-node-connect', 'floor-node'],
  ['floor-node-connect-all', 'floor-node'],
  ['floor-node-connect-all', 'coturn-1thread'],
  ['floor-c', 'floor-node'],
  ['floor-c-mmsg', 'floor-c'],
  ['floor-c-mmsg-connect', 'floor-c'],
  ['natkit-w2', 'coturn-default'],
  ['natkit-w2', 'natkit'],
];
for (const v of CONFIGS.filter((c) => c.id.startsWith('natkit-') && c.id !== 'natkit-w2')) PAIRS.push([v.id, 'natkit']);
const ratios = {};
for (const load of LOADS) {
  ratios[load.id] = {};
  for (const [a, b] of PAIRS) {
    const pps = ratio(a, b, load.id, 'pps');
    const cpu = ratio(a, b, load.id, 'cpuUs');
    if (pps || cpu) ratios[load.id][`${a}/${b}`] = { pps, cpu };
  }
}
const bindingRatios = {};
for (const [a, b] of [['natkit', 'coturn-1thread'], ['natkit', 'coturn-default'], ['natkit-w2', 'coturn-1thread'], ['natkit-w2', 'coturn-default'], ['natkit-w2', 'natkit']]) {
  const x = summary[a]?.binding;
  const y = summary[b]?.binding;
  if (x && y) bindingRatios[`${a}/${b}`] = { rps: x.rps / y.rps, cpu: x.cpuUs / y.cpuUs };
}

const lines = [];
lines.push(
  `perpacket: ${ROUNDS} round(s), medians; turnutils_uclient -y -c -z 1 -l ${LEN} -n ${MESSAGES} (client pairs relaying to each other over channels); ` +
    (pin.server ? `single-threaded servers pinned to CPU ${pin.server}, uclient to CPU ${pin.load}; multi-threaded servers unpinned` : `no pinning (${pin.reason})`),
);
for (const load of LOADS) {
  lines.push('');
  lines.push(`${load.id}: ${load.clients} clients, ${f0(load.clients * 1000)} packets/s offered (one packet = one message relayed client -> relay -> relay -> client: 2 receives + 2 sends)`);
  const W = [20, 11, 10, 8, 8, 9, 8, 8, 7, 6, 6, 9];
  lines.push(tableRow(W, ['server', 'relayed/s', 'offered', 'loss %', 'uc loss', 'us/pkt', 'user', 'system', 'cores', 'RSS', 'other', 'load avg']));
  for (const s of Object.values(summary)) {
    const x = s.loads[load.id];
    if (s.unavailable || !x?.rounds) {
      lines.push(`${s.id.padEnd(W[0])}NOT AVAILABLE: ${(s.unavailable ?? x?.errors.join('; ') ?? '').slice(0, 200)}`);
      continue;
    }
    lines.push(tableRow(W, [s.id, f0(x.pps), f0(x.offeredPps), fx(x.stretchLossPct, 2), fx(x.lossPct, 2), fx(x.cpuUs, 1), fx(x.userUs, 1), fx(x.systemUs, 1), fx(x.cores), fx(x.rssMiB, 0), fx(x.other), fx(x.loadavg)]));
  }
  for (const [k, r] of Object.entries(ratios[load.id])) {
    lines.push(
      `  ${k}: relayed/s ${r.pps ? `${r.pps.ratio.toFixed(2)}x (per round ${r.pps.paired.toFixed(2)}x)` : '-'}, ` +
        `CPU per packet ${r.cpu ? `${r.cpu.ratio.toFixed(2)}x (per round ${r.cpu.paired.toFixed(2)}x)` : '-'}`,
    );
  }
}
// Capacity at under 1 % loss: the highest sweep load (and the fixed/saturating ones) each
// server relayed with under 1 % loss in the stretch (median over rounds).
const capacity = {};
if (SWEEP.length) {
  for (const s of Object.values(summary)) {
    const ok = LOADS.filter((l) => s.loads[l.id]?.rounds && s.loads[l.id].stretchLossPct < 1).sort((a, b) => b.clients - a.clients)[0];
    const firstBad = LOADS.filter((l) => s.loads[l.id]?.rounds && s.loads[l.id].stretchLossPct >= 1).sort((a, b) => a.clients - b.clients)[0];
    capacity[s.id] = ok ? { clients: ok.clients, pps: s.loads[ok.id].pps, cpuUs: s.loads[ok.id].cpuUs, nextLossPct: firstBad ? s.loads[firstBad.id].stretchLossPct : null, nextClients: firstBad?.clients ?? null } : null;
  }
  lines.push('');
  lines.push(`most relayed with under 1 % loss (loads of ${LOADS.map((l) => l.clients).sort((a, b) => a - b).join(', ')} clients x 1000 pkt/s)`);
  for (const [id, c] of Object.entries(capacity)) {
    lines.push(
      `  ${id.padEnd(20)}${c ? `${f0(c.pps)} pkt/s (${c.clients} clients, ${fx(c.cpuUs, 1)} us/pkt)${c.nextClients ? `; at ${c.nextClients} clients ${fx(c.nextLossPct, 1)} % lost` : ''}` : 'none under 1 % loss'}`,
    );
  }
  for (const [a, b] of [['natkit', 'coturn-1thread'], ['natkit-w2', 'coturn-default'], ['natkit-w2', 'coturn-1thread']]) {
    if (capacity[a] && capacity[b]) lines.push(`  ${a}/${b}: ${(capacity[a].pps / capacity[b].pps).toFixed(2)}x`);
  }
}

if (!flag('--skip-binding')) {
  lines.push('');
  lines.push(`STUN Binding answers/s on the relay port (bench/.build/loadgen: 128 in flight over 8 sockets, ${BIND_MS} ms)`);
  const W = [20, 12, 10, 8, 8];
  lines.push(tableRow(W, ['server', 'answers/s', 'us/answer', 'cores', 'lost']));
  for (const s of Object.values(summary)) {
    if (!s.binding) continue;
    lines.push(tableRow(W, [s.id, f0(s.binding.rps), fx(s.binding.cpuUs), fx(s.binding.cores), f0(s.binding.lost)]));
  }
  for (const [k, r] of Object.entries(bindingRatios)) lines.push(`  ${k}: answers/s ${r.rps.toFixed(2)}x, CPU per answer ${r.cpu.toFixed(2)}x`);
}
lines.push('');
lines.push('loss % = sent but not delivered inside the measured stretch; uc loss = uclient\'s own figure over the whole run; us/pkt = server user+system CPU per relayed packet;');
lines.push('cores = server CPU in use; RSS = resident MiB (all processes of the server); other = cores used by anything but the server and uclient (noise); pion/turn: not installed, not measured.');
lines.push('commands:');
for (const s of Object.values(summary)) {
  if (s.commands.saturating ?? s.commands.fixed) lines.push(`  [${s.id}] ${(s.commands.saturating ?? s.commands.fixed).server}`);
}
const anyLoad = Object.values(summary).map((s) => s.commands.saturating ?? s.commands.fixed).find(Boolean);
if (anyLoad) lines.push(`  [load] ${anyLoad.load}`);
lines.push(`(total ${((Date.now() - t0) / 1000).toFixed(0)} s)`);
console.log(lines.join('\n'));
if (JSON_OUT) {
  writeFileSync(
    JSON_OUT,
    JSON.stringify({ rounds: ROUNDS, messages: MESSAGES, len: LEN, loads: LOADS, pin, natkitEntry: entry.kind, summary, ratios, bindingRatios, capacity, runs: Object.fromEntries([...state].map(([id, st]) => [id, { relay: st.runs, binding: st.binding }])) }, null, 2),
  );
}
