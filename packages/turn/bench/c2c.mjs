// What perpacket.mjs and profile.mjs share: the servers they measure under coturn's
// turnutils_uclient in client-to-client mode (-y -c), how each is started, and one
// uclient run with the stretch during which every client is sending.
//
// uclient -y -c -m M: M clients in M/2 pairs, each client one allocation (uclient makes
// one more per pair), each pair relaying to each other's relayed address over channels;
// every client sends one message of -l bytes per -z ms after a random start 1-6 s after
// connecting, -n messages in all. One message delivered = one relayed packet here: the
// relay receives it as ChannelData on its listening port, sends the payload from the
// sender's relay socket to the receiver's relayed address, receives it there and sends
// it to the receiver as ChannelData (two receives and two sends). uclient picks RFC 5766
// channel numbers; it runs with LD_PRELOAD=bench/.build/uclient-channels.so against every
// server (see uclient-channels.c).
import { spawnSync } from 'node:child_process';
import os from 'node:os';
import { join } from 'node:path';
import {
  BUILD, PASS, TURNSERVER, UCLIENT, USER, bindingRequest, coturnArgs, cpuTimes, here, launch, natkitArgs, natkitEntry, pin, probe, processCpu, processTree,
  shown, stop, threadCpu, treeUsage,
} from './lib.mjs';

export const MIN_PORT = 45000;
export const MAX_PORT = 49999;
const SHIM = join(BUILD, 'uclient-channels.so');
const FLOOR = join(here, 'floor-node.mjs');
/** Seconds after uclient's "Total connect time" line when every client is sending. */
export const STRETCH_FROM = 6.2;

/** Node's version as [major, minor], or undefined if `node` does not run. */
function nodeVersion(node) {
  const r = spawnSync(node, ['-p', 'process.versions.node'], { encoding: 'utf8' });
  return r.status === 0 ? { text: r.stdout.trim(), v: r.stdout.trim().split('.').map(Number) } : undefined;
}
const hasReusePort = (v) => v && (v.v[0] > 22 || (v.v[0] === 22 && v.v[1] >= 12));

/**
 * A Node with dgram reusePort (>= 22.12) for natkit's workers: `given`, this process's
 * own Node, or Node 24 through npx (from the npm registry, cached after the first time).
 */
export function findNode24(given) {
  if (given) return given;
  if (hasReusePort(nodeVersion(process.execPath))) return process.execPath;
  const r = spawnSync('npx', ['-y', 'node@24', '-p', 'process.execPath'], { encoding: 'utf8', timeout: 180_000 });
  return r.status === 0 ? r.stdout.trim().split('\n').pop() : undefined;
}

/**
 * The configurations. Single-threaded servers are pinned to the server CPU (uclient gets
 * the other); coturn's default threads and natkit --workers 2 are not (on a 2-core machine
 * "every core" includes the load's). `node24`: a Node for --workers (undefined: not run).
 */
