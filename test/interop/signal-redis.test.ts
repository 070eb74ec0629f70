// Several signalserver instances sharing rooms through a real redis-server (Debian's),
// started by the test on a free loopback port with its own directory: parties on different
// instances pair and talk, a third is refused, an instance that dies loses only its own
// parties, and a Redis restart in the middle loses neither a pair nor a message.
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { RawClient } from '../../packages/signal/test/tcp.js';
import { useCleanup } from '../helpers/cleanup.js';
import { needProgram } from '../helpers/programs.js';
import { type Proc, start, startBin } from '../helpers/spawn.js';

const { defer, track } = useCleanup();

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

class RedisServer {
  proc: Proc | undefined;
  constructor(
    readonly bin: string,
    readonly port: number,
    readonly dir: string,
  ) {}
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    // No persistence: a restart comes back empty, the hard case.
    this.proc = start(this.bin, ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--save', '', '--appendonly', 'no', '--daemonize', 'no', '--protected-mode', 'no', '--loglevel', 'notice']);
    await this.proc.waitFor(/Ready to accept connections/, 20_000);
  }
  async stop(): Promise<void> {
    await this.proc?.stop('SIGKILL');
  }
}

async function redis(ctx: { skip: (note?: string) => void }): Promise<RedisServer> {
  const bin = needProgram(ctx, 'redis-server');
  const dir = mkdtempSync(join(tmpdir(), 'natkit-redis-'));
  defer(() => rmSync(dir, { recursive: true, force: true }));
  const r = new RedisServer(bin, await freePort(), dir);
  await r.start();
  return r;
}

async function instance(url: string, extra: string[] = []): Promise<{ proc: Proc; port: number }> {
  const proc = startBin('signal', 'signalserver', ['--listen', '127.0.0.1', '--port', '0', '--redis', url, '--redis-ttl', '1', '--detect-timeout', '0.2', ...extra]);
  const m = await proc.waitFor(/listening on tcp 127\.0\.0\.1:(\d+); mode auto; sharing rooms through redis:\/\/127\.0\.0\.1:\d+ as instance \w+/, 20_000);
  return { proc, port: Number(m[1]) };
}

async function joinRoom(port: number, room: string): Promise<RawClient> {
  const c = track(await RawClient.connect(port));
  await c.json({ type: 'join', room });
  return c;
}

const cand = (n: number) => ({ type: 'candidate', foundation: `${n}`, component: 1, transport: 'udp', priority: 1000 + n, address: '192.0.2.9', port: 40000 + n, candidateType: 'host' });

