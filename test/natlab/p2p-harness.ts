// The harness of issue 8's two-peer lab test (p2p.test.ts): for one cell (the NAT in front of
// peer A x the NAT in front of peer B, and a scenario), it builds the two-peer lab
// (createPeerLab), starts stunserver, relayserver and signalserver in the public servers'
// namespace, starts p2pdemo in each peer's namespace with --json, reads the events each peer
// prints (one JSON object a line), and does to the NATs what the scenario asks (loss, a long
// idle time, a flush of the mappings, a new public address). It returns what the peers said
// and what the harness measured; it asserts nothing (p2p.test.ts does, against predictCell).
//
// The contract with p2pdemo (packages/demo: its --json events, packages/demo/src/events.ts;
// demoArgs() has the flags, parseDemoLine() reads the lines):
//   {"event":"nat", "classic":"Port Restricted Cone", "mapping":"...", "filtering":"..."}   natcheck's view
//   {"event":"connected", "path":{"local":{"type":"srflx","address":...,"port":...},
//      "remote":{"type":"prflx",...}, "kind":"direct"|"relayed"}, "rttMs":1.2, "iceMs":600}   a path works
//   {"event":"data", "received":N}                        application bytes arrived (N so far)
//   {"event":"disconnected", "reason":"consent"}          the path broke (RFC 7675 consent lost, ...)
//   {"event":"restart"}                                   candidate exchange again (ICE restart)
//   {"event":"recovered", "path":{...}, "recoveryMs":N, "outageMs":M}   a path works again; N:
//      since the demo noticed the break, M: with the silence before it noticed
// Any other event is kept and shown, not interpreted. stderr is kept for failure reports.
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { CandidateType } from '@natkit/ice';
import { type LabProcess, type NatLab, type PeerLab, createPeerLab, natBehaviour } from '../helpers/natlab.js';
import { type CellNat, type CellPrediction, predictCell } from './p2p-predict.js';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** natkit's binaries, from the repository (built by `pnpm build`, which `pnpm test` runs first). */
export const BINARIES = {
  stunserver: 'packages/stun/bin/stunserver.js',
  relayserver: 'packages/turn/bin/relayserver.js',
  signalserver: 'packages/signal/bin/signalserver.js',
} as const;
/** Where p2pdemo may land (issue 8: "examples/ or its own package"): the first that exists. */
export const P2PDEMO_CANDIDATES = ['packages/demo/bin/p2pdemo.js', 'packages/p2pdemo/bin/p2pdemo.js', 'examples/p2pdemo/bin/p2pdemo.js', 'examples/p2pdemo.mjs'];

export function findP2pdemo(): string | undefined {
  return P2PDEMO_CANDIDATES.map((p) => join(ROOT, p)).find((p) => existsSync(p));
}

export const TURN_USER = 'natlab';
export const TURN_PASSWORD = 'natlab-relay-password';
export const STUN_PORT = 3478;
export const TURN_PORT = 3478;
export const SIGNAL_PORT = 14141;

// ---------------------------------------------------------------------------------------
// The servers

export interface LabServers {
  stun: LabProcess;
  relay: LabProcess;
  signal: LabProcess | undefined;
  /** What a peer is given: URLs in RFC 7064/7065 form, and the signalling server's host:port. */
  stunUrl: string;
  turnUrl: string;
  signal_: string;
  stop(): Promise<void>;
}

async function started(p: LabProcess, re: RegExp, what: string): Promise<void> {
  try {
    await p.waitFor(re, { timeoutMs: 30_000 });
  } catch (err) {
    await p.stop();
    throw new Error(`${what} did not start: ${(err as Error).message}`);
  }
}

/**
 * In the lab's servers namespace: natkit's stunserver in RFC 5780 full mode on the two STUN
 * addresses (port 3478, alternate port 3479), relayserver on the third address (port 3478,
 * relaying from it, one user; no drain on SIGTERM), and, unless `signal` is false,
 * signalserver on the primary address, port 14141 (the tutorial's).
 */
