#!/usr/bin/env node
// Connectivity checks one agent drives with many candidate pairs: the agent under test is
// the controlled agent with one host candidate on 127.0.0.1 and N remote candidates (each
// with its own foundation, so every pair is unfrozen at once, RFC 8445 6.1.2.6), served by
// bench/responder.mjs in another process, which answers every check with a valid success
// response and never nominates. The agent therefore checks every pair once. Measured:
// checks per second (N over the responder's time from the first check to the last pair's
// first) and the agent process's CPU time per check (process.cpuUsage over the run), at
// N = 100, 1,000, 5,000 (--sizes). Pacing bounds the rate: natkit runs with --ta (default
// 5 ms, the lowest Ta RFC 8445 14.2 allows, so at most 200 checks/s), werift checks one
// pair per 20 ms tick of its own (not configurable): the CPU per check is the comparable
// figure.
//
//   node bench/checks.mjs [--quick] [--sizes 100,1000,5000] [--werift-sizes 100,1000] [--ta MS] [--json FILE]
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { createRequire } from 'node:module';
import { IceAgent, LOOPBACK, NATKIT_MISSING, WERIFT_VERSION, argsOf, f0, fx, here, tableRow } from './lib.mjs';

const werift = createRequire(import.meta.url)('werift');
const { opt, quick, json } = argsOf();
const SIZES = opt('--sizes', quick ? '100,500' : '100,1000,5000').split(',').map(Number);
const WERIFT_SIZES = opt('--werift-sizes', quick ? '100' : '100,1000').split(',').map(Number);
const TA = Number(opt('--ta', '5'));

function startResponder(n, pwd) {
  const child = spawn(process.execPath, [join(here, 'responder.mjs'), String(n), pwd], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const waiters = [];
  const seen = [];
  lines.on('line', (l) => {
    const m = JSON.parse(l);
    seen.push(m);
    for (const w of [...waiters]) if (w.test(m)) w.resolve(m);
  });
  const next = (test, ms, what) =>
    new Promise((resolve, reject) => {
      const hit = seen.find(test);
      if (hit) return resolve(hit);
      const t = setTimeout(() => reject(new Error(`responder: no ${what} within ${ms} ms`)), ms);
      waiters.push({ test, resolve: (m) => (clearTimeout(t), resolve(m)) });
    });
  const exited = new Promise((r) => child.once('exit', r));
  return { next, close: async () => (child.stdin.end(), await exited) };
}

/** Lines for the N remote candidates: distinct foundations, host type, on 127.0.0.1. */
const remoteLines = (ports) => ports.map((p, i) => `candidate:r${i} 1 udp ${2130706431 - i} ${LOOPBACK} ${p} typ host`);

async function measure(id, n, makeAgent) {
  const pwd = randomBytes(16).toString('hex');
  const ufrag = randomBytes(4).toString('hex');
  const responder = startResponder(n, pwd);
  try {
    const { ports } = await responder.next((m) => m.ports, 30000, 'ports');
    const agent = await makeAgent({ ufrag, pwd, lines: remoteLines(ports) });
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    agent.connect();
    const done = await responder.next((m) => m.allChecked, 60000 + n * 100, `all ${n} pairs checked`);
    const wall = performance.now() - t0;
    const cpu = process.cpuUsage(cpu0);
    await agent.close();
    const cpuMs = (cpu.user + cpu.system) / 1000;
    return { id, n, checksPerSec: (n / done.elapsedMs) * 1000, wallMs: wall, requests: done.requests, cpuMs, cpuUsPerCheck: (cpuMs * 1000) / n };
  } finally {
    await responder.close();
  }
}

async function natkitAgent({ ufrag, pwd, lines }) {
  // The agent's limits (100 remote candidates and 100 pairs by default, against a peer that
  // floods it) are raised to the benchmark's N.
  const a = new IceAgent({ controlling: false, ta: TA, iceServers: [], addresses: [LOOPBACK], includeLoopback: true, families: ['IPv4'], core: { maxRemoteCandidates: lines.length, maxPairs: lines.length } });
  await a.gather();
  a.setRemoteParameters({ ufrag, pwd });
  for (const l of lines) a.addRemoteCandidate(l);
  a.endOfRemoteCandidates();
  return { connect: () => a.connect().catch(() => {}), close: () => a.close() };
}

async function weriftAgent({ ufrag, pwd, lines }) {
  const c = new werift.Connection(false, { useIpv4: false, useIpv6: false, additionalHostAddresses: [LOOPBACK], interfaceAddresses: { udp4: LOOPBACK } });
  c.stunServer = undefined;
  await c.gatherCandidates();
  c.setRemoteParams({ iceLite: false, usernameFragment: ufrag, password: pwd });
  for (const l of lines) await c.addRemoteCandidate(werift.Candidate.fromSdp(l.slice('candidate:'.length)));
  await c.addRemoteCandidate(undefined);
  return { connect: () => c.connect().catch(() => {}), close: () => c.close() };
}

const load0 = os.loadavg();
const rows = [];
const errors = [];
for (const n of SIZES) {
  if (!IceAgent) break;
  try {
    rows.push(await measure(`natkit (Ta ${TA} ms)`, n, natkitAgent));
  } catch (e) {
    errors.push(`natkit N=${n}: ${e.message}`);
  }
}
for (const n of WERIFT_SIZES) {
  try {
    rows.push(await measure(`werift ${WERIFT_VERSION}`, n, weriftAgent));
  } catch (e) {
    errors.push(`werift N=${n}: ${e.message}`);
  }
}
const load1 = os.loadavg();

const out = [];
out.push('Connectivity checks one controlled agent drives: 1 local host candidate x N remote candidates (bench/responder.mjs, another process, answers every check)');
out.push(`machine: ${os.availableParallelism()} CPUs, Node ${process.version}; load average ${load0.map((x) => x.toFixed(2)).join(' ')} at start, ${load1.map((x) => x.toFixed(2)).join(' ')} at end`);
if (!IceAgent) out.push(`natkit: NOT MEASURED: ${NATKIT_MISSING}`);
const W = [22, 8, 12, 12, 12, 14];
out.push(tableRow(W, ['agent', 'pairs', 'checks/s', 'requests', 'CPU ms', 'CPU us/check']));
for (const r of rows) out.push(tableRow(W, [r.id, f0(r.n), f0(r.checksPerSec), f0(r.requests), f0(r.cpuMs), fx(r.cpuUsPerCheck, 1)]));
for (const e of errors) out.push(`error: ${e}`);
console.log(out.join('\n'));
if (json) writeFileSync(json, JSON.stringify({ ta: TA, load: { start: load0, end: load1 }, rows, errors, report: out }, null, 1));
process.exit(0);
