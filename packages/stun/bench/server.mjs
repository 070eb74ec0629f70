#!/usr/bin/env node
// Server benchmark: Binding responses per second and latency of natkit's stunserver and
// coturn's turnserver under the same closed-loop load, in the same run.
//
//   node bench/server.mjs [--quick] [--rounds N] [--duration-ms MS] [--window N] [--sockets N]
//                         [--only id,id] [--natkit-bin PATH] [--json FILE]
//
// The load comes from bench/loadgen.c (compiled here with `cc -O2` into bench/.build/):
// a window of Binding requests in flight over several client sockets (source ports),
// unique transaction ids, per-request latency, timeouts counted as loss. Each server runs alone, pinned to one CPU with taskset, the
// load generator on the other. Configurations:
//
//   c-echo          bare UDP echo in C: the ceiling of this setup. The load generator must
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
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const flag = (n) => args.includes(n);
const opt = (n, d) => {
  const i = args.indexOf(n);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : d;
};
const QUICK = flag('--quick');
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
const ONLY = opt('--only', undefined)?.split(',');
const JSON_OUT = opt('--json', undefined);

const BUILD = join(here, '.build');
const LOADGEN = join(BUILD, 'loadgen');
const ECHO = join(BUILD, 'echo');
const STUNSERVER = opt('--natkit-bin', join(here, '../bin/stunserver.js'));
const TURNSERVER = ['/usr/bin/turnserver', '/usr/local/bin/turnserver'].find(existsSync);

// ---------------------------------------------------------------------------------------
// Setup

