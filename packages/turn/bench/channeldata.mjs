#!/usr/bin/env node
// ChannelData relay benchmark: round trips per second, relayed packets per second, loss and
// latency of natkit's relay and coturn's under the same closed-loop load from
// bench/turnload.c, in the same run.
//
//   node bench/channeldata.mjs [--quick] [--rounds N] [--duration-ms MS] [--window N]
//                              [--allocs N] [--len BYTES] [--only id,id] [--noise-limit CORES]
//                              [--json FILE]
//
// turnload makes --allocs allocations (long-term credentials, HMAC-SHA1 MESSAGE-INTEGRITY),
// binds channel 0x4000 on each to a C UDP echo peer (echo.c in @natkit/stun's
// bench/common, built into bench/.build) and keeps --window ChannelData messages in
// flight; every round trip is two relayed packets (client->peer and peer->client). The
// relay runs alone on one CPU (taskset), turnload and the echo on the other.
// Configurations, each started afresh every round (order rotated):
//
//   forward         bench/forward.c: the same packets and hops with no TURN at all (no
//                   allocation, permission or channel checks): the ceiling of the setup.
//                   turnload --raw drives it. Every relay must be measured below it, or the
//                   load generator and the echo peer are the limit, not the relay.
//   coturn-1thread  turnserver -m 1 (one relay thread)
//   coturn-default  turnserver with its default thread count (one relay thread per CPU),
//                   on the same single CPU: context only
//   natkit          node packages/turn/bin/relayserver.js (UDP, --no-tcp)
//
// After each run the allocations are deleted (Refresh, LIFETIME 0) and the relay's own
// counters are checked against turnload's: natkit's natkit_turn_relayed_packets_total
// (--metrics), coturn's per-session "peer usage" log lines (-v).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import {
  BUILD, KEY_HEX, REALM, TURNSERVER, USER, argsOf, buildC, ceilingCheck, coturnPeerUsage, f0, freeTcpPort, freeUdpPort, fx, launch,
  leastDisturbed, median, natkitEntry, pairedRatios, pin, resultTable, rotated, runJson, scrapeMetrics, shown, sleep, startPeer, startRelay,
  stop, sum, threadsOf, waitOutput,
} from './lib.mjs';

const { opt, quick: QUICK, json: JSON_OUT, only } = argsOf();
const ROUNDS = Number(opt('--rounds', QUICK ? 1 : 5));
const DURATION_MS = Number(opt('--duration-ms', QUICK ? 1000 : 3000));
const WARMUP_MS = Number(opt('--warmup-ms', QUICK ? 300 : 700));
const WINDOW = Number(opt('--window', 128));
const ALLOCS = Number(opt('--allocs', 8));
const LEN = Number(opt('--len', 100));
const TIMEOUT_MS = 250;
const NOISE_LIMIT = Number(opt('--noise-limit', 0.3));
const MAX_RETRIES = QUICK ? 0 : 2;
const MIN_PORT = 40000;
const MAX_PORT = 44999;

const CONFIGS = only([
  { id: 'forward', label: 'C forwarder, no TURN (ceiling)', kind: 'ceiling' },
  { id: 'coturn-1thread', label: 'coturn turnserver -m 1', kind: 'relay', relay: 'coturn', threads: 1, missing: TURNSERVER ? undefined : 'turnserver not installed' },
  { id: 'coturn-default', label: `coturn turnserver, default threads (${os.availableParallelism()} here), same one CPU`, kind: 'relay', relay: 'coturn', threads: undefined, missing: TURNSERVER ? undefined : 'turnserver not installed' },
  { id: 'natkit', label: 'natkit relayserver', kind: 'relay', relay: 'natkit' },
]);

buildC();
const tmp = mkdtempSync(join(os.tmpdir(), 'natkit-turn-bench-'));
const state = new Map(CONFIGS.map((c) => [c.id, { cfg: c, runs: [], unavailable: c.missing, commands: undefined }]));
const t0 = Date.now();
console.error(
  `channeldata bench: ${ROUNDS} rounds x ${CONFIGS.length} configurations, ${DURATION_MS} ms after ${WARMUP_MS} ms warm-up, ` +
    `${WINDOW} ChannelData in flight over ${ALLOCS} allocations, ${LEN}-byte payloads; ` +
    (pin.server ? `relay on CPU ${pin.server}, turnload and echo peer on CPU ${pin.load}` : `not pinned (${pin.reason})`),
);

