#!/usr/bin/env node
// Relay benchmark with coturn's own load generator: turnutils_uclient (ChannelData over
// UDP, one allocation per client) against turnutils_peer (UDP echo), natkit's relay and
// coturn's `turnserver -m 1` under the same load, in the same run.
//
//   node bench/uclient.mjs [--quick] [--rounds N] [--clients M] [--messages N]
//                          [--interval-ms Z] [--len BYTES] [--only id,id] [--json FILE]
//
// uclient is open-loop: each of its M clients sends one message every Z ms (after a random
// start 1-6 s into the run) until it has sent N; turnutils_peer echoes each back. It prints
// its cumulative sent/received counts once a second, which this script timestamps as they
// arrive; the relay's rate is measured over the stretch when every client is sending
// (from 6.2 s after connecting to 1 s + N*Z ms after it, when the first client to start
// may be done), so ramps at the start and end do not count. One echoed message = two relayed packets (client->peer, peer->client); the
// tables report relayed packets per second. Loss and the average round trip come from
// uclient's own summary (its clock has 1 ms steps). The relay runs alone on one CPU;
// uclient and turnutils_peer share the other.
//
// uclient 4.6.1 picks channel numbers in 0x4000-0x7FFF (RFC 5766); RFC 8656 reserves
// 0x5000-0x7FFF and natkit refuses them (400), so uclient runs with LD_PRELOAD=
// bench/.build/uclient-channels.so, which keeps its channels in 0x4000-0x4FFF (see
// uclient-channels.c), against both relays.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import {
  BUILD, PASS, TURNSERVER, UCLIENT, UPEER, USER, argsOf, buildC, coturnPeerUsage, cpuTimes, f0, freeTcpPort, freeUdpPort, fx, launch, median,
  natkitEntry, pairedRatios, pin, processCpu, resultTable, rotated, scrapeMetrics, shown, sleep, startPeer, startRelay, stop, sum, udpRcvbufErrors,
} from './lib.mjs';

const { opt, quick: QUICK, json: JSON_OUT, only } = argsOf();
const ROUNDS = Number(opt('--rounds', QUICK ? 1 : 3));
const CLIENTS = Number(opt('--clients', 128));
const MESSAGES = Number(opt('--messages', QUICK ? 10000 : 15000));
const INTERVAL_MS = Number(opt('--interval-ms', 1));
const LEN = Number(opt('--len', 100));
const MIN_PORT = 45000;
const MAX_PORT = 49999;
const SHIM = join(BUILD, 'uclient-channels.so');

const CONFIGS = only([
  { id: 'coturn-1thread', label: 'coturn turnserver -m 1', relay: 'coturn', threads: 1, missing: TURNSERVER ? undefined : 'turnserver not installed' },
  { id: 'natkit', label: 'natkit relayserver', relay: 'natkit' },
]);

if (!UCLIENT || !UPEER) {
  console.log(`uclient benchmark: NOT AVAILABLE: turnutils_uclient/turnutils_peer not installed (Debian package coturn)`);
  if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify({ unavailable: 'turnutils_uclient/turnutils_peer not installed' }));
  process.exit(0);
}

buildC();
const tmp = mkdtempSync(join(os.tmpdir(), 'natkit-turn-uclient-'));
const state = new Map(CONFIGS.map((c) => [c.id, { cfg: c, runs: [], unavailable: c.missing, commands: undefined }]));
const t0 = Date.now();
const offered = (CLIENTS * 1000) / Math.max(INTERVAL_MS, 1 / 51);
const PLATEAU_FROM = 6.2;
const PLATEAU_TO = 1 + (MESSAGES * INTERVAL_MS) / 1000;
console.error(
  `uclient bench: ${ROUNDS} rounds x ${CONFIGS.length} relays; ${CLIENTS} clients x ${MESSAGES} messages of ${LEN} bytes, one every ${INTERVAL_MS} ms per client ` +
    `(offered ${Math.round(offered)} messages/s = ${Math.round(2 * offered)} relayed pkt/s once all clients send); ` +
    (pin.server ? `relay on CPU ${pin.server}, uclient and turnutils_peer on CPU ${pin.load}` : `not pinned (${pin.reason})`),
);

const RE_STATS = /^\d+: : start_mclient: msz=(\d+), tot_send_msgs=(\d+), tot_recv_msgs=(\d+)/;

