// SignalClient against a real SignalServer on loopback: typed messages, plain lines,
// reconnect with backoff (on a fake clock), re-joining its own place over a half-open
// connection, final errors.
import { once } from 'node:events';
import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import { ManualClock } from '@natkit/stun';
import { useCleanup } from '../../../test/helpers/cleanup.js';
import { waitFor } from '../../../test/helpers/wait.js';
import { type PeerMessage, SignalClient, type SignalClientOptions, SignalClientError, SignalProtocolError, SignalServer, type SignalServerOptions } from '../src/index.js';
import { RawClient } from './tcp.js';

const { track, defer } = useCleanup();

async function server(options: SignalServerOptions = {}): Promise<SignalServer> {
  return track(await SignalServer.start({ host: '127.0.0.1', port: 0, ...options }));
}
function client(port: number, options: SignalClientOptions = {}): SignalClient {
  return track(new SignalClient({ port, reconnect: { initialDelay: 20, maxDelay: 200 }, ...options }));
}
/** The next `n` events `name` of `c`. */
function next<T>(c: SignalClient, name: 'message' | 'line' | 'peer-joined' | 'peer-left' | 'joined' | 'reconnecting' | 'error', n = 1, ms = 10_000): Promise<T[]> {
  return new Promise((resolve, reject) => {
    const got: T[] = [];
    const t = setTimeout(() => {
      c.off(name, on as never);
      reject(new Error(`waited ${ms} ms for ${n} ${name} events, got ${got.length}`));
    }, ms);
    const on = (v: T) => {
      got.push(v);
      if (got.length === n) {
        clearTimeout(t);
        c.off(name, on as never);
        resolve(got);
      }
    };
    c.on(name, on as never);
  });
}

const cand: PeerMessage = {
  type: 'candidate',
  foundation: '1',
  component: 1,
  transport: 'udp',
  priority: 2122260223,
  address: '203.0.113.9',
  port: 40000,
  candidateType: 'srflx',
  relatedAddress: '10.0.0.2',
  relatedPort: 40000,
};

