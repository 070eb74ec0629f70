#!/usr/bin/env node
// Server benchmark: Binding responses per second and latency of natkit's stunserver and
// coturn's turnserver under the same closed-loop load, in the same run.
//
//   node bench/server.mjs [--quick] [--rounds N] [--duration-ms MS] [--window N] [--sockets N]
//                         [--only id,id] [--natkit-bin PATH] [--json FILE]
//
// The load comes from bench/loadgen.c (its loop in bench/common/udpload.h; compiled here
// with `cc -O2` into bench/.build/): a window of Binding requests in flight over several
// client sockets (source ports), unique transaction ids, per-request latency, timeouts
// counted as loss. Each server runs alone, pinned to one CPU with taskset, the load
// generator on the other. Configurations:
//
//   c-echo          bare UDP echo in C (bench/common/echo.c): the ceiling of this setup. The load generator must
//                   drive it faster than any STUN server, or it is the limit, not them.
//   node-echo       bare node:dgram echo: what one Node event loop costs per datagram.
//   coturn-1thread  turnserver -m 0 (single-threaded), like for like with one Node process.
//   coturn-default  turnserver with its default threads (one UDP thread per CPU).
//   natkit          node packages/stun/bin/stunserver.js --listen 127.0.0.1 --port P --no-tcp
//
// Every round starts each server afresh (order rotated each round), waits until it answers
// a Binding request (polling, no fixed sleeps), runs the loaded measurement and then an
// unloaded one (one request in flight), and stops it with SIGTERM. Reported: medians over
// rounds and natkit/coturn ratios.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  COMMON, TURNSERVER, argsOf, bindingRequest, buildC, ceilingCheck, choosePinning, f0, freeUdpPort, fx, launch, leastDisturbed, median,
  pairedRatios, probe, resultTable, rotated, runJson, stop, sum, threadCpu, threadsOf,
} from './common/bench-lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { opt, quick: QUICK, json: JSON_OUT, only } = argsOf();
const ROUNDS = Number(opt('--rounds', QUICK ? 2 : 7));
const DURATION_MS = Number(opt('--duration-ms', QUICK ? 1000 : 2500));
const WARMUP_MS = Number(opt('--warmup-ms', QUICK ? 200 : 500));
const WINDOW = Number(opt('--window', 128));
const SOCKETS = Number(opt('--sockets', 8));
const UNLOADED_MS = QUICK ? 300 : 1000;
const TIMEOUT_MS = 250;
const READY_TIMEOUT_MS = 15000;
const NOISE_LIMIT = Number(opt('--noise-limit', 0.3)); // cores of foreign load that make a measurement be repeated
const MAX_RETRIES = QUICK ? 1 : 2;

const BUILD = join(here, '.build');
const LOADGEN = join(BUILD, 'loadgen');
const ECHO = join(BUILD, 'echo');
const STUNSERVER = opt('--natkit-bin', join(here, '../bin/stunserver.js'));

// ---------------------------------------------------------------------------------------
// Setup

const pin = choosePinning();

const BINDING_REQUEST = 0x0001;
const BINDING_SUCCESS = 0x0101;
const BINDING_ERROR = 0x0111;

const ATTR_NAMES = {
  0x0001: 'MAPPED-ADDRESS', 0x0006: 'USERNAME', 0x0008: 'MESSAGE-INTEGRITY', 0x0009: 'ERROR-CODE', 0x0020: 'XOR-MAPPED-ADDRESS',
  0x8022: 'SOFTWARE', 0x8023: 'ALTERNATE-SERVER', 0x8028: 'FINGERPRINT', 0x802b: 'RESPONSE-ORIGIN', 0x802c: 'OTHER-ADDRESS',
};
/** The attribute names of a response, for the report (what each server sends back). */
function attributeNames(m) {
  const names = [];
  for (let p = 20; p + 4 <= m.length; ) {
    const t = m.readUInt16BE(p);
    names.push(ATTR_NAMES[t] ?? `0x${t.toString(16).padStart(4, '0')}`);
    p += 4 + ((m.readUInt16BE(p + 2) + 3) & ~3);
  }
  return names;
}

/**
 * Starts a server pinned to its CPU and polls it with a Binding request every 20 ms until
 * it answers (a Binding response, or the request itself from an echo server), exits, or
 * READY_TIMEOUT_MS passes: s.ready = { ok, ms, type, bytes, attrs } or { ok: false, reason }.
 */
