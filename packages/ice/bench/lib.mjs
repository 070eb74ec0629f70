// Pieces of the @natkit/ice benchmarks: the two ICE agents driven the same way (natkit's
// IceAgent and werift 0.24.4's Connection, both in this process, both on 127.0.0.1 only,
// candidates signalled as RFC 8839 lines the moment they are found), and natkit's
// relayserver in a child process for the relay-only case. What every natkit benchmark
// shares (command line, launching and stopping programs, medians, tables) is in
// @natkit/stun's bench/common/bench-lib.mjs, found through the workspace dependency.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const here = dirname(fileURLToPath(import.meta.url));
export const REPO = join(here, '../../..');
const require = createRequire(import.meta.url);
export const COMMON = join(dirname(require.resolve('@natkit/stun/package.json')), 'bench/common');
const common = await import(pathToFileURL(join(COMMON, 'bench-lib.mjs')).href);
export const { argsOf, f0, fx, launch, median, printSummary, runScripts, stop, summaryTitle, tableRow, waitOutput } = common;

export const LOOPBACK = '127.0.0.1';
export const USER = 'bench';
export const PASS = 'bench-pass';
export const REALM = 'natkit.bench';

// ---------------------------------------------------------------------------------------
// natkit's agent, when @natkit/ice has it (issue 6: built on its own branch first)

const ice = await import('@natkit/ice');
/** natkit's IceAgent, or undefined while @natkit/ice does not export it yet. */
export const IceAgent = typeof ice.IceAgent === 'function' ? ice.IceAgent : undefined;
export const NATKIT_MISSING = '@natkit/ice does not export IceAgent yet (issue 6: the agent is built on its own branch); natkit is not measured';

/** RFC 8839 candidate line of a natkit candidate: natkit's own writer when it has one. */
export function natkitLine(c) {
  if (typeof ice.formatCandidateLine === 'function') return ice.formatCandidateLine(c);
  let s = `candidate:${c.foundation} ${c.component} ${c.transport} ${c.priority >>> 0} ${c.address} ${c.port} typ ${c.type}`;
  if (c.relatedAddress !== undefined) s += ` raddr ${c.relatedAddress} rport ${c.relatedPort ?? 0}`;
  return s;
}

// ---------------------------------------------------------------------------------------
// werift (npm, root dev dependency; CommonJS)

const werift = require('werift');
/** werift's version, from its package.json (which its "exports" does not list). */
export const WERIFT_VERSION = JSON.parse(readFileSync(join(dirname(require.resolve('werift')), '../../../package.json'), 'utf8')).version;

// ---------------------------------------------------------------------------------------
// natkit's relay, in its own process (so relaying does not share the agents' event loop)

/** Starts natkit's relayserver (the built binary) on 127.0.0.1, port 0, loopback peers allowed; resolves { port, proc, command }. */
export async function startRelay() {
  const bin = join(REPO, 'packages/turn/bin/relayserver.js');
  const args = ['--listen', LOOPBACK, '--port', '0', '--relay-ip', LOOPBACK, '--realm', REALM, '--user', `${USER}:${PASS}`, '--allow-peer', '127.0.0.0/8', '--no-tcp', '--log-level', 'warn',
    // every round allocates twice, and werift never deletes its allocations (they expire): quotas
    // out of the way; all clients share 127.0.0.1, so no rate limit on error answers either
    '--user-quota', '100000', '--total-quota', '100000', '--error-rate', '0'];
  const proc = launch(process.execPath, [bin, ...args]);
  const ok = await waitOutput(proc, /listening on udp 127\.0\.0\.1:(\d+)/, 15000);
  const m = /listening on udp 127\.0\.0\.1:(\d+)/.exec(proc.output());
  if (!ok || !m) {
    await stop(proc);
    throw new Error(`relayserver did not start: ${proc.output().slice(-600)}`);
  }
  return { port: Number(m[1]), proc, command: `node packages/turn/bin/relayserver.js ${args.join(' ')}` };
}

// ---------------------------------------------------------------------------------------
// One connection, timed: two agents in this process, A controlling and B controlled.
//
// t0 is taken before either agent is made. Each agent gathers (awaited, as both APIs ask
// before connect), its candidates go to the other as lines as they are found, then
// end-of-candidates; both connect. `pair` is the first selected pair on either side;
// each side sends one datagram the moment it has its selected pair, and `byte` is the
// first of those to arrive. A round fails if nothing arrives within `deadlineMs`.

