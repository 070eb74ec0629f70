import * as dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { killAll, runBin, startBin } from '../../../test/helpers/spawn.js';
import {
  Attr,
  MessageBuilder,
  MessageClass,
  StunServer,
  UdpLifetimeProber,
  checkBindingLifetime,
  decodeMessage,
  type LifetimePort,
  type LifetimeProber,
  type LifetimeProgress,
  type LifetimeReport,
  type TransportAddress,
  LifetimeError,
  LifetimeSearch,
  ManualClock,
  discoverBindingLifetime,
  formatLifetime,
  keepaliveAdvice,
} from '../src/index.js';

/**
 * A NAT with a known mapping lifetime, on a manual clock, as the lifetime test sees it: each
 * local port gets a mapping when it sends; a mapping idle for `lifetimeMs` (since its last
 * outbound packet, and its last inbound one if `inboundRefresh`) is gone; an answer to a
 * public port is delivered to whichever live mapping holds it. The server answers a probe's
 * RESPONSE-PORT as RFC 5780 section 7.5 says (or ignores it, or refuses it with 420).
 */
interface SimOptions {
  lifetimeMs: number;
  inboundRefresh?: boolean;
  /** 'preserve': a mapping keeps the local port; 'lowest': the lowest free public port (so an expired mapping's port is handed out again). */
  allocation?: 'preserve' | 'lowest';
  responsePort?: 'honour' | 'ignore' | 'refuse';
  /** How long a probe waits before it gives up, ms (the client's retransmission schedule). */
  probeTimeoutMs?: number;
  /** Drops the answers to the probes whose numbers (1-based) are listed. */
  lose?: number[];
  /** The server never answers. */
  silent?: boolean;
}

const PUBLIC = '203.0.113.9';
const SERVER: TransportAddress = { family: 'IPv4', address: '198.51.100.1', port: 3478 };

class SimNat implements LifetimeProber {
  private readonly mappings = new Map<number, { port: number; last: number }>(); // local port -> mapping
  private nextLocal = 40000;
  readonly y: number;
  opened = 0;
  closed = 0;
  probes = 0;
  binds = 0;

  constructor(
    private readonly clock: ManualClock,
    private readonly o: SimOptions,
  ) {
    this.y = this.nextLocal++;
  }

  private live(local: number): { port: number; last: number } | undefined {
    const m = this.mappings.get(local);
    if (m && this.clock.now() - m.last < this.o.lifetimeMs) return m;
    this.mappings.delete(local);
    return undefined;
  }

  /** An outbound packet from `local`: refreshes its mapping or makes one. */
  private send(local: number): number {
    const m = this.live(local);
    if (m) {
      m.last = this.clock.now();
      return m.port;
    }
    for (const l of [...this.mappings.keys()]) this.live(l); // expire the others first
    const used = new Set([...this.mappings.values()].map((x) => x.port));
    let port = local;
    if (this.o.allocation === 'lowest') for (port = 50000; used.has(port); port++);
    this.mappings.set(local, { port, last: this.clock.now() });
    return port;
  }

  /** An inbound packet to public `port`: the local port it reaches, if a mapping holds it. */
  private deliver(port: number): number | undefined {
    for (const local of [...this.mappings.keys()]) {
      const m = this.live(local);
      if (m?.port === port) {
        if (this.o.inboundRefresh) m.last = this.clock.now();
        return local;
      }
    }
    return undefined;
  }

  private wait(ms: number): Promise<void> {
    return new Promise((r) => this.clock.setTimeout(r, ms));
  }

  async open(): Promise<LifetimePort> {
    const x = this.nextLocal++;
    this.opened++;
    return {
      bind: async () => {
        this.binds++;
        const port = this.send(x);
        if (this.o.silent) {
          await this.wait(this.o.probeTimeoutMs ?? 2750);
          return undefined;
        }
        return { family: 'IPv4', address: PUBLIC, port };
      },
      probe: async (mapped) => {
        const n = ++this.probes;
        const yPort = this.send(this.y);
        if (this.o.responsePort === 'refuse') throw new LifetimeError('RESPONSE_PORT_UNSUPPORTED', 'the server answered 420 (Unknown Attribute: RESPONSE-PORT)');
        const to = this.o.responsePort === 'ignore' ? yPort : mapped.port;
        const at = this.o.lose?.includes(n) ? undefined : this.deliver(to);
        if (at === x) return 'x';
        if (at === this.y) return 'y';
        await this.wait(this.o.probeTimeoutMs ?? 2750);
        return 'none';
      },
      close: async () => {
        this.closed++;
      },
    };
  }
}

