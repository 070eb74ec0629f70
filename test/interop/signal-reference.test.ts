// signalserver's plain mode against the libjingle tutorial's own Python server (a faithful
// Python 3 transcription, packages/signal/test/reference/tutorial_server.py): the same
// client script runs against both, and every client receives the same bytes. Where the
// reference's code and its stated intent differ (it lets a third party in), the test
// shows the difference and which one natkit follows.
import * as http from 'node:http';
import { describe, expect, it } from 'vitest';
import { RawClient } from '../../packages/signal/test/tcp.js';
import { useCleanup } from '../helpers/cleanup.js';
import { needProgram } from '../helpers/programs.js';
import { ROOT, type Proc, start, startBin } from '../helpers/spawn.js';

const { track } = useCleanup();

interface Target {
  name: string;
  port: number;
  /** Waits until the server has handled `n` departures in all. */
  departures(n: number): Promise<void>;
  /** Waits until the server holds what a lone party sent (n: how many times data was held / bytes held). */
  held(n: number, bytes: number): Promise<void>;
}

function getText(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    }).on('error', reject);
  });
}

function poll(check: () => Promise<boolean> | boolean, what: string, ms = 15_000): Promise<void> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const step = async () => {
      try {
        if (await check()) return resolve();
      } catch {
        // not yet
      }
      if (Date.now() - started > ms) return reject(new Error(`waited ${ms} ms for ${what}`));
      setTimeout(step, 10);
    };
    void step();
  });
}

async function python(ctx: { skip: (note?: string) => void }): Promise<Target> {
  const py = needProgram(ctx, '/usr/bin/python3');
  const p: Proc = start(py, ['-u', `${ROOT}packages/signal/test/reference/tutorial_server.py`, '127.0.0.1', '0']);
  const m = await p.waitFor(/listening on (\d+)/);
  const count = (re: RegExp) => (p.stdout().match(re) ?? []).length;
  return {
    name: 'tutorial (Python)',
    port: Number(m[1]),
    departures: (n) => poll(() => count(/^Connection closed$/gm) >= n, `${n} departures`),
    held: (n) => poll(() => count(/^Buffering data$/gm) >= n, `${n} buffered chunks`),
  };
}

async function natkit(mode: 'plain' | 'auto'): Promise<Target> {
  const p = startBin('signal', 'signalserver', ['--listen', '127.0.0.1', '--port', '0', '--mode', mode, '--metrics', '127.0.0.1:0', ...(mode === 'auto' ? ['--detect-timeout', '0.2'] : [])]);
  const m = await p.waitFor(/listening on tcp 127\.0\.0\.1:(\d+); mode \w+; metrics on (\S+)/);
  const metric = async (re: RegExp) => Number(re.exec(await getText(m[2]!))?.[1] ?? 0);
  return {
    name: `natkit --mode ${mode}`,
    port: Number(m[1]),
    departures: (n) => poll(async () => (await metric(/^natkit_signal_closed_total\{reason="closed"\} (\d+)$/m)) >= n, `${n} departures`),
    held: (_n, bytes) => poll(async () => (await metric(/^natkit_signal_buffered_bytes (\d+)$/m)) === bytes, `${bytes} bytes held`),
  };
}

/**
 * The client script: pairing, buffering before the second party, forwarding both ways, a
 * party leaving and a new one taking its place with what was held for it, and a lone
 * party's held data dropped when it leaves. Returns what every client received.
 */
async function script(t: Target): Promise<Record<string, string>> {
  const open = async () => track(await RawClient.connect(t.port));
  let departed = 0;
  const leave = async (c: RawClient) => {
    await c.close();
    await t.departures(++departed);
  };
  let heldTimes = 0;

  const a = await open();
  const send = async (x: RawClient, line: string) => {
    await x.write(line);
    await t.held(++heldTimes, Buffer.byteLength(line));
  };
  await send(a, '192.0.2.1 5000 udp 1.000000 local ufragA pwdA\n');
  const b = await open();
  await b.received('192.0.2.1 5000 udp 1.000000 local ufragA pwdA\n');
  await b.write('198.51.100.2 6000 udp 1.000000 local ufragB pwdB\n');
  await a.received('198.51.100.2 6000 udp 1.000000 local ufragB pwdB\n');
  await a.write('192.0.2.1 5001 udp 0.900000 stun ufragA pwdA\n');
  await b.received('192.0.2.1 5000 udp 1.000000 local ufragA pwdA\n192.0.2.1 5001 udp 0.900000 stun ufragA pwdA\n');

  // B leaves; what A sends now waits for the next party, who takes B's place.
  await leave(b);
  await send(a, '192.0.2.1 5002 udp 0.800000 relay ufragA pwdA\n');
  const c = await open();
  await c.received('192.0.2.1 5002 udp 0.800000 relay ufragA pwdA\n');
  await c.write('203.0.113.3 7000 udp 1.000000 local ufragC pwdC\n');
  await a.received('198.51.100.2 6000 udp 1.000000 local ufragB pwdB\n203.0.113.3 7000 udp 1.000000 local ufragC pwdC\n');

  // Both leave. A lone party's data is dropped when it leaves (the reference's buffer = "").
  await leave(a);
  await leave(c);
  const d = await open();
  await send(d, 'stale candidate of D\n');
  await leave(d);
  const e = await open();
  await send(e, 'e1\n');
  const f = await open();
  await f.received('e1\n');
  await f.write('f1\n');
  await e.received('f1\n');
  return { a: a.text, b: b.text, c: c.text, d: d.text, e: e.text, f: f.text };
}

describe('plain mode against the tutorial\'s Python server', () => {
  it('the same client script gets the same bytes from both', async (ctx) => {
    const reference = await script(await python(ctx));
    expect(reference).toEqual({
      a: '198.51.100.2 6000 udp 1.000000 local ufragB pwdB\n203.0.113.3 7000 udp 1.000000 local ufragC pwdC\n',
      b: '192.0.2.1 5000 udp 1.000000 local ufragA pwdA\n192.0.2.1 5001 udp 0.900000 stun ufragA pwdA\n',
      c: '192.0.2.1 5002 udp 0.800000 relay ufragA pwdA\n',
      d: '',
      e: 'f1\n',
      f: 'e1\n',
    });
    expect(await script(await natkit('plain'))).toEqual(reference);
    expect(await script(await natkit('auto'))).toEqual(reference);
  });

  it('a third party: the reference\'s code lets it in (len(read_socks) > 3 is off by one); natkit closes it at once, as the tutorial says', async (ctx) => {
    for (const t of [await python(ctx), await natkit('plain')]) {
      const a = track(await RawClient.connect(t.port));
      const b = track(await RawClient.connect(t.port));
      await a.write('x\n');
      await b.received('x\n');
      const c = track(await RawClient.connect(t.port));
      const d = track(await RawClient.connect(t.port));
      await d.waitClosed(); // the fourth is refused by both
      await a.write('y\n');
      await b.received('x\ny\n');
      if (t.name.startsWith('tutorial')) {
        // The Python code admits C and forwards A's bytes to it as well.
        expect(await c.received('y\n')).toBe('y\n');
        expect(c.closed).toBe(false);
      } else {
        await c.waitClosed();
        expect(c.data.length).toBe(0);
      }
      expect(d.data.length).toBe(0);
    }
  });
});