function buildC() {
  mkdirSync(BUILD, { recursive: true });
  for (const name of ['loadgen', 'echo']) {
    const src = join(here, `${name}.c`);
    const bin = join(BUILD, name);
    if (existsSync(bin) && statSync(bin).mtimeMs >= statSync(src).mtimeMs) continue;
    const r = spawnSync('cc', ['-O2', '-Wall', '-o', bin, src], { stdio: 'inherit' });
    if (r.error) throw new Error(`cannot run cc to build ${name}.c: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`cc -O2 ${name}.c failed`);
  }
}

/** Two CPUs from this process's affinity list: the server's and the load generator's. */
function choosePinning() {
  const r = spawnSync('taskset', ['-pc', String(process.pid)], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return { reason: 'taskset not available' };
  const list = r.stdout.split(':').pop().trim();
  const cpus = [];
  for (const part of list.split(',')) {
    const [a, b] = part.split('-').map(Number);
    for (let c = a; c <= (b ?? a); c++) cpus.push(c);
  }
  if (cpus.length < 2) return { reason: `only CPU ${list} allowed` };
  return { server: String(cpus[1]), loadgen: String(cpus[0]) };
}

const pin = choosePinning();
const pinned = (cpu, cmd, argv) => (pin.server ? ['taskset', ['-c', cpu, cmd, ...argv]] : [cmd, argv]);

const live = new Set();
function killAll() {
  for (const c of live) {
    try {
      c.kill('SIGKILL');
    } catch {}
  }
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    killAll();
    process.exit(130);
  });
}

async function freeUdpPort() {
  const s = dgram.createSocket('udp4');
  await new Promise((res) => s.bind(0, '127.0.0.1', res));
  const { port } = s.address();
  await new Promise((res) => s.close(res));
  return port;
}

const BINDING_REQUEST = 0x0001;
const BINDING_SUCCESS = 0x0101;
const BINDING_ERROR = 0x0111;
function bindingRequest() {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(BINDING_REQUEST, 0);
  b.writeUInt32BE(0x2112a442, 4);
  randomBytes(12).copy(b, 8);
  return b;
}

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
 * Sends a Binding request every 20 ms until one is answered (a Binding response, or the
 * request itself from an echo server) or `cancel()` is called.
 */
function probe(port) {
  const sock = dgram.createSocket('udp4');
  let timer;
  let done;
  const promise = new Promise((resolve) => {
    let finished = false;
    done = (v) => {
      if (finished) return;
      finished = true;
      clearInterval(timer);
      sock.close();
      resolve(v);
    };
    const t0 = process.hrtime.bigint();
    const req = bindingRequest();
    sock.on('message', (m) => {
      if (m.length < 20 || !m.subarray(8, 20).equals(req.subarray(8, 20))) return;
      const type = m.readUInt16BE(0);
      if (type !== BINDING_SUCCESS && type !== BINDING_ERROR && type !== BINDING_REQUEST) return;
      done({ ok: true, ms: Number(process.hrtime.bigint() - t0) / 1e6, type, bytes: m.length, attrs: attributeNames(m) });
    });
    sock.on('error', () => {}); // ICMP port unreachable until the server binds
    const send = () => sock.send(req, port, '127.0.0.1', () => {});
    timer = setInterval(send, 20);
    send();
  });
  return { promise, cancel: (why) => done?.({ ok: false, reason: why }) };
}

async function startServer(cfg, port, tmp) {
  const [cmd, argv] = pinned(pin.server, cfg.cmd, cfg.args(port, tmp));
  const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(child);
  let out = '';
  let sawListening = false;
  const keep = (d) => {
    const s = d.toString();
    if (/listening/i.test(s)) sawListening = true;
    out = (out + s).slice(-4000);
  };
  child.stdout.on('data', keep);
  child.stderr.on('data', keep);
  const exited = new Promise((res) => {
    child.once('error', (e) => res({ code: null, signal: null, error: e.message }));
    child.once('exit', (code, signal) => res({ code, signal }));
  }).then((x) => {
    live.delete(child);
    return x;
  });
  const s = { cfg, port, child, exited, exit: undefined, output: () => out.trim(), sawListening: () => sawListening };
  exited.then((x) => (s.exit = x));
  const p = probe(port);
  const deadline = setTimeout(() => p.cancel(`no answer to a Binding request within ${READY_TIMEOUT_MS / 1000} s`), READY_TIMEOUT_MS);
  exited.then((x) => p.cancel(`exited (${x.error ?? `code ${x.code}, signal ${x.signal}`}) before answering a Binding request`));
  s.ready = await p.promise;
  clearTimeout(deadline);
  return s;
}

async function stopServer(s) {
  if (s.exit) return { ...s.exit, forced: false };
  s.child.kill('SIGTERM');
  let t;
  const r = await Promise.race([s.exited, new Promise((res) => (t = setTimeout(res, 5000, null)))]);
  clearTimeout(t);
  if (r) return { ...r, forced: false };
  s.child.kill('SIGKILL');
  return { ...(await s.exited), forced: true };
}

function threadsOf(pid) {
  try {
    const names = readdirSync(`/proc/${pid}/task`).map((t) => {
      try {
        return readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim();
      } catch {
        return '?';
      }
    });
    const counts = {};
    for (const n of names) counts[n] = (counts[n] ?? 0) + 1;
    return { total: names.length, byName: counts };
  } catch {
    return undefined;
  }
}

/** CPU seconds of each thread of a process (utime + stime from /proc/PID/task/TID/stat). */
function threadCpu(pid) {
  const out = new Map();
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      try {
        const st = readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8');
        const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
        out.set(t, (Number(f[11]) + Number(f[12])) / 100); // USER_HZ is 100 on Linux
      } catch {}
    }
  } catch {}
  return out;
}

function runLoadgen(port, serverPid, window, durationMs, warmupMs) {
  const [cmd, argv] = pinned(pin.loadgen, LOADGEN, [
    '--port', String(port), '--window', String(window), '--duration-ms', String(durationMs),
    '--warmup-ms', String(warmupMs), '--timeout-ms', String(TIMEOUT_MS), '--server-pid', String(serverPid),
    '--sockets', String(Math.min(SOCKETS, window)),
  ]);
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.once('error', reject);
    child.once('exit', (code) => {
      live.delete(child);
      if (code !== 0) return reject(new Error(`loadgen exited ${code}: ${err.trim()}`));
      try {
        const r = JSON.parse(out.trim().split('\n').pop());
        // Cores busy with anything but this server and the load generator: the noise.
        r.other_cpu = r.system_busy >= 0 && r.server_cpu >= 0 ? Math.max(0, r.system_busy - r.server_cpu - r.loadgen_cpu) : NaN;
        // The server's CPU time per answered request: how much work a response costs it,
        // which CPU stolen by other work on the machine does not change much.
        r.cpu_us_per_req = r.server_cpu > 0 && r.rps > 0 ? (r.server_cpu / r.rps) * 1e6 : NaN;
        resolve(r);
      } catch (e) {
        reject(new Error(`loadgen printed no result: ${out} ${err}`));
      }
    });
  });
}

// ---------------------------------------------------------------------------------------
// Configurations

const coturnArgs = (p, tmp) => [
  '-n', '--no-cli', '--listening-ip', '127.0.0.1', '--listening-port', String(p),
  '--no-tcp', '--no-tls', '--no-dtls', '--stun-only', '--no-rfc5780',
  '--log-file', 'stdout', '--simple-log',
  '--pidfile', join(tmp, `turnserver-${p}.pid`), '--userdb', join(tmp, `turndb-${p}`),
];

const CONFIGS = [
  { id: 'c-echo', label: 'C UDP echo (ceiling)', kind: 'echo', cmd: ECHO, args: (p) => ['--port', String(p)] },
  { id: 'node-echo', label: 'Node dgram echo', kind: 'echo', cmd: process.execPath, args: (p) => [join(here, 'echo-node.mjs'), '--port', String(p)] },
  { id: 'coturn-1thread', label: 'coturn -m 0', kind: 'stun', cmd: TURNSERVER, args: (p, tmp) => [...coturnArgs(p, tmp), '-m', '0'], missing: TURNSERVER ? undefined : 'turnserver not installed' },
  { id: 'coturn-default', label: 'coturn default', kind: 'stun', cmd: TURNSERVER, args: (p, tmp) => coturnArgs(p, tmp), missing: TURNSERVER ? undefined : 'turnserver not installed' },
  {
    id: 'natkit', label: 'natkit stunserver', kind: 'stun', cmd: process.execPath,
    args: (p) => [STUNSERVER, '--listen', '127.0.0.1', '--port', String(p), '--no-tcp'],
    missing: existsSync(STUNSERVER) ? undefined : `${STUNSERVER} does not exist`,
  },
].filter((c) => !ONLY || ONLY.includes(c.id));

// ---------------------------------------------------------------------------------------
// Run

buildC();
const tmp = mkdtempSync(join(os.tmpdir(), 'natkit-bench-'));
const state = new Map(CONFIGS.map((c) => [c.id, { cfg: c, runs: [], unavailable: c.missing, notes: [] }]));
const t0 = Date.now();
console.error(
  `server bench: ${ROUNDS} rounds x ${CONFIGS.length} servers, ${DURATION_MS} ms loaded (window ${WINDOW} over ${SOCKETS} sockets) + ${UNLOADED_MS} ms unloaded each; ` +
    (pin.server ? `server on CPU ${pin.server}, load generator on CPU ${pin.loadgen}` : `not pinned (${pin.reason})`),
);

for (let round = 0; round < ROUNDS; round++) {
  const order = CONFIGS.map((_, i) => CONFIGS[(i + round) % CONFIGS.length]);
  for (const cfg of order) {
    const st = state.get(cfg.id);
    if (st.unavailable) continue;
    const port = await freeUdpPort();
    const s = await startServer(cfg, port, tmp);
    if (!s.ready.ok) {
      await stopServer(s);
      const said = s.output().split('\n').slice(-3).join(' | ');
      st.unavailable = `${s.ready.reason}${said ? `; it printed: "${said.slice(0, 300)}"` : ''}`;
      console.error(`  [round ${round + 1}] ${cfg.id}: NOT AVAILABLE: ${st.unavailable}`);
      continue;
    }
    const run = { round: round + 1, readyMs: s.ready.ms, probeType: s.ready.type, response: s.ready.attrs, sawListening: s.sawListening(), threads: threadsOf(s.child.pid) };
    try {
      // A measurement during which other work on the machine took more than NOISE_LIMIT
      // cores is repeated (at most MAX_RETRIES times, same server); the least disturbed
      // attempt is kept, whatever its numbers. The count of repeats is reported.
      run.noisyAttempts = [];
      for (let attempt = 0; ; attempt++) {
        const before = threadCpu(s.child.pid);
        const tb = process.hrtime.bigint();
        const l = await runLoadgen(port, s.child.pid, WINDOW, DURATION_MS, WARMUP_MS);
        // Threads that did real work under load (more than 5% of a core).
        const after = threadCpu(s.child.pid);
        const secs = Number(process.hrtime.bigint() - tb) / 1e9;
        l.busyThreads = [...after].map(([t, c]) => (c - (before.get(t) ?? 0)) / secs).filter((x) => x > 0.05).sort((a, b) => b - a).map((x) => +x.toFixed(2));
        if (!run.loaded || !(l.other_cpu >= run.loaded.other_cpu)) {
          if (run.loaded) run.noisyAttempts.push(run.loaded.other_cpu);
          run.loaded = l;
        } else run.noisyAttempts.push(l.other_cpu);
        if (!(run.loaded.other_cpu > NOISE_LIMIT) || attempt >= MAX_RETRIES || s.exit) break;
      }
      run.busyThreads = run.loaded.busyThreads;
      if (!s.exit) run.unloaded = await runLoadgen(port, s.child.pid, 1, UNLOADED_MS, 200);
    } catch (e) {
      run.error = e.message;
    }
    run.diedDuringRun = s.exit !== undefined;
    run.stop = await stopServer(s);
    if (run.diedDuringRun) run.error = `server exited during the run (${JSON.stringify(run.stop)}): ${s.output().slice(-300)}`;
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

const median = (xs) => {
  if (!xs.length) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
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
    lost: L('lost').reduce((a, b) => a + b, 0), late: L('late').reduce((a, b) => a + b, 0), bad: L('bad').reduce((a, b) => a + b, 0),
    sent: L('sent').reduce((a, b) => a + b, 0),
    cpuUsPerReq: median(L('cpu_us_per_req')), repeats: ok.reduce((a, r) => a + (r.noisyAttempts?.length ?? 0), 0),
    loadgenCpu: median(L('loadgen_cpu')), serverCpu: median(L('server_cpu')), otherCpu: median(L('other_cpu')), otherCpuMax: Math.max(...L('other_cpu')),
    respBytes: ok[0]?.loaded.resp_bytes_max ?? null, response: ok[0]?.response ?? null,
    threads: ok[0]?.threads ?? null, busyThreads: ok.map((r) => r.busyThreads),
    readyMs: median(ok.map((r) => r.readyMs)),
  };
}

const f0 = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '-');
const f1 = (x) => (Number.isFinite(x) ? x.toFixed(0) : '-');
const fx = (x) => (Number.isFinite(x) ? x.toFixed(2) : '-');
const lines = [];
lines.push(
  `server benchmark: ${ROUNDS} rounds, ${DURATION_MS} ms each after ${WARMUP_MS} ms warm-up, ${WINDOW} requests in flight over ${SOCKETS} client sockets ` +
    `(20-byte Binding requests, timeout ${TIMEOUT_MS} ms); unloaded = 1 in flight for ${UNLOADED_MS} ms; ` +
    (pin.server ? `server pinned to CPU ${pin.server}, loadgen to CPU ${pin.loadgen}` : `no pinning (${pin.reason})`),
);
lines.push('');
lines.push(
  `${'server'.padEnd(16)}${'rps median'.padStart(12)}${'(min..max)'.padStart(22)}${'p50 us'.padStart(8)}${'p99 us'.padStart(8)}` +
    `${'unl p50'.padStart(9)}${'unl p99'.padStart(9)}${'lost'.padStart(6)}${'resp B'.padStart(8)}${'threads'.padStart(9)}${'srv cpu'.padStart(9)}${'us/req'.padStart(8)}${'lg cpu'.padStart(8)}${'other'.padStart(7)}`,
);
for (const s of Object.values(summary)) {
  if (s.unavailable || !s.rounds) {
    lines.push(`${s.id.padEnd(16)}NOT AVAILABLE: ${s.unavailable ?? s.errors.join('; ')}`);
    continue;
  }
  lines.push(
    `${s.id.padEnd(16)}${f0(s.rps).padStart(12)}${`(${f0(s.rpsMin)}..${f0(s.rpsMax)})`.padStart(22)}${f1(s.p50).padStart(8)}${f1(s.p99).padStart(8)}` +
      `${f1(s.unloadedP50).padStart(9)}${f1(s.unloadedP99).padStart(9)}${String(s.lost).padStart(6)}${String(s.respBytes).padStart(8)}` +
      `${String(s.threads?.total ?? '?').padStart(9)}${fx(s.serverCpu).padStart(9)}${fx(s.cpuUsPerReq).padStart(8)}${fx(s.loadgenCpu).padStart(8)}${fx(s.otherCpu).padStart(7)}`,
  );
  if (s.errors.length) lines.push(`${''.padEnd(16)}errors: ${s.errors.join('; ')}`);
}
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
    const byRound = (sid) => new Map(state.get(sid).runs.filter((r) => !r.error && r.loaded).map((r) => [r.round, r.loaded.rps]));
    const n = byRound('natkit');
    const o = byRound(id);
    const paired = [...n].filter(([rd]) => o.has(rd)).map(([rd, v]) => v / o.get(rd));
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
  const fastest = stuns.reduce((a, b) => (b.rps > a.rps ? b : a));
  const margin = ceil.rps / fastest.rps;
  const ok = margin >= 1.2;
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

if (JSON_OUT) {
  writeFileSync(
    JSON_OUT,
    JSON.stringify({ rounds: ROUNDS, durationMs: DURATION_MS, window: WINDOW, sockets: SOCKETS, pin, summary, ratios, loadgenVerdict, runs: Object.fromEntries([...state].map(([id, st]) => [id, st.runs])) }, null, 2),
  );
}
