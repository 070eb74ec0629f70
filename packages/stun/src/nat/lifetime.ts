import { type TransportAddress, formatAddress } from '../codec/ip.js';
import { NatkitError } from '../errors.js';
import { type Clock, realClock } from '../net/clock.js';

/**
 * Binding lifetime discovery, RFC 5780 section 4.6: how long a NAT keeps a UDP mapping
 * ("binding") that carries no traffic.
 *
 * One trial: the client sends a Binding request from a source port X, which makes (or
 * refreshes) a mapping whose public address is (Pa, Pp); it leaves X idle for T; then it sends
 * a Binding request from a second port Y with RESPONSE-PORT = Pp (RFC 5780 section 7.5), so
 * that the server answers to (Pa, Pp). If the answer arrives on X, the mapping outlived T; if
 * it arrives on Y (the NAT gave the expired mapping's port to Y's new one) or not at all, the
 * mapping had expired. The answer comes from the very server address X addressed, so the
 * NAT's filtering lets it in whenever the mapping exists: only the mapping is measured.
 *
 * The search over T (`LifetimeSearch`, pure: no sockets, no clock) narrows an interval
 * (longest idle time seen alive, shortest seen dead]. RFC 5780 suggests a binary search, one
 * trial at a time, each one re-sending from X first "because some NATs only refresh bindings
 * when outbound traffic is sent". Each trial costs its T of waiting, so this search runs
 * `parallel` trials per round (default 4), each from its own port X, at idle times that cut the
 * interval into equal parts: a round costs about as long as one trial and narrows the interval
 * `parallel + 1` times. Trials longer than one found dead are dropped (a mapping that expired
 * after T has expired after any longer idle time). `parallel: 1` is the RFC's binary search.
 * Requests are paced (RFC 5780 section 5: at most ten new transactions a second).
 *
 * `discoverBindingLifetime` runs the search over a `LifetimeProber` (sockets: the
 * `UdpLifetimeProber`, or a simulated NAT in tests) on an injected clock, so tests move time
 * instead of waiting for it.
 *
 * Like every RFC 5780 test this one is fragile (section 4.6: a loaded NAT may shorten
 * lifetimes, a rebooted one forget mappings). An answer on X is proof the mapping lived; a
 * missing one could also be loss, which the prober's retransmissions make unlikely (every
 * request and every answer of the transaction lost). When it happens the estimate comes out
 * too short: the safe side for a keepalive interval.
 */

export interface LifetimeSearchOptions {
  /** Shortest idle time worth testing, ms (default 2000). */
  minMs?: number;
  /** Longest, ms (default 300000). A mapping alive near it is reported as "at least". */
  maxMs?: number;
  /**
   * Stop when the interval (alive, dead] is at most max(resolutionMs, relativeResolution x
   * alive) wide (defaults 1000 ms and 0.05).
   */
  resolutionMs?: number;
  relativeResolution?: number;
  /** Trials per round, each from its own port (default 4; 1: one at a time, as RFC 5780 describes). */
  parallel?: number;
}

export interface LifetimeTrial {
  /** How long the port was idle when the probe from Y was sent, ms (measured, not planned). */
  idleMs: number;
  alive: boolean;
  round: number;
}

export interface LifetimeEstimate {
  /** The longest idle time after which a mapping was seen alive, ms (0: none was). */
  aliveMs: number;
  /** The shortest idle time after which one was seen expired, ms; undefined if none expired. */
  deadMs: number | undefined;
  /** The search's bounds. */
  minMs: number;
  maxMs: number;
  /** Every trial, in the order they finished. */
  trials: LifetimeTrial[];
  rounds: number;
}

export class LifetimeError extends NatkitError {
  declare readonly code: 'BAD_OPTIONS' | 'NO_ANSWER' | 'RESPONSE_PORT_UNSUPPORTED' | 'ABORTED';
  constructor(code: LifetimeError['code'], message: string) {
    super(code, message);
    this.name = 'LifetimeError';
  }
}

/** The search over idle times, pure: plan a round, record its trials, until done. */
export class LifetimeSearch {
  readonly minMs: number;
  readonly maxMs: number;
  readonly resolutionMs: number;
  readonly relativeResolution: number;
  readonly parallel: number;
  readonly trials: LifetimeTrial[] = [];
  private round = 0;