async function startServer(cfg, port, tmp) {
  let sawListening = false;
  const onOutput = (t) => {
    if (/listening/i.test(t)) sawListening = true;
  };
  const s = launch(cfg.cmd, cfg.args(port, tmp), { cpu: pin.server, keep: 4000, onOutput });
  s.sawListening = () => sawListening;
  const req = bindingRequest();
  const accept = (m) => {
    if (m.length < 20 || !m.subarray(8, 20).equals(req.subarray(8, 20))) return undefined;
    const type = m.readUInt16BE(0);
    if (type !== BINDING_SUCCESS && type !== BINDING_ERROR && type !== BINDING_REQUEST) return undefined;
    return { type, bytes: m.length, attrs: attributeNames(m) };
  };
  s.ready = await probe(port, { packet: () => req, accept, p: s, timeoutMs: READY_TIMEOUT_MS, what: 'a Binding request' });
  return s;
}

async function runLoadgen(port, serverPid, window, durationMs, warmupMs) {
  const r = await runJson(
    LOADGEN,
    [
      '--port', String(port), '--window', String(window), '--duration-ms', String(durationMs),
      '--warmup-ms', String(warmupMs), '--timeout-ms', String(TIMEOUT_MS), '--server-pid', String(serverPid),
      '--sockets', String(Math.min(SOCKETS, window)),
    ],
    { cpu: pin.load },
  );
  // Cores busy with anything but this server and the load generator: the noise.
  r.other_cpu = r.system_busy >= 0 && r.server_cpu >= 0 ? Math.max(0, r.system_busy - r.server_cpu - r.loadgen_cpu) : NaN;
  // The server's CPU time per answered request: how much work a response costs it,
  // which CPU stolen by other work on the machine does not change much.
  r.cpu_us_per_req = r.server_cpu > 0 && r.rps > 0 ? (r.server_cpu / r.rps) * 1e6 : NaN;
  return r;
}

// ---------------------------------------------------------------------------------------
// Configurations

const coturnArgs = (p, tmp) => [
  '-n', '--no-cli', '--listening-ip', '127.0.0.1', '--listening-port', String(p),
  '--no-tcp', '--no-tls', '--no-dtls', '--stun-only', '--no-rfc5780',
  '--log-file', 'stdout', '--simple-log',
  '--pidfile', join(tmp, `turnserver-${p}.pid`), '--userdb', join(tmp, `turndb-${p}`),
];

const CONFIGS = only([
  { id: 'c-echo', label: 'C UDP echo (ceiling)', kind: 'echo', cmd: ECHO, args: (p) => ['--port', String(p)] },
  { id: 'node-echo', label: 'Node dgram echo', kind: 'echo', cmd: process.execPath, args: (p) => [join(here, 'echo-node.mjs'), '--port', String(p)] },
  { id: 'coturn-1thread', label: 'coturn -m 0', kind: 'stun', cmd: TURNSERVER, args: (p, tmp) => [...coturnArgs(p, tmp), '-m', '0'], missing: TURNSERVER ? undefined : 'turnserver not installed' },
  { id: 'coturn-default', label: 'coturn default', kind: 'stun', cmd: TURNSERVER, args: (p, tmp) => coturnArgs(p, tmp), missing: TURNSERVER ? undefined : 'turnserver not installed' },
  {
    id: 'natkit', label: 'natkit stunserver', kind: 'stun', cmd: process.execPath,
    args: (p) => [STUNSERVER, '--listen', '127.0.0.1', '--port', String(p), '--no-tcp'],
    missing: existsSync(STUNSERVER) ? undefined : `${STUNSERVER} does not exist`,
  },
]);

// ---------------------------------------------------------------------------------------
// Run

buildC(BUILD, [
  { name: 'loadgen', src: join(here, 'loadgen.c'), include: [COMMON] },
  { name: 'echo', src: join(COMMON, 'echo.c') },
]);
const tmp = mkdtempSync(join(os.tmpdir(), 'natkit-bench-'));
const state = new Map(CONFIGS.map((c) => [c.id, { cfg: c, runs: [], unavailable: c.missing, notes: [] }]));
const t0 = Date.now();
console.error(
  `server bench: ${ROUNDS} rounds x ${CONFIGS.length} servers, ${DURATION_MS} ms loaded (window ${WINDOW} over ${SOCKETS} sockets) + ${UNLOADED_MS} ms unloaded each; ` +
    (pin.server ? `server on CPU ${pin.server}, load generator on CPU ${pin.load}` : `not pinned (${pin.reason})`),
);