describe('SignalClient', () => {
  it('joins a room and exchanges typed messages; validates what it sends', async () => {
    const s = await server();
    const a = client(s.address.port, { room: 'demo' });
    const b = client(s.address.port, { room: 'demo' });
    const joinedA = next<{ joined: { initiator: boolean } }>(a, 'joined');
    await a.connect();
    expect((await joinedA)[0]!.joined.initiator).toBe(true);
    a.send({ type: 'credentials', ufrag: 'abcd', pwd: 'abcdefghijklmnopqrstuvwx' });
    a.send(cand);
    const got = next<PeerMessage>(b, 'message', 2);
    const pj = next(a, 'peer-joined');
    await b.connect();
    expect(await got).toEqual([{ type: 'credentials', ufrag: 'abcd', pwd: 'abcdefghijklmnopqrstuvwx' }, cand]);
    expect(await pj).toEqual([{ resumed: false }]);
    expect(() => b.send({ ...cand, port: -1 } as PeerMessage)).toThrow(SignalProtocolError);
    const left = next(a, 'peer-left');
    await b.bye();
    expect(await left).toEqual([{ reason: 'bye' }]);
  });

  it('plain mode: raw lines both ways with a tutorial-style party', async () => {
    const s = await server();
    const c = client(s.address.port);
    await c.connect();
    c.sendLine('192.0.2.5 7000 udp 1.000000 local u p');
    const raw = track(await RawClient.connect(s.address.port));
    await raw.write('198.51.100.9 7001 udp 1.000000 local u2 p2\n');
    const line = next<string>(c, 'line');
    expect(await raw.received('192.0.2.5 7000 udp 1.000000 local u p\n')).toBe('192.0.2.5 7000 udp 1.000000 local u p\n');
    expect(await line).toEqual(['198.51.100.9 7001 udp 1.000000 local u2 p2']);
  });

  it('reconnects after the server restarts, joins again and sends what was queued', async () => {
    const s1 = await SignalServer.start({ host: '127.0.0.1', port: 0 });
    const port = s1.address.port;
    const a = client(port, { room: 'r' });
    const b = client(port, { room: 'r' });
    await a.connect();
    await b.connect();
    const reconnecting = next<{ attempt: number; error: SignalClientError }>(a, 'reconnecting');
    await s1.close();
    const r = (await reconnecting)[0]!;
    expect(r.attempt).toBe(1);
    expect(r.error).toBeInstanceOf(SignalClientError);
    expect(r.error.serverCode).toBe('shutdown');
    a.send({ type: 'app', data: 'sent while away' });
    const aBack = next<{ reconnected: boolean }>(a, 'joined');
    const bBack = next<{ reconnected: boolean }>(b, 'joined');
    const got = next<PeerMessage>(b, 'message');
    await server({ port });
    expect((await aBack)[0]!.reconnected).toBe(true);
    expect((await bBack)[0]!.reconnected).toBe(true);
    expect(await got).toEqual([{ type: 'app', data: 'sent while away' }]);
  });

  it('a connection gone quiet (half-open) is given up; the re-join takes its own place back at once', async () => {
    // The server pings every 100 ms, so 300 ms of silence means the path is dead.
    const s = await server({ heartbeatInterval: 100, heartbeatTimeout: 60_000, tickResolution: 10 });
    // A proxy that can freeze a connection: nothing passes, nothing closes.
    const frozen = new Set<net.Socket>();
    const pipes = new Set<net.Socket>();
    const proxy = net.createServer((inbound) => {
      const out = net.createConnection({ host: '127.0.0.1', port: s.address.port });
      pipes.add(inbound).add(out);
      inbound.on('data', (d) => frozen.has(inbound) || out.write(d));
      out.on('data', (d) => frozen.has(inbound) || inbound.write(d));
      for (const x of [inbound, out]) x.on('error', () => {});
      // A frozen path does not even pass the close on: the server still sees a live connection.
      inbound.on('close', () => frozen.has(inbound) || out.destroy());
      out.on('close', () => inbound.destroy());
    });
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
    defer(() => new Promise<void>((r) => {
      for (const p of pipes) p.destroy();
      proxy.close(() => r());
    }));
    const port = (proxy.address() as net.AddressInfo).port;
    let inbound: net.Socket | undefined;
    proxy.once('connection', (sock) => (inbound = sock));
    const a = client(port, { room: 'hx', deadAfter: 300 });
    const b = client(s.address.port, { room: 'hx' });
    await a.connect();
    await b.connect();
    const resumed = next<{ resumed: boolean }>(b, 'peer-joined');
    const back = next<{ reconnected: boolean }>(a, 'joined');
    frozen.add(inbound!);
    const r = (await next<{ error: Error }>(a, 'reconnecting'))[0]!;
    expect(r.error.message).toMatch(/^nothing from the server for \d+ ms$/);
    expect((await back)[0]!.reconnected).toBe(true);
    expect(await resumed).toEqual([{ resumed: true }]);
    expect(s.core.partyCount).toBe(2);
    const got = next<PeerMessage>(a, 'message');
    b.send({ type: 'end-of-candidates' });
    expect(await got).toEqual([{ type: 'end-of-candidates' }]);
  });

  /** A createConnection whose every write is kept in `written` and every line read in `read`. */
  const recordingConnection =
    (written: string[], read: string[] = []) =>
    (o: net.NetConnectOpts): net.Socket => {
      const sock = net.createConnection(o);
      const write = sock.write.bind(sock) as (chunk: string) => boolean;
      sock.write = ((chunk: string) => {
        written.push(String(chunk));
        return write(chunk);
      }) as typeof sock.write;
      let partial = '';
      sock.on('data', (d: Buffer) => {
        const lines = (partial + d.toString('utf8')).split('\n');
        partial = lines.pop()!;
        read.push(...lines);
      });
      return sock;
    };

  it('pingInterval: pings a quiet connection (none while it sends), and the pongs keep a short deadAfter happy', async () => {
    // The client's timers run on a manual clock: each step of 50 ms is exactly one ping, and
    // the test waits for that ping's pong to arrive (the kernel's part) before the next step.
    // The server itself never pings here (heartbeat 60 s): without the client's pings and the
    // server's pongs, deadAfter 300 ms would give the connection up within the 500 ms below.
    const s = await server({ heartbeatInterval: 60_000, heartbeatTimeout: 120_000 });
    const clock = new ManualClock();
    const written: string[] = [];
    const read: string[] = [];
    const a = client(s.address.port, {
      room: 'pi',
      clock,
      deadAfter: 300,
      pingInterval: 50,
      createConnection: recordingConnection(written, read),
    });
    const dropped: unknown[] = [];
    a.on('reconnecting', (r) => dropped.push(r));
    await a.connect();
    const pings = () => written.filter((w) => w === '{"type":"ping"}\n').length;
    const pongs = () => read.filter((l) => l === '{"type":"pong"}').length;
    for (let i = 1; i <= 10; i++) {
      clock.advance(50);
      expect(pings()).toBe(i);
      await waitFor(() => pongs() === i, `pong ${i}`);
    }
    expect(dropped).toEqual([]);
    expect(a.state).toBe('joined');
    // While it sends on its own, nothing is quiet for 50 ms: no ping.
    for (let i = 0; i < 10; i++) {
      a.send({ type: 'app', data: i });
      clock.advance(20);
    }
    expect(pings()).toBe(10);
    // Quiet again: the ping comes 50 ms after the last send.
    clock.advance(29);
    expect(pings()).toBe(10);
    clock.advance(1);
    expect(pings()).toBe(11);
  });

  it('no pingInterval: the client sends no ping of its own', async () => {
    const s = await server({ heartbeatInterval: 60_000 });
    const clock = new ManualClock();
    const written: string[] = [];
    const a = client(s.address.port, {
      room: 'np',
      clock,
      deadAfter: 600_000,
      createConnection: recordingConnection(written),
    });
    await a.connect();
    clock.advance(300_000);
    expect(written.map((w) => JSON.parse(w).type)).toEqual(['join']);
    expect(a.state).toBe('joined');
  });

  it('backs off exponentially (on its clock) and gives up after maxAttempts', async () => {
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', () => r()));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const clock = new ManualClock();
    const c = client(port, { room: 'x', clock, random: () => 0.5, reconnect: { initialDelay: 100, factor: 2, maxDelay: 300, maxAttempts: 3 } });
    const done = c.connect().then(
      () => 'joined',
      (e: SignalClientError) => e,
    );
    const delays: number[] = [];
    for (let i = 0; i < 3; i++) {
      const [ev] = await once(c, 'reconnecting');
      delays.push((ev as { delay: number }).delay);
      clock.advance((ev as { delay: number }).delay);
    }
    const err = (await done) as SignalClientError;
    expect(delays).toEqual([100, 200, 300]);
    expect(err).toBeInstanceOf(SignalClientError);
    expect(err.code).toBe('GAVE_UP');
    expect(c.state).toBe('closed');
  });

  it('a final server error (room full) rejects connect() and does not retry', async () => {
    const s = await server();
    await client(s.address.port, { room: 'full' }).connect();
    await client(s.address.port, { room: 'full' }).connect();
    const c = client(s.address.port, { room: 'full' });
    let retried = false;
    c.on('reconnecting', () => (retried = true));
    c.on('error', () => {});
    const err = await c.connect().then(
      () => undefined,
      (e: SignalClientError) => e,
    );
    expect(err?.code).toBe('SERVER_ERROR');
    expect(err?.serverCode).toBe('room-full');
    expect(retried).toBe(false);
    expect(c.state).toBe('closed');
  });
});