  constructor(options: LifetimeSearchOptions = {}) {
    this.minMs = options.minMs ?? 2000;
    this.maxMs = options.maxMs ?? 300_000;
    this.resolutionMs = options.resolutionMs ?? 1000;
    this.relativeResolution = options.relativeResolution ?? 0.05;
    this.parallel = options.parallel ?? 4;
    const bad = (what: string) => {
      throw new LifetimeError('BAD_OPTIONS', what);
    };
    if (!(this.minMs > 0)) bad(`minMs must be positive, not ${this.minMs}`);
    if (!(this.maxMs > this.minMs)) bad(`maxMs (${this.maxMs}) must be greater than minMs (${this.minMs})`);
    if (!(this.resolutionMs > 0)) bad(`resolutionMs must be positive, not ${this.resolutionMs}`);
    if (!(this.relativeResolution >= 0 && this.relativeResolution < 1)) bad(`relativeResolution must be in [0, 1), not ${this.relativeResolution}`);
    if (!(Number.isInteger(this.parallel) && this.parallel >= 1 && this.parallel <= 16)) bad(`parallel must be a whole number from 1 to 16, not ${this.parallel}`);
  }

  /** The longest idle time seen alive (0 if none). */
  get aliveMs(): number {
    let a = 0;
    for (const t of this.trials) if (t.alive && t.idleMs > a) a = t.idleMs;
    return a;
  }

  /** The shortest idle time seen dead that is longer than every one seen alive. */
  get deadMs(): number | undefined {
    const alive = this.aliveMs;
    let d: number | undefined;
    for (const t of this.trials) if (!t.alive && t.idleMs > alive && (d === undefined || t.idleMs < d)) d = t.idleMs;
    return d;
  }

  get done(): boolean {
    const alive = this.aliveMs;
    const dead = this.deadMs;
    if (dead !== undefined && dead <= this.minMs) return true; // shorter than anything worth testing
    const hi = dead ?? this.maxMs;
    return hi - alive <= Math.max(this.resolutionMs, this.relativeResolution * alive);
  }

  /**
   * The idle times (ms, ascending) to test in the next round: `parallel` points cutting
   * (alive, dead or maxMs) into equal parts; until a mapping has been seen alive at minMs or
   * longer, minMs itself and `parallel - 1` points cutting [minMs, dead or maxMs). Empty
   * when done.
   */
  plan(): number[] {
    if (this.done) return [];
    const alive = this.aliveMs;
    const hi = this.deadMs ?? this.maxMs;
    const k = this.parallel;
    const points = new Set<number>();
    if (alive < this.minMs) {
      for (let i = 0; i < k; i++) points.add(Math.round(this.minMs + ((hi - this.minMs) * i) / k));
    } else {
      for (let i = 1; i <= k; i++) points.add(Math.round(alive + ((hi - alive) * i) / (k + 1)));
    }
    const out = [...points].filter((p) => p < hi && p > alive).sort((a, b) => a - b);
    if (out.length > 0) this.round++;
    return out;
  }

  /** Records a trial of the current round. */
  record(idleMs: number, alive: boolean): void {
    this.trials.push({ idleMs, alive, round: this.round });
  }

  estimate(): LifetimeEstimate {
    const alive = this.aliveMs;
    return {
      aliveMs: alive,
      deadMs: this.deadMs,
      minMs: this.minMs,
      maxMs: this.maxMs,
      trials: [...this.trials],
      rounds: this.round,
    };
  }
}

/** One source port X of the test. */
export interface LifetimePort {
  /** A Binding request from this port: its mapped address (Pa, Pp), undefined without an answer. */
  bind(): Promise<TransportAddress | undefined>;
  /**
   * A Binding request from the second port Y with RESPONSE-PORT = `mapped.port`: where the
   * answer arrived, 'x' on this port (the mapping lives), 'y' on Y (expired, and the NAT gave
   * its port to Y's mapping), 'none' (expired). Throws LifetimeError RESPONSE_PORT_UNSUPPORTED
   * when the server refuses RESPONSE-PORT (420) or ignores it.
   */
  probe(mapped: TransportAddress): Promise<'x' | 'y' | 'none'>;
  close(): Promise<void>;
}

export interface LifetimeProber {
  /** Opens a fresh source port X (never used before: RFC 5780 section 4.1). */
  open(): Promise<LifetimePort>;
}

export interface LifetimeOptions extends LifetimeSearchOptions {
  clock?: Clock;
  /** Time between two new transactions, ms (default 100: RFC 5780 section 5). */
  paceMs?: number;
  /** Called as the search goes: each round's plan, each trial's outcome. */
  onProgress?: (event: LifetimeProgress) => void;
  /**
   * Also find out whether inbound traffic refreshes a mapping (RFC 5780 section 4.6, last
   * paragraph): after the search, one port sends once and receives two answers from Y's
   * probes, the second later than the lifetime after X's request but within it after the
   * first answer. Costs about 1.25 lifetimes more. Default false.
   */
  refreshTest?: boolean;
  signal?: AbortSignal;
}

export type LifetimeProgress =
  | { kind: 'round'; round: number; idleMs: number[] }
  | { kind: 'trial'; round: number; idleMs: number; alive: boolean; answeredOn: 'x' | 'y' | 'none' }
  | { kind: 'refresh-test'; firstMs: number; secondMs: number };