for (let round = 0; round < ROUNDS; round++) {
  for (const cfg of rotated(CONFIGS, round)) {
    const st = state.get(cfg.id);
    if (st.unavailable) continue;
    const peerPort = await freeUdpPort();
    const port = await freeUdpPort();
    const metricsPort = cfg.relay === 'natkit' ? await freeTcpPort() : undefined;
    const peer = await startPeer('c-echo', peerPort, pin.load);
    let relay;
    const run = { round: round + 1 };
    try {
      if (!peer.ready.ok) throw new Error(`echo peer: ${peer.ready.reason}`);
      const o = { port, minPort: MIN_PORT, maxPort: MAX_PORT, metricsPort, tmp, threads: cfg.threads, cpu: pin.server };
      if (cfg.kind === 'ceiling') {
        relay = launch(join(BUILD, 'forward'), ['--port', String(port), '--peer-port', String(peerPort)], { cpu: pin.server });
        if (!(await waitOutput(relay, /listening/))) throw new Error(`forward did not start: ${relay.output()}`);
      } else {
        relay = await startRelay(cfg.relay, o);
        if (!relay.ready.ok) {
          st.unavailable = `${relay.ready.reason}: ${relay.output().trim().split('\n').slice(-3).join(' | ').slice(0, 300)}`;
          throw new Error(st.unavailable);
        }
      }
      const lgArgs = [
        '--port', String(port), '--peer-port', String(peerPort), '--allocs', String(ALLOCS), '--window', String(WINDOW),
        '--len', String(LEN), '--duration-ms', String(DURATION_MS), '--warmup-ms', String(WARMUP_MS), '--timeout-ms', String(TIMEOUT_MS),
        ...(cfg.kind === 'ceiling' ? ['--raw'] : ['--user', USER, '--key', KEY_HEX, '--realm', REALM, '--release']),
      ];
      st.commands ??= {
        relay: shown(relay.command),
        load: shown([join(BUILD, 'turnload'), ...lgArgs, '--server-pid', 'PID', '--peer-pid', 'PID']),
        peer: shown(peer.command),
        entry: relay.entry,
      };
      run.threads = threadsOf(relay.pid)?.total ?? NaN;
      // A measurement during which other tasks took more than NOISE_LIMIT cores is repeated
      // (at most MAX_RETRIES times); the least disturbed attempt is kept.
      const measure = async (attempt) => {
        const before = cfg.relay === 'natkit' ? await scrapeMetrics(metricsPort) : undefined;
        const pids = ['--server-pid', String(relay.pid), '--peer-pid', String(peer.pid)];
        const r = await runJson(join(BUILD, 'turnload'), [...lgArgs, ...pids], { cpu: pin.load });
        // Cores busy with tasks other than the relay, turnload and the echo peer (interrupt
        // time is left out: loopback delivery of our own packets is softirq work).
        r.other_cpu = Math.max(0, sum(r.cpu_task) - r.server_cpu - r.loadgen_cpu - r.peer_cpu);
        r.relayed_pps = 2 * r.rtps;
        r.cpu_us_per_pkt = r.server_cpu > 0 && r.relayed_pps > 0 ? (r.server_cpu / r.relayed_pps) * 1e6 : NaN;
        r.server_core_busy = pin.server ? r.cpu_task[Number(pin.server)] + r.cpu_intr[Number(pin.server)] : NaN;
        r.load_core_busy = pin.server ? r.cpu_task[Number(pin.load)] + r.cpu_intr[Number(pin.load)] : NaN;
        // The relay's own counters against what turnload sent and got back.
        if (cfg.relay === 'natkit') {
          const after = await scrapeMetrics(metricsPort);
          r.counters = { source: 'natkit_turn_relayed_packets_total', toPeer: after.toPeer - before.toPeer, toClient: after.toClient - before.toClient, drops: after.drops };
        } else if (cfg.relay === 'coturn') {
          // Its session-closed lines come a moment after the Refresh; wait for all of them.
          let u;
          for (let i = 0; i < 50; i++) {
            u = coturnPeerUsage(relay.output());
            if (u.closed >= ALLOCS * (attempt + 1)) break;
            await sleep(100);
          }
          r.counters = { source: 'coturn -v "peer usage" lines', toPeer: u.toPeer - (run.coturnBase?.toPeer ?? 0), toClient: u.fromPeer - (run.coturnBase?.fromPeer ?? 0), sessionsClosed: u.closed };
          run.coturnBase = u;
        }
        return r;
      };
      await leastDisturbed(run, measure, { limit: NOISE_LIMIT, retries: MAX_RETRIES, done: () => relay.exit });
    } catch (e) {
      run.error = e.message;
    }
    if (relay) {
      run.diedDuringRun = relay.exit !== undefined;
      run.stop = await stop(relay, cfg.relay === 'natkit' ? 'SIGINT' : 'SIGTERM');
      if (run.diedDuringRun && !run.error) run.error = `relay exited during the run: ${relay.output().slice(-300)}`;
    }
    await stop(peer);
    if (st.unavailable && !run.loaded) {
      console.error(`  [round ${round + 1}] ${cfg.id}: NOT AVAILABLE: ${st.unavailable}`);
      continue;
    }
    st.runs.push(run);
    const l = run.loaded;
    console.error(
      `  [round ${round + 1}] ${cfg.id.padEnd(15)} ` +
        (run.error
          ? `ERROR ${run.error}`
          : `${Math.round(l.rtps)} round trips/s = ${Math.round(l.relayed_pps)} relayed pkt/s, p50 ${l.p50_us} us p99 ${l.p99_us} us, lost ${l.lost}, ` +
            `relay cpu ${l.server_cpu.toFixed(2)} (${l.cpu_us_per_pkt.toFixed(2)} us/pkt), relay core busy ${l.server_core_busy.toFixed(2)}, load core busy ${l.load_core_busy.toFixed(2)} ` +
            `(turnload ${l.loadgen_cpu.toFixed(2)}, echo ${l.peer_cpu.toFixed(2)}), other ${l.other_cpu.toFixed(2)}` +
            (l.counters ? `; relay counted ${l.counters.toPeer} to peer / ${l.counters.toClient} to client vs turnload ${l.total_sent} sent / ${l.total_received} back` : '') +
            (run.noisyAttempts.length ? ` (repeated for noise: ${run.noisyAttempts.map((x) => x.toFixed(2)).join(', ')})` : '')),
    );
  }
}
rmSync(tmp, { recursive: true, force: true });

