// SignalServer (the Node adapter) over real loopback TCP: the tutorial's semantics, rooms,
// limits, hostile input and many connections. Every wait is for bytes or a close, with a
// generous deadline.
import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../../../test/helpers/cleanup.js';
import { SignalServer, type SignalServerOptions, signalMetrics } from '../src/index.js';
import { RawClient, eventually } from './tcp.js';

const { track, defer } = useCleanup();

async function server(options: SignalServerOptions = {}): Promise<SignalServer> {
  return track(await SignalServer.start({ host: '127.0.0.1', port: 0, ...options }));
}
async function client(s: SignalServer): Promise<RawClient> {
  return track(await RawClient.connect(s.address.port));
}

describe('plain mode over TCP', () => {
  it('pairs, forwards both ways, buffers before the second, refuses a third, frees a place', async () => {
    const s = await server({ mode: 'plain' });
    const a = await client(s);
    await a.write('192.0.2.1 5000 udp 1.000000 local ufragA pwdA\n');
    await a.write('192.0.2.1 5001 udp 0.900000 stun ufragA pwdA\n');
    const b = await client(s);
    expect(await b.received('192.0.2.1 5000 udp 1.000000 local ufragA pwdA\n192.0.2.1 5001 udp 0.900000 stun ufragA pwdA\n')).toBe(
      '192.0.2.1 5000 udp 1.000000 local ufragA pwdA\n192.0.2.1 5001 udp 0.900000 stun ufragA pwdA\n',
    );
    await b.write('198.51.100.2 6000 udp 1.000000 local ufragB pwdB\n');
    expect(await a.received('198.51.100.2 6000 udp 1.000000 local ufragB pwdB\n')).toBe('198.51.100.2 6000 udp 1.000000 local ufragB pwdB\n');
    const c = await client(s);
    await c.waitClosed();
    expect(c.data.length).toBe(0);
    await b.close();
    await a.write('for the next\n');
    await eventually(() => s.core.bufferedBytes === 13, 'the line to be held');
    const d = await client(s);
    expect(await d.received('for the next\n')).toBe('for the next\n');
    expect(d.closed).toBe(false);
  });

  it('mode auto: the tutorial client works unchanged; a listener that stays silent is paired after detect-timeout', async () => {
    const s = await server({ detectTimeout: 200 });
    const listener = await client(s);
    const a = await client(s);
    await a.write('10.0.0.1 4000 udp 1.000000 local u p\n');
    expect(await listener.received('10.0.0.1 4000 udp 1.000000 local u p\n')).toBe('10.0.0.1 4000 udp 1.000000 local u p\n');
  });

  it('binary bytes pass through unchanged, in order, across many writes', async () => {
    const s = await server({ mode: 'plain', maxLine: 1 << 20 });
    const a = await client(s);
    const b = await client(s);
    const all = Buffer.alloc(200_000);
    for (let i = 0; i < all.length; i++) all[i] = (i * 31 + (i >> 8)) & 0xff;
    for (let off = 0; off < all.length; off += 7_001) await a.write(all.subarray(off, off + 7_001));
    await b.until(() => b.data.length >= all.length, 'all bytes');
    expect(b.data.equals(all)).toBe(true);
  });
});

describe('rooms over TCP', () => {
  it('join, relay, room-full with its reason, peer-left', async () => {
    const s = await server();
    const a = await client(s);
    await a.json({ type: 'join', room: 'abc' });
    expect((await a.messages(1))[0]).toMatchObject({ type: 'joined', initiator: true, peer: false });
    await a.json({ type: 'credentials', ufrag: 'uf01', pwd: 'p'.repeat(22) });
    const b = await client(s);
    await b.json({ type: 'join', room: 'abc' });
    expect(await b.messages(2)).toEqual([expect.objectContaining({ type: 'joined', peer: true }), { type: 'credentials', ufrag: 'uf01', pwd: 'p'.repeat(22) }]);
    const c = await client(s);
    await c.json({ type: 'join', room: 'abc' });
    expect(await c.messages(1)).toEqual([{ type: 'error', code: 'room-full', reason: 'room abc already has two parties', fatal: true }]);
    await c.waitClosed();
    await b.close();
    expect(await a.messages(2)).toEqual([{ type: 'peer-joined', resumed: false }, { type: 'peer-left', reason: 'closed' }]);
  });

  it('pings, and closes a connection that does not answer (heartbeat-timeout) with the reason', async () => {
    const s = await server({ heartbeatInterval: 100, heartbeatTimeout: 400, tickResolution: 10 });
    const a = await client(s);
    await a.json({ type: 'join', room: 'hb' });
    expect(await a.messages(2)).toEqual([expect.objectContaining({ type: 'joined', heartbeat: 100 }), { type: 'ping' }]);
    await a.waitClosed();
    expect(a.text).toMatch(/{"type":"error","code":"heartbeat-timeout","reason":"nothing received for 400 ms","fatal":true}\n$/);
  });
});

