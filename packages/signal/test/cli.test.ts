// The signalserver binary, spawned from its build: --help, bad flags and environment
// values (exit 2 with what is wrong), the start-up line, JSON logs, metrics, SIGTERM.
import * as http from 'node:http';
import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../../../test/helpers/cleanup.js';
import { runBin, startBin } from '../../../test/helpers/spawn.js';
import { OPTIONS } from '../src/cli/config.js';
import { RawClient } from './tcp.js';

const { track } = useCleanup();

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

describe('signalserver', () => {
  it('--help lists every option and exits 0; --version', async () => {
    const r = await runBin('signal', 'signalserver', ['--help']);
    expect(r.code).toBe(0);
    // The option rows, exactly the options the binary takes, each with its variable.
    expect([...r.stdout.matchAll(/^ {2}(--[a-z][a-z0-9-]*)/gm)].map((m) => m[1])).toEqual(OPTIONS.map((o) => `--${o.name}`));
    for (const o of OPTIONS) if (o.env) expect(r.stdout).toContain(`env ${o.env})`);
    expect(r.stdout).toContain('SIGNALSERVER_MAX_LINE');
    const v = await runBin('signal', 'signalserver', ['--version']);
    expect(v.stdout).toMatch(/^signalserver \d+\.\d+\.\d+\n$/);
  });

  it.each([
    [['--bogus'], 'unknown option --bogus'],
    [['--port', '70000'], '--port must be at most 65535, got 70000'],
    [['--port'], '--port needs a value (PORT)'],
    [['--mode', 'fast'], '--mode must be one of auto, plain, rooms; got "fast"'],
    [['--max-line', '10'], '--max-line must be at least 64, got 10'],
    [['--max-buffer', 'lots'], '--max-buffer expects a number, got "lots"'],
    [['--listen', 'localhost'], '--listen: "localhost" is not an IP address'],
    [['--metrics', '9642'], '--metrics: expected ADDR:PORT (e.g. 127.0.0.1:9642 or [::1]:9642), got "9642"'],
    [['--redis', 'localhost:6379'], '--redis: expected a URL like redis://127.0.0.1:6379, got "localhost:6379"'],
    [['--redis-ttl', '5'], '--redis-ttl needs --redis'],
    [['--heartbeat', '30', '--heartbeat-timeout', '20'], '--heartbeat-timeout (20 s) must be longer than --heartbeat (30 s)'],
    [['--mode', 'plain', '--detect-timeout', '1'], '--detect-timeout is for --mode auto'],
    [['extra'], 'unexpected argument "extra"'],
  ])('%j exits 2: %s', async (args, message) => {
    const r = await runBin('signal', 'signalserver', args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`signalserver: ${message}`);
    expect(r.stderr).toContain("Try 'signalserver --help'");
  });

  it('a bad environment value exits 2 naming the variable', async () => {
    const r = await runBin('signal', 'signalserver', [], { env: { SIGNALSERVER_MAX_ROOMS: '0' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('SIGNALSERVER_MAX_ROOMS must be at least 1, got 0');
  });

  it('a port in use exits 1 with a hint; an unreachable Redis exits 1', async () => {
    const busy = net.createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', () => r()));
    const port = (busy.address() as net.AddressInfo).port;
    try {
      const r = await runBin('signal', 'signalserver', ['--listen', '127.0.0.1', '--port', String(port)]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/cannot listen: .*EADDRINUSE.*pick one with --port/);
    } finally {
      await new Promise<void>((r) => busy.close(() => r()));
    }
    const r = await runBin('signal', 'signalserver', ['--listen', '127.0.0.1', '--port', '0', '--redis', `redis://127.0.0.1:${port}`]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+/);
  });

  it('one start-up line, JSON logs, metrics, and a clean SIGTERM that tells the parties', async () => {
    const p = startBin('signal', 'signalserver', ['--listen', '127.0.0.1', '--port', '0', '--metrics', '127.0.0.1:0', '--log-format', 'json', '--max-line', '256']);
    const m = await p.waitFor(/"msg":"signalserver \S+ listening on tcp 127\.0\.0\.1:(\d+); mode auto; metrics on (http:\S+)"/);
    expect(p.stdout().trim().split('\n')).toHaveLength(1);
    const port = Number(m[1]);
    const a = track(await RawClient.connect(port));
    await a.json({ type: 'join', room: 'x' });
    await a.messages(1);
    const b = track(await RawClient.connect(port));
    await b.write(`${'y'.repeat(300)}\n`);
    await b.waitClosed();
    await p.waitFor(/"level":"info","program":"signalserver","msg":"connection closed",.*"why":"line-too-long"/, 10_000, 'stderr');
    const metrics = await get(m[2]!);
    expect(metrics.status).toBe(200);
    expect(metrics.body).toMatch(/^natkit_signal_closed_total\{reason="line-too-long"\} 1$/m);
    expect(metrics.body).toMatch(/^natkit_signal_parties 1$/m);
    expect(metrics.body).toContain('process_cpu_user_seconds_total');
    expect(await p.stop('SIGTERM')).toBe(0);
    expect(await a.messages(1)).toEqual([{ type: 'error', code: 'shutdown', reason: 'the server is shutting down', fatal: true }]);
    await a.waitClosed();
    expect(p.stderr()).toMatch(/"msg":"SIGTERM: shutting down; telling 1 connection"/);
    expect(p.stderr()).toMatch(/"msg":"stopped"/);
  });
});
