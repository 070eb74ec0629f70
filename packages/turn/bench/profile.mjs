#!/usr/bin/env node
// Where a relay's CPU per relayed packet goes, under the same uclient load as
// perpacket.mjs (client pairs relaying to each other over channels): for each server, a
// native profile of the stretch when every client is sending (`perf record -e cpu-clock
// -g`, node started with --perf-basic-prof so that JIT-compiled JavaScript has names), cut
// into kernel work (send and receive system calls, including the loopback delivery a
// send does for its receiver, epoll, the rest) and user-space work (JavaScript, Node's
// and V8's native code, GC, libc), in microseconds per relayed packet; then the
// user-space functions that cost most. With --cpu-prof, natkit and the Node floor also
// run once more under node --cpu-prof, and the V8 profile is summarised (JavaScript self
// time by function: node's own modules against ours).
//
//   node bench/profile.mjs [--load fixed|saturating] [--only natkit,floor-node,floor-c,coturn-1thread]
//                          [--seconds 5] [--frequency 4999] [--top 25] [--variants name=path,...]
//                          [--cpu-prof] [--keep DIR] [--json FILE]
//
// perf samples at --frequency Hz (4999: not a multiple of uclient's 1 kHz sending, so the
// samples do not lock to it) and costs a few percent of the server's CPU; the absolute
// CPU per packet is perpacket.mjs's to give, the shares here. Hardware counters are not
// available on this machine (a VM); cpu-clock is. Needs perf (Debian linux-perf) and root
// or kernel.perf_event_paranoid <= 1. A script, not a test.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { allConfigs, between, runUclient, startServer, stopServer, variantConfigs } from './c2c.mjs';
import { UCLIENT, argsOf, buildC, f0, findProgram, freeTcpPort, freeUdpPort, fx, loadAverage, pin, tableRow, treeUsage } from './lib.mjs';

const { opt, flag, json: JSON_OUT } = argsOf();
const LOAD = opt('--load', 'fixed');
const CLIENTS = Number(opt('--clients', LOAD === 'saturating' ? 150 : 20));
const SECONDS = Number(opt('--seconds', 5));
const FREQ = Number(opt('--frequency', 4999));
const TOP = Number(opt('--top', 25));
const NICE = process.getuid?.() === 0 ? Number(opt('--nice', -20)) : 0;
const MESSAGES = Math.ceil((7 + SECONDS + 4) * 1000);
const PERF = findProgram('perf');
const wanted = opt('--only', 'natkit,floor-node,floor-c,coturn-1thread').split(',');
const CONFIGS = [...allConfigs().filter((c) => wanted.includes(c.id) && c.id !== 'natkit-w2'), ...variantConfigs(opt('--variants', undefined))];

if (!PERF || !UCLIENT) {
  console.log(`profile: NOT AVAILABLE: ${!PERF ? 'perf (Debian linux-perf)' : 'turnutils_uclient (Debian coturn)'} not installed`);
  process.exit(0);
}
buildC();
const tmp = mkdtempSync(join(os.tmpdir(), 'natkit-turn-profile-'));
const keep = opt('--keep', undefined);
const outDir = keep ?? tmp;
mkdirSync(outDir, { recursive: true });

// ---------------------------------------------------------------------------------------
// perf script output -> samples (stacks of [symbol, dso], leaf first) -> categories

function parsePerfScript(text) {
  const samples = [];
  let cur = null;
  for (const line of text.split('\n')) {
    if (!line.trim()) {
      if (cur) samples.push(cur);
      cur = null;
      continue;
    }
    if (line[0] !== ' ' && line[0] !== '\t') {
      cur = [];
      continue;
    }
    if (!cur) continue;
    const t = line.trim();
    const sp = t.indexOf(' ');
    if (sp < 0) continue;
    const rest = t.slice(sp + 1);
    const m = rest.match(/^(.*) \(([^()]*)\)$/);
    const sym = (m ? m[1] : rest).replace(/\+0x[0-9a-f]+$/, '');
    cur.push([sym, m ? m[2] : '']);
  }
  if (cur) samples.push(cur);
  return samples;
}