export function allConfigs({ node24 } = {}) {
  const entry = natkitEntry();
  const v24 = node24 ? nodeVersion(node24) : undefined;
  const help = node24 && hasReusePort(v24) ? (spawnSync(node24, [entry.script, '--help'], { encoding: 'utf8', timeout: 15000 }).stdout ?? '') : '';
  const workersMissing = !node24
    ? 'no Node >= 22.12 found (give --node24 PATH, or let npx -y node@24 fetch one)'
    : !hasReusePort(v24)
      ? `${node24} is Node ${v24?.text ?? '?'}, without dgram reusePort`
      : !/--workers/.test(help)
        ? 'relayserver has no --workers flag yet'
        : undefined;
  const noCoturn = TURNSERVER ? undefined : 'turnserver not installed (Debian package coturn)';
  return [
    { id: 'coturn-1thread', label: 'coturn turnserver -m 1', kind: 'coturn', threads: 1, pinned: true, missing: noCoturn },
    { id: 'coturn-default', label: `coturn turnserver, default threads (${os.availableParallelism()} here)`, kind: 'coturn', pinned: false, missing: noCoturn },
    { id: 'natkit', label: `natkit relayserver, one process (Node ${process.versions.node})`, kind: 'natkit', node: process.execPath, script: entry.script, pinned: true },
    { id: 'natkit-node24', label: `natkit relayserver, one process (Node ${v24?.text ?? '24'})`, kind: 'natkit', node: node24, script: entry.script, pinned: true, missing: node24 ? undefined : 'no Node >= 22.12 found' },
    { id: 'natkit-w2', label: `natkit relayserver --workers 2 (Node ${v24?.text ?? '>= 22.12'})`, kind: 'natkit', node: node24, script: entry.script, workers: 2, pinned: false, missing: workersMissing },
    { id: 'floor-node', label: `Node floor: bench/floor-node.mjs (Node ${process.versions.node})`, kind: 'floor', pinned: true, binding: false },
    { id: 'floor-node-connect', label: 'Node floor, relay sockets connect()ed to their peer', kind: 'floor', args: ['--connect'], pinned: true, binding: false },
    { id: 'floor-node-connect-all', label: 'Node floor, relay sockets connected and a connected socket per client', kind: 'floor', args: ['--connect', '--connect-clients'], pinned: true, binding: false },
    { id: 'floor-c', label: 'C floor, one datagram per syscall as libuv does (bench/floor.c --mode libuv)', kind: 'cfloor', args: ['--mode', 'libuv'], pinned: true, binding: false },
    { id: 'floor-c-mmsg', label: 'C floor, recvmmsg/sendmmsg (bench/floor.c --mode mmsg)', kind: 'cfloor', args: ['--mode', 'mmsg'], pinned: true, binding: false },
    { id: 'floor-c-mmsg-connect', label: 'C floor, recvmmsg/sendmmsg, relay sockets connected', kind: 'cfloor', args: ['--mode', 'mmsg', '--connect'], pinned: true, binding: false },
  ];
}

/**
 * Prototype relays (a patched copy of the package, built elsewhere): "name=path/to/
 * relayserver.js,..." gives a configuration natkit-<name> for each, run as natkit is.
 */
export const variantConfigs = (spec) =>
  (spec ?? '').split(',').filter(Boolean).map((v) => {
    const [name, script] = v.split('=');
    return { id: `natkit-${name}`, label: `natkit relayserver, variant ${name} (${script})`, kind: 'natkit', node: process.execPath, script, pinned: true };
  });

const workersFlag = new Map();
/** Whether a relayserver (run by `node`) has --workers. */
function supportsWorkers(node, script) {
  const k = `${node} ${script}`;
  if (!workersFlag.has(k)) workersFlag.set(k, /--workers/.test(spawnSync(node, [script, '--help'], { encoding: 'utf8', timeout: 15000 }).stdout ?? ''));
  return workersFlag.get(k);
}

/**
 * Starts a server and waits until it answers a Binding request. `nice`: niceness (and
 * its own autogroup, see launch); `nodeFlags`: flags for node (natkit and floor-node).
 * Resolves the launched program with `tree()` (its process and any workers).
 */
export async function startServer(cfg, { port, metricsPort, tmp, nice, nodeFlags = [] }) {
  // In the run's temporary folder: what a server leaves behind (node --perf-basic-prof's
  // isolate-*.log) goes with it.
  const o = { cpu: cfg.pinned ? pin.server : undefined, cwd: tmp, ...(nice ? { nice } : {}) };
  let p;
  if (cfg.kind === 'coturn') {
    p = launch(TURNSERVER, coturnArgs({ port, minPort: MIN_PORT, maxPort: MAX_PORT, tmp, threads: cfg.threads, verbose: false }), o);
  } else if (cfg.kind === 'natkit') {
    // relayserver's --workers defaults to every core on Node >= 22.12: one process is asked for.
    const workers = supportsWorkers(cfg.node, cfg.script) ? ['--workers', String(cfg.workers ?? 1)] : [];
    const args = [...nodeFlags, cfg.script, ...natkitArgs({ port, minPort: MIN_PORT, maxPort: MAX_PORT, metricsPort }), ...workers];
    p = launch(cfg.node, args, o);
  } else if (cfg.kind === 'cfloor') {
    p = launch(join(BUILD, 'floor'), ['--port', String(port), ...cfg.args], o);
  } else {
    p = launch(process.execPath, [...nodeFlags, FLOOR, '--port', String(port), ...(cfg.args ?? [])], o);
  }
  p.ready = await probe(port, { packet: bindingRequest, p, what: 'a Binding request' });
  if (!p.ready.ok) {
    await stop(p, 'SIGKILL');
    throw Object.assign(new Error(`${p.ready.reason}: ${p.output().trim().split('\n').slice(-3).join(' | ').slice(0, 300)}`), { unavailable: true });
  }
  p.tree = () => processTree(p.pid);
  return p;
}

