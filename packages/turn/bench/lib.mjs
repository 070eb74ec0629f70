// Shared pieces of the @natkit/turn benchmarks: building the C programs, CPU pinning,
// starting and stopping the relays (natkit's relayserver, coturn's turnserver), the echo
// peers, readiness probes, CPU and memory readings from /proc, medians.
import { spawn, spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

export const here = dirname(fileURLToPath(import.meta.url));
export const BUILD = join(here, '.build');
export const REPO = join(here, '../../..');
export const TURNSERVER = ['/usr/bin/turnserver', '/usr/local/bin/turnserver'].find(existsSync);
export const UCLIENT = ['/usr/bin/turnutils_uclient', '/usr/local/bin/turnutils_uclient'].find(existsSync);
export const UPEER = ['/usr/bin/turnutils_peer', '/usr/local/bin/turnutils_peer'].find(existsSync);
export const USER = 'user';
export const PASS = 'pass';
export const REALM = 'natkit';
/** The long-term key (RFC 8489 section 9.2.2) for the C load generator. */
export const KEY_HEX = createHash('md5').update(`${USER}:${REALM}:${PASS}`).digest('hex');

export function argsOf(argv) {
  return {
    flag: (n) => argv.includes(n),
    opt: (n, d) => {
      const i = argv.indexOf(n);
      return i >= 0 && i + 1 < argv.length ? argv[i + 1] : d;
    },
  };
}

/** Compiles the bench's C programs into bench/.build (only when the source is newer). */
export function buildC() {
  mkdirSync(BUILD, { recursive: true });
  const jobs = [
    ['turnload', ['-O2', '-Wall']],
    ['echo', ['-O2', '-Wall']],
    ['forward', ['-O2', '-Wall']],
    ['uclient-channels.so', ['-shared', '-fPIC', '-O2', '-Wall'], 'uclient-channels.c', ['-ldl']],
  ];
  for (const [name, flags, srcName = `${name}.c`, libs = []] of jobs) {
    const src = join(here, srcName);
    const bin = join(BUILD, name);
    if (existsSync(bin) && statSync(bin).mtimeMs >= statSync(src).mtimeMs) continue;
    const r = spawnSync('cc', [...flags, '-o', bin, src, ...libs], { stdio: 'inherit' });
    if (r.error) throw new Error(`cannot run cc to build ${srcName}: ${r.error.message}`);
    if (r.status !== 0) throw new Error(`cc ${srcName} failed`);
  }
}

/** Two CPUs from this process's affinity list: the relay's and the load's. */
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

export const pin = choosePinning();
export const pinned = (cpu, cmd, argv) => (pin.server ? ['taskset', ['-c', cpu, cmd, ...argv]] : [cmd, argv]);

// ---------------------------------------------------------------------------------------
// Processes we start: tracked by pid, killed by pid on exit (never by name).

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

/**
 * Spawns a program (pinned if `cpu`), keeping the last 20 kB of its output and calling
 * `onLine` for each stdout line. Returns { child, pid, exited, output(), exit }.
 */
export function launch(cmd, argv, { cpu, env, onLine, keep = 20000 } = {}) {
  const [c, a] = cpu !== undefined ? pinned(cpu, cmd, argv) : [cmd, argv];
  const child = spawn(c, a, { stdio: ['ignore', 'pipe', 'pipe'], env: env ? { ...process.env, ...env } : process.env });
  live.add(child);
  let out = '';
  let partial = '';
  const p = { child, pid: child.pid, exit: undefined, command: [cmd, ...argv] };
  child.stdout.on('data', (d) => {
    const s = d.toString();
    out = (out + s).slice(-keep);
    if (onLine) {
      const lines = (partial + s).split('\n');
      partial = lines.pop();
      for (const l of lines) onLine(l);
    }
  });
  child.stderr.on('data', (d) => (out = (out + d.toString()).slice(-keep)));
  p.exited = new Promise((res) => {
    child.once('error', (e) => res({ code: null, signal: null, error: e.message }));
    child.once('exit', (code, signal) => res({ code, signal }));
  }).then((x) => {
    live.delete(child);
    p.exit = x;
    return x;
  });
  p.output = () => out;
  return p;
}

/** SIGTERM (or `signal`), then SIGKILL after 5 s. */
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

export async function freeUdpPort() {
  const s = dgram.createSocket('udp4');
  await new Promise((res) => s.bind(0, '127.0.0.1', res));
  const { port } = s.address();
  await new Promise((res) => s.close(res));
  return port;
}

/** A free TCP port (for natkit's metrics endpoint). */
export async function freeTcpPort() {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Sends `packet()` every 20 ms to 127.0.0.1:port until something comes back or the
 * deadline passes (or the process `p` exits). Resolves { ok, ms } or { ok: false, reason }.
 */
export function probe(port, packet, p, timeoutMs = 15000) {
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
    sock.on('message', () => finish({ ok: true, ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
    sock.on('error', () => {});
    const send = () => sock.send(packet(), port, '127.0.0.1', () => {});
    const timer = setInterval(send, 20);
    const deadline = setTimeout(() => finish({ ok: false, reason: `no answer within ${timeoutMs / 1000} s` }), timeoutMs);
    p?.exited.then((x) => finish({ ok: false, reason: `exited (${x.error ?? `code ${x.code}, signal ${x.signal}`})` }));
    send();
  });
}

export function bindingRequest() {
  const b = Buffer.alloc(20);
  b.writeUInt16BE(0x0001, 0);
  b.writeUInt32BE(0x2112a442, 4);
  randomBytes(12).copy(b, 8);
  return b;
}

// ---------------------------------------------------------------------------------------
// The relays

const NATKIT_BIN = join(here, '../bin/relayserver.js');
const START_RELAY = join(here, 'start-relay.mjs');

/**
 * natkit's relayserver binary if it answers --help, else bench/start-relay.mjs (the same
 * options, TurnServer.start from the built package).
 */
export function natkitEntry() {
  if (existsSync(NATKIT_BIN)) {
    const r = spawnSync(process.execPath, [NATKIT_BIN, '--help'], { encoding: 'utf8', timeout: 15000 });
    if (r.status === 0 && /--metrics/.test(r.stdout)) return { script: NATKIT_BIN, kind: 'relayserver binary' };
  }
  return { script: START_RELAY, kind: 'bench/start-relay.mjs (relayserver binary not usable)' };
}

/**
 * natkit's relay: UDP only, loopback peers allowed, quotas raised, unauthenticated error
 * answers not rate-limited (every client of the bench shares 127.0.0.1), logging at warn.
 */
export function natkitArgs({ port, minPort, maxPort, metricsPort, quota = 100000 }) {
  return [
    '--listen', '127.0.0.1', '--port', String(port), '--relay-ip', '127.0.0.1',
    '--min-port', String(minPort), '--max-port', String(maxPort),
    '--user', `${USER}:${PASS}`, '--realm', REALM, '--allow-peer', '127.0.0.0/8', '--no-tcp',
    '--user-quota', String(quota), '--total-quota', String(quota), '--error-rate', '0',
    ...(metricsPort ? ['--metrics', `127.0.0.1:${metricsPort}`] : []),
    '--drain-timeout', '0', '--log-level', 'warn',
  ];
}

/**
 * coturn's relay: UDP only, long-term credentials, loopback peers allowed, no CLI; -v so
 * that it logs each session's usage (packets to and from the peer) when it closes.
 * `threads` undefined = coturn's default.
 */
export function coturnArgs({ port, minPort, maxPort, tmp, threads, verbose = true }) {
  return [
    '-n', '--no-cli', '--listening-ip', '127.0.0.1', '--listening-port', String(port), '--relay-ip', '127.0.0.1',
    '--min-port', String(minPort), '--max-port', String(maxPort),
    '--no-tcp', '--no-tls', '--no-dtls', '-a', '-u', `${USER}:${PASS}`, '-r', REALM, '--allow-loopback-peers',
    '--log-file', 'stdout', '--simple-log', '--pidfile', join(tmp, `turnserver-${port}.pid`), '--userdb', join(tmp, `turndb-${port}`),
    ...(threads !== undefined ? ['-m', String(threads)] : []), ...(verbose ? ['-v'] : []),
  ];
}

/** Starts a relay and waits until it answers a Binding request. */
export async function startRelay(kind, o) {
  let p;
  if (kind === 'natkit') {
    const entry = natkitEntry();
    p = launch(process.execPath, [entry.script, ...natkitArgs(o)], { cpu: o.cpu });
    p.entry = entry.kind;
  } else {
    // Its -v usage lines are read while it runs: line-buffered (stdbuf), all kept.
    const STDBUF = ['/usr/bin/stdbuf', '/bin/stdbuf'].find(existsSync);
    p = STDBUF
      ? launch(STDBUF, ['-oL', TURNSERVER, ...coturnArgs(o)], { cpu: o.cpu, keep: 8e6 })
      : launch(TURNSERVER, coturnArgs(o), { cpu: o.cpu, keep: 8e6 });
  }
  p.ready = await probe(o.port, bindingRequest, p);
  return p;
}

/** Starts an echo peer (bench/.build/echo or turnutils_peer) and waits until it echoes. */
export async function startPeer(kind, port, cpu) {
  const p =
    kind === 'c-echo'
      ? launch(join(BUILD, 'echo'), ['--port', String(port)], { cpu })
      : launch(UPEER, ['-p', String(port), '-L', '127.0.0.1'], { cpu });
  p.ready = await probe(port, () => Buffer.from('ping'), p);
  return p;
}

export async function scrapeMetrics(port) {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  const text = await res.text();
  const get = (re) => {
    const m = text.match(re);
    return m ? Number(m[1]) : NaN;
  };
  return {
    toPeer: get(/^natkit_turn_relayed_packets_total\{direction="to_peer"\} (\d+)/m),
    toClient: get(/^natkit_turn_relayed_packets_total\{direction="to_client"\} (\d+)/m),
    allocations: get(/^natkit_turn_allocations (\d+)/m),
    permissions: get(/^natkit_turn_permissions (\d+)/m),
    channels: get(/^natkit_turn_channels (\d+)/m),
    drops: [...text.matchAll(/^natkit_turn_dropped_total\{reason="([a-z_]+)"\} (\d+)/gm)].filter((m) => m[2] !== '0').map((m) => `${m[1]}=${m[2]}`),
  };
}

/**
 * coturn -v logs "session N: peer usage: ... rp=, sp=" (packets received from and sent to
 * peers) every 2048 packets or so and when the session ends, each line counting the
 * packets since the session's previous line. Sums them: packets relayed to peers (sp) and
 * from peers (rp), and counts the sessions that logged "closed".
 */
export function coturnPeerUsage(log) {
  let sp = 0;
  let rp = 0;
  for (const m of log.matchAll(/peer usage: realm=<[^>]*>, username=<[^>]*>, rp=(\d+), rb=\d+, sp=(\d+)/g)) {
    rp += Number(m[1]);
    sp += Number(m[2]);
  }
  const closed = new Set([...log.matchAll(/session (\d+): closed/g)].map((m) => m[1])).size;
  return { toPeer: sp, fromPeer: rp, closed };
}

// ---------------------------------------------------------------------------------------
// /proc readings

/** CPU seconds (utime + stime, all threads) of a process. */
export function processCpu(pid) {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // USER_HZ is 100 on Linux
  } catch {
    return NaN;
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

export function vmRssKb(pid) {
  try {
    const m = readFileSync(`/proc/${pid}/status`, 'utf8').match(/^VmRSS:\s+(\d+) kB/m);
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

export function threadsOf(pid) {
  try {
    return readdirSync(`/proc/${pid}/task`).length;
  } catch {
    return NaN;
  }
}

/** A command line as it could be typed (paths relative to the repository root). */
export function shown(argv, env) {
  const q = (s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${String(s).replace(/'/g, "'\\''")}'`);
  const rel = (s) => (typeof s === 'string' && s.startsWith('/') && s.startsWith(REPO) ? relative(REPO, s) : s);
  const e = env ? Object.entries(env).map(([k, v]) => `${k}=${q(rel(v))} `).join('') : '';
  return e + argv.map((a) => q(rel(a === process.execPath ? 'node' : a))).join(' ');
}

export const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

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