const SYSCALLS = [
  ['kernel: send syscalls (incl. loopback delivery to the receiver)', /^(__sys_sendmsg|__sys_sendto|__sys_sendmmsg)$/],
  ['kernel: receive syscalls', /^(__sys_recvmsg|__sys_recvfrom|__sys_recvmmsg|do_recvmmsg)$/],
  ['kernel: epoll_wait', /^(do_epoll_wait)$/],
  ['kernel: other syscalls', /^(do_syscall_64)$/],
];
const GC = /Heap::|Scaveng|MarkCompact|MinorMarkSweep|ArrayBufferSweeper|GCTracer|ConcurrentMarking|Sweeper::/;

function category(stack) {
  for (const [name, re] of SYSCALLS) if (stack.some((f) => re.test(f[0]))) return name;
  const [sym, dso] = stack[0] ?? ['', ''];
  if (dso.includes('kernel')) return 'kernel: interrupts, scheduler';
  if (dso.includes('perf-') || sym.startsWith('JS:')) return 'user: JavaScript (JIT code)';
  if (stack.some((f) => GC.test(f[0]))) return 'user: V8 garbage collection';
  if (/\/node$/.test(dso) || sym.startsWith('Builtins_')) return 'user: Node, V8, libuv native code';
  if (dso.includes('libc.so')) return 'user: libc (malloc, syscall wrappers, printf)';
  return `user: ${dso.split('/').pop() || '?'}`;
}

const CATEGORY_ORDER = [
  'kernel: send syscalls (incl. loopback delivery to the receiver)', 'kernel: receive syscalls', 'kernel: epoll_wait', 'kernel: other syscalls',
  'kernel: interrupts, scheduler', 'user: JavaScript (JIT code)', 'user: V8 garbage collection', 'user: Node, V8, libuv native code',
  'user: libc (malloc, syscall wrappers, printf)',
];

function summarise(samples, usPerPkt) {
  const n = samples.length;
  const cats = new Map();
  const leaf = new Map();
  for (const s of samples) {
    const c = category(s);
    cats.set(c, (cats.get(c) ?? 0) + 1);
    if (s[0] && !s[0][1].includes('kernel')) leaf.set(s[0][0], (leaf.get(s[0][0]) ?? 0) + 1);
  }
  const share = (k) => (cats.get(k) ?? 0) / n;
  return {
    samples: n,
    categories: Object.fromEntries([...cats].map(([k, v]) => [k, { share: v / n, us: (v / n) * usPerPkt }])),
    kernelUs: [...cats].filter(([k]) => k.startsWith('kernel')).reduce((a, [k]) => a + share(k) * usPerPkt, 0),
    userUs: [...cats].filter(([k]) => k.startsWith('user')).reduce((a, [k]) => a + share(k) * usPerPkt, 0),
    topUser: [...leaf].sort((a, b) => b[1] - a[1]).slice(0, TOP).map(([sym, v]) => ({ sym, share: v / n, us: (v / n) * usPerPkt })),
  };
}

// ---------------------------------------------------------------------------------------
// V8 CPU profile -> self time by function, node's modules against ours

function summariseCpuProfile(file) {
  const p = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map();
  let total = 0;
  for (let i = 0; i < p.samples.length; i++) {
    const d = p.timeDeltas[i] ?? 0;
    self.set(p.samples[i], (self.get(p.samples[i]) ?? 0) + d);
    total += d;
  }
  const groups = new Map();
  const fns = new Map();
  for (const [id, t] of self) {
    const { functionName: f, url, lineNumber } = byId.get(id).callFrame;
    const g =
      f === '(idle)' ? 'idle (waiting, and native work outside JavaScript)' : f === '(garbage collector)' ? 'GC' : f === '(program)' ? 'native, not attributed' : url.startsWith('node:') ? "node's JavaScript (incl. the native calls it makes, e.g. doSend -> send syscall)" : 'ours';
    groups.set(g, (groups.get(g) ?? 0) + t);
    if (!f.startsWith('(')) {
      const k = `${f || '(anonymous)'} ${url.replace(/^.*\/(dist|bench)\//, '$1/')}:${lineNumber + 1}`;
      fns.set(k, (fns.get(k) ?? 0) + t);
    }
  }
  const idle = [...groups].find(([k]) => k.startsWith('idle'))?.[1] ?? 0;
  const busy = total - idle;
  return {
    seconds: total / 1e6,
    busySeconds: busy / 1e6,
    groups: Object.fromEntries([...groups].map(([k, v]) => [k, v / total])),
    top: [...fns].sort((a, b) => b[1] - a[1]).slice(0, TOP).map(([k, v]) => ({ fn: k, shareOfBusy: v / busy })),
  };
}

