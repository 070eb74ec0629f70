// Pairing two peers: each one's ufrag/pwd, candidate lines and end-of-candidates go to
// the other as they come (trickle, RFC 8838), then both must select a pair and reach
// connected/completed, and the pairs must agree (what one calls local the other calls
// remote). Data exchange: each side sends distinct datagrams and must receive all of the
// other's.
import { expect } from 'vitest';
import { type IcePeer, type PeerCandidate, localCandidates, localParams, reachState, received, selectedPair } from './peer.js';

export interface Selected {
  local: PeerCandidate;
  remote: PeerCandidate;
}

/** Forwards a's signalling to b (and nothing else); returns the unsubscribe. */
export function forward(a: IcePeer, b: IcePeer, opts: { filter?: (line: string) => boolean } = {}): () => void {
  return a.subscribe((e) => {
    if (e.ev === 'local-params') b.setRemoteParameters({ ufrag: e.ufrag, pwd: e.pwd });
    else if (e.ev === 'candidate' && (opts.filter?.(e.line) ?? true)) b.addRemoteCandidate(e.line);
    else if (e.ev === 'end-of-candidates') b.endOfRemoteCandidates();
  });
}

export const describePair = (p: Selected) => `${p.local.type} ${p.local.address}:${p.local.port} -> ${p.remote.type} ${p.remote.address}:${p.remote.port}`;

export interface Connected {
  a: Selected;
  b: Selected;
  /** ms from the start of signalling until both had a selected pair */
  ms: number;
}

/**
 * Signals between a and b and waits until both have selected a pair and are connected
 * (or completed). `aState` overrides the states accepted from a (Chromium: 'connected'
 * only, it reports no selected pair event of its own).
 */
export async function connect(a: IcePeer, b: IcePeer, opts: { ms?: number; filter?: (line: string) => boolean } = {}): Promise<Connected> {
  const ms = opts.ms ?? 30_000;
  const t0 = performance.now();
  const stop = [forward(a, b, opts), forward(b, a, opts)];
  try {
    return await bothConnected(a, b, ms, t0);
  } finally {
    // later candidates (none expected) are not forwarded once connected
    for (const s of stop) s();
  }
}

async function bothConnected(a: IcePeer, b: IcePeer, ms: number, t0: number): Promise<Connected> {
  const [pa, pb] = await Promise.all([selectedPair(a, ms), selectedPair(b, ms), reachState(a, ['connected', 'completed'], ms), reachState(b, ['connected', 'completed'], ms)]);
  return { a: pa, b: pb, ms: performance.now() - t0 };
}

/**
 * Like connect(), but `x` learns `y` only from y's checks, after y's end-of-candidates:
 * x gets y's ufrag/pwd and end-of-candidates and none of y's candidates, and has taken
 * them (IcePeer.sync) before y gets anything of x's, so y's first check reaches x after
 * x knew that no candidate would come. x must learn y as peer-reflexive (RFC 8445 7.3.1.3)
 * and connect. This is the order that Chromium's unsignalled candidates produce by chance
 * (README.md), made certain.
 */
export async function connectLearningFromChecks(x: IcePeer, y: IcePeer, opts: { ms?: number } = {}): Promise<Connected> {
  const ms = opts.ms ?? 30_000;
  const t0 = performance.now();
  x.setRemoteParameters(await localParams(y, ms));
  x.endOfRemoteCandidates();
  await x.sync();
  const stop = forward(x, y);
  try {
    return await bothConnected(x, y, ms, t0);
  } finally {
    stop();
  }
}

/** The two sides' pairs are the same 5-tuple seen from each end. */
export function expectSamePair(c: Connected, info: () => string): void {
  const key = (x: PeerCandidate) => `${x.address}:${x.port}`;
  expect(key(c.a.local), `a's local is b's remote\n${info()}`).toBe(key(c.b.remote));
  expect(key(c.a.remote), `a's remote is b's local\n${info()}`).toBe(key(c.b.local));
}

/** The port of an RFC 8839 candidate line. */
export const portOf = (line: string) => Number(line.replace(/^a=/, '').split(' ')[5]);

/**
 * Both agents on loopback: the pair is the same on both sides, each side's local
 * candidate is a host candidate it announced, and its remote is the other's (host when
 * the candidate line came before the first check, prflx when a check won the race).
 */
export function expectLoopbackPair(c: Connected, a: IcePeer, b: IcePeer, info: () => string, loopback = '127.0.0.1'): void {
  expectSamePair(c, info);
  for (const [p, s] of [
    [a, c.a],
    [b, c.b],
  ] as const) {
    expect(s.local.address, info()).toBe(loopback);
    expect(s.remote.address, info()).toBe(loopback);
    expect(s.local.type, info()).toBe('host');
    expect(localCandidates(p).map(portOf), info()).toContain(s.local.port);
    expect(['host', 'prflx'], info()).toContain(s.remote.type);
  }
}

export const payload = (from: string, i: number) => Buffer.from(`${from} ${i} ${'z'.repeat(i * 13)}`);

/** Waits until `peer` has received at least `n` datagrams. */
export async function receivedCount(peer: IcePeer, n: number, ms = 20_000): Promise<Buffer[]> {
  const deadline = Date.now() + ms;
  // event-driven: resolve on the data event that makes the count
  await new Promise<void>((resolve, reject) => {
    let unsub: () => void = () => {};
    let done = false;
    const timer = setTimeout(() => finish(new Error(`${peer.kind} (${peer.role}) received ${received(peer).length} of ${n} datagrams within ${ms} ms\n${peer.diagnostics()}`)), Math.max(0, deadline - Date.now()));
    const finish = (err?: Error) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      queueMicrotask(() => unsub());
      if (err) reject(err);
      else resolve();
    };
    unsub = peer.subscribe((e) => {
      if (e.ev === 'data' && received(peer).length >= n) finish();
      else if (e.ev === 'closed') finish(new Error(`${peer.kind} closed after ${received(peer).length} of ${n} datagrams\n${peer.diagnostics()}`));
    });
    if (received(peer).length >= n) finish();
    if (done) unsub();
  });
  return received(peer);
}

/**
 * Each side sends `n` distinct datagrams; each must receive exactly the other's (as a
 * set: UDP keeps no order, though loopback does).
 */
export async function exchange(a: IcePeer, b: IcePeer, n: number, info: () => string): Promise<void> {
  const fromA = Array.from({ length: n }, (_, i) => payload(`${a.kind}->${b.kind}`, i));
  const fromB = Array.from({ length: n }, (_, i) => payload(`${b.kind}->${a.kind}`, i));
  for (const d of fromA) a.send(d);
  for (const d of fromB) b.send(d);
  const [atB, atA] = await Promise.all([receivedCount(b, n), receivedCount(a, n)]);
  const hex = (xs: Buffer[]) => xs.map((x) => x.toString('hex')).sort();
  expect(hex(atB), `what ${b.kind} received\n${info()}`).toEqual(hex(fromA));
  expect(hex(atA), `what ${a.kind} received\n${info()}`).toEqual(hex(fromB));
}
