// relayserver and stunserver on every core (--workers N). On Node >= 22.12 (dgram
// reusePort) several processes serve one port: each allocation must stay whole on the
// worker the kernel hashed its 5-tuple to (every later request on that 5-tuple finds it),
// quotas must hold over all workers, metrics are summed, SIGHUP and SIGTERM reach every
// worker. On Node 20 the same commands must say once that they run one worker, and do.
// Neither half is skipped: the suite runs on Node 20 and on Node 24 (CI runs both).
import { describe, expect, it } from 'vitest';
import { Attr, MessageClass, Method, StunClient, type StunResponse } from '@natkit/stun';
import { planWorkers, reusePortSupported } from '@natkit/stun/cli';
import { LocalQuotas, TurnAttr } from '@natkit/turn';
import { QuotaBroker, ReservationBroker } from '../src/cli/cluster.js';
import { type Proc, startBin } from '../../../test/helpers/spawn.js';
import { useCleanup } from '../../../test/helpers/cleanup.js';
import { httpGet } from '../../../test/helpers/http.js';
import { waitFor } from '../../../test/helpers/wait.js';

const { defer } = useCleanup();
const MULTI = reusePortSupported();

function client(username: string, password: string): StunClient {
  const c = new StunClient({ credentials: { username, password }, retransmit: { rto: 200, rc: 5, rm: 16 } });
  defer(() => c.close());
  return c;
}

const allocate = (c: StunClient, port: number): Promise<StunResponse> =>
  c.request({ address: '127.0.0.1', port }, { method: Method.Allocate, attributes: (b) => b.add(TurnAttr.RequestedTransport, 17) });

function metric(text: string, line: RegExp): number {
  const m = line.exec(text);
  return m ? Number(m[1]) : NaN;
}