export interface LifetimeReport extends LifetimeEstimate {
  server: TransportAddress;
  /** Wall time of the whole discovery, ms. */
  elapsedMs: number;
  /** Whether an inbound answer kept the mapping alive (undefined: not tested, or the test could not tell). */
  refreshedByInbound: boolean | undefined;
  /** Seconds between keepalives that keep such a mapping: half the longest idle time seen alive. */
  keepaliveSec: number;
}

/**
 * Waits `ms` on `clock`. Rejects (ABORTED) when `signal` aborts; resolves false at once when
 * `cancel` aborts (a trial no longer needed), true when the time has passed.
 */
const sleepOn = (clock: Clock, ms: number, signal: AbortSignal, cancel?: AbortSignal) =>
  new Promise<boolean>((resolve, reject) => {
    if (signal.aborted) return reject(new LifetimeError('ABORTED', 'the lifetime discovery was aborted'));
    if (cancel?.aborted) return resolve(false);
    const done = () => {
      clock.clearTimeout(h);
      signal.removeEventListener('abort', onAbort);
      cancel?.removeEventListener('abort', onCancel);
    };
    const onAbort = () => {
      done();
      reject(new LifetimeError('ABORTED', 'the lifetime discovery was aborted'));
    };
    const onCancel = () => {
      done();
      resolve(false);
    };
    const h = clock.setTimeout(() => {
      done();
      resolve(true);
    }, Math.max(0, ms));
    signal.addEventListener('abort', onAbort, { once: true });
    cancel?.addEventListener('abort', onCancel, { once: true });
  });

/**
 * RFC 5780 section 4.6 over `prober`: rounds of trials until the search is done. Every port
 * opened is closed before this returns.
 */
export async function discoverBindingLifetime(prober: LifetimeProber, server: TransportAddress, options: LifetimeOptions = {}): Promise<LifetimeReport> {
  const clock = options.clock ?? realClock;
  const pace = options.paceMs ?? 100;
  const search = new LifetimeSearch(options);
  const started = clock.now();
  const ports: LifetimePort[] = [];
  // One failed trial stops the others (they may be waiting out a long idle time).
  const inner = new AbortController();
  const signal = inner.signal;
  const onOuterAbort = () => inner.abort();
  if (options.signal?.aborted) inner.abort();
  options.signal?.addEventListener('abort', onOuterAbort, { once: true });
  let firstError: unknown;
  // The pacing of new transactions: each takes the next free slot `pace` ms after the last.
  let nextSlot = clock.now();
  const slot = async () => {
    const at = Math.max(clock.now(), nextSlot);
    nextSlot = at + pace;
    if (at > clock.now()) await sleepOn(clock, at - clock.now(), signal);
  };
  const portFor = async (i: number) => {
    while (ports.length <= i) ports.push(await prober.open());
    return ports[i]!;
  };
  const ready = async (n: number) => {
    for (let i = 0; i < n; i++) await portFor(i);
  };
  try {
    // One trial: bind from X, wait T idle, probe from Y. Returns undefined when cancelled
    // (a shorter trial of the round found the mapping dead before this one's probe).
    const trial = async (port: LifetimePort, idleMs: number, cancel?: AbortSignal) => {
      await slot();
      const mapped = await port.bind();
      if (!mapped) throw new LifetimeError('NO_ANSWER', `no answer from ${formatAddress(server)} to a Binding request: cannot measure anything`);
      // idle time counts from the answer: the last packet of the mapping's (RFC 5780 4.6)
      const boundAt = clock.now();
      if (!(await sleepOn(clock, idleMs, signal, cancel))) return undefined;
      await slot();
      if (cancel?.aborted) return undefined;
      const idle = Math.round(clock.now() - boundAt);
      const where = await port.probe(mapped);
      return { idle, where };
    };

    // Before the search: a probe right after a bind must arrive on X, or the server does not
    // do what RESPONSE-PORT asks (an answer on Y at once means it ignored the attribute).
    const first = await portFor(0);
    const check = await trial(first, 0);
    if (check && check.where !== 'x') {
      throw new LifetimeError(
        'RESPONSE_PORT_UNSUPPORTED',
        check.where === 'y'
          ? `${formatAddress(server)} ignores RESPONSE-PORT (RFC 5780 section 7.5): its answer went to the requesting port`
          : `no answer to a request with RESPONSE-PORT at once: ${formatAddress(server)} does not honour RFC 5780 section 7.5, or the path drops it`,
      );
    }

    for (let points = search.plan(); points.length > 0; points = search.plan()) {
      const round = search.estimate().rounds;
      options.onProgress?.({ kind: 'round', round, idleMs: points });
      await ready(points.length);
      // a trial that finds the mapping dead after t makes every longer one of the round moot
      const cancels = points.map(() => new AbortController());
      await Promise.allSettled(
        points.map(async (t, i) => {
          try {
            const r = await trial(ports[i]!, t, cancels[i]!.signal);
            if (!r) return;
            const alive = r.where === 'x';
            if (!alive) points.forEach((u, j) => u > t && cancels[j]!.abort());
            search.record(r.idle, alive);
            options.onProgress?.({ kind: 'trial', round, idleMs: r.idle, alive, answeredOn: r.where });
          } catch (err) {
            firstError ??= err;
            inner.abort();
          }
        }),
      );
      if (firstError) throw firstError;
    }

    const est = search.estimate();
    let refreshedByInbound: boolean | undefined;
    if (options.refreshTest && est.deadMs !== undefined && est.aliveMs > 0) {
      // Probe at t1 = alive/2 (alive for sure: its answer is inbound traffic on the mapping),
      // then at t2 halfway between `dead` (past the lifetime after X's request) and
      // t1 + alive (within it after t1's answer).
      const t1 = est.aliveMs / 2;
      const t2 = (est.deadMs + t1 + est.aliveMs) / 2;
      options.onProgress?.({ kind: 'refresh-test', firstMs: t1, secondMs: t2 });
      await slot();
      const mapped = await first.bind();
      if (!mapped) throw new LifetimeError('NO_ANSWER', `no answer from ${formatAddress(server)} to a Binding request`);
      const boundAt = clock.now();
      await sleepOn(clock, t1, signal);
      await slot();
      const a = await first.probe(mapped);
      if (a === 'x') {
        await sleepOn(clock, boundAt + t2 - clock.now(), signal);
        await slot();
        refreshedByInbound = (await first.probe(mapped)) === 'x';
      }
    }
    return {
      ...est,
      server,
      elapsedMs: Math.round(clock.now() - started),
      refreshedByInbound,
      keepaliveSec: keepaliveFor(est),
    };
  } finally {
    options.signal?.removeEventListener('abort', onOuterAbort);
    await Promise.all(ports.map((p) => p.close()));
  }
}