describe('limits and hostile input', () => {
  it('an endless line (no newline, megabytes) costs one connection and at most max-line bytes', async () => {
    const s = await server({ maxLine: 1024 });
    const a = await client(s);
    await a.json({ type: 'join', room: 'r' });
    const other = await client(s);
    await other.json({ type: 'join', room: 'r' });
    await other.messages(1);
    const junk = Buffer.alloc(64 * 1024, 0x61);
    for (let i = 0; i < 64 && !a.closed; i++) await a.write(junk);
    await a.waitClosed();
    expect(a.text).toContain('{"type":"error","code":"line-too-long","reason":"a line is longer than 1024 bytes","fatal":true}');
    expect(await other.messages(1)).toEqual([{ type: 'peer-left', reason: 'error' }]);
    expect(other.closed).toBe(false);
  });

  it('binary garbage: errors, then the close; other clients unaffected', async () => {
    const s = await server({ maxErrors: 5 });
    const a = await client(s);
    const b = await client(s);
    await b.json({ type: 'join', room: 'fine' });
    await b.messages(1);
    const junk = Buffer.alloc(100_000);
    let x = 12345;
    for (let i = 0; i < junk.length; i++) {
      x = (x * 1103515245 + 12345) & 0x7fffffff;
      junk[i] = x >> 16;
    }
    junk[0] = 0x7b; // "{": the JSON protocol
    await a.write(junk);
    await a.waitClosed();
    expect(a.text).toMatch(/"fatal":true}\n$/);
    await b.json({ type: 'ping' });
    expect(await b.messages(1)).toEqual([{ type: 'pong' }]);
  });

  it('thousands of connections: held at once up to max-connections; the rest refused; all released', async () => {
    const s = await server({ maxConnections: 1500, maxConnectionsPerIp: 5000, mode: 'rooms', joinTimeout: 120_000 });
    const socks: net.Socket[] = [];
    defer(() => socks.forEach((x) => x.destroy()));
    let closedByServer = 0;
    // In batches, so the listen backlog does not overflow into SYN retries.
    for (let batch = 0; batch < 10; batch++) {
      await Promise.all(
        Array.from({ length: 200 }, () => {
          const so = net.createConnection({ host: '127.0.0.1', port: s.address.port });
          socks.push(so);
          so.on('error', () => {});
          so.on('close', () => closedByServer++);
          return new Promise<void>((resolve) => {
            so.once('connect', () => resolve());
            so.once('close', () => resolve());
          });
        }),
      );
    }
    await eventually(() => closedByServer === 500 && s.core.connectionCount === 1500, `1500 held and 500 refused (held ${s.core.connectionCount}, closed ${closedByServer})`, 60_000);
    expect(s.core.stats.refused['max-connections']).toBe(500);
    // Each held connection still works.
    const probe = socks.find((x) => !x.destroyed)!;
    probe.write('{"type":"join","room":"probe"}\n');
    await new Promise<void>((resolve) => probe.once('data', () => resolve()));
    socks.forEach((x) => x.destroy());
    await eventually(() => s.core.connectionCount === 0, 'every connection released', 60_000);
  });

  it('connections per IP', async () => {
    const s = await server({ maxConnectionsPerIp: 3, mode: 'rooms' });
    const held = [await client(s), await client(s), await client(s)];
    await held[2]!.until(() => s.core.connectionCount === 3, 'three connections');
    const extra = await client(s);
    await extra.waitClosed();
    expect(s.core.stats.refused['max-connections-per-ip']).toBe(1);
  });

  it('a slow reader whose socket stays full for slow-reader-timeout is cut off; its peer stays', async () => {
    const s = await server({ mode: 'plain', maxBuffer: 64 * 1024 * 1024, slowReaderTimeout: 500, idleTimeout: 0 });
    const reader = await client(s);
    const writer = await client(s);
    await writer.write('hello\n');
    await reader.received('hello\n');
    reader.sock.pause();
    const chunk = `${'z'.repeat(1000)}\n`.repeat(64);
    // Write until the server finds the reader's socket full, then stop.
    for (let i = 0; i < 5000 && s.core.blockedCount === 0; i++) await writer.write(chunk);
    expect(s.core.blockedCount).toBe(1);
    await eventually(() => s.core.stats.closed['slow-reader'] === 1, 'the slow reader to be cut off');
    reader.sock.resume();
    await reader.waitClosed();
    await writer.write('still here\n');
    await eventually(() => s.core.bufferedBytes === 11, 'the writer to be held for the next party');
    expect(writer.closed).toBe(false);
  });

  it('close() tells JSON parties "shutdown" and ends every connection', async () => {
    const s = await SignalServer.start({ host: '127.0.0.1', port: 0 });
    defer(() => s.close());
    const a = track(await RawClient.connect(s.address.port));
    await a.json({ type: 'join', room: 'bye' });
    await a.messages(1);
    const p = track(await RawClient.connect(s.address.port));
    await p.write('plain\n');
    await eventually(() => s.core.partyCount === 2, 'two parties');
    await s.close();
    expect(await a.messages(1)).toEqual([{ type: 'error', code: 'shutdown', reason: 'the server is shutting down', fatal: true }]);
    await a.waitClosed();
    await p.waitClosed();
    expect(p.data.length).toBe(0);
  });
});

describe('metrics', () => {
  it('prom-client reads the counters when scraped', async () => {
    const s = await server();
    const reg = await signalMetrics(s);
    const a = await client(s);
    await a.json({ type: 'join', room: 'm' });
    const b = await client(s);
    await b.json({ type: 'join', room: 'm' });
    await b.messages(1);
    await a.json({ type: 'app', data: 'x' });
    await b.messages(1);
    const text = await reg.metrics();
    expect(text).toMatch(/^natkit_signal_parties 2$/m);
    expect(text).toMatch(/^natkit_signal_pairs_total 1$/m);
    expect(text).toMatch(/^natkit_signal_connections\{protocol="json"\} 2$/m);
    expect(text).toMatch(/^natkit_signal_delivered_messages_total 1$/m);
  });
});