// ---------------------------------------------------------------------------------------

async function profileOne(cfg) {
  const port = await freeUdpPort();
  const metricsPort = cfg.kind === 'natkit' ? await freeTcpPort() : undefined;
  const nodeFlags = cfg.kind === 'natkit' || cfg.kind === 'floor' ? ['--perf-basic-prof'] : [];
  const loadavg = loadAverage();
  const server = await startServer(cfg, { port, metricsPort, tmp, nice: NICE, nodeFlags });
  const data = join(outDir, `${cfg.id}.perf.data`);
  let rec;
  let window = {};
  try {
    const run = await runUclient(server, {
      port, clients: CLIENTS, messages: MESSAGES, len: 120, nice: NICE,
      onStretch: () => {
        const pids = server.tree();
        window.a = { t: performance.now() / 1000, u: treeUsage(pids) };
        rec = spawn(PERF, ['record', '-e', 'cpu-clock', '-F', String(FREQ), '-g', '-p', pids.join(','), '-o', data, '--', 'sleep', String(SECONDS)], { stdio: ['ignore', 'ignore', 'pipe'] });
        let err = '';
        rec.stderr.on('data', (d) => (err += d));
        rec.done = new Promise((res) => rec.once('exit', (code) => res({ code, err })));
        rec.done.then(() => (window.b = { t: performance.now() / 1000, u: treeUsage(pids) }));
      },
    });
    if (!rec) throw new Error('uclient never reached the stretch when all clients send');
    const r = await rec.done;
    if (r.code !== 0) throw new Error(`perf record exited ${r.code}: ${r.err.slice(-300)}`);
    // Packets delivered during the recording: interpolated from uclient's counts.
    const pts = between(run, 0);
    const at = (t) => {
      const i = pts.findIndex((s) => s.t >= t);
      if (i <= 0) return NaN;
      const [x, y] = [pts[i - 1], pts[i]];
      return x.R + ((y.R - x.R) * (t - x.t)) / (y.t - x.t);
    };
    const dt = window.b.t - window.a.t;
    const pps = (at(window.b.t) - at(window.a.t)) / dt;
    const cores = (window.b.u.runtime - window.a.u.runtime) / dt;
    const usPerPkt = (cores / pps) * 1e6;
    const script = spawnSync(PERF, ['script', '-i', data, '-F', 'comm,tid,time,ip,sym,dso'], { encoding: 'utf8', maxBuffer: 1 << 30 });
    if (script.status !== 0) throw new Error(`perf script failed: ${script.stderr.slice(-300)}`);
    const s = summarise(parsePerfScript(script.stdout), usPerPkt);
    return { id: cfg.id, label: cfg.label, loadavg, pps, cores, usPerPkt, lostPct: run.uclient.lostPct, ...s, command: run.commands.server };
  } finally {
    await stopServer(cfg, server);
    // --perf-basic-prof's symbol map of the process, no longer needed
    rmSync(`/tmp/perf-${server.pid}.map`, { force: true });
  }
}