for (let round = 0; round < ROUNDS; round++) {
  for (const cfg of rotated(CONFIGS, round)) {
    const st = state.get(cfg.id);
    if (st.unavailable) continue;
    const port = await freeUdpPort();
    const s = await startServer(cfg, port, tmp);
    if (!s.ready.ok) {
      await stop(s);
      const said = s.output().trim().split('\n').slice(-3).join(' | ');
      st.unavailable = `${s.ready.reason}${said ? `; it printed: "${said.slice(0, 300)}"` : ''}`;
      console.error(`  [round ${round + 1}] ${cfg.id}: NOT AVAILABLE: ${st.unavailable}`);
      continue;
    }
    const run = { round: round + 1, readyMs: s.ready.ms, probeType: s.ready.type, response: s.ready.attrs, sawListening: s.sawListening(), threads: threadsOf(s.pid) };
    try {
      // A measurement during which other work on the machine took more than NOISE_LIMIT
      // cores is repeated (at most MAX_RETRIES times, same server); the least disturbed
      // attempt is kept, whatever its numbers. The count of repeats is reported.
      const measure = async () => {
        const before = threadCpu(s.pid);
        const tb = process.hrtime.bigint();
        const l = await runLoadgen(port, s.pid, WINDOW, DURATION_MS, WARMUP_MS);
        // Threads that did real work under load (more than 5% of a core).
        const after = threadCpu(s.pid);
        const secs = Number(process.hrtime.bigint() - tb) / 1e9;
        l.busyThreads = [...after].map(([t, c]) => (c - (before.get(t) ?? 0)) / secs).filter((x) => x > 0.05).sort((a, b) => b - a).map((x) => +x.toFixed(2));
        return l;
      };
      await leastDisturbed(run, measure, { limit: NOISE_LIMIT, retries: MAX_RETRIES, done: () => s.exit });
      run.busyThreads = run.loaded.busyThreads;
      if (!s.exit) run.unloaded = await runLoadgen(port, s.pid, 1, UNLOADED_MS, 200);
    } catch (e) {
      run.error = e.message;
    }
    run.diedDuringRun = s.exit !== undefined;
    run.stop = await stop(s);
    if (run.diedDuringRun) run.error = `server exited during the run (${JSON.stringify(run.stop)}): ${s.output().trim().slice(-300)}`;
    if (cfg.id === 'natkit' && run.stop.forced) st.notes.push(`round ${run.round}: did not exit within 5 s of SIGTERM (killed)`);
    st.runs.push(run);
    const l = run.loaded;
    console.error(
      `  [round ${round + 1}] ${cfg.id.padEnd(15)} ` +
        (run.error
          ? `ERROR ${run.error}`
          : `${Math.round(l.rps)} rps p50 ${l.p50_us} us p99 ${l.p99_us} us lost ${l.lost} server cpu ${l.server_cpu} (${l.cpu_us_per_req.toFixed(2)} us/req) other cpu ${l.other_cpu.toFixed(2)}` +
            `${run.noisyAttempts.length ? ` (repeated; noisier attempts had ${run.noisyAttempts.map((x) => x.toFixed(2)).join(', ')})` : ''} | unloaded p50 ${run.unloaded?.p50_us} us`),
    );
  }
}
rmSync(tmp, { recursive: true, force: true });

// ---------------------------------------------------------------------------------------
// Summary

