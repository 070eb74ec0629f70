// Support shared by the natkit benchmarks: packages/stun/bench imports it as
// ./common/bench-lib.mjs, packages/turn/bench (bench/lib.mjs) through the workspace, from
// the directory of require.resolve('@natkit/stun/package.json'). Nothing here knows about
// STUN or TURN servers beyond a Binding request for readiness probes; each bench keeps its
// own configurations, measurements and reports.
//
// Here: the command line, building C with cc, CPU pinning with taskset, starting and
// stopping programs by pid (never by name), readiness probes, CPU, thread and memory
// readings from /proc, medians, round rotation, repeating noisy measurements, table
// printing, and running a package's benchmark scripts one after another (run.mjs).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** This folder: the shared C program (echo.c) and header (udpload.h). */
export const COMMON = dirname(fileURLToPath(import.meta.url));

// ---------------------------------------------------------------------------------------
// Command line and programs

/**
 * The command line: `flag('--x')`, `opt('--x', default)`, and the options every benchmark
 * script takes: `quick` (--quick), `json` (--json FILE) and `only(configs)`, the
 * configurations whose id --only id,id lists (all without it).
 */
export function argsOf(argv = process.argv.slice(2)) {
  const flag = (n) => argv.includes(n);
  const opt = (n, d) => {
    const i = argv.indexOf(n);
    return i >= 0 && i + 1 < argv.length ? argv[i + 1] : d;
  };
  const ids = opt('--only', undefined)?.split(',');
  return { flag, opt, quick: flag('--quick'), json: opt('--json', undefined), only: (configs) => configs.filter((c) => !ids || ids.includes(c.id)) };
}

/** The path of an installed program (/usr/bin, then /usr/local/bin), or undefined. */
export const findProgram = (name, dirs = ['/usr/bin', '/usr/local/bin']) => dirs.map((d) => join(d, name)).find(existsSync);

/** coturn's turnserver, which both benchmarks compare against. */
export const TURNSERVER = findProgram('turnserver');

/**
 * Compiles C programs with cc into `buildDir` (a gitignored .build), each only when its
 * binary is older than its source or a header in its `include` folders.
 * jobs: [{ name, src, flags = ['-O2', '-Wall'], include = [], libs = [] }]
 */