async function cpuProfileOne(cfg) {
  const port = await freeUdpPort();
  const dir = join(outDir, `${cfg.id}.cpuprofile.d`);
  mkdirSync(dir, { recursive: true });
  const server = await startServer(cfg, { port, metricsPort: cfg.kind === 'natkit' ? await freeTcpPort() : undefined, tmp, nice: NICE, nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--cpu-prof-interval', '250'] });
  try {
    await runUclient(server, { port, clients: CLIENTS, messages: MESSAGES, len: 120, nice: NICE });
  } finally {
    await stopServer(cfg, server);
  }
  const f = readdirSync(dir).find((x) => x.endsWith('.cpuprofile'));
  if (!f) throw new Error('no .cpuprofile written');
  return { id: cfg.id, ...summariseCpuProfile(join(dir, f)) };
}

const results = [];
console.error(`profile: load ${LOAD} (${CLIENTS} clients); perf record -e cpu-clock -F ${FREQ} -g for ${SECONDS} s of the stretch; servers at nice ${NICE}; load average ${loadAverage()}`);
for (const cfg of CONFIGS) {
  if (cfg.missing) {
    console.error(`  ${cfg.id}: NOT AVAILABLE: ${cfg.missing}`);
    continue;
  }
  try {
    const r = await profileOne(cfg);
    results.push(r);
    console.error(`  ${cfg.id}: ${f0(r.pps)} pkt/s, ${fx(r.cores)} cores = ${fx(r.usPerPkt, 1)} us/pkt during the recording (${r.samples} samples), load avg ${r.loadavg}`);
  } catch (e) {
    console.error(`  ${cfg.id}: ERROR ${e.message}`);
  }
}
const cpuProfiles = [];
if (flag('--cpu-prof')) {
  for (const cfg of CONFIGS.filter((c) => c.kind === 'natkit' || c.kind === 'floor')) {
    try {
      cpuProfiles.push(await cpuProfileOne(cfg));
    } catch (e) {
      console.error(`  ${cfg.id} --cpu-prof: ERROR ${e.message}`);
    }
  }
}
if (!keep) rmSync(tmp, { recursive: true, force: true });

// ---------------------------------------------------------------------------------------

const lines = [];
lines.push(`profile: ${LOAD} load, ${CLIENTS} clients (turnutils_uclient -y -c -z 1 -l 120); microseconds of server CPU per relayed packet (2 receives + 2 sends), by where perf's samples fell`);
const W = [64, ...results.map(() => 14)];
lines.push(tableRow(W, ['', ...results.map((r) => r.id)]));
lines.push(tableRow(W, ['relayed packets/s during the recording', ...results.map((r) => f0(r.pps))]));
lines.push(tableRow(W, ['CPU per packet (us), all', ...results.map((r) => fx(r.usPerPkt, 2))]));
const cats = [...new Set([...CATEGORY_ORDER, ...results.flatMap((r) => Object.keys(r.categories))])];
for (const c of cats) {
  if (!results.some((r) => r.categories[c])) continue;
  lines.push(tableRow(W, [`  ${c}`, ...results.map((r) => fx(r.categories[c]?.us ?? 0, 2))]));
}
lines.push(tableRow(W, ['  kernel, all', ...results.map((r) => fx(r.kernelUs, 2))]));
lines.push(tableRow(W, ['  user space, all', ...results.map((r) => fx(r.userUs, 2))]));
for (const r of results) {
  lines.push('');
  lines.push(`${r.id}: user-space functions with the most samples (self), us per packet`);
  for (const t of r.topUser) lines.push(`  ${fx(t.us, 3).padStart(7)}  ${(100 * t.share).toFixed(1).padStart(5)}%  ${t.sym.slice(0, 120)}`);
}
for (const c of cpuProfiles) {
  lines.push('');
  lines.push(`${c.id}: node --cpu-prof over the whole run (${fx(c.seconds, 1)} s, ${fx(c.busySeconds, 1)} s not idle)`);
  for (const [g, v] of Object.entries(c.groups).sort((a, b) => b[1] - a[1])) lines.push(`  ${(100 * v).toFixed(1).padStart(5)}%  ${g}`);
  lines.push('  JavaScript self time, share of the time not idle:');
  for (const t of c.top) lines.push(`  ${(100 * t.shareOfBusy).toFixed(1).padStart(5)}%  ${t.fn}`);
}
lines.push('');
lines.push('commands:');
for (const r of results) lines.push(`  [${r.id}] ${r.command}`);
lines.push(`  [perf] perf record -e cpu-clock -F ${FREQ} -g -p PID -- sleep ${SECONDS}; perf script -F comm,tid,time,ip,sym,dso${keep ? ` (data kept in ${keep})` : ''}`);
console.log(lines.join('\n'));
if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify({ load: LOAD, clients: CLIENTS, seconds: SECONDS, frequency: FREQ, pin, results, cpuProfiles }, null, 2));