const summary = {};
for (const [id, st] of state) {
  const ok = st.runs.filter((r) => !r.error && r.loaded);
  const L = (k) => ok.map((r) => r.loaded[k]);
  const U = (k) => ok.filter((r) => r.unloaded).map((r) => r.unloaded[k]);
  summary[id] = {
    id, label: st.cfg.label, kind: st.cfg.kind, unavailable: st.unavailable ?? null, notes: st.notes,
    rounds: ok.length, errors: st.runs.filter((r) => r.error).map((r) => `round ${r.round}: ${r.error}`),
    rps: median(L('rps')), rpsMin: Math.min(...L('rps')), rpsMax: Math.max(...L('rps')),
    p50: median(L('p50_us')), p99: median(L('p99_us')),
    unloadedP50: median(U('p50_us')), unloadedP99: median(U('p99_us')),
    lost: sum(L('lost')), late: sum(L('late')), bad: sum(L('bad')), sent: sum(L('sent')),
    cpuUsPerReq: median(L('cpu_us_per_req')), repeats: ok.reduce((a, r) => a + (r.noisyAttempts?.length ?? 0), 0),
    loadgenCpu: median(L('loadgen_cpu')), serverCpu: median(L('server_cpu')), otherCpu: median(L('other_cpu')), otherCpuMax: Math.max(...L('other_cpu')),
    respBytes: ok[0]?.loaded.resp_bytes_max ?? null, response: ok[0]?.response ?? null,
    threads: ok[0]?.threads ?? null, busyThreads: ok.map((r) => r.busyThreads),
    readyMs: median(ok.map((r) => r.readyMs)),
  };
}

const f1 = (x) => fx(x, 0);
const lines = [];
lines.push(
  `server benchmark: ${ROUNDS} rounds, ${DURATION_MS} ms each after ${WARMUP_MS} ms warm-up, ${WINDOW} requests in flight over ${SOCKETS} client sockets ` +
    `(20-byte Binding requests, timeout ${TIMEOUT_MS} ms); unloaded = 1 in flight for ${UNLOADED_MS} ms; ` +
    (pin.server ? `server pinned to CPU ${pin.server}, loadgen to CPU ${pin.load}` : `no pinning (${pin.reason})`),
);
lines.push('');
lines.push(
  ...resultTable(
    [16, 12, 22, 8, 8, 9, 9, 6, 8, 9, 9, 8, 8, 7],
    ['server', 'rps median', '(min..max)', 'p50 us', 'p99 us', 'unl p50', 'unl p99', 'lost', 'resp B', 'threads', 'srv cpu', 'us/req', 'lg cpu', 'other'],
    Object.values(summary),
    (s) => [
      f0(s.rps), `(${f0(s.rpsMin)}..${f0(s.rpsMax)})`, f1(s.p50), f1(s.p99), f1(s.unloadedP50), f1(s.unloadedP99), s.lost, s.respBytes,
      s.threads?.total ?? '?', fx(s.serverCpu), fx(s.cpuUsPerReq), fx(s.loadgenCpu), fx(s.otherCpu),
    ],
  ),
);
lines.push(
  'rps and latency: medians over rounds of the loaded run; unl = unloaded (1 in flight); latencies in us, request sent to response received;',
  'srv cpu / lg cpu = cores used by the server / the load generator while measuring; us/req = server CPU time per answered request;',
  `other = cores busy with anything else on the machine (noise); a measurement with other > ${NOISE_LIMIT} is repeated up to ${MAX_RETRIES}x, keeping the least disturbed.`,
);
lines.push('');
for (const s of Object.values(summary)) {
  if (s.kind === 'stun' && s.response) lines.push(`${s.id} answers a Binding request with ${s.respBytes} bytes: ${s.response.join(', ')}`);
}
for (const s of Object.values(summary)) {
  const t = s.threads;
  if (!t || !s.rounds) continue;
  const busy = s.busyThreads.map((b) => `[${b.join(' ')}]`).join(' ');
  lines.push(`${s.id}: ${t.total} threads (${Object.entries(t.byName).map(([n, c]) => `${n} x${c}`).join(', ')}); under load, cores used by each busy thread per round: ${busy}`);
}