export async function startLabServers(lab: NatLab, opts: { signal?: boolean } = {}): Promise<LabServers> {
  const [a, a2] = lab.server.addresses;
  const r = lab.server.relayAddress;
  const node = process.execPath;
  const bin = (b: keyof typeof BINARIES) => join(ROOT, BINARIES[b]);
  const procs: LabProcess[] = [];
  const stopAll = async () => {
    await Promise.all(procs.map((p) => p.stop()));
  };
  try {
    const stun = lab.spawn(lab.server.ns, node, [bin('stunserver'), '--listen', a, '--alternate', a2, '--port', String(STUN_PORT)]);
    procs.push(stun);
    const relay = lab.spawn(lab.server.ns, node, [
      bin('relayserver'), '--listen', r, '--port', String(TURN_PORT), '--relay-ip', r, '--user', `${TURN_USER}:${TURN_PASSWORD}`, '--drain-timeout', '0',
    ]);
    procs.push(relay);
    let signal: LabProcess | undefined;
    if (opts.signal !== false) {
      signal = lab.spawn(lab.server.ns, node, [bin('signalserver'), '--listen', a, '--port', String(SIGNAL_PORT)]);
      procs.push(signal);
    }
    await Promise.all([
      started(stun, /listening on .*\(RFC 5780 full mode\)/, 'stunserver'),
      started(relay, /relayserver \S+ listening on udp/, 'relayserver'),
      ...(signal ? [started(signal, /signalserver \S+ listening on tcp/, 'signalserver')] : []),
    ]);
    return {
      stun,
      relay,
      signal,
      stunUrl: `stun:${a}:${STUN_PORT}`,
      turnUrl: `turn:${r}:${TURN_PORT}`,
      signal_: `${a}:${SIGNAL_PORT}`,
      stop: stopAll,
    };
  } catch (err) {
    await stopAll();
    throw err;
  }
}

// ---------------------------------------------------------------------------------------
// The peers

export interface DemoCandidate {
  type: CandidateType;
  address?: string;
  port?: number;
}

export interface DemoPath {
  local: DemoCandidate;
  remote: DemoCandidate;
  kind: 'direct' | 'relayed';
}

export type DemoEvent =
  | { event: 'nat'; classic?: string; mapping?: string; filtering?: string }
  | { event: 'connected'; path: DemoPath; rttMs?: number; iceMs?: number }
  | { event: 'path'; path: DemoPath; rttMs?: number }
  | { event: 'data'; received?: number }
  | { event: 'disconnected'; reason?: string }
  | { event: 'restart' }
  | { event: 'recovered'; path: DemoPath; recoveryMs?: number; outageMs?: number; rttMs?: number }
  | { event: 'other'; raw: Record<string, unknown> };

/** One event and when the harness read it (ms on performance.now()). */
export interface Seen {
  at: number;
  e: DemoEvent;
}

const CANDIDATE_TYPES = new Set(['host', 'srflx', 'prflx', 'relay']);

function candidate(v: unknown): DemoCandidate | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const c = v as Record<string, unknown>;
  if (typeof c.type !== 'string' || !CANDIDATE_TYPES.has(c.type)) return undefined;
  return { type: c.type as CandidateType, ...(typeof c.address === 'string' ? { address: c.address } : {}), ...(typeof c.port === 'number' ? { port: c.port } : {}) };
}

function path(v: unknown): DemoPath | undefined {
  if (typeof v !== 'object' || v === null) return undefined;
  const p = v as Record<string, unknown>;
  const local = candidate(p.local);
  const remote = candidate(p.remote);
  if (!local || !remote) return undefined;
  // the demo says which; if it does not, a relayed candidate on either end makes it relayed
  const kind = p.kind === 'direct' || p.kind === 'relayed' ? p.kind : local.type === 'relay' || remote.type === 'relay' ? 'relayed' : 'direct';
  return { local, remote, kind };
}