function deferred() {
  let resolve;
  let reject;
  const promise = new Promise((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

function timed(deadlineMs, what) {
  const t0 = performance.now();
  const d = deferred();
  const r = { pair: undefined, byte: undefined, pairs: {} };
  const timer = setTimeout(() => d.reject(new Error(`${what}: no ${r.pair === undefined ? 'selected pair' : 'application byte'} within ${deadlineMs} ms`)), deadlineMs);
  return {
    t0,
    selected(side, desc) {
      r.pairs[side] = desc;
      r.pair ??= performance.now() - t0;
    },
    byte() {
      if (r.byte !== undefined) return;
      r.byte = performance.now() - t0;
      clearTimeout(timer);
      d.resolve(r);
    },
    fail(e) {
      if (r.byte !== undefined) return; // the round is over (closing makes connect() reject)
      clearTimeout(timer);
      d.reject(e);
    },
    done: d.promise,
  };
}

/** natkit options for one side: host (127.0.0.1) or relay-only through the relay. */
function natkitOptions(controlling, { relayPort, nomination, ta } = {}) {
  const base = { controlling, addresses: [LOOPBACK], includeLoopback: true, families: ['IPv4'], ...(nomination ? { nomination } : {}), ...(ta ? { ta } : {}) };
  if (relayPort === undefined) return { ...base, iceServers: [] };
  return { ...base, iceServers: [{ urls: `turn:${LOOPBACK}:${relayPort}?transport=udp`, username: USER, credential: PASS }], policy: 'relay' };
}

export async function natkitRound({ relayPort, nomination, ta, deadlineMs = 20000 } = {}) {
  const t = timed(deadlineMs, 'natkit');
  const a = new IceAgent(natkitOptions(true, { relayPort, nomination, ta }));
  const b = new IceAgent(natkitOptions(false, { relayPort, nomination, ta }));
  const agents = [a, b];
  try {
    const wire = (x, y, side) => {
      x.on('candidate', (c) => y.addRemoteCandidate(natkitLine(c)));
      x.on('selected-pair', (p) => {
        t.selected(side, `${p.local.type} ${p.local.address}:${p.local.port} -> ${p.remote.type} ${p.remote.address}:${p.remote.port}`);
        x.send(Buffer.from(side));
      });
      x.on('data', () => t.byte());
      x.on('state', (s) => s === 'failed' && t.fail(new Error(`natkit ${side} failed`)));
    };
    wire(a, b, 'A');
    wire(b, a, 'B');
    a.setRemoteParameters(b.localParameters);
    b.setRemoteParameters(a.localParameters);
    await Promise.all([a.gather(), b.gather()]);
    a.endOfRemoteCandidates();
    b.endOfRemoteCandidates();
    a.connect().catch((e) => t.fail(e));
    b.connect().catch((e) => t.fail(e));
    return await t.done;
  } finally {
    await Promise.allSettled(agents.map((x) => x.close()));
  }
}

function weriftConnection(controlling, { relayPort } = {}) {
  const common = { useIpv4: false, useIpv6: false, interfaceAddresses: { udp4: LOOPBACK } };
  const c =
    relayPort === undefined
      ? new werift.Connection(controlling, { ...common, additionalHostAddresses: [LOOPBACK] })
      : new werift.Connection(controlling, { ...common, forceTurn: true, turnServer: [LOOPBACK, relayPort], turnUsername: USER, turnPassword: PASS, turnTransport: 'udp' });
  // werift's STUN server defaults to stun.l.google.com: no internet here
  c.stunServer = undefined;
  return c;
}

export async function weriftRound({ relayPort, deadlineMs = 20000 } = {}) {
  const t = timed(deadlineMs, 'werift');
  const a = weriftConnection(true, { relayPort });
  const b = weriftConnection(false, { relayPort });
  try {
    const wire = (x, y, side) => {
      // as a line, the way signalling carries it (werift mutates candidate objects)
      x.onIceCandidate.subscribe((c) => void y.addRemoteCandidate(werift.Candidate.fromSdp(c.toSdp())));
      x.onData.subscribe(() => t.byte());
    };
    wire(a, b, 'A');
    wire(b, a, 'B');
    a.setRemoteParams({ iceLite: false, usernameFragment: b.localUsername, password: b.localPassword });
    b.setRemoteParams({ iceLite: false, usernameFragment: a.localUsername, password: a.localPassword });
    await Promise.all([a.gatherCandidates(), b.gatherCandidates()]);
    await Promise.all([a.addRemoteCandidate(undefined), b.addRemoteCandidate(undefined)]);
    for (const [x, side] of [
      [a, 'A'],
      [b, 'B'],
    ]) {
      x.connect().then(
        () => {
          const p = x.nominated;
          // connect() of the second side can settle after the round ended and closed it
          if (!p) return;
          t.selected(side, `${p.localCandidate.type} ${p.localCandidate.host}:${p.localCandidate.port} -> ${p.remoteCandidate.type} ${p.remoteCandidate.host}:${p.remoteCandidate.port}`);
          x.send(Buffer.from(side)).catch(() => {});
        },
        (e) => t.fail(e),
      );
    }
    return await t.done;
  } finally {
    await Promise.allSettled([a.close(), b.close()]);
  }
}