const ratios = {};
const nat = summary.natkit;
for (const id of ['coturn-1thread', 'coturn-default']) {
  const c = summary[id];
  if (!c) continue;
  const key = `natkit/${id}`;
  if (!nat) {
    ratios[key] = null;
  } else if (nat.unavailable || !nat.rounds) {
    ratios[key] = null;
    lines.push(`${key}: no ratio, natkit stunserver not available (${nat.unavailable ?? nat.errors.join('; ')})`);
  } else if (c.unavailable || !c.rounds) {
    ratios[key] = null;
    lines.push(`${key}: no ratio, ${id} not available`);
  } else {
    // Also the median of per-round ratios: both ran in the same round, minutes apart at most,
    // so drifting background load cancels better than in a ratio of medians.
    const byRound = (sid) => Object.fromEntries(state.get(sid).runs.filter((r) => !r.error && r.loaded).map((r) => [r.round, r.loaded.rps]));
    const paired = pairedRatios(byRound('natkit'), byRound(id));
    ratios[key] = {
      rps: nat.rps / c.rps, rpsPairedMedian: median(paired), rpsPaired: paired, cpuPerReq: nat.cpuUsPerReq / c.cpuUsPerReq,
      p50: nat.p50 / c.p50, p99: nat.p99 / c.p99, unloadedP50: nat.unloadedP50 / c.unloadedP50,
    };
    const r = ratios[key];
    lines.push(
      `${key}: rps ${r.rps.toFixed(2)}x (per-round ratios: median ${r.rpsPairedMedian.toFixed(2)}x, ${paired.map((x) => x.toFixed(2)).join(' ')}; >1: natkit faster); ` +
        `CPU per request ${r.cpuPerReq.toFixed(2)}x; latency p50 ${r.p50.toFixed(2)}x, p99 ${r.p99.toFixed(2)}x, unloaded p50 ${r.unloadedP50.toFixed(2)}x (<1: natkit lower)`,
    );
  }
}

// Is the load generator the limit? It must drive the C echo faster than every STUN server.
let loadgenVerdict = null;
const ceil = summary['c-echo'];
const stuns = Object.values(summary).filter((s) => s.kind === 'stun' && s.rounds && !s.unavailable);
if (ceil?.rounds && stuns.length) {
  const { fastest, margin, notTheLimit: ok } = ceilingCheck(ceil, stuns, (s) => s.rps);
  // The second sign: a server that is the bottleneck keeps its own core busy.
  const saturated = stuns.filter((s) => s.serverCpu >= 0.85).map((s) => s.id);
  loadgenVerdict = { ceilingRps: ceil.rps, fastest: fastest.id, fastestRps: fastest.rps, margin, notTheLimit: ok, saturatedServers: saturated };
  lines.push(
    `load generator: drives the C echo at ${f0(ceil.rps)} rps = ${margin.toFixed(2)}x the fastest STUN server (${fastest.id}, ${f0(fastest.rps)} rps): ` +
      (ok ? 'it is not the limit' : 'WARNING: margin under 1.2x, the load generator may be limiting the STUN numbers'),
  );
  lines.push(
    `servers using >= 0.85 of their core under load (CPU-bound, so they are the limit): ${saturated.join(', ') || 'none'}` +
      (saturated.length < stuns.length ? `; not: ${stuns.filter((s) => !saturated.includes(s.id)).map((s) => `${s.id} ${fx(s.serverCpu)}`).join(', ')}` : ''),
  );
  const ne = summary['node-echo'];
  if (ne?.rounds) lines.push(`node dgram echo (no STUN work): ${f0(ne.rps)} rps = ${(ne.rps / ceil.rps).toFixed(2)}x the C echo`);
}
for (const s of Object.values(summary)) {
  if (s.otherCpuMax > NOISE_LIMIT || s.repeats) {
    lines.push(
      `note: ${s.id}: ${s.repeats} measurement(s) repeated for noise; other work still took up to ${s.otherCpuMax.toFixed(2)} cores in a kept round (median ${s.otherCpu.toFixed(2)})`,
    );
  }
}
const lossy = Object.values(summary).filter((s) => s.lost > 0 || s.bad > 0);
for (const s of lossy) lines.push(`note: ${s.id} lost ${s.lost} of ${s.sent} requests (timeout ${TIMEOUT_MS} ms), ${s.bad} malformed/unexpected responses`);
lines.push(`(took ${((Date.now() - t0) / 1000).toFixed(0)} s)`);
console.log(lines.join('\n'));

// (the JSON names the load generator's CPU `loadgen`, as run.mjs reads it)
const jsonPin = pin.server ? { server: pin.server, loadgen: pin.load } : pin;
if (JSON_OUT) {
  writeFileSync(
    JSON_OUT,
    JSON.stringify({ rounds: ROUNDS, durationMs: DURATION_MS, window: WINDOW, sockets: SOCKETS, pin: jsonPin, summary, ratios, loadgenVerdict, runs: Object.fromEntries([...state].map(([id, st]) => [id, st.runs])) }, null, 2),
  );
}
