// Pieces of the @natkit/turn benchmarks: the relays (natkit's relayserver, coturn's
// turnserver), the echo peers, the C programs and the relays' own counters. What the STUN
// benchmarks need too (building C, CPU pinning, starting and stopping programs, readiness
// probes, /proc readings, medians, noise handling, tables) is in @natkit/stun's
// bench/common/bench-lib.mjs, found through the workspace dependency and re-exported here;
// the shared C (echo.c, and udpload.h, turnload.c's loop) is in that folder too.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const here = dirname(fileURLToPath(import.meta.url));
export const BUILD = join(here, '.build');
export const REPO = join(here, '../../..');
/** packages/stun/bench/common, resolved through the workspace (@natkit/stun is a dependency). */
export const COMMON = join(dirname(createRequire(import.meta.url).resolve('@natkit/stun/package.json')), 'bench/common');
const common = await import(pathToFileURL(join(COMMON, 'bench-lib.mjs')).href);
export const {
  TURNSERVER, argsOf, ceilingCheck, cpuTimes, f0, findProgram, freeTcpPort, freeUdpPort, fx, launch, leastDisturbed, loadAverage, median, pairedRatios,
  printSummary, processCpu, processTree, resultTable, threadCpu, rotated, runJson, runScripts, sleep, stop, sum, summaryTitle, tableRow, threadsOf, treeUsage,
  udpRcvbufErrors, vmRssKb, waitOutput,
} = common;
export const { bindingRequest, probe } = common;
const { buildC: buildWith, choosePinning } = common;

export const UCLIENT = findProgram('turnutils_uclient');
export const UPEER = findProgram('turnutils_peer');
export const USER = 'user';
export const PASS = 'pass';
export const REALM = 'natkit';
/** The long-term key (RFC 8489 section 9.2.2) for the C load generator. */
export const KEY_HEX = createHash('md5').update(`${USER}:${REALM}:${PASS}`).digest('hex');

/** Compiles the bench's C programs into bench/.build (only when a source or header is newer). */
export function buildC() {
  buildWith(BUILD, [
    { name: 'turnload', src: join(here, 'turnload.c'), include: [COMMON] },
    { name: 'echo', src: join(COMMON, 'echo.c') },
    { name: 'forward', src: join(here, 'forward.c') },
    { name: 'floor', src: join(here, 'floor.c') },
    { name: 'uclient-channels.so', src: join(here, 'uclient-channels.c'), flags: ['-shared', '-fPIC', '-O2', '-Wall'], libs: ['-ldl'] },
    // The STUN bench's Binding load generator, for the relays' Binding answers/s.
    { name: 'loadgen', src: join(COMMON, '../loadgen.c'), include: [COMMON] },
  ]);
}

/** The relay's CPU (`server`) and the load's (`load`: load generator and echo peer). */
export const pin = choosePinning();

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
    const STDBUF = findProgram('stdbuf', ['/usr/bin', '/bin']);
    p = STDBUF
      ? launch(STDBUF, ['-oL', TURNSERVER, ...coturnArgs(o)], { cpu: o.cpu, keep: 8e6 })
      : launch(TURNSERVER, coturnArgs(o), { cpu: o.cpu, keep: 8e6 });
  }
  p.ready = await probe(o.port, { packet: bindingRequest, p });
  return p;
}

/** Starts an echo peer (bench/.build/echo or turnutils_peer) and waits until it echoes. */
export async function startPeer(kind, port, cpu) {
  const p =
    kind === 'c-echo'
      ? launch(join(BUILD, 'echo'), ['--port', String(port)], { cpu })
      : launch(UPEER, ['-p', String(port), '-L', '127.0.0.1'], { cpu });
  p.ready = await probe(port, { packet: () => Buffer.from('ping'), p });
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

/** A command line as it could be typed (paths relative to the repository root). */
export function shown(argv, env) {
  const q = (s) => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${String(s).replace(/'/g, "'\\''")}'`);
  const rel = (s) => (typeof s === 'string' && s.startsWith('/') && s.startsWith(REPO) ? relative(REPO, s) : s);
  const e = env ? Object.entries(env).map(([k, v]) => `${k}=${q(rel(v))} `).join('') : '';
  return e + argv.map((a) => q(rel(a === process.execPath ? 'node' : a))).join(' ');
}