export function buildC(buildDir, jobs) {
  mkdirSync(buildDir, { recursive: true });
  for (const { name, src, flags = ['-O2', '-Wall'], include = [], libs = [] } of jobs) {
    const bin = join(buildDir, name);
    const deps = [src, ...include.flatMap((dir) => readdirSync(dir).filter((f) => f.endsWith('.h')).map((f) => join(dir, f)))];
    if (existsSync(bin) && deps.every((d) => statSync(bin).mtimeMs >= statSync(d).mtimeMs)) continue;
    const r = spawnSync('cc', [...flags, ...include.flatMap((d) => ['-I', d]), '-o', bin, src, ...libs], { stdio: 'inherit' });
    if (r.error) throw new Error(`cannot run cc to build ${basename(src)}: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`cc ${flags.join(' ')} ${basename(src)} failed`);
  }
}

/**
 * Two CPUs from this process's affinity list: `server` for the server or relay measured,
 * `load` for the load (load generator, echo peer). { reason } when there are not two.
 */
export function choosePinning() {
  const r = spawnSync('taskset', ['-pc', String(process.pid)], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return { reason: 'taskset not available' };
  const list = r.stdout.split(':').pop().trim();
  const cpus = [];
  for (const part of list.split(',')) {
    const [a, b] = part.split('-').map(Number);
    for (let c = a; c <= (b ?? a); c++) cpus.push(c);
  }
  if (cpus.length < 2) return { reason: `only CPU ${list} allowed` };
  return { server: String(cpus[1]), load: String(cpus[0]) };
}

// ---------------------------------------------------------------------------------------
// Programs we start: tracked by pid, killed by pid when this process exits (never by name).

const live = new Set();
let exitHooks = false;
function track(child) {
  if (!exitHooks) {
    exitHooks = true;
    const killAll = () => {
      for (const c of live) {
        try {
          c.kill('SIGKILL');
        } catch {}
      }
    };
    process.on('exit', killAll);
    for (const sig of ['SIGINT', 'SIGTERM']) {
      process.on(sig, () => {
        killAll();
        process.exit(130);
      });
    }
  }
  live.add(child);
}

/**
 * Spawns a program (in `cwd` if given), under `taskset -c cpu` if `cpu` is given and
 * `nice -n N` if `nice` is (both exec the program: its pid is the child's), keeping the last `keep` characters of
 * its output (stdout and stderr together, and stdout alone), calling `onOutput` with every
 * chunk of either and `onLine` with every stdout line.
 * Returns { child, pid, command, exited (promise), exit (once exited), output(), stdout() }.
 */
export function launch(cmd, argv, { cpu, nice, env, cwd, onLine, onOutput, keep = 20000 } = {}) {
  let [c, a] = cpu !== undefined ? ['taskset', ['-c', cpu, cmd, ...argv]] : [cmd, argv];
  if (nice !== undefined) [c, a] = ['nice', ['-n', String(nice), c, ...a]];
  // With `nice`, the program also gets a session of its own and so (where the kernel groups
  // tasks by session, /proc/sys/kernel/sched_autogroup_enabled) a scheduling group of its
  // own, given the same niceness: otherwise nice only ranks tasks inside this session's
  // group, and the groups of other sessions on a shared machine get equal shares.
  const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], env: env ? { ...process.env, ...env } : process.env, cwd, detached: nice !== undefined });
  if (nice !== undefined) setAutogroupNice(child.pid, nice);
  track(child);
  let out = '';
  let stdout = '';
  let partial = '';
  const p = { child, pid: child.pid, exit: undefined, command: [cmd, ...argv] };
  child.stdout.on('data', (d) => {
    const s = d.toString();
    out = (out + s).slice(-keep);
    stdout = (stdout + s).slice(-keep);
    onOutput?.(s);
    if (onLine) {
      const lines = (partial + s).split('\n');
      partial = lines.pop();
      for (const l of lines) onLine(l);
    }
  });
  child.stderr.on('data', (d) => {
    const s = d.toString();
    out = (out + s).slice(-keep);
    onOutput?.(s);
  });
  p.exited = new Promise((res) => {
    child.once('error', (e) => res({ code: null, signal: null, error: e.message }));
    child.once('exit', (code, signal) => res({ code, signal }));
  }).then((x) => {
    live.delete(child);
    p.exit = x;
    return x;
  });
  p.output = () => out;
  p.stdout = () => stdout;
  return p;
}

/** Sets the niceness of a process's autogroup (best effort: needs root and autogroups). */
export function setAutogroupNice(pid, nice) {
  try {
    writeFileSync(`/proc/${pid}/autogroup`, String(nice));
    return true;
  } catch {
    return false;
  }
}

/** Stops a launched program: `signal` (SIGTERM), then SIGKILL after 5 s. Resolves its exit and `forced`. */
export async function stop(p, signal = 'SIGTERM') {
  if (p.exit) return { ...p.exit, forced: false };
  p.child.kill(signal);
  let t;
  const r = await Promise.race([p.exited, new Promise((res) => (t = setTimeout(res, 5000, null)))]);
  clearTimeout(t);
  if (r) return { ...r, forced: false };
  p.child.kill('SIGKILL');
  return { ...(await p.exited), forced: true };
}

/** Runs a program (a load generator) that prints one JSON object as its last line; resolves that object. */
export async function runJson(cmd, argv, { cpu } = {}) {
  const p = launch(cmd, argv, { cpu });
  const x = await p.exited;
  const name = basename(cmd);
  if (x.code !== 0) throw new Error(`${name} exited ${x.error ?? x.code ?? x.signal}: ${p.output().trim().slice(-400)}`);
  try {
    return JSON.parse(p.stdout().trim().split('\n').pop());
  } catch {
    throw new Error(`${name} printed no result: ${p.output().slice(-400)}`);
  }
}

// ---------------------------------------------------------------------------------------
// Ports and readiness

export async function freeUdpPort() {
  const s = dgram.createSocket('udp4');
  await new Promise((res) => s.bind(0, '127.0.0.1', res));
  const { port } = s.address();
  await new Promise((res) => s.close(res));
  return port;
}

export async function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** A STUN Binding request (no attributes) with a random transaction id. */
export function bindingRequest() {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(0x0001, 0);
  b.writeUInt32BE(0x2112a442, 4);
  randomBytes(12).copy(b, 8);
  return b;
}

/**
 * Polls a freshly started program: sends `packet()` to 127.0.0.1:port every 20 ms until
 * `accept(message)` returns something (by default any message is accepted), `timeoutMs`
 * passes or the launched program `p` exits; no fixed sleeps. Resolves { ok: true, ms, ...
 * what accept returned } or { ok: false, reason }; `what` names the packet in the reasons.
 */
export function probe(port, { packet, accept = () => ({}), p, timeoutMs = 15000, what } = {}) {
  return new Promise((resolve) => {
    const sock = dgram.createSocket('udp4');
    const t0 = process.hrtime.bigint();
    let done = false;
    const finish = (v) => {
      if (done) return;
      done = true;
      clearInterval(timer);
      clearTimeout(deadline);
      sock.close();
      resolve(v);
    };
    sock.on('message', (m) => {
      const got = accept(m);
      if (got) finish({ ok: true, ms: Number(process.hrtime.bigint() - t0) / 1e6, ...got });
    });
    sock.on('error', () => {}); // ICMP port unreachable until the program binds
    const send = () => sock.send(packet(), port, '127.0.0.1', () => {});
    const timer = setInterval(send, 20);
    const deadline = setTimeout(() => finish({ ok: false, reason: `no answer${what ? ` to ${what}` : ''} within ${timeoutMs / 1000} s` }), timeoutMs);
    p?.exited.then((x) => finish({ ok: false, reason: `exited (${x.error ?? `code ${x.code}, signal ${x.signal}`})${what ? ` before answering ${what}` : ''}` }));
    send();
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Waits until a launched program has printed `re` (or exited, or `ms` passed). */
export async function waitOutput(p, re, ms = 5000) {
  const end = Date.now() + ms;
  while (Date.now() < end && !p.exit) {
    if (re.test(p.output())) return true;
    await sleep(20);
  }
  return re.test(p.output());
}

// ---------------------------------------------------------------------------------------
// /proc readings (USER_HZ is 100 on Linux)

/** utime + stime in seconds from the text of a /proc/.../stat file. */
const statCpu = (st) => {
  const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};

/** CPU seconds (utime + stime, all threads) of a process; NaN if it is gone. */
export function processCpu(pid) {
  try {
    return statCpu(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return NaN;
  }
}

/** utime and stime in seconds (all threads) of a process; undefined if it is gone. */
export function processCpuSplit(pid) {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return { user: Number(f[11]) / 100, system: Number(f[12]) / 100 };
  } catch {
    return undefined;
  }
}

/** A process and all its descendants (cluster workers, a shell's children): their pids. */
export function processTree(pid) {
  const children = new Map();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
      if (!children.has(ppid)) children.set(ppid, []);
      children.get(ppid).push(Number(d));
    } catch {}
  }
  const out = [];
  const walk = (p) => {
    out.push(p);
    for (const c of children.get(p) ?? []) walk(c);
  };
  walk(Number(pid));
  return out;
}

/**
 * CPU seconds a process's live threads have run, exactly (the scheduler's
 * sum_exec_runtime, first field of /proc/PID/task/TID/schedstat, in ns); NaN if it is gone.
 */
export function processRuntime(pid) {
  try {
    let ns = 0;
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      try {
        ns += Number(readFileSync(`/proc/${pid}/task/${t}/schedstat`, 'utf8').split(' ')[0]);
      } catch {}
    }
    return ns / 1e9;
  } catch {
    return NaN;
  }
}

/**
 * CPU and resident memory of a process tree, the pids read once (`pids`, from
 * processTree) so that a sample is a few small reads; processes that are gone count 0.
 * `runtime`: CPU seconds, exact (schedstat). `user`, `system`: /proc/PID/stat's split,
 * which on a kernel with tick-based accounting (CONFIG_TICK_CPU_ACCOUNTING, HZ=250 here)
 * is sampled at each tick: a fair split over seconds of steady load, but a load that is
 * periodic (a 1 ms sender) can alias with the tick, so take it as an estimate.
 */
export function treeUsage(pids) {
  let user = 0;
  let system = 0;
  let runtime = 0;
  let rssKb = 0;
  for (const p of pids) {
    const c = processCpuSplit(p);
    if (!c) continue;
    user += c.user;
    system += c.system;
    const rt = processRuntime(p);
    if (Number.isFinite(rt)) runtime += rt;
    const r = vmRssKb(p);
    if (Number.isFinite(r)) rssKb += r;
  }
  return { user, system, runtime, rssKb };
}

/** The 1-minute load average of the machine (/proc/loadavg). */
export const loadAverage = () => Number(readFileSync('/proc/loadavg', 'utf8').split(' ')[0]);

/** CPU seconds of each thread of a process: Map thread id -> seconds. */
export function threadCpu(pid) {
  const out = new Map();
  try {
    for (const t of readdirSync(`/proc/${pid}/task`)) {
      try {
        out.set(t, statCpu(readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8')));
      } catch {}
    }
  } catch {}
  return out;
}

/** A process's threads: { total, byName: { comm: count } }, or undefined if it is gone. */
export function threadsOf(pid) {
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

/** Per CPU: task seconds (user+nice+system+steal) and interrupt seconds (irq+softirq). */
export function cpuTimes() {
  const out = [];
  for (const line of readFileSync('/proc/stat', 'utf8').split('\n')) {
    const m = line.match(/^cpu(\d+) (.*)/);
    if (!m) continue;
    const v = m[2].trim().split(/\s+/).map(Number);
    out[Number(m[1])] = { task: (v[0] + v[1] + v[2] + v[7]) / 100, intr: (v[5] + v[6]) / 100 };
  }
  return out;
}

/** UDP receive-buffer drops on the whole machine (/proc/net/snmp Udp RcvbufErrors). */
export function udpRcvbufErrors() {
  const lines = readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Udp:'));
  const names = lines[0].split(/\s+/);
  const vals = lines[1].split(/\s+/);
  return Number(vals[names.indexOf('RcvbufErrors')]);
}

/** Resident set of a process in kB (VmRSS), NaN if it is gone. */
export function vmRssKb(pid) {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

// ---------------------------------------------------------------------------------------
// Rounds, noise and statistics

/** The configurations in the order of round `round` (0-based): rotated by one each round. */
export const rotated = (xs, round) => xs.map((_, i) => xs[(i + round) % xs.length]);

/**
 * One measurement, repeated while other work on the machine took more than `limit` cores
 * (`other_cpu` of the result), at most `retries` more times or until `done()`: keeps the
 * least disturbed attempt in run.loaded, whatever its numbers, and the other_cpu of the
 * attempts not kept in run.noisyAttempts. measure(attempt) resolves a result.
 */
export async function leastDisturbed(run, measure, { limit, retries, done = () => false }) {
  run.noisyAttempts = [];
  for (let attempt = 0; ; attempt++) {
    const l = await measure(attempt);
    if (!run.loaded || !(l.other_cpu >= run.loaded.other_cpu)) {
      if (run.loaded) run.noisyAttempts.push(run.loaded.other_cpu);
      run.loaded = l;
    } else run.noisyAttempts.push(l.other_cpu);
    if (!(run.loaded.other_cpu > limit) || attempt >= retries || done()) break;
  }
  return run.loaded;
}

/** The median of the finite numbers in xs (NaN if none). */
export const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

export const sum = (xs) => xs.reduce((a, b) => a + b, 0);

/**
 * a[round] / b[round] for every round both measured ({ round: value } each): per-round
 * ratios, where drifting background load cancels better than in a ratio of medians.
 */
export const pairedRatios = (a, b) => Object.keys(a).filter((r) => b[r]).map((r) => a[r] / b[r]);

/**
 * Is the load generator the limit? The ceiling configuration (no work per packet) must be
 * measured at least 1.2x above the fastest real server, or it, not they, sets the rate.
 */
export function ceilingCheck(ceiling, servers, rate) {
  const fastest = servers.reduce((a, b) => (rate(b) > rate(a) ? b : a));
  const margin = rate(ceiling) / rate(fastest);
  return { fastest, margin, notTheLimit: margin >= 1.2 };
}

// ---------------------------------------------------------------------------------------
// Printing

/** 1,234,567 (rounded, en-US grouping), or '-' if not a number. */
export const f0 = (x) => (Number.isFinite(x) ? Math.round(x).toLocaleString('en-US') : '-');
/** x with d decimals (2), or '-' if not a number. */
export const fx = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : '-');

/** A table line: the first cell left-aligned in widths[0], the others right-aligned in theirs. */
export const tableRow = (widths, cells) => cells.map((c, i) => (i ? String(c).padStart(widths[i]) : String(c).padEnd(widths[i]))).join('');

/**
 * The lines of a table of per-configuration results ({ id, unavailable, rounds, errors }):
 * the header, then a row [s.id, ...cells(s)] for each, and its errors under it; NOT
 * AVAILABLE and why for one that has no measured round. `brief` (run.mjs summaries, whose
 * full reports came before): reasons cut at 200 characters, no error lines. `after(s)`:
 * more lines under a row.
 */
export function resultTable(widths, header, results, cells, { indent = '', brief = false, after } = {}) {
  const lines = [indent + tableRow(widths, header)];
  for (const s of results) {
    if (s.unavailable || !s.rounds) {
      const why = s.unavailable ?? s.errors.join('; ');
      lines.push(`${indent}${s.id.padEnd(widths[0])}NOT AVAILABLE: ${brief ? why.slice(0, 200) : why}`);
      continue;
    }
    lines.push(indent + tableRow(widths, [s.id, ...cells(s)]));
    if (!brief && s.errors.length) lines.push(`${indent}${''.padEnd(widths[0])}errors: ${s.errors.join('; ')}`);
    if (after) lines.push(...after(s).map((l) => `${indent}${''.padEnd(widths[0])}${l}`));
  }
  return lines;
}

// ---------------------------------------------------------------------------------------
// run.mjs: a package's benchmarks one after another

/**
 * Runs the scripts [key, file] of `benchDir` in turn, each in its own process with
 * `--json FILE` (and `--quick` if argv has it), their full reports going to this
 * process's output; `--skip-KEY` in argv skips one. Resolves { quick, results: { key:
 * the script's JSON }, failures: [message] }.
 */
export async function runScripts(benchDir, scripts, argv) {
  const quick = argv.includes('--quick');
  const tmp = mkdtempSync(join(os.tmpdir(), 'natkit-bench-run-'));
  const results = {};
  const failures = [];
  for (const [key, script] of scripts) {
    if (argv.includes(`--skip-${key}`)) continue;
    console.log(`\n=== ${key} benchmark (bench/${script}${quick ? ' --quick' : ''}) ===\n`);
    const f = join(tmp, `${key}.json`);
    const child = spawn(process.execPath, [join(benchDir, script), ...(quick ? ['--quick'] : []), '--json', f], { stdio: 'inherit' });
    const [code, signal] = await new Promise((res) => child.once('exit', (...x) => res(x)));
    if (code !== 0) {
      failures.push(`${script} exited with ${code ?? signal}`);
      continue;
    }
    try {
      results[key] = JSON.parse(readFileSync(f, 'utf8'));
    } catch (e) {
      failures.push(`${script} wrote no result: ${e.message}`);
    }
  }
  rmSync(tmp, { recursive: true, force: true });
  return { quick, results, failures };
}

/** The first line of a run.mjs summary. */
export const summaryTitle = (pkg, quick) => `=== ${pkg} benchmark summary${quick ? ' (--quick: short smoke run, numbers are rough)' : ''} ===`;

/** Prints a run.mjs summary with the failures and the total time; exits 1 if a benchmark broke. */
export function printSummary(out, failures, t0) {
  for (const f of failures) out.push(`FAILED: ${f}`);
  out.push(`(total ${((Date.now() - t0) / 1000).toFixed(0)} s)`);
  console.log(out.join('\n'));
  process.exit(failures.length ? 1 : 0);
}