/**
 * One line of p2pdemo --json; undefined for a line that is not JSON (the demo's text output
 * or a stray log line), an error for JSON that breaks the contract (a 'connected' without a
 * path, ...): the test reports those rather than guess.
 */
export function parseDemoLine(line: string): DemoEvent | Error | undefined {
  const t = line.trim();
  if (!t.startsWith('{')) return undefined;
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(t) as Record<string, unknown>;
  } catch {
    return new Error(`not JSON: ${t}`);
  }
  const event = o.event ?? o.type;
  const num = (k: string) => (typeof o[k] === 'number' ? (o[k] as number) : undefined);
  switch (event) {
    case 'nat':
      return { event, classic: o.classic as string | undefined, mapping: o.mapping as string | undefined, filtering: o.filtering as string | undefined };
    case 'connected':
    case 'path':
    case 'recovered': {
      const p = path(o.path);
      if (!p) return new Error(`'${event}' without a path {local:{type}, remote:{type}}: ${t}`);
      if (event === 'connected') return { event, path: p, rttMs: num('rttMs'), ...(num('iceMs') !== undefined ? { iceMs: num('iceMs') } : {}) };
      if (event === 'path') return { event, path: p, rttMs: num('rttMs') };
      return { event, path: p, recoveryMs: num('recoveryMs'), ...(num('outageMs') !== undefined ? { outageMs: num('outageMs') } : {}), rttMs: num('rttMs') };
    }
    case 'data':
      return { event, received: num('received') };
    case 'disconnected':
      return { event, reason: o.reason as string | undefined };
    case 'restart':
      return { event };
    default:
      return { event: 'other', raw: o };
  }
}

/** A p2pdemo process in a peer's namespace, with its events as they come. */
export class DemoPeer {
  readonly events: Seen[] = [];
  readonly broken: string[] = [];
  private buf = '';
  private readonly watchers = new Set<() => void>();
  /** Set before the watchers hear of the exit, so that a waiting next() rejects at once. */
  private exited = false;

  constructor(
    readonly proc: LabProcess,
    readonly startedAt: number,
  ) {
    proc.child.stdout?.on('data', (d: string | Buffer) => {
      this.buf += d.toString();
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        const e = parseDemoLine(line);
        if (e instanceof Error) this.broken.push(e.message);
        else if (e) this.events.push({ at: performance.now(), e });
      }
      for (const w of this.watchers) w();
    });
    void proc.exited.then(() => {
      this.exited = true;
      for (const w of this.watchers) w();
    });
  }

  /** The first event (at index >= `from`) that `match` accepts; rejects on exit or after timeoutMs. */
  next<E extends DemoEvent>(match: (e: DemoEvent) => e is E, opts: { from?: number; timeoutMs: number }): Promise<{ seen: Seen & { e: E }; index: number }> {
    return new Promise((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const check = () => {
        const index = this.events.findIndex((s, k) => k >= (opts.from ?? 0) && match(s.e));
        if (index >= 0) return done(() => resolve({ seen: this.events[index] as Seen & { e: E }, index }));
        if (this.exited) done(() => reject(new Error(`p2pdemo exited before the event; ${this.tail()}`)));
      };
      const done = (f: () => void) => {
        this.watchers.delete(check);
        clearTimeout(timer);
        f();
      };
      timer = setTimeout(() => done(() => reject(new Error(`no such event within ${opts.timeoutMs} ms; ${this.tail()}`))), opts.timeoutMs);
      this.watchers.add(check);
      check();
    });
  }

  /** The last of the output, for failure messages. */
  tail(): string {
    const out = this.proc.stdout().split('\n').slice(-15).join('\n');
    const err = this.proc.stderr().split('\n').slice(-15).join('\n');
    return `stdout (end):\n${out}\nstderr (end):\n${err}`;
  }
}