// ---------------------------------------------------------------------------------------

const summary = {};
for (const [id, st] of state) {
  const ok = st.runs.filter((r) => !r.error && r.loaded);
  const L = (k) => ok.map((r) => r.loaded[k]);
  const countersOk = ok.filter((r) => r.loaded.counters).map((r) => {
    const c = r.loaded.counters;
    return c.toPeer === r.loaded.total_sent && c.toClient === r.loaded.total_received;
  });
  summary[id] = {
    id, label: st.cfg.label, kind: st.cfg.kind, unavailable: st.unavailable ?? null, commands: st.commands ?? null,
    rounds: ok.length, errors: st.runs.filter((r) => r.error).map((r) => `round ${r.round}: ${r.error}`),
    rtps: median(L('rtps')), pps: median(L('relayed_pps')), ppsMin: Math.min(...L('relayed_pps')), ppsMax: Math.max(...L('relayed_pps')),
    p50: median(L('p50_us')), p99: median(L('p99_us')), lost: sum(L('lost')), sent: sum(L('sent')), late: sum(L('late')), bad: sum(L('bad')),
    serverCpu: median(L('server_cpu')), cpuUsPerPkt: median(L('cpu_us_per_pkt')), serverCoreBusy: median(L('server_core_busy')),
    loadCoreBusy: median(L('load_core_busy')), loadgenCpu: median(L('loadgen_cpu')), peerCpu: median(L('peer_cpu')),
    otherCpu: median(L('other_cpu')), otherCpuMax: Math.max(...L('other_cpu')), repeats: ok.reduce((a, r) => a + r.noisyAttempts.length, 0),
    threads: ok[0]?.threads ?? null,
    counters: ok.map((r) => r.loaded.counters).filter(Boolean),
    countersAgree: countersOk.length ? countersOk.every(Boolean) : null,
    byRound: Object.fromEntries(ok.map((r) => [r.round, r.loaded.relayed_pps])),
  };
}
const ratio = (() => {
  const n = summary.natkit;
  const c = summary['coturn-1thread'];
  if (!n?.rounds || !c?.rounds) return null;
  const paired = pairedRatios(n.byRound, c.byRound);
  return { pps: n.pps / c.pps, ppsPairedMedian: median(paired), paired, cpuPerPkt: n.cpuUsPerPkt / c.cpuUsPerPkt, p50: n.p50 / c.p50, p99: n.p99 / c.p99 };
})();
let verdict = null;
const ceil = summary.forward;
const relays = Object.values(summary).filter((s) => s.kind === 'relay' && s.rounds);
if (ceil?.rounds && relays.length) {
  const { fastest, margin, notTheLimit } = ceilingCheck(ceil, relays, (s) => s.pps);
  verdict = {
    ceilingPps: ceil.pps, fastest: fastest.id, margin, notTheLimit,
    saturated: relays.filter((s) => s.serverCpu >= 0.85 || s.serverCoreBusy >= 0.9).map((s) => s.id),
  };
}