describe('signalserver instances on Redis', () => {
  it('parties on different instances pair and talk; a third on another instance is refused; plain parties too', async (ctx) => {
    const r = await redis(ctx);
    const [i1, i2, i3] = await Promise.all([instance(r.url), instance(r.url), instance(r.url)]);
    const a = await joinRoom(i1.port, 'room1');
    expect((await a.messages(1))[0]).toMatchObject({ type: 'joined', initiator: true, peer: false });
    await a.json(cand(1), cand(2));
    const b = await joinRoom(i2.port, 'room1');
    expect(await b.messages(3)).toEqual([expect.objectContaining({ type: 'joined', initiator: false, peer: true }), cand(1), cand(2)]);
    expect(await a.messages(1)).toEqual([{ type: 'peer-joined', resumed: false }]);
    await b.json(cand(3), { type: 'end-of-candidates' });
    expect(await a.messages(2)).toEqual([cand(3), { type: 'end-of-candidates' }]);
    const c = await joinRoom(i3.port, 'room1');
    expect(await c.messages(1)).toEqual([{ type: 'error', code: 'room-full', reason: 'room room1 already has two parties', fatal: true }]);
    await c.waitClosed();

    const p = track(await RawClient.connect(i1.port));
    await p.write('192.0.2.1 5000 udp 1.000000 local u p\n');
    const q = track(await RawClient.connect(i3.port));
    expect(await q.received('192.0.2.1 5000 udp 1.000000 local u p\n')).toBe('192.0.2.1 5000 udp 1.000000 local u p\n');
    await q.write('198.51.100.1 6000 udp 1.000000 local v w\n');
    expect(await p.received('198.51.100.1 6000 udp 1.000000 local v w\n')).toBe('198.51.100.1 6000 udp 1.000000 local v w\n');

    await b.close();
    expect(await a.messages(1)).toEqual([{ type: 'peer-left', reason: 'closed' }]);
  });

  it('an instance that dies loses only its own parties; its peers are told and their places taken', async (ctx) => {
    const r = await redis(ctx);
    const [i1, i2, i3] = await Promise.all([instance(r.url), instance(r.url), instance(r.url)]);
    const a = await joinRoom(i1.port, 'kill');
    await a.messages(1);
    const b = await joinRoom(i2.port, 'kill');
    await b.messages(1);
    const x = await joinRoom(i1.port, 'other');
    await x.messages(1);
    const y = await joinRoom(i3.port, 'other');
    await y.messages(1);
    await x.messages(1); // peer-joined
    await i2.proc.stop('SIGKILL');
    // Within a TTL (1 s) and a refresh, instance 1 finds instance 2 gone.
    expect(await a.messages(2, 15_000)).toEqual([{ type: 'peer-joined', resumed: false }, { type: 'peer-left', reason: 'server-lost' }]);
    const d = await joinRoom(i3.port, 'kill');
    expect((await d.messages(1))[0]).toMatchObject({ type: 'joined', peer: true });
    expect(await a.messages(1)).toEqual([{ type: 'peer-joined', resumed: false }]);
    await y.json({ type: 'app', data: 'the other room goes on' });
    expect(await x.messages(1)).toEqual([{ type: 'app', data: 'the other room goes on' }]);
    // A clean stop tells peers on other instances at once.
    expect(await i3.proc.stop('SIGTERM')).toBe(0);
    expect(await a.messages(1)).toEqual([{ type: 'peer-left', reason: 'shutdown' }]);
    expect(await x.messages(1)).toEqual([{ type: 'peer-left', reason: 'shutdown' }]);
  });

  it('survives a Redis restart: pairs stay, what was sent meanwhile arrives, places are known again', async (ctx) => {
    const r = await redis(ctx);
    const [i1, i2] = await Promise.all([instance(r.url), instance(r.url)]);
    const a = await joinRoom(i1.port, 'restart');
    await a.messages(1);
    const b = await joinRoom(i2.port, 'restart');
    await b.messages(1);
    await a.messages(1);
    const lone = await joinRoom(i2.port, 'waiting');
    await lone.messages(1);

    await r.stop();
    await i1.proc.waitFor(/Redis connection lost/, 15_000, 'stderr');
    await a.json(cand(1), cand(2));
    await b.json({ type: 'app', data: 'while Redis was away' });
    await r.start();
    await i1.proc.waitFor(/Redis connection back/, 20_000, 'stderr');
    await i2.proc.waitFor(/Redis connection back/, 20_000, 'stderr');

    expect(await b.messages(2, 20_000)).toEqual([cand(1), cand(2)]);
    expect(await a.messages(1, 20_000)).toEqual([{ type: 'app', data: 'while Redis was away' }]);
    // Redis came back empty; the instances told it who is where again.
    const c = await joinRoom(i1.port, 'restart');
    expect(await c.messages(1)).toEqual([{ type: 'error', code: 'room-full', reason: 'room restart already has two parties', fatal: true }]);
    const d = await joinRoom(i1.port, 'waiting');
    expect((await d.messages(1))[0]).toMatchObject({ type: 'joined', peer: true });
    expect(await lone.messages(1)).toEqual([{ type: 'peer-joined', resumed: false }]);
    await d.json({ type: 'app', data: 'after' });
    expect(await lone.messages(1)).toEqual([{ type: 'app', data: 'after' }]);
    // Nobody was told a peer left.
    expect(a.text + b.text).not.toContain('peer-left');
    for (const i of [i1, i2]) expect(await i.proc.stop('SIGTERM')).toBe(0);
  });
});