/** Runs `p` to completion, moving the manual clock from timer to timer. */
async function onClock<T>(clock: ManualClock, p: Promise<T>): Promise<T> {
  let settled = false;
  const out = p.finally(() => (settled = true));
  out.catch(() => {});
  for (let i = 0; i < 100_000 && !settled; i++) {
    await new Promise((r) => setImmediate(r)); // every pending microtask runs
    if (settled) break;
    const at = clock.nextAt();
    if (at === undefined) throw new Error('stuck: nothing pending on the clock and the promise unsettled');
    clock.advance(at - clock.now());
  }
  return out;
}

async function measure(o: SimOptions, opts: Parameters<typeof discoverBindingLifetime>[2] = {}): Promise<{ r: LifetimeReport; sim: SimNat; clock: ManualClock; events: LifetimeProgress[] }> {
  const clock = new ManualClock(1000);
  const sim = new SimNat(clock, o);
  const events: LifetimeProgress[] = [];
  const r = await onClock(clock, discoverBindingLifetime(sim, SERVER, { clock, onProgress: (e) => events.push(e), ...opts }));
  return { r, sim, clock, events };
}

describe('LifetimeSearch (the plan, pure)', () => {
  it('tests minMs first, then cuts (alive, dead] into parallel + 1 equal parts, and stops at the resolution', () => {
    const s = new LifetimeSearch({ minMs: 2000, maxMs: 300_000, parallel: 4 });
    // minMs, and three points cutting [minMs, maxMs) into four
    expect(s.plan()).toEqual([2000, 76_500, 151_000, 225_500]);
    s.record(2000, true);
    s.record(76_500, false);
    expect([s.aliveMs, s.deadMs]).toEqual([2000, 76_500]);
    expect(s.plan()).toEqual([16_900, 31_800, 46_700, 61_600]);
    s.record(31_800, true);
    s.record(46_700, false);
    expect(s.plan()).toEqual([34_780, 37_760, 40_740, 43_720]);
    s.record(37_760, true);
    s.record(40_740, false);
    // 2.98 s wide: more than 5 % of 37.8 s, so one more round
    expect(s.done).toBe(false);
    expect(s.plan()).toEqual([38_356, 38_952, 39_548, 40_144]);
    s.record(38_952, true);
    s.record(39_548, false);
    expect(s.done).toBe(true);
    expect(s.plan()).toEqual([]);
    expect(s.estimate()).toMatchObject({ aliveMs: 38_952, deadMs: 39_548, rounds: 4 });
  });

  it('with parallel 1 is the RFC binary search', () => {
    const s = new LifetimeSearch({ minMs: 1000, maxMs: 64_000, resolutionMs: 1000, relativeResolution: 0, parallel: 1 });
    const lifetime = 20_000;
    expect(s.plan()).toEqual([1000]);
    s.record(1000, true);
    for (let points = s.plan(); points.length; points = s.plan()) {
      // the midpoint of what is known
      expect(points).toEqual([Math.round((s.aliveMs + (s.deadMs ?? 64_000)) / 2)]);
      s.record(points[0]!, points[0]! < lifetime);
    }
    expect(s.aliveMs).toBeLessThan(lifetime);
    expect(s.deadMs).toBeGreaterThanOrEqual(lifetime);
    expect(s.deadMs! - s.aliveMs).toBeLessThanOrEqual(1000);
    expect(s.estimate().rounds).toBe(7); // 1000 ms, then six halvings of 63 s to under 1 s
  });

  it('never plans below minMs, and stops once minMs itself is dead', () => {
    const s = new LifetimeSearch({ minMs: 5000, maxMs: 10_000, parallel: 4 });
    expect(s.plan()).toEqual([5000, 6250, 7500, 8750]);
    s.record(5000, false);
    expect(s.done).toBe(true);
    expect(s.plan()).toEqual([]);
    expect(s.estimate()).toMatchObject({ aliveMs: 0, deadMs: 5000 });
  });

  it('takes an alive trial as proof: a dead one at a shorter idle time (a lost answer) does not bound it', () => {
    const s = new LifetimeSearch({ parallel: 2 });
    s.plan();
    s.record(10_000, false);
    s.record(20_000, true);
    s.record(30_000, false);
    expect([s.aliveMs, s.deadMs]).toEqual([20_000, 30_000]);
  });

  it('refuses options that cannot work, with the specific error', () => {
    expect.assertions(5);
    for (const bad of [{ minMs: 0 }, { minMs: 5000, maxMs: 5000 }, { parallel: 0 }, { parallel: 1.5 }, { relativeResolution: 1 }]) {
      try {
        new LifetimeSearch(bad);
      } catch (err) {
        expect((err as LifetimeError).code).toBe('BAD_OPTIONS');
      }
    }
  });
});