const lines = [];
lines.push(
  `channeldata benchmark: ${ROUNDS} rounds, ${DURATION_MS} ms each after ${WARMUP_MS} ms warm-up; ${WINDOW} ChannelData messages in flight over ${ALLOCS} allocations ` +
    `(${LEN}-byte payloads, channel 0x4000, timeout ${TIMEOUT_MS} ms); C echo peer; ` +
    (pin.server ? `relay pinned to CPU ${pin.server}, turnload + echo to CPU ${pin.load}` : `no pinning (${pin.reason})`),
);
lines.push('');
lines.push(
  ...resultTable(
    [16, 14, 20, 8, 8, 6, 10, 8, 11, 10, 7, 8],
    ['relay', 'relayed pkt/s', '(min..max)', 'p50 us', 'p99 us', 'lost', 'relay cpu', 'us/pkt', 'relay core', 'load core', 'other', 'threads'],
    Object.values(summary),
    (s) => [
      f0(s.pps), `(${f0(s.ppsMin)}..${f0(s.ppsMax)})`, f0(s.p50), f0(s.p99), s.lost, fx(s.serverCpu), fx(s.cpuUsPerPkt), fx(s.serverCoreBusy),
      fx(s.loadCoreBusy), fx(s.otherCpu), s.threads ?? '?',
    ],
  ),
);
lines.push(
  'relayed pkt/s = 2 x ChannelData round trips per second (client->peer and peer->client each count once); medians over rounds;',
  'latency = one round trip through the relay twice (client -> relay -> echo -> relay -> client); relay cpu = cores used by the relay process;',
  'us/pkt = relay process CPU per relayed packet; relay/load core = that CPU busy in all (tasks + irq/softirq, which carries loopback delivery);',
  `other = cores used by tasks other than relay, turnload and echo (noise); above ${NOISE_LIMIT} a measurement is repeated up to ${MAX_RETRIES}x, keeping the least disturbed.`,
);
if (ratio) {
  lines.push(
    `natkit/coturn-1thread: relayed pkt/s ${ratio.pps.toFixed(2)}x (per-round ratios: median ${ratio.ppsPairedMedian.toFixed(2)}x, ${ratio.paired.map((x) => x.toFixed(2)).join(' ')}), ` +
      `CPU per packet ${ratio.cpuPerPkt.toFixed(2)}x, latency p50 ${ratio.p50.toFixed(2)}x, p99 ${ratio.p99.toFixed(2)}x (> 1 pkt/s and < 1 CPU/latency favour natkit)`,
  );
}
if (verdict) {
  lines.push(
    `load generator: the C forwarder (no TURN) reaches ${f0(verdict.ceilingPps)} pkt/s = ${verdict.margin.toFixed(2)}x the fastest relay (${verdict.fastest}): ` +
      (verdict.notTheLimit ? 'turnload and the echo peer are not the limit' : 'WARNING: margin under 1.2x, turnload/echo may be limiting') +
      `; relays CPU-bound on their core: ${verdict.saturated.join(', ') || 'none'}`,
  );
}
for (const s of relays) {
  if (s.countersAgree === null) continue;
  const c = s.counters[0];
  lines.push(
    `${s.id}: relay counters (${c.source}) ${s.countersAgree ? 'equal' : 'DIFFER FROM'} turnload's packets sent and echoed in every round` +
      (s.countersAgree ? '' : `: ${s.counters.map((x) => `${x.toPeer}/${x.toClient}`).join(', ')}`) + (c.drops?.length ? `; drops: ${c.drops.join(' ')}` : ''),
  );
}
for (const s of Object.values(summary)) {
  if (s.repeats || s.otherCpuMax > NOISE_LIMIT) lines.push(`note: ${s.id}: ${s.repeats} measurement(s) repeated for noise; other work up to ${fx(s.otherCpuMax)} cores in a kept round`);
  if (s.lost || s.bad || s.late) lines.push(`note: ${s.id}: lost ${s.lost} of ${s.sent}, late ${s.late}, malformed ${s.bad}`);
}
lines.push(`(took ${((Date.now() - t0) / 1000).toFixed(0)} s)`);
console.log(lines.join('\n'));
if (JSON_OUT) {
  writeFileSync(JSON_OUT, JSON.stringify({ rounds: ROUNDS, durationMs: DURATION_MS, window: WINDOW, allocs: ALLOCS, len: LEN, pin, summary, ratio, verdict, natkitEntry: natkitEntry().kind }, null, 2));
}