export const isConnected = (e: DemoEvent): e is Extract<DemoEvent, { event: 'connected' }> => e.event === 'connected';
export const isRecovered = (e: DemoEvent): e is Extract<DemoEvent, { event: 'recovered' }> => e.event === 'recovered';
export const isData = (e: DemoEvent): e is Extract<DemoEvent, { event: 'data' }> => e.event === 'data';
export const isBreak = (e: DemoEvent): e is Extract<DemoEvent, { event: 'disconnected' | 'restart' }> => e.event === 'disconnected' || e.event === 'restart';

export interface DemoOptions {
  /** Seconds between the random bytes each peer sends (issue 8: 1-15 s by default). */
  intervalSec?: number;
}

/**
 * p2pdemo's command line for one peer: the ONE place to adapt when the demo's flags are
 * final. Servers as icegather takes them (RFC 7064/7065 URLs, --user/--credential), the
 * signalling server and a room of the cell's own.
 */
export function demoArgs(servers: LabServers, room: string, o: DemoOptions = {}): string[] {
  // (every flag as p2pdemo --help has it; nothing else is needed in the lab: the peers gather
  // on their namespace's one address, and the NAT check asks the first --stun server)
  return [
    '--json',
    '--signal', servers.signal_,
    '--room', room,
    '--stun', servers.stunUrl,
    '--turn', servers.turnUrl,
    '--user', TURN_USER,
    '--credential', TURN_PASSWORD,
    '--interval', String(o.intervalSec ?? 1),
  ];
}

// ---------------------------------------------------------------------------------------
// One cell

export type Scenario =
  /** connect, exchange bytes, stop */
  | 'connect'
  /** connect, then no application data for idleSec; still connected (keepalives hold the mappings) */
  | 'idle'
  /** connect, then A's NAT forgets every mapping (conntrack -F and the lab's tables) */
  | 'flush'
  /** connect, then A's NAT gets a new public address */
  | 'renumber';

export interface CellOptions {
  a: CellNat;
  b: CellNat;
  scenario?: Scenario;
  /** Loss on both NATs' WAN sides, percent each way. */
  loss?: number;
  /** Both NATs' UDP mapping lifetime, seconds. */
  mappingTimeoutSec?: number;
  /** 'idle': how long no application data flows (default 120 s). */
  idleSec?: number;
  /**
   * 'flush': how long to watch for a break before deciding the path was kept (the NAT gave the
   * same mappings back), seconds. Longer than p2pdemo takes to notice one (12.5 s). Default 25.
   */
  keepWindowSec?: number;
  connectTimeoutMs?: number;
  recoveryTimeoutMs?: number;
}

export interface PeerOutcome {
  /** From starting the demo to its 'connected' line, as the harness read it. */
  connectMs?: number;
  path?: DemoPath;
  rttMs?: number;
  /** The NAT the demo says it is behind (its 'nat' event). */
  nat?: string;
  /** Later selected pairs of the same session ('path' events), in order: the last one is what the peer settled on. */
  pathChanges?: DemoPath[];
  /** After a break: from the break (the harness's flush or renumber) to the 'recovered' line. */
  recoveryMs?: number;
  /** The demo's own figure for it (its 'recovered' event): since it noticed the break. */
  reportedRecoveryMs?: number;
  /** The demo's figure for the whole outage, when it noticed by consent (silence + recovery). */
  reportedOutageMs?: number;
  /** The demo's own connect time (its 'connected' event): ICE alone, from its session's start (or the peer's parameters). */
  iceMs?: number;
  recoveredPath?: DemoPath;
  /** Events the demo printed, in order (names only). */
  events: string[];
  /** Lines that broke the contract. */
  broken: string[];
}

