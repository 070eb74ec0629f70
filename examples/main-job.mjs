#!/usr/bin/env node
// The main job (`pnpm start`): natkit's servers on loopback and two p2pdemo peers connecting
// through them, as the README's real use does across the internet.
//  1. `p2pservers` (the one command for a public host) starts stunserver (RFC 5780 mode on
//     127.0.0.1 and 127.0.0.2), relayserver and signalserver on free loopback ports, and
//     prints the p2pdemo line for the peers.
//  2. Two p2pdemo peers with that line: each reports its NAT (none here), they meet in the
//     room, trickle candidates, connect directly and send each other random bytes.
//  3. Two more, one of them --relay-only: the path goes through the TURN relay.
//  4. Everything stops cleanly (the peers delete their allocations; the servers exit 0).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { formatEvent } from '@natkit/demo';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = (name) => `${root}packages/demo/bin/${name}.js`;
const BYTES = 3; // each peer waits for this many bytes from the other
const DEADLINE_MS = 30_000; // per step; on loopback each takes a second or two

const failures = [];
const t0 = performance.now();

/** Spawns a program whose stdout is JSON lines; `onEvent` gets each object, other lines go to `onLine`. */
function startJson(args, { onEvent, onLine }) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = once(child, 'close').then(([code, signal]) => ({ code, signal }));
  const lines = (stream, each) => {
    let buf = '';
    stream.setEncoding('utf8').on('data', (d) => {
      buf += d;
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        each(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
  };
  lines(child.stdout, (line) => {
    let e;
    try {
      e = JSON.parse(line);
    } catch {
      onLine?.(line);
      return;
    }
    onEvent(e);
  });
  lines(child.stderr, (line) => onLine?.(line));
  return { child, exited };
}

function deadline(ms, what) {
  let timer;
  const p = new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not within ${ms / 1000} s`)), ms)));
  return { p, cancel: () => clearTimeout(timer) };
}

/** Runs two peers with `args` (plus their own), waits until both connected and got BYTES bytes, stops them. */
async function pair(label, common, extra) {
  const names = Object.keys(extra);
  const state = Object.fromEntries(names.map((n) => [n, { connected: undefined, received: 0, stopped: false }]));
  let resolveDone;
  const done = new Promise((r) => (resolveDone = r));
  const peers = names.map((name, k) => {
    const prefix = `  [${name}] `;
    const p = startJson([bin('p2pdemo'), ...common, ...extra[name], '--json'], {
      onEvent: (e) => {
        const text = formatEvent(e);
        if (text) console.log(text.replace(/^/gm, prefix));
        const s = state[name];
        if (e.event === 'connected') s.connected = e;
        if (e.event === 'data') s.received = e.received;
        if (e.event === 'stopped') s.stopped = true;
        if (names.every((n) => state[n].connected && state[n].received >= BYTES)) resolveDone();
      },
      onLine: (l) => console.log(`${prefix}${l}`),
    });
    return { name, ...p, k };
  });
  const d = deadline(DEADLINE_MS, `${label}: both peers connected and ${BYTES} bytes each way`);
  try {
    await Promise.race([done, d.p, ...peers.map((p) => p.exited.then((x) => Promise.reject(new Error(`${label}: peer ${p.name} exited (${x.signal ?? x.code}) early`))))]);
  } catch (err) {
    failures.push(err.message);
  } finally {
    d.cancel();
  }
  // Ctrl-C for each: it closes its agent (the TURN allocation is deleted) and leaves the room.
  for (const p of peers) p.child.kill('SIGINT');
  const exits = await Promise.all(peers.map((p) => p.exited));
  exits.forEach((x, i) => {
    if (x.code !== 0) failures.push(`${label}: peer ${peers[i].name} exited (${x.signal ?? x.code}) on SIGINT`);
  });
  return names.map((n) => state[n]);
}

console.log('== natkit main job: the servers on loopback, two p2pdemo peers connecting through them ==\n');
console.log('-- p2pservers: stunserver (RFC 5780 on 127.0.0.1 and 127.0.0.2), relayserver and signalserver on free ports');
console.log('   (on a public host it is just `p2pservers`; --allow-peer lets this relay reach loopback peers, for this demo only)');
let ready;
const gotReady = new Promise((r) => (ready = r));
const servers = startJson(
  [bin('p2pservers'), '--listen', '127.0.0.1', '--alternate', '127.0.0.2', '--stun-port', '0', '--turn-port', '0', '--signal-port', '0', '--allow-peer', '127.0.0.0/8', '--drain-timeout', '2', '--json'],
  { onEvent: (e) => e.event === 'ready' && ready(e), onLine: (l) => console.log(`  ${l}`) },
);
const results = [];
try {
  const d = deadline(DEADLINE_MS, 'p2pservers ready');
  const r = await Promise.race([gotReady, d.p, servers.exited.then((x) => Promise.reject(new Error(`p2pservers exited (${x.signal ?? x.code}) before it was ready`)))]).finally(d.cancel);
  console.log(`\n-- the line p2pservers prints for the peers:\n   p2pdemo ${r.p2pdemo.join(' ')}`);
  // On one machine: gather on loopback only, and a byte every 0.3 s instead of 1-15 s.
  const common = [...r.p2pdemo, '--address', '127.0.0.1', '--interval', '0.3'];

  console.log('\n-- two peers, A and B, in that room: direct');
  results.push(['direct', await pair('direct pair', common, { A: [], B: [] })]);

  console.log('\n-- two more, C with --relay-only, in another room: through the TURN relay');
  const relayCommon = common.map((a, i) => (common[i - 1] === '--room' ? `${a}-relay` : a));
  results.push(['relayed', await pair('relayed pair', relayCommon, { C: ['--relay-only'], D: [] })]);
} catch (err) {
  failures.push(err.message);
} finally {
  servers.child.kill('SIGTERM');
  const x = await servers.exited;
  if (x.code !== 0) failures.push(`p2pservers exited (${x.signal ?? x.code}) on SIGTERM`);
  else console.log('\n-- every peer and server stopped cleanly');
}

console.log('\n== what the peers found ==');
for (const [want, peers] of results) {
  const [a] = peers;
  const c = a.connected;
  if (!c) continue;
  const end = (x) => `${x.type} ${x.address}:${x.port}`;
  console.log(`  ${want.padEnd(8)} ${c.path.kind} path ${end(c.path.local)} <-> ${end(c.path.remote)}, connected in ${c.iceMs} ms, RTT ${c.rttMs} ms; bytes received: ${peers.map((p) => p.received).join(' and ')}`);
  if (c.path.kind !== want) failures.push(`the ${want} pair took a ${c.path.kind} path`);
}
if (failures.length) {
  console.error(`\nmain job FAILED: ${failures.join('; ')}`);
  process.exit(1);
}
console.log(`\nmain job OK (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