/** JSON log lines of a process's stderr. */
function jsonLines(p: Proc): Array<Record<string, unknown>> {
  return p
    .stderr()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('planWorkers', () => {
  it('runs every core where reusePort exists, one worker (and says why) where not', () => {
    expect(planWorkers(undefined, true, 8)).toEqual({ count: 8 });
    expect(planWorkers(3, true, 8)).toEqual({ count: 3 });
    expect(planWorkers(undefined, true, 1)).toEqual({ count: 1 });
    expect(planWorkers(undefined, false, 8)).toMatchObject({ count: 1, asked: false, note: expect.stringMatching(/running one worker: Node \S+ has no SO_REUSEPORT for UDP \(dgram reusePort needs Node 22\.12/) });
    expect(planWorkers(4, false, 8)).toMatchObject({ count: 1, asked: true, note: expect.stringMatching(/--workers 4 ignored$/) });
    expect(reusePortSupported('22.11.0', 'linux')).toBe(false);
    expect(reusePortSupported('22.12.0', 'linux')).toBe(true);
    expect(reusePortSupported('24.0.0', 'linux')).toBe(true);
    expect(reusePortSupported('24.0.0', 'darwin')).toBe(false);
    expect(reusePortSupported('20.20.2', 'linux')).toBe(false);
  });
});

describe('the quota broker: one count for every worker', () => {
  const worker = (id: number) => {
    const sent: Array<Record<string, unknown>> = [];
    return { id, send: (m: Record<string, unknown>) => void sent.push(m), sent } as unknown as import('node:cluster').Worker & { sent: Array<Record<string, unknown>> };
  };
  it('answers acquires from all workers against one quota, and frees what a worker held when it exits', () => {
    const b = new QuotaBroker({ userQuota: 2, totalQuota: 3 });
    const w1 = worker(1);
    const w2 = worker(2);
    const ask = (w: ReturnType<typeof worker>, id: number, username: string) => {
      b.handle(w, { natkit: 'quota', op: 'acquire', id, username, redeeming: null });
      return w.sent.at(-1)!.refusal as { code: number } | null;
    };
    expect(ask(w1, 1, 'alice')).toBeNull();
    expect(ask(w2, 1, 'alice')).toBeNull();
    expect(ask(w2, 2, 'alice')).toMatchObject({ code: 486 });
    expect(ask(w1, 2, 'bob')).toBeNull();
    expect(ask(w2, 3, 'carol')).toMatchObject({ code: 508 });
    expect(w1.sent.map((m) => m.id)).toEqual([1, 2]);
    // Worker 1 (alice, bob) exits: its slots are free again.
    b.exited(w1);
    expect(b.quotas.held).toBe(1);
    expect(ask(w2, 4, 'carol')).toBeNull();
    b.handle(w2, { natkit: 'quota', op: 'release', username: 'alice' });
    expect(b.quotas.count('alice')).toBe(0);
    expect(b.quotas).toBeInstanceOf(LocalQuotas);
  });
});

describe('the reservation broker: an EVEN-PORT reservation redeemed on another worker', () => {
  const worker = (id: number) => {
    const sent: Array<Record<string, unknown>> = [];
    const w = { id, dead: false, isDead: () => w.dead, send: (m: Record<string, unknown>) => void sent.push(m), sent };
    return w as unknown as import('node:cluster').Worker & { sent: Array<Record<string, unknown>>; dead: boolean };
  };

  it('has the worker holding the token give the port up, and hands its answer to the redeeming worker', () => {
    const w1 = worker(1);
    const w2 = worker(2);
    const b = new ReservationBroker(() => [w1, w2]);
    b.handle(w1, { natkit: 'reservation', token: 'aa' });
    b.handle(w2, { natkit: 'redeem', id: 7, token: 'aa' });
    expect(w1.sent).toEqual([{ natkit: 'give-up', id: 1, token: 'aa' }]);
    b.handle(w1, { natkit: 'give-up-reply', id: 1, reservation: { family: 'IPv4', port: 50000, owner: 'alice' } });
    expect(w2.sent).toEqual([{ natkit: 'redeem-reply', id: 7, reservation: { family: 'IPv4', port: 50000, owner: 'alice' } }]);
    // A token is redeemed once: asked again, nobody holds it.
    b.handle(w2, { natkit: 'redeem', id: 8, token: 'aa' });
    expect(w2.sent.at(-1)).toEqual({ natkit: 'redeem-reply', id: 8, reservation: null });
    expect(w1.sent).toHaveLength(1);
  });

  it('answers none at once for a token no live worker holds', () => {
    const w1 = worker(1);
    const w2 = worker(2);
    const b = new ReservationBroker(() => [w1, w2]);
    b.handle(w2, { natkit: 'redeem', id: 1, token: 'unknown' });
    b.handle(w1, { natkit: 'reservation', token: 'bb' });
    w1.dead = true;
    b.exited(w1);
    b.handle(w2, { natkit: 'redeem', id: 2, token: 'bb' });
    expect(w2.sent).toEqual([
      { natkit: 'redeem-reply', id: 1, reservation: null },
      { natkit: 'redeem-reply', id: 2, reservation: null },
    ]);
  });

  it('answers none when the worker asked to give the port up exits before it answers', () => {
    const w1 = worker(1);
    const w2 = worker(2);
    const b = new ReservationBroker(() => [w1, w2]);
    b.handle(w1, { natkit: 'reservation', token: 'cc' });
    b.handle(w2, { natkit: 'redeem', id: 3, token: 'cc' });
    expect(w1.sent).toHaveLength(1);
    w1.dead = true;
    b.exited(w1);
    expect(w2.sent).toEqual([{ natkit: 'redeem-reply', id: 3, reservation: null }]);
    // A late reply from the dead worker's channel finds nothing to answer.
    b.handle(w1, { natkit: 'give-up-reply', id: 1, reservation: null });
    expect(w2.sent).toHaveLength(1);
  });
});

describe('relayserver --workers', () => {
  it(
    MULTI
      ? 'two workers on one port: allocations stay whole, the per-user quota holds over both, metrics are summed, SIGHUP and SIGTERM reach both'
      : 'on this Node (no reusePort) --workers 2 says once that it runs one worker, and serves',
    async () => {
      const proc = startBin('turn', 'relayserver', [
        '--listen', '127.0.0.1', '--port', '0', '--min-port', '41000', '--max-port', '41999', '--user', 'alice:pw', '--user', 'bob:pw2',
        '--user-quota', '12', '--workers', '2', '--metrics', '127.0.0.1:0', '--log-format', 'json',
      ]);
      const m = await proc.waitFor(/"msg":"relayserver \S+ listening on udp 127\.0\.0\.1:(\d+), tcp 127\.0\.0\.1:\1\b[^"]*metrics on (http:\/\/[^;"]+\/metrics)(; 2 workers)?"/);
      const port = Number(m[1]);
      const url = m[2]!;
      if (MULTI) {
        expect(m[3]).toBe('; 2 workers');
      } else {
        expect(m[3]).toBeUndefined();
        const notes = jsonLines(proc).filter((l) => /running one worker/.test(String(l.msg)));
        expect(notes).toHaveLength(1);
        expect(notes[0]).toMatchObject({ level: 'warn', msg: expect.stringMatching(/no SO_REUSEPORT for UDP .*--workers 2 ignored$/) });
      }
      // 16 clients of one user, each its own socket (5-tuple): 12 allocations, 4 refused.
      const clients = Array.from({ length: 16 }, () => client('alice', 'pw'));
      const results = await Promise.all(clients.map((c) => allocate(c, port).then(() => 'ok' as const, (e: { errorCode?: number }) => e.errorCode)));
      expect(results.filter((r) => r === 'ok')).toHaveLength(12);
      expect(results.filter((r) => r === 486)).toHaveLength(4);
      // Whole on its worker: every later request on each 5-tuple finds its allocation
      // (another worker would answer 437).
      const live = clients.filter((_, i) => results[i] === 'ok');
      for (const c of live) {
        const perm = await c.request({ address: '127.0.0.1', port }, { method: Method.CreatePermission, attributes: (b) => b.add(TurnAttr.XorPeerAddress, { family: 'IPv4', address: '198.51.100.7', port: 1 }) });
        expect(perm.message.cls).toBe(MessageClass.SuccessResponse);
        const r = await c.request({ address: '127.0.0.1', port }, { method: Method.Refresh, attributes: (b) => b.add(TurnAttr.Lifetime, 600) });
        expect(r.message.get(TurnAttr.Lifetime)).toBe(600);
      }
      // Another user has a quota of their own.
      await allocate(client('bob', 'pw2'), port);
      // The log lines come over a pipe: wait for them (seconds), then count exactly.
      await waitFor(() => jsonLines(proc).filter((l) => l.msg === 'allocation created').length >= 13, 'the 13 "allocation created" lines');
      const created = jsonLines(proc).filter((l) => l.msg === 'allocation created');
      expect(created).toHaveLength(13);
      const workers = new Set(created.map((l) => l.worker));
      if (MULTI) expect(workers).toEqual(new Set([1, 2])); // 13 allocations over two workers: both serve
      else expect(workers).toEqual(new Set([undefined]));
      // Metrics: the sum over the workers.
      const text = (await httpGet(url)).body;
      expect(metric(text, /^natkit_turn_allocations (\d+)$/m)).toBe(13);
      expect(metric(text, /^natkit_turn_allocations_created_total (\d+)$/m)).toBe(13);
      expect(metric(text, /^natkit_turn_error_responses_total\{code="486"\} (\d+)$/m)).toBe(4);
      expect(metric(text, /^natkit_turn_requests_total\{method="refresh"\} (\d+)$/m)).toBe(12);
      // SIGHUP reaches every worker.
      proc.child.kill('SIGHUP');
      const expectWorkers = MULTI ? 2 : 1;
      const count = (msg: RegExp) => jsonLines(proc).filter((l) => msg.test(String(l.msg))).length;
      await waitFor(() => count(/^credentials reloaded$/) >= expectWorkers, 'every worker reloading its credentials');
      expect(new Set(jsonLines(proc).filter((l) => l.msg === 'credentials reloaded').map((l) => l.worker))).toEqual(MULTI ? new Set([1, 2]) : new Set([undefined]));
      // SIGTERM: every worker drains; released allocations let it finish at once.
      proc.child.kill('SIGTERM');
      await waitFor(() => count(/^SIGTERM: draining/) >= expectWorkers, 'every worker draining');
      for (const c of [...live]) await c.request({ address: '127.0.0.1', port }, { method: Method.Refresh, attributes: (b) => b.add(TurnAttr.Lifetime, 0) });
      // bob's allocation is cut by a second SIGTERM.
      proc.child.kill('SIGTERM');
      expect(await proc.exited, proc.stderr()).toBe(0);
      const drained = jsonLines(proc).filter((l) => /SIGTERM: draining/.test(String(l.msg)));
      expect(new Set(drained.map((l) => l.worker))).toEqual(MULTI ? new Set([1, 2]) : new Set([undefined]));
    },
  );
});

describe('relayserver --workers: EVEN-PORT reservations', () => {
  it(MULTI ? 'a token is redeemed on whichever worker the next 5-tuple lands on, for the very next port' : 'a token is redeemed for the very next port (one worker on this Node)', async () => {
    const proc = startBin('turn', 'relayserver', [
      '--listen', '127.0.0.1', '--port', '0', '--min-port', '42000', '--max-port', '42999', '--user', 'alice:pw', '--user-quota', '200', '--workers', '2', '--log-format', 'json',
    ]);
    defer(() => proc.stop('SIGINT'));
    const port = Number((await proc.waitFor(/listening on udp 127\.0\.0\.1:(\d+)/))[1]);
    const even = (c: StunClient) =>
      c.request({ address: '127.0.0.1', port }, { method: Method.Allocate, attributes: (b) => b.add(TurnAttr.RequestedTransport, 17).add(TurnAttr.EvenPort, { reserve: true }) });
    const redeem = (c: StunClient, token: Buffer) =>
      c.request({ address: '127.0.0.1', port }, { method: Method.Allocate, attributes: (b) => b.add(TurnAttr.RequestedTransport, 17).add(TurnAttr.ReservationToken, token) });
    const workerOf = async (relayedPort: number) => {
      await waitFor(() => jsonLines(proc).some((l) => l.msg === 'allocation created' && (l.relayed as string[])[0] === `127.0.0.1:${relayedPort}`), `the allocation on ${relayedPort} logged`);
      return jsonLines(proc).find((l) => l.msg === 'allocation created' && (l.relayed as string[])[0] === `127.0.0.1:${relayedPort}`)!.worker;
    };
    // Pairs until one reservation has been redeemed on the other worker (on one worker:
    // three pairs). Each redemption must give exactly the reserved port.
    let crossed = 0;
    for (let pair = 0; pair < 64 && (MULTI ? crossed === 0 : pair < 3); pair++) {
      const a = await even(client('alice', 'pw'));
      const first = a.message.get(TurnAttr.XorRelayedAddress)!.port;
      expect(first % 2).toBe(0);
      const b = await redeem(client('alice', 'pw'), a.message.get(TurnAttr.ReservationToken)!);
      expect(b.message.get(TurnAttr.XorRelayedAddress)!.port).toBe(first + 1);
      if ((await workerOf(first)) !== (await workerOf(first + 1))) crossed++;
    }
    if (MULTI) expect(crossed).toBe(1);
    // A token is good once, wherever it is tried.
    const a = await even(client('alice', 'pw'));
    const token = a.message.get(TurnAttr.ReservationToken)!;
    await redeem(client('alice', 'pw'), token);
    await expect(redeem(client('alice', 'pw'), token)).rejects.toMatchObject({ errorCode: 508 });
    expect(await proc.stop('SIGINT')).toBe(0);
  });
});

describe('stunserver --workers', () => {
  it(MULTI ? 'two workers on the RFC 5780 ports answer every client, metrics summed, SIGTERM stops both' : 'on this Node --workers 2 runs one worker and says so', async () => {
    const proc = startBin('stun', 'stunserver', ['--listen', '127.0.0.1', '--alternate', '127.0.0.2', '--port', '0', '--workers', '2', '--metrics', '127.0.0.1:0', '--log-format', 'json']);
    const line = await proc.waitFor(/"msg":"(stunserver \S+ listening on udp 127\.0\.0\.1:(\d+), udp 127\.0\.0\.1:(\d+), udp 127\.0\.0\.2:\2, udp 127\.0\.0\.2:\3, tcp 127\.0\.0\.1:\2 \(RFC 5780 full mode\); metrics on (http:\/\/[^;"]+)(; 2 workers)?)"/);
    expect(line[5]).toBe(MULTI ? '; 2 workers' : undefined);
    const port = Number(line[2]);
    const clients = Array.from({ length: 12 }, () => {
      const c = new StunClient({ retransmit: { rto: 200, rc: 5, rm: 16 } });
      defer(() => c.close());
      return c;
    });
    // Each answered, with CHANGE-REQUEST from the right socket of whichever worker has the client.
    const answers = await Promise.all(clients.map((c) => c.binding({ address: '127.0.0.1', port }, { attributes: (b) => b.add(Attr.ChangeRequest, { changeIp: true, changePort: true }) })));
    for (const a of answers) expect(a.from).toEqual({ family: 'IPv4', address: '127.0.0.2', port: Number(line[3]) });
    const text = (await httpGet(line[4]!)).body;
    expect(metric(text, /^natkit_stun_responses_total (\d+)$/m)).toBe(12);
    proc.child.kill('SIGTERM');
    expect(await proc.exited, proc.stderr()).toBe(0);
    const stops = jsonLines(proc).filter((l) => l.msg === 'SIGTERM: shutting down');
    expect(stops).toHaveLength(MULTI ? 2 : 1);
  });
});