export interface CellResult {
  a: string;
  b: string;
  scenario: Scenario;
  loss: number;
  mappingTimeoutSec: number | undefined;
  /** Scenario 'idle': seconds without application data. */
  idleSec?: number;
  predicted: CellPrediction;
  /** Both peers printed 'connected'. */
  connected: boolean;
  /**
   * The path both peers settled on (the last selected pair of their first session); 'disagree'
   * if one says direct and the other relayed. Each peer's first selected pair is in peers[i].path.
   */
  path: 'direct' | 'relayed' | 'disagree' | undefined;
  peers: [PeerOutcome, PeerOutcome];
  /** Scenario 'idle': no break during the idle time and bytes arriving both ways after it. */
  heldIdle?: boolean;
  /** Scenario 'idle': 'data' events during the idle time (0, or the demo was not idle). */
  idleData?: number;
  /** Scenarios 'flush' and 'renumber': both peers recovered. */
  recovered?: boolean;
  /**
   * Scenarios 'flush' and 'renumber': whether the change must break the path. A renumbered NAT
   * always does; a flushed one only if it hands out other ports than before (random or
   * sequential port allocation): one that preserves ports gives the same mappings back at the
   * next packet out, and consent checks (every 4-6 s) send one long before the path counts as
   * broken.
   */
  expectBreak?: boolean;
  /** 'flush' and 'renumber': 'recovered' (a break, noticed and repaired) or 'kept' (no break; bytes kept flowing). */
  outcome?: 'recovered' | 'kept';
  /** 'flush' and 'renumber': break events ('disconnected', 'restart') the peers printed after the change, to the end. */
  breaks?: number;
  durationMs: number;
  /** What went wrong (a timeout, a crash), with the peers' output. */
  error?: string;
}

export const natName = (n: CellNat) => (typeof n === 'string' ? n : `${n.mapping}/${n.filtering}`);

