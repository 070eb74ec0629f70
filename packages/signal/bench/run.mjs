#!/usr/bin/env node
// signalserver benchmarks (a script, not a test): connections held at once and memory per
// idle connection; pairs formed per second and messages per second through one instance
// and through two instances sharing rooms on a real redis-server. The server runs as the
// built binary in its own process, pinned to CPU 0 when taskset exists; this load generator
// pins itself to CPU 1. Each rate is the median of ROUNDS rounds.
//
//   node packages/signal/bench/run.mjs [--rounds 3] [--seconds 3] [--conns 10000]
import { execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const opt = (name, def) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const ROUNDS = opt('rounds', 3);
const SECONDS = opt('seconds', 3);
const CONNS = opt('conns', 10000);
const BIN = fileURLToPath(new URL('../bin/signalserver.js', import.meta.url));
const taskset = ['/usr/bin/taskset', '/bin/taskset'].find(existsSync);
if (taskset) {
  try {
    execFileSync(taskset, ['-cp', '1', String(process.pid)], { stdio: 'ignore' });
  } catch {
    // fine: unpinned
  }
}

const children = new Set();
process.on('exit', () => {
  for (const c of children) c.kill('SIGKILL');
});

function startProc(cmd, argv, ready) {
  const child = taskset ? spawn(taskset, ['-c', '0', cmd, ...argv], { stdio: ['ignore', 'pipe', 'pipe'] }) : spawn(cmd, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.on('exit', () => children.delete(child));
  let out = '';
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${cmd} did not start: ${out}`)), 20000);
    const on = (d) => {
      out += d;
      const m = ready.exec(out);
      if (m) {
        clearTimeout(t);
        resolve({ child, m });
      }
    };
    child.stdout.setEncoding('utf8').on('data', on);
    child.stderr.setEncoding('utf8').on('data', on);
  });
}

async function stopProc(child) {
  if (child.exitCode !== null) return;
  const done = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 15000);
  await done;
  clearTimeout(t);
}

async function signalserver(extra = []) {
  const { child, m } = await startProc(process.execPath, [BIN, '--listen', '127.0.0.1', '--port', '0', '--mode', 'rooms', '--max-connections', '60000', '--max-connections-per-ip', '60000', '--max-rooms', '60000', '--close-grace', '1', '--metrics', '127.0.0.1:0', '--log-level', 'warn', ...extra], /listening on tcp 127\.0\.0\.1:(\d+);.*metrics on (\S+)/);
  // With taskset the child is taskset's exec'd node: same pid.
  return { child, port: Number(m[1]), metrics: m[2] };
}

function metric(url, name) {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d) => (body += d));
      res.on('end', () => resolve(Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(body)?.[1])));
    }).on('error', reject);
  });
}

function rssKiB(pid) {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
}

/** A minimal JSON-protocol client: counts lines of each type, answers pings. */
function client(port, room, onMsg) {
  return new Promise((resolve, reject) => {
    const s = net.createConnection({ host: '127.0.0.1', port });
    s.setNoDelay(true);
    let rest = '';
    s.setEncoding('utf8');
    s.on('data', (d) => {
      const parts = (rest + d).split('\n');
      rest = parts.pop();
      for (const line of parts) {
        if (line.startsWith('{"type":"ping"')) s.write('{"type":"pong"}\n');
        else if (line.startsWith('{"type":"joined"')) resolve(s);
        else if (line.startsWith('{"type":"error"')) reject(new Error(line));
        onMsg?.(line);
      }
    });
    s.on('error', reject);
    s.write(`${JSON.stringify({ type: 'join', room })}\n`);
  });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let roomSeq = 0;
const room = () => `b${process.pid}-${++roomSeq}`;

/** Pairs formed per second: `conc` loops of join, join, both told, close both. */
async function pairsPerSecond(portA, portB, conc = 32) {
  let pairs = 0;
  const end = Date.now() + SECONDS * 1000;
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (Date.now() < end) {
        const r = room();
        let told;
        const toldP = new Promise((res) => (told = res));
        const a = await client(portA, r, (l) => l.startsWith('{"type":"peer-joined"') && told());
        const b = await client(portB, r);
        await toldP;
        pairs++;
        a.destroy();
        b.destroy();
      }
    }),
  );
  return pairs / SECONDS;
}

/** Messages per second: `npairs` pairs, senders on portA, receivers on portB, `window` in flight per pair. */
async function messagesPerSecond(portA, portB, npairs = 16, window = 64) {
  const msg = `${JSON.stringify({ type: 'candidate', foundation: '1', component: 1, transport: 'udp', priority: 2130706431, address: '203.0.113.77', port: 50000, candidateType: 'srflx', relatedAddress: '10.0.0.7', relatedPort: 50000 })}\n`;
  let total = 0;
  let counting = false;
  const pairs = [];
  for (let i = 0; i < npairs; i++) {
    const r = room();
    const pair = { sent: 0, got: 0 };
    const a = await client(portA, r);
    let joinedB;
    const b = await client(portB, r, (l) => {
      if (l.startsWith('{"type":"candidate"')) {
        pair.got++;
        if (counting) total++;
        pump();
      }
    });
    const pump = () => {
      let chunk = '';
      while (pair.sent - pair.got < window) {
        chunk += msg;
        pair.sent++;
      }
      if (chunk) a.write(chunk);
    };
    void joinedB;
    pair.a = a;
    pair.b = b;
    pair.pump = pump;
    pairs.push(pair);
  }
  for (const p of pairs) p.pump();
  await sleep(500); // warm-up
  counting = true;
  const t0 = Date.now();
  await sleep(SECONDS * 1000);
  counting = false;
  const rate = total / ((Date.now() - t0) / 1000);
  for (const p of pairs) {
    p.a.destroy();
    p.b.destroy();
  }
  return rate;
}

/** Connections held at once and server memory per idle (joined, paired) connection. */
async function heldAndMemory() {
  const srv = await signalserver(['--heartbeat', '60', '--heartbeat-timeout', '600', '--idle-timeout', '0']);
  await sleep(300);
  const before = rssKiB(srv.child.pid);
  const socks = [];
  let failed = 0;
  for (let i = 0; i < CONNS; i += 200) {
    const batch = [];
    for (let k = 0; k < 200 && i + k < CONNS; k += 2) {
      const r = room();
      batch.push(client(srv.port, r).then((s) => socks.push(s), () => failed++));
      batch.push(client(srv.port, r).then((s) => socks.push(s), () => failed++));
    }
    await Promise.all(batch);
  }
  const parties = await metric(srv.metrics, 'natkit_signal_parties');
  await sleep(1000);
  const after = rssKiB(srv.child.pid);
  for (const s of socks) s.destroy();
  await stopProc(srv.child);
  return { held: parties, failed, perConnKiB: (after - before) / parties, beforeMiB: before / 1024, afterMiB: after / 1024 };
}

async function redisServer() {
  const bin = ['/usr/bin/redis-server', '/usr/sbin/redis-server'].find(existsSync);
  if (!bin) return undefined;
  const probe = net.createServer();
  await new Promise((r) => probe.listen(0, '127.0.0.1', r));
  const port = probe.address().port;
  await new Promise((r) => probe.close(r));
  const dir = mkdtempSync(join(tmpdir(), 'natkit-bench-redis-'));
  const { child } = await startProc(bin, ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'], /Ready to accept connections/);
  return { child, url: `redis://127.0.0.1:${port}`, dir };
}

const report = {};
console.log(`signalserver benchmark: ${ROUNDS} rounds of ${SECONDS} s; node ${process.version}; ${taskset ? 'server on CPU 0, load on CPU 1' : 'unpinned'}`);

{
  const r = await heldAndMemory();
  report.held = r;
  console.log(`connections held at once: ${r.held} of ${CONNS} (failed ${r.failed}); server RSS ${r.beforeMiB.toFixed(1)} -> ${r.afterMiB.toFixed(1)} MiB: ${r.perConnKiB.toFixed(2)} KiB per idle joined connection`);
}

{
  const srv = await signalserver();
  const pairs = [];
  const msgs = [];
  for (let i = 0; i < ROUNDS; i++) {
    pairs.push(await pairsPerSecond(srv.port, srv.port));
    msgs.push(await messagesPerSecond(srv.port, srv.port));
  }
  await stopProc(srv.child);
  report.one = { pairs: median(pairs), messages: median(msgs), pairRounds: pairs, messageRounds: msgs };
  console.log(`one instance: pairs formed ${median(pairs).toFixed(0)}/s (rounds ${pairs.map((x) => x.toFixed(0)).join(', ')}); messages ${median(msgs).toFixed(0)}/s (rounds ${msgs.map((x) => x.toFixed(0)).join(', ')})`);
}

{
  const redis = await redisServer();
  if (!redis) {
    console.log('two instances on Redis: skipped (no redis-server)');
  } else {
    const a = await signalserver(['--redis', redis.url]);
    const b = await signalserver(['--redis', redis.url]);
    const pairs = [];
    const msgs = [];
    for (let i = 0; i < ROUNDS; i++) {
      pairs.push(await pairsPerSecond(a.port, b.port));
      msgs.push(await messagesPerSecond(a.port, b.port));
    }
    await stopProc(a.child);
    await stopProc(b.child);
    await stopProc(redis.child);
    rmSync(redis.dir, { recursive: true, force: true });
    report.redis = { pairs: median(pairs), messages: median(msgs), pairRounds: pairs, messageRounds: msgs };
    console.log(`two instances on Redis (parties on different instances): pairs formed ${median(pairs).toFixed(0)}/s (rounds ${pairs.map((x) => x.toFixed(0)).join(', ')}); messages ${median(msgs).toFixed(0)}/s (rounds ${msgs.map((x) => x.toFixed(0)).join(', ')})`);
  }
}
console.log(JSON.stringify(report));