/** natkit and the Node floor stop on SIGINT (and write a --cpu-prof profile); the others on SIGTERM. */
export const stopServer = (cfg, p) => stop(p, cfg.kind === 'natkit' || cfg.kind === 'floor' ? 'SIGINT' : 'SIGTERM');

const RE_STATS = /^\d+: : start_mclient: msz=(\d+), tot_send_msgs=(\d+), tot_recv_msgs=(\d+)/;

/**
 * Runs uclient against `server` on `port` until it exits. uclient prints its cumulative
 * sent and received counts about once a second: each line is timestamped with the
 * server's CPU (treeUsage), uclient's and the machine's (cpuTimes). `onStretch()` is
 * called once, STRETCH_FROM s after uclient connected (a profiler starts then).
 * Resolves { commands, uclient: { sent, received, lostPct, rttMs, exit }, samples, tConnect }.
 */
export async function runUclient(server, { port, clients, messages, len, nice, onStretch }) {
  const args = ['-u', USER, '-w', PASS, '-p', String(port), '-y', '-c', '-z', '1', '-m', String(clients), '-l', String(len), '-n', String(messages), '127.0.0.1'];
  const env = { LD_PRELOAD: SHIM };
  let pids = server.tree();
  const samples = [];
  let tConnect;
  let stretchTimer;
  const uc = launch(UCLIENT, args, {
    cpu: pin.load,
    ...(nice ? { nice } : {}),
    env,
    onLine: (l) => {
      if (tConnect === undefined && /Total connect time is/.test(l)) {
        tConnect = performance.now() / 1000;
        pids = server.tree();
        if (onStretch) stretchTimer = setTimeout(onStretch, STRETCH_FROM * 1000);
      }
      const m = l.match(RE_STATS);
      if (m) {
        const threads = new Map();
        for (const p of pids) for (const [tid, sec] of threadCpu(p)) threads.set(`${p}/${tid}`, sec);
        samples.push({ t: performance.now() / 1000, S: Number(m[2]), R: Number(m[3]), srv: treeUsage(pids), threads, uc: processCpu(uc.pid), cpus: cpuTimes() });
      }
    },
  });
  let timer;
  const timedOut = await Promise.race([uc.exited.then(() => false), new Promise((r) => (timer = setTimeout(r, 120_000 + messages, true)))]);
  clearTimeout(timer);
  clearTimeout(stretchTimer);
  if (timedOut) await stop(uc, 'SIGINT');
  const out = uc.output();
  const num = (re, i = 1) => Number(out.match(re)?.[i] ?? NaN);
  const uclient = {
    exit: uc.exit,
    sent: num(/start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$/m),
    received: num(/start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)\s*$/m, 2),
    lostPct: num(/Total lost packets \d+ \(([\d.]+)%/),
    rttMs: num(/Average round trip delay ([\d.]+) ms/),
  };
  if (!Number.isFinite(uclient.sent)) throw new Error(`uclient printed no summary (exit ${JSON.stringify(uc.exit)}): ${out.trim().split('\n').slice(-4).join(' | ').slice(0, 400)}`);
  return { commands: { server: shown(server.command), load: shown([UCLIENT, ...args], env) }, uclient, samples, tConnect, pids };
}

/** The samples between two times (seconds after connecting), or all after `from`. */
export const between = (run, from, to = Infinity) => run.samples.filter((s) => run.tConnect !== undefined && s.t >= run.tConnect + from && s.t <= run.tConnect + to);