/** Runs one cell; never throws: a failure is in `error` (with the peers' output). */
export async function runCell(demo: string, o: CellOptions): Promise<CellResult> {
  const t0 = performance.now();
  const scenario = o.scenario ?? 'connect';
  const result: CellResult = {
    a: natName(o.a),
    b: natName(o.b),
    scenario,
    loss: o.loss ?? 0,
    mappingTimeoutSec: o.mappingTimeoutSec,
    ...(scenario === 'idle' ? { idleSec: o.idleSec ?? 120 } : {}),
    ...(scenario === 'flush' || scenario === 'renumber' ? { expectBreak: scenario === 'renumber' || natBehaviour(o.a).portAllocation !== 'preserve' } : {}),
    predicted: predictCell(o.a, o.b),
    connected: false,
    path: undefined,
    peers: [
      { events: [], broken: [] },
      { events: [], broken: [] },
    ],
    durationMs: 0,
  };
  let lab: PeerLab | undefined;
  let servers: LabServers | undefined;
  const peers: DemoPeer[] = [];
  let breaksFrom: number[] | undefined;
  try {
    lab = await createPeerLab(o.a, o.b, { loss: o.loss, mappingTimeoutSec: o.mappingTimeoutSec });
    servers = await startLabServers(lab);
    const room = `natlab-${lab.id}`;
    const interval = scenario === 'idle' ? (o.idleSec ?? 120) + 10 : 1;
    for (const p of lab.peers) {
      const started = performance.now();
      const proc = lab.spawn(p.ns, process.execPath, [demo, ...demoArgs(servers, room, { intervalSec: interval })], { cwd: ROOT });
      peers.push(new DemoPeer(proc, started));
    }
    const connectTimeoutMs = o.connectTimeoutMs ?? 60_000;
    const connected = await Promise.all(peers.map((p) => p.next(isConnected, { timeoutMs: connectTimeoutMs })));
    result.connected = true;
    connected.forEach(({ seen }, i) => {
      const out = result.peers[i]!;
      out.connectMs = Math.round(seen.at - peers[i]!.startedAt);
      out.path = seen.e.path;
      out.rttMs = seen.e.rttMs;
      if (seen.e.iceMs !== undefined) out.iceMs = seen.e.iceMs;
    });
    const kinds = connected.map(({ seen }) => seen.e.path.kind);
    result.path = kinds[0] === kinds[1] ? kinds[0] : 'disagree';

    if (scenario === 'connect') {
      // bytes both ways over the path found
      await Promise.all(peers.map((p, i) => p.next(isData, { from: connected[i]!.index, timeoutMs: 30_000 })));
    } else if (scenario === 'idle') {
      const idleMs = (o.idleSec ?? 120) * 1000;
      const from = peers.map((p) => p.events.length);
      await new Promise((r) => setTimeout(r, idleMs));
      const during = peers.map((p, i) => p.events.slice(from[i]));
      result.idleData = during.reduce((n, evs) => n + evs.filter((s) => isData(s.e)).length, 0);
      // the first byte after the idle time arrives, and nothing broke before it
      const after = peers.map((p) => p.events.length);
      await Promise.all(peers.map((p, i) => p.next(isData, { from: after[i], timeoutMs: 60_000 })));
      result.heldIdle = peers.every((p, i) => !p.events.slice(from[i]).some((s) => isBreak(s.e)));
    } else {
      await Promise.all(peers.map((p, i) => p.next(isData, { from: connected[i]!.index, timeoutMs: 30_000 })));
      const from = peers.map((p) => p.events.length);
      const broke = performance.now();
      if (scenario === 'flush') await lab.flushMappings(0);
      else await lab.changePublicAddress(0);
      breaksFrom = from;
      // A break shows within seconds (p2pdemo: 12.5 s without consent answers). Without one
      // in the window, and with bytes arriving both ways after the change, the path was kept.
      const windowMs = (o.keepWindowSec ?? 25) * 1000;
      const anyBreak = () => peers.some((p, i) => p.events.slice(from[i]).some((x) => isBreak(x.e)));
      // (waits the window out unless both recover sooner; next() clears its own timer)
      await Promise.all(peers.map((p, i) => p.next(isRecovered, { from: from[i], timeoutMs: windowMs }).catch(() => undefined)));
      const dataAfter = peers.every((p, i) => p.events.slice(from[i]).some((x) => isData(x.e)));
      if (!anyBreak() && dataAfter) {
        result.outcome = 'kept';
      } else {
        const recoveryTimeoutMs = o.recoveryTimeoutMs ?? 120_000;
        const rec = await Promise.all(peers.map((p, i) => p.next(isRecovered, { from: from[i], timeoutMs: Math.max(1, recoveryTimeoutMs - (performance.now() - broke)) })));
        rec.forEach(({ seen }, i) => {
          const out = result.peers[i]!;
          out.recoveryMs = Math.round(seen.at - broke);
          out.reportedRecoveryMs = seen.e.recoveryMs;
          if (seen.e.outageMs !== undefined) out.reportedOutageMs = seen.e.outageMs;
          out.recoveredPath = seen.e.path;
        });
        // and bytes flow again
        await Promise.all(peers.map((p, i) => p.next(isData, { from: rec[i]!.index, timeoutMs: 30_000 })));
        result.recovered = true;
        result.outcome = 'recovered';
      }
    }
  } catch (err) {
    result.error = `${(err as Error).message}${peers.map((p, i) => `\n--- peer ${i === 0 ? 'A' : 'B'} (${i === 0 ? result.a : result.b})\n${p.tail()}`).join('')}`;
    if (lab) result.error += `\n--- lab\n${await lab.describe().catch((e: Error) => e.message)}`;
  } finally {
    peers.forEach((p, i) => {
      const nat = p.events.find((s) => s.e.event === 'nat')?.e;
      const out = result.peers[i]!;
      if (nat?.event === 'nat') out.nat = nat.classic;
      // 'path' events of the first session (before any break): where the pair settled
      const firstBreak = p.events.findIndex((x) => isBreak(x.e));
      const changes = p.events.slice(0, firstBreak < 0 ? undefined : firstBreak).flatMap((x) => (x.e.event === 'path' ? [x.e.path] : []));
      if (changes.length) out.pathChanges = changes;
      out.events = p.events.map((s) => (s.e.event === 'other' ? String(s.e.raw.event ?? s.e.raw.type ?? '?') : s.e.event));
      out.broken = p.broken;
    });
    // The path is the one the pair settled on: the first selected pair, or the last it moved to.
    if (result.connected) {
      const kinds = result.peers.map((p) => (p.pathChanges?.at(-1) ?? p.path)?.kind);
      result.path = kinds[0] === kinds[1] ? kinds[0] : 'disagree';
    }
    if (breaksFrom) result.breaks = peers.reduce((n, p, i) => n + p.events.slice(breaksFrom![i]).filter((x) => isBreak(x.e)).length, 0);
    await Promise.all(peers.map((p) => p.proc.stop()));
    await servers?.stop();
    await lab?.destroy();
    result.durationMs = Math.round(performance.now() - t0);
  }
  return result;
}