/** Half the longest idle time seen alive, whole seconds, at least 1. */
function keepaliveFor(e: LifetimeEstimate): number {
  const base = e.aliveMs > 0 ? e.aliveMs : (e.deadMs ?? e.minMs);
  return Math.max(1, Math.floor(base / 2000));
}

/** ICE's keepalive interval Tr (RFC 8445 section 11: 15 s by default, never less). */
export const ICE_KEEPALIVE_SEC = 15;

const sec = (ms: number) => `${(ms / 1000).toFixed(ms < 100_000 ? 1 : 0)} s`;

/** The lines natcheck --lifetime prints. */
export function formatLifetime(r: LifetimeReport): string {
  const lines: string[] = [];
  const how = `RFC 5780 4.6: ${r.trials.length} trials in ${r.rounds} rounds, ${Math.round(r.elapsedMs / 1000)} s`;
  if (r.deadMs === undefined) {
    lines.push(`binding lifetime     at least ${sec(r.aliveMs)} idle (the longest tested; ${how})`);
  } else if (r.aliveMs === 0) {
    lines.push(`binding lifetime     under ${sec(r.deadMs)} idle (shorter than the shortest tested; ${how})`);
  } else {
    lines.push(`binding lifetime     ${sec(r.aliveMs)} to ${sec(r.deadMs)} idle (${how})`);
  }
  if (r.refreshedByInbound !== undefined) lines.push(`inbound refresh      ${r.refreshedByInbound ? 'yes: traffic from the peer keeps a mapping too' : 'no: only outgoing traffic keeps a mapping'}`);
  lines.push(`keepalive advice     ${keepaliveAdvice(r)}`);
  return lines.join('\n');
}

/** What to do about it, in a sentence. */
export function keepaliveAdvice(r: LifetimeReport): string {
  const k = r.keepaliveSec;
  if (r.deadMs === undefined) {
    return `send something on each mapping at least every ${k} s; ICE's keepalives (every ${ICE_KEEPALIVE_SEC} s, RFC 8445 section 11) ${k >= ICE_KEEPALIVE_SEC ? 'are enough' : 'are too rare'}`;
  }
  if (k >= ICE_KEEPALIVE_SEC) return `send something on each mapping at least every ${k} s; ICE's keepalives (every ${ICE_KEEPALIVE_SEC} s, RFC 8445 section 11) are enough`;
  return (
    `send something on each mapping at least every ${k} s: shorter than ICE's keepalive interval ` +
    `(${ICE_KEEPALIVE_SEC} s, RFC 8445 section 11), so keepalives alone lose the mapping; consent checks ` +
    `(RFC 7675, every 4-6 s) or the application's own traffic must hold it`
  );
}