async function runOnce(cfg) {
  const peerPort = await freeUdpPort();
  const port = await freeUdpPort();
  const metricsPort = cfg.relay === 'natkit' ? await freeTcpPort() : undefined;
  const peer = await startPeer('uclient-peer', peerPort, pin.load);
  if (!peer.ready.ok) {
    await stop(peer);
    throw new Error(`turnutils_peer: ${peer.ready.reason}`);
  }
  const relay = await startRelay(cfg.relay, { port, minPort: MIN_PORT, maxPort: MAX_PORT, metricsPort, tmp, threads: cfg.threads, cpu: pin.server });
  const run = {};
  try {
    if (!relay.ready.ok) throw Object.assign(new Error(`${relay.ready.reason}: ${relay.output().trim().split('\n').slice(-3).join(' | ').slice(0, 300)}`), { unavailable: true });
    const ucArgs = ['-u', USER, '-w', PASS, '-p', String(port), '-e', '127.0.0.1', '-r', String(peerPort), '-n', String(MESSAGES), '-m', String(CLIENTS), '-l', String(LEN), '-c', '-z', String(INTERVAL_MS), '127.0.0.1'];
    const env = { LD_PRELOAD: SHIM };
    const samples = [];
    let tConnect;
    const sample = (S, R) => ({
      t: performance.now() / 1000, S, R, relay: processCpu(relay.pid), peer: processCpu(peer.pid), uc: processCpu(uc.pid), cpus: cpuTimes(),
    });
    const rcv0 = udpRcvbufErrors();
    const metrics0 = metricsPort ? await scrapeMetrics(metricsPort) : undefined;
    const uc = launch(UCLIENT, ucArgs, {
      cpu: pin.load,
      env,
      onLine: (l) => {
        if (tConnect === undefined && /Total connect time is/.test(l)) tConnect = performance.now() / 1000;
        const m = l.match(RE_STATS);
        if (m) samples.push({ ...sample(Number(m[2]), Number(m[3])), clients: Number(m[1]) });
      },
    });
    run.commands = { relay: shown(relay.command), load: shown([UCLIENT, ...ucArgs], env), peer: shown(peer.command), entry: relay.entry };
    const capMs = 60_000 + MESSAGES * INTERVAL_MS;
    let timer;
    const timedOut = await Promise.race([uc.exited.then(() => false), new Promise((r) => (timer = setTimeout(r, capMs, true)))]);
    clearTimeout(timer);
    if (timedOut) await stop(uc, 'SIGINT');
    const out = uc.output();
    const num = (re, i = 1) => {
      const m = out.match(re);
      return m ? Number(m[i]) : NaN;
    };
    run.uclient = {
      exit: uc.exit,
      timedOut,
      sent: num(/start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$/m),
      received: num(/start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$/m, 2),
      lost: num(/Total lost packets (\d+)/),
      lostPct: num(/Total lost packets \d+ \(([\d.]+)%/),
      rttMs: num(/Average round trip delay ([\d.]+) ms/),
      rttMaxMs: num(/Average round trip delay [\d.]+ ms; min = \d+ ms, max = (\d+) ms/),
      transmitS: num(/Total transmit time is (\d+)/),
      connectS: num(/Total connect time is (\d+)/),
      errors: out.split('\n').filter((l) => /error|ERROR|Cannot|cannot/.test(l)).slice(0, 3),
    };
    if (!Number.isFinite(run.uclient.sent)) throw new Error(`uclient printed no summary (exit ${JSON.stringify(uc.exit)}): ${out.trim().split('\n').slice(-4).join(' | ').slice(0, 400)}`);
    run.rcvbufErrors = udpRcvbufErrors() - rcv0;
    // The plateau: every client has started (they start 1-6 s after connecting) and none
    // can have sent its last message (the earliest starts 1 s after connecting).
    const win = samples.filter((s) => tConnect !== undefined && s.t >= tConnect + PLATEAU_FROM && s.t <= tConnect + PLATEAU_TO);
    if (win.length >= 2) {
      const a = win[0];
      const b = win[win.length - 1];
      const dt = b.t - a.t;
      const core = (s, cpu) => (cpu === undefined ? NaN : s.cpus[cpu].task + s.cpus[cpu].intr);
      run.plateau = {
        seconds: dt,
        relayedPps: (2 * (b.R - a.R)) / dt,
        offeredPps: (2 * (b.S - a.S)) / dt,
        relayCpu: (b.relay - a.relay) / dt,
        uclientCpu: (b.uc - a.uc) / dt,
        peerCpu: (b.peer - a.peer) / dt,
        relayCore: (core(b, pin.server) - core(a, pin.server)) / dt,
        loadCore: (core(b, pin.load) - core(a, pin.load)) / dt,
        other: Math.max(0, (sum(b.cpus.map((c) => c.task)) - sum(a.cpus.map((c) => c.task))) / dt - (b.relay - a.relay + b.uc - a.uc + b.peer - a.peer) / dt),
      };
      run.plateau.cpuUsPerPkt = (run.plateau.relayCpu / run.plateau.relayedPps) * 1e6;
    } else {
      run.plateauMissing = `only ${win.length} stats lines inside the plateau (connect at ${tConnect === undefined ? '?' : 'seen'}; ${samples.length} lines in all)`;
    }
    // The relay's own counters against uclient's.
    if (cfg.relay === 'natkit') {
      const m = await scrapeMetrics(metricsPort);
      run.counters = { source: 'natkit_turn_relayed_packets_total', toPeer: m.toPeer - metrics0.toPeer, toClient: m.toClient - metrics0.toClient, drops: m.drops };
    } else {
      let u;
      for (let i = 0; i < 40; i++) {
        u = coturnPeerUsage(relay.output());
        if (u.closed >= CLIENTS) break;
        await sleep(100);
      }
      run.counters = { source: 'coturn -v "peer usage" lines', toPeer: u.toPeer, toClient: u.fromPeer, sessionsClosed: u.closed };
    }
  } finally {
    run.stop = await stop(relay, cfg.relay === 'natkit' ? 'SIGINT' : 'SIGTERM');
    await stop(peer);
  }
  return run;
}

for (let round = 0; round < ROUNDS; round++) {
  for (const cfg of rotated(CONFIGS, round)) {
    const st = state.get(cfg.id);
    if (st.unavailable) continue;
    let run;
    try {
      run = await runOnce(cfg);
    } catch (e) {
      if (e.unavailable) {
        st.unavailable = e.message;
        console.error(`  [round ${round + 1}] ${cfg.id}: NOT AVAILABLE: ${e.message}`);
        continue;
      }
      run = { error: e.message };
    }
    run.round = round + 1;
    st.commands ??= run.commands;
    st.runs.push(run);
    const u = run.uclient;
    const p = run.plateau;
    console.error(
      `  [round ${round + 1}] ${cfg.id.padEnd(15)} ` +
        (run.error
          ? `ERROR ${run.error}`
          : (p
              ? `${Math.round(p.relayedPps)} relayed pkt/s (offered ${Math.round(p.offeredPps)}) over ${p.seconds.toFixed(1)} s; relay cpu ${p.relayCpu.toFixed(2)} ` +
                `(${p.cpuUsPerPkt.toFixed(2)} us/pkt), relay core ${p.relayCore.toFixed(2)}, load core ${p.loadCore.toFixed(2)} (uclient ${p.uclientCpu.toFixed(2)}, peer ${p.peerCpu.toFixed(2)}), other ${p.other.toFixed(2)}; `
              : `no plateau: ${run.plateauMissing}; `) +
            `uclient: sent ${u.sent}, received ${u.received}, lost ${u.lost} (${u.lostPct}%), avg RTT ${u.rttMs} ms (max ${u.rttMaxMs}), transmit ${u.transmitS} s; ` +
            `relay counted ${run.counters.toPeer} to peer / ${run.counters.toClient} to client; kernel UDP rcvbuf drops ${run.rcvbufErrors}`),
    );
  }
}
rmSync(tmp, { recursive: true, force: true });

// ---------------------------------------------------------------------------------------

const summary = {};
for (const [id, st] of state) {
  const ok = st.runs.filter((r) => !r.error && r.plateau);
  const P = (k) => ok.map((r) => r.plateau[k]);
  const U = (k) => ok.map((r) => r.uclient[k]);
  summary[id] = {
    id, label: st.cfg.label, unavailable: st.unavailable ?? null, commands: st.commands ?? null, rounds: ok.length,
    errors: st.runs.filter((r) => r.error || !r.plateau).map((r) => `round ${r.round}: ${r.error ?? r.plateauMissing}`),
    pps: median(P('relayedPps')), ppsMin: Math.min(...P('relayedPps')), ppsMax: Math.max(...P('relayedPps')), offeredPps: median(P('offeredPps')),
    relayCpu: median(P('relayCpu')), cpuUsPerPkt: median(P('cpuUsPerPkt')), relayCore: median(P('relayCore')), loadCore: median(P('loadCore')),
    uclientCpu: median(P('uclientCpu')), peerCpu: median(P('peerCpu')), other: median(P('other')),
    lostPct: median(U('lostPct')), rttMs: median(U('rttMs')), sent: median(U('sent')), received: median(U('received')),
    rcvbufErrors: median(ok.map((r) => r.rcvbufErrors)),
    counters: ok.map((r) => ({ ...r.counters, ucSent: r.uclient.sent, ucReceived: r.uclient.received })),
    byRound: Object.fromEntries(ok.map((r) => [r.round, r.plateau.relayedPps])),
  };
}
const n = summary.natkit;
const c = summary['coturn-1thread'];
let ratio = null;
if (n?.rounds && c?.rounds) {
  const paired = pairedRatios(n.byRound, c.byRound);
  ratio = { pps: n.pps / c.pps, ppsPairedMedian: median(paired), paired, cpuPerPkt: n.cpuUsPerPkt / c.cpuUsPerPkt, rtt: n.rttMs / c.rttMs };
}

const lines = [];
lines.push(
  `uclient benchmark: ${ROUNDS} rounds; turnutils_uclient ${CLIENTS} clients (-c: one allocation each, channels) x ${MESSAGES} messages of ${LEN} bytes every ${INTERVAL_MS} ms ` +
    `(offered up to ${f0(2 * offered)} relayed pkt/s); turnutils_peer echo; ` +
    (pin.server ? `relay pinned to CPU ${pin.server}, uclient + peer to CPU ${pin.load}` : `no pinning (${pin.reason})`),
);
lines.push('');
lines.push(
  ...resultTable(
    [16, 14, 20, 10, 8, 8, 10, 8, 11, 10, 8, 6, 7],
    ['relay', 'relayed pkt/s', '(min..max)', 'offered', 'loss %', 'RTT ms', 'relay cpu', 'us/pkt', 'relay core', 'load core', 'uclient', 'peer', 'other'],
    Object.values(summary),
    (s) => [
      f0(s.pps), `(${f0(s.ppsMin)}..${f0(s.ppsMax)})`, f0(s.offeredPps), fx(s.lostPct), fx(s.rttMs, 1), fx(s.relayCpu), fx(s.cpuUsPerPkt),
      fx(s.relayCore), fx(s.loadCore), fx(s.uclientCpu), fx(s.peerCpu), fx(s.other),
    ],
  ),
);
lines.push(
  'relayed pkt/s = 2 x messages echoed per second while every client was sending (client->peer + peer->client); offered = 2 x messages uclient sent per second then;',
  "loss % and RTT = uclient's own summary over the whole run (loss counts what never came back; RTT is its average round trip, 1 ms clock steps);",
  'relay cpu, uclient, peer = cores used by each process; relay/load core = that CPU busy in all (tasks + irq/softirq) from /proc/stat, whose tick sampling',
  'under-counts a CPU that idles in short gaps (so only a figure near 1.00 is telling); other = cores used by other tasks (noise, same caveat).',
);
if (ratio) {
  lines.push(
    `natkit/coturn-1thread: relayed pkt/s ${ratio.pps.toFixed(2)}x (per-round: median ${ratio.ppsPairedMedian.toFixed(2)}x, ${ratio.paired.map((x) => x.toFixed(2)).join(' ')}), ` +
      `CPU per packet ${ratio.cpuPerPkt.toFixed(2)}x, average RTT ${ratio.rtt.toFixed(2)}x`,
  );
}
for (const s of Object.values(summary)) {
  if (!s.rounds) continue;
  // Who is the limit: a relay that keeps up gets everything offered; one that cannot
  // keeps its own CPU busy while the load's CPU has room.
  const keptUp = s.pps >= 0.97 * s.offeredPps;
  const limit = keptUp
    ? `kept up with what uclient offered (${f0(s.offeredPps)} pkt/s): the load, not the relay, set this rate`
    : Math.max(s.relayCpu, s.relayCore) >= 0.9
      ? `fell behind the offered load (${f0(s.offeredPps)} pkt/s, all of it sent by uclient) using ${fx(s.relayCpu)} of its CPU: the relay is the limit` +
        (s.loadCore >= 0.9 ? ` (the load CPU was busy too: ${fx(s.loadCore)})` : '')
      : `fell behind using ${fx(s.relayCpu)} of its CPU, uclient + peer using ${fx(s.uclientCpu + s.peerCpu)} of theirs: not clearly CPU-bound on either side`;
  lines.push(`${s.id}: ${limit}`);
  const agree = s.counters.map((k) => `${k.toPeer}/${k.toClient} vs uclient ${k.ucSent}/${k.ucReceived}`);
  lines.push(`${s.id}: relay counters (${s.counters[0].source}) to peer/to client vs uclient sent/received, per round: ${agree.join('; ')}`);
}
lines.push(`(took ${((Date.now() - t0) / 1000).toFixed(0)} s)`);
console.log(lines.join('\n'));
if (JSON_OUT) {
  writeFileSync(
    JSON_OUT,
    JSON.stringify({ rounds: ROUNDS, clients: CLIENTS, messages: MESSAGES, intervalMs: INTERVAL_MS, len: LEN, offeredPps: 2 * offered, pin, summary, ratio, natkitEntry: natkitEntry().kind }, null, 2),
  );
}