/** Runs `cells`, at most `concurrency` at once (each in its own lab), in order of the list. */
export async function runCells(demo: string, cells: CellOptions[], concurrency: number): Promise<CellResult[]> {
  const results: CellResult[] = new Array(cells.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(concurrency, cells.length) }, async () => {
      while (next < cells.length) {
        const i = next++;
        results[i] = await runCell(demo, cells[i]!);
      }
    }),
  );
  return results;
}

/** The file p2p-table.mjs reads: the results and how they were made. */
export interface ResultsFile {
  made: string;
  node: string;
  command: string;
  concurrency: number;
  wallMs: number;
  cells: CellResult[];
}

export function writeResults(file: string, r: ResultsFile): void {
  // failures carry whole lab descriptions: the file keeps their first lines
  const cells = r.cells.map((c) => (c.error ? { ...c, error: c.error.split('\n').slice(0, 40).join('\n') } : c));
  writeFileSync(file, `${JSON.stringify({ ...r, cells }, null, 2)}\n`);
}

/** For a failure message: what was predicted and what happened. */
export function describeCell(c: CellResult): string {
  // (the random bytes are left out of the event list: hundreds of them say nothing)
  const peer = (p: PeerOutcome, name: string) =>
    `${name}: ${p.path ? `${p.path.kind} ${p.path.local.type}->${p.path.remote.type}` : 'no path'}${p.connectMs !== undefined ? ` in ${p.connectMs} ms` : ''}` +
    `${p.pathChanges ? `, then ${p.pathChanges.map((x) => `${x.kind} ${x.local.type}->${x.remote.type}`).join(', then ')}` : ''}` +
    `${p.recoveryMs !== undefined ? `, recovered in ${p.recoveryMs} ms` : ''}; events ${p.events.filter((e) => e !== 'sent' && e !== 'data').join(',') || '-'}` +
    ` (${p.events.filter((e) => e === 'data').length} data)${p.broken.length ? `; bad lines: ${p.broken.join(' | ')}` : ''}`;
  return (
    `${c.a} x ${c.b} (${c.scenario}${c.loss ? `, ${c.loss} % loss` : ''}${c.outcome ? `: ${c.outcome}` : ''}): predicted ${c.predicted.path} (${c.predicted.why})\n` +
    `${peer(c.peers[0], 'A')}\n${peer(c.peers[1], 'B')}${c.error ? `\n${c.error}` : ''}`
  );
}

/** The NAT behaviour a cell's side stands for (for reports). */
export function behaviourOf(n: CellNat): string {
  const b = natBehaviour(n);
  return `${b.mapping}/${b.filtering}`;
}