describe('discoverBindingLifetime against a simulated NAT with a known lifetime (RFC 5780 section 4.6)', () => {
  for (const lifetimeMs of [3_000, 10_000, 37_000, 120_000, 250_000]) {
    for (const parallel of [1, 4]) {
      it(`finds a ${lifetimeMs / 1000} s lifetime (${parallel === 1 ? 'one trial at a time' : `${parallel} trials a round`})`, async () => {
        const { r, sim, events } = await measure({ lifetimeMs }, { parallel });
        // the interval holds the lifetime, and is as narrow as asked
        expect(r.aliveMs).toBeLessThan(lifetimeMs);
        expect(r.deadMs).toBeGreaterThanOrEqual(lifetimeMs);
        expect(r.deadMs! - r.aliveMs).toBeLessThanOrEqual(Math.max(1000, 0.05 * r.aliveMs));
        // every trial says what the NAT did
        for (const t of r.trials) expect(t.alive).toBe(t.idleMs < lifetimeMs);
        expect(r.keepaliveSec).toBe(Math.floor(r.aliveMs / 2000));
        // every port opened was closed; none more than the parallel trials (and the check's)
        expect(sim.closed).toBe(sim.opened);
        expect(sim.opened).toBe(parallel);
        expect(events.filter((e) => e.kind === 'round').length).toBe(r.rounds);
      });
    }
  }

  it('runs the trials of a round at once and drops those longer than one found dead', async () => {
    const { r, clock, events } = await measure({ lifetimeMs: 37_000 }, { parallel: 4 });
    const round1 = events.filter((e) => e.kind === 'trial' && e.round === 1);
    // planned 2, 76.5, 151 and 225.5 s: 76.5 s is dead, so the two longer ones never probe
    expect(events[0]).toEqual({ kind: 'round', round: 1, idleMs: [2000, 76_500, 151_000, 225_500] });
    expect(round1).toEqual([
      expect.objectContaining({ alive: true, answeredOn: 'x' }),
      expect.objectContaining({ alive: false, answeredOn: 'none' }),
    ]);
    // a round lasts about as long as its shortest dead trial, not its longest: four rounds
    // (~80, 50, 43, 42 s) where waiting out every trial would take 225 s for the first alone
    expect(r.rounds).toBe(4);
    expect(r.elapsedMs).toBeLessThan(230_000);
    expect(r.elapsedMs).toBe(clock.now() - 1000);
  });

  it('reports "at least" when the mapping outlives the longest idle time tested', async () => {
    const { r } = await measure({ lifetimeMs: 3_600_000 }, { maxMs: 120_000 });
    expect(r.deadMs).toBeUndefined();
    expect(r.aliveMs).toBeGreaterThanOrEqual(0.95 * 120_000 - 1000);
    expect(formatLifetime(r)).toMatch(/^binding lifetime {5}at least 11\d s idle \(the longest tested; RFC 5780 4\.6: \d+ trials in \d+ rounds, \d+ s\)$/m);
    expect(keepaliveAdvice(r)).toMatch(/at least every 5\d s; ICE's keepalives \(every 15 s, RFC 8445 section 11\) are enough/);
  });

  it('reports "under" when the mapping dies sooner than the shortest idle time tested', async () => {
    const { r } = await measure({ lifetimeMs: 1_000 }, { minMs: 2000, maxMs: 30_000 });
    expect(r).toMatchObject({ aliveMs: 0, deadMs: 2000, keepaliveSec: 1 });
    expect(formatLifetime(r)).toMatch(/^binding lifetime {5}under 2\.0 s idle/m);
    expect(keepaliveAdvice(r)).toMatch(/at least every 1 s: shorter than ICE's keepalive interval \(15 s, RFC 8445 section 11\).*consent checks \(RFC 7675/);
  });

  it('reads an answer that arrives on Y (the NAT gave the expired port to Y) as expired', async () => {
    // one trial at a time: Y's own mapping has expired too when X's has, so Y's new one gets
    // the lowest free port, X's old one
    const { r, events } = await measure({ lifetimeMs: 20_000, allocation: 'lowest' }, { maxMs: 60_000, parallel: 1 });
    expect(r.aliveMs).toBeLessThan(20_000);
    expect(r.deadMs).toBeGreaterThanOrEqual(20_000);
    expect(events.some((e) => e.kind === 'trial' && e.answeredOn === 'y')).toBe(true);
    for (const t of r.trials) expect(t.alive).toBe(t.idleMs < 20_000);
  });

  it('errs on the short side (the safe one for keepalives) when every answer of a trial is lost', async () => {
    // probe 1 is the RESPONSE-PORT check; probe 3 the 9 s trial of round 1 (2, 9, 16, 23 s)
    const { r } = await measure({ lifetimeMs: 20_000, lose: [3] }, { maxMs: 30_000, parallel: 4 });
    expect(r.aliveMs).toBeLessThan(9000);
    expect(r.deadMs).toBeLessThanOrEqual(9000);
    expect(r.keepaliveSec).toBeLessThan(10);
  });

  it('finds out whether inbound traffic refreshes a mapping', async () => {
    const yes = await measure({ lifetimeMs: 30_000, inboundRefresh: true }, { maxMs: 60_000, refreshTest: true });
    expect(yes.r.refreshedByInbound).toBe(true);
    expect(formatLifetime(yes.r)).toMatch(/inbound refresh {6}yes/);
    const no = await measure({ lifetimeMs: 30_000, inboundRefresh: false }, { maxMs: 60_000, refreshTest: true });
    expect(no.r.refreshedByInbound).toBe(false);
    expect(formatLifetime(no.r)).toMatch(/inbound refresh {6}no/);
    const refresh = no.events.find((e) => e.kind === 'refresh-test');
    // the second probe is past the lifetime after the request, within it after the first answer
    expect(refresh).toBeDefined();
    if (refresh?.kind === 'refresh-test') {
      expect(refresh.secondMs).toBeGreaterThan(no.r.deadMs!);
      expect(refresh.secondMs - refresh.firstMs).toBeLessThan(no.r.aliveMs);
    }
    // not asked: not tested
    expect((await measure({ lifetimeMs: 30_000 }, { maxMs: 60_000 })).r.refreshedByInbound).toBeUndefined();
  });

  it('stops at once when the server ignores or refuses RESPONSE-PORT, and closes its ports', async () => {
    expect.assertions(6);
    for (const responsePort of ['ignore', 'refuse'] as const) {
      const clock = new ManualClock();
      const sim = new SimNat(clock, { lifetimeMs: 30_000, responsePort });
      try {
        await onClock(clock, discoverBindingLifetime(sim, SERVER, { clock }));
      } catch (err) {
        expect((err as LifetimeError).code).toBe('RESPONSE_PORT_UNSUPPORTED');
        expect((err as Error).message).toMatch(responsePort === 'ignore' ? /ignores RESPONSE-PORT \(RFC 5780 section 7\.5\)/ : /420/);
      }
      expect(sim.closed).toBe(sim.opened);
    }
  });

  it('fails with NO_ANSWER when the server never answers, stopping every trial', async () => {
    expect.assertions(3);
    const clock = new ManualClock();
    const sim = new SimNat(clock, { lifetimeMs: 30_000, silent: true });
    try {
      await onClock(clock, discoverBindingLifetime(sim, SERVER, { clock }));
    } catch (err) {
      expect((err as LifetimeError).code).toBe('NO_ANSWER');
    }
    expect(sim.closed).toBe(sim.opened);
    expect(clock.pending).toBe(0);
  });

  it('stops when aborted, with ABORTED, leaving no timer behind', async () => {
    expect.assertions(3);
    const clock = new ManualClock();
    const sim = new SimNat(clock, { lifetimeMs: 30_000 });
    const ac = new AbortController();
    const p = discoverBindingLifetime(sim, SERVER, { clock, signal: ac.signal, onProgress: (e) => e.kind === 'round' && ac.abort() });
    try {
      await onClock(clock, p);
    } catch (err) {
      expect((err as LifetimeError).code).toBe('ABORTED');
    }
    expect(sim.closed).toBe(sim.opened);
    expect(clock.pending).toBe(0);
  });

  it('paces new transactions at most ten a second (RFC 5780 section 5)', async () => {
    const clock = new ManualClock();
    const sim = new SimNat(clock, { lifetimeMs: 37_000 });
    const sends: number[] = [];
    const open = sim.open.bind(sim);
    sim.open = async () => {
      const port = await open();
      return {
        bind: () => (sends.push(clock.now()), port.bind()),
        probe: (m) => (sends.push(clock.now()), port.probe(m)),
        close: () => port.close(),
      };
    };
    await onClock(clock, discoverBindingLifetime(sim, SERVER, { clock, parallel: 8 }));
    sends.sort((a, b) => a - b);
    for (let i = 1; i < sends.length; i++) expect(sends[i]! - sends[i - 1]!).toBeGreaterThanOrEqual(100);
  });
});

/** A UDP server on loopback that answers each request with what `answer` builds (sent to `reply(from)`). */
async function fakeServer(answer: (req: ReturnType<typeof decodeMessage>) => Buffer): Promise<{ port: number; close: () => Promise<void> }> {
  const s = dgram.createSocket('udp4');
  s.on('message', (buf, r) => {
    try {
      s.send(answer(decodeMessage(buf)), r.port, r.address);
    } catch {
      // not for us
    }
  });
  await new Promise<void>((res) => s.bind(0, '127.0.0.1', res));
  return { port: s.address().port, close: () => new Promise<void>((res) => s.close(() => res())) };
}

const QUICK = { rto: 20, rc: 3, rm: 4 };

describe('UdpLifetimeProber over real sockets (loopback, no NAT)', () => {
  it("against natkit's stunserver every probe's answer comes back to X: no mapping to expire", async () => {
    const server = await StunServer.start({ address: '127.0.0.1', port: 0, tcp: false });
    try {
      const at: TransportAddress = { family: 'IPv4', address: '127.0.0.1', port: server.listening[0]!.port };
      const events: LifetimeProgress[] = [];
      const r = await checkBindingLifetime(at, { minMs: 20, maxMs: 200, resolutionMs: 40, parallel: 2, paceMs: 5, retransmit: QUICK, onProgress: (e) => events.push(e) });
      expect(r.deadMs).toBeUndefined();
      expect(r.aliveMs).toBeGreaterThanOrEqual(160);
      expect(r.trials.length).toBeGreaterThan(2);
      expect(events.filter((e) => e.kind === 'trial').every((e) => e.kind === 'trial' && e.answeredOn === 'x')).toBe(true);
      expect(r.server).toEqual(at);
    } finally {
      await server.close();
    }
  });

  it('a server that ignores RESPONSE-PORT (answers the requesting port) is named, not measured', async () => {
    expect.assertions(2);
    const fake = await fakeServer((m) =>
      new MessageBuilder(m.method, MessageClass.SuccessResponse, m.transactionId).add(Attr.XorMappedAddress, { family: 'IPv4', address: '127.0.0.1', port: 1 }).encode(),
    );
    try {
      await checkBindingLifetime({ family: 'IPv4', address: '127.0.0.1', port: fake.port }, { retransmit: QUICK, paceMs: 5 });
    } catch (err) {
      expect((err as LifetimeError).code).toBe('RESPONSE_PORT_UNSUPPORTED');
      expect((err as Error).message).toMatch(/ignores RESPONSE-PORT/);
    } finally {
      await fake.close();
    }
  });

  it('a server that answers 420 to RESPONSE-PORT is named, not measured', async () => {
    expect.assertions(2);
    const fake = await fakeServer((m) =>
      m.has(Attr.ResponsePort.type)
        ? new MessageBuilder(m.method, MessageClass.ErrorResponse, m.transactionId).add(Attr.ErrorCode, { code: 420, reason: 'Unknown Attribute' }).add(Attr.UnknownAttributes, [Attr.ResponsePort.type]).encode()
        : new MessageBuilder(m.method, MessageClass.SuccessResponse, m.transactionId).add(Attr.XorMappedAddress, { family: 'IPv4', address: '127.0.0.1', port: 1 }).encode(),
    );
    try {
      await checkBindingLifetime({ family: 'IPv4', address: '127.0.0.1', port: fake.port }, { retransmit: QUICK, paceMs: 5 });
    } catch (err) {
      expect((err as LifetimeError).code).toBe('RESPONSE_PORT_UNSUPPORTED');
      expect((err as Error).message).toMatch(/420 \(Unknown Attribute\) to RESPONSE-PORT/);
    } finally {
      await fake.close();
    }
  });

  it('no server: NO_ANSWER after the retransmissions, and every socket closed', async () => {
    expect.assertions(1);
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((res) => silent.bind(0, '127.0.0.1', res));
    const port = silent.address().port;
    try {
      await checkBindingLifetime({ family: 'IPv4', address: '127.0.0.1', port }, { retransmit: QUICK });
    } catch (err) {
      expect((err as LifetimeError).code).toBe('NO_ANSWER');
    } finally {
      await new Promise<void>((res) => silent.close(() => res()));
    }
  });

  it('close() ends transactions in flight', async () => {
    const silent = dgram.createSocket('udp4');
    await new Promise<void>((res) => silent.bind(0, '127.0.0.1', res));
    try {
      const p = await UdpLifetimeProber.open({ family: 'IPv4', address: '127.0.0.1', port: silent.address().port }, { retransmit: { rto: 10_000, rc: 2, rm: 2 } });
      const x = await p.open();
      const pending = x.bind();
      await p.close();
      expect(await pending).toBeUndefined();
    } finally {
      await new Promise<void>((res) => silent.close(() => res()));
    }
  });
});

describe('natcheck --lifetime', () => {
  afterEach(killAll);

  it('is in --help, and refuses flags that do not fit, with status 2', async () => {
    const h = await runBin('stun', 'natcheck', ['--help']);
    for (const flag of ['--lifetime ', '--lifetime-min SECONDS', '--lifetime-max SECONDS']) expect(h.stdout).toContain(flag);
    expect(h.stdout).toMatch(/RFC 5780 section 4\.6; takes minutes/);
    const bad: [string[], RegExp][] = [
      [['--lifetime-max', '60', '127.0.0.1'], /--lifetime-min and --lifetime-max go with --lifetime/],
      [['--lifetime', '--lifetime-min', '30', '--lifetime-max', '30', '127.0.0.1'], /--lifetime-min \(30\) must be less than --lifetime-max \(30\)/],
      [['--lifetime', '--lifetime-min', '0', '127.0.0.1'], /--lifetime-min must be at least 1/],
      [['--lifetime', '--lifetime-max', 'long', '127.0.0.1'], /--lifetime-max expects a number/],
    ];
    for (const [args, message] of bad) {
      const r = await runBin('stun', 'natcheck', args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe('');
    }
  });

  it('measures on loopback (no NAT: "at least" the longest idle time tested), in text and JSON', async () => {
    const s = startBin('stun', 'stunserver', ['--listen', '127.0.0.1', '--port', '0']);
    const port = (await s.waitFor(/udp 127\.0\.0\.1:(\d+)/))[1]!;
    const args = ['--timeout', '1000', '--lifetime', '--lifetime-min', '1', '--lifetime-max', '2', `127.0.0.1:${port}`];
    const text = await runBin('stun', 'natcheck', args);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toMatch(/^binding lifetime {5}at least 1\.\d s idle \(the longest tested; RFC 5780 4\.6: \d+ trials in 1 rounds, \d+ s\)$/m);
    expect(text.stdout).toMatch(/^keepalive advice {5}send something on each mapping at least every 1 s/m);
    expect(text.stderr).toMatch(/^natcheck: lifetime round 1: idle 1\.0, 1\.3, 1\.5, 1\.8 s$/m);
    const json = await runBin('stun', 'natcheck', ['--json', ...args]);
    const r = JSON.parse(json.stdout);
    expect(r.classic).toBe('Unknown'); // one address: no behaviour tests
    expect(r.lifetime).toMatchObject({ minMs: 1000, maxMs: 2000, rounds: 1, keepaliveSec: 1, server: { address: '127.0.0.1', port: Number(port) } });
    expect(r.lifetime.aliveMs).toBeGreaterThanOrEqual(1750);
    expect(Number.isInteger(r.lifetime.aliveMs)).toBe(true);
    expect('deadMs' in r.lifetime).toBe(false); // undefined: none expired
    expect(r.lifetime.trials).toHaveLength(4);
    expect(r.lifetime.trials.every((t: { alive: boolean }) => t.alive)).toBe(true);
    expect(await s.stop()).toBe(0);
  });
});
