import { afterEach, describe, expect, it } from 'vitest';
import { StunClient } from '../src/index.js';
import { killAll, runBin, startBin } from '../../../test/helpers/spawn.js';

afterEach(killAll);

describe('stunserver CLI', () => {
  it('prints its usage with --help and its version with --version', async () => {
    const h = await runBin('stun', 'stunserver', ['--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^Usage: stunserver \[options\]/);
    for (const flag of ['--listen', '--port', '--alternate', '--alt-port', '--tls-cert', '--error-rate', '--workers N', '--metrics ADDR:PORT']) expect(h.stdout).toContain(flag);
    const v = await runBin('stun', 'stunserver', ['--version']);
    expect(v.stdout).toMatch(/^stunserver \d+\.\d+\.\d+\n$/);
  });

  const bad: Array<[string[], NodeJS.ProcessEnv, RegExp]> = [
    [['--bogus'], {}, /unknown option --bogus/],
    [['--port', 'abc'], {}, /--port expects a number, got "abc"/],
    [['--port', '70000'], {}, /--port must be at most 65535/],
    [['--port'], {}, /--port needs a value/],
    [['--listen', 'not-an-ip'], {}, /--listen: "not-an-ip" is not an IP address/],
    [['--tls-cert', 'x.pem'], {}, /--tls-cert and --tls-key go together/],
    [['--no-udp', '--no-tcp'], {}, /nothing to serve/],
    [['--log-format', 'xml'], {}, /--log-format must be one of text, json/],
    [['extra'], {}, /unexpected argument "extra"/],
    [['--software', 'x', '--no-software'], {}, /--software and --no-software contradict/],
    [['--workers', '0'], {}, /--workers must be at least 1, got 0/],
    [['--workers', 'all'], {}, /--workers expects a number, got "all"/],
    [['--workers', '2.5'], {}, /--workers expects a whole number, got "2\.5"/],
    [['--metrics', '127.0.0.1'], {}, /--metrics: expected ADDR:PORT .*got "127\.0\.0\.1"/],
    [['--metrics', 'localhost:9640'], {}, /--metrics: expected ADDR:PORT .*got "localhost:9640"/],
    [[], { STUNSERVER_WORKERS: '0' }, /STUNSERVER_WORKERS must be at least 1, got 0/],
    [[], { STUNSERVER_PORT: 'twelve' }, /STUNSERVER_PORT expects a number/],
  ];
  for (const [args, env, message] of bad) {
    it(`refuses ${args.join(' ') || JSON.stringify(env)} with a clear message and status 2`, async () => {
      const r = await runBin('stun', 'stunserver', args, { env });
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toContain("Try 'stunserver --help'");
      expect(r.stdout).toBe('');
    });
  }

  it('says where it listens in one line, serves, and stops cleanly on SIGTERM and SIGINT', async () => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      // One process: this is one server's behaviour (workers: packages/turn/test/workers.test.ts).
      const p = startBin('stun', 'stunserver', ['--listen', '127.0.0.1', '--alternate', '127.0.0.2', '--port', '0', '--workers', '1']);
      const m = await p.waitFor(/^stunserver \S+ listening on udp 127\.0\.0\.1:(\d+), udp 127\.0\.0\.1:(\d+), udp 127\.0\.0\.2:\1, udp 127\.0\.0\.2:\2, tcp 127\.0\.0\.1:\1 \(RFC 5780 full mode\)\n/);
      const c = new StunClient();
      try {
        const r = await c.binding({ address: '127.0.0.1', port: Number(m[1]) });
        expect(r.otherAddress).toEqual({ family: 'IPv4', address: '127.0.0.2', port: Number(m[2]) });
      } finally {
        await c.close();
      }
      expect(await p.stop(signal)).toBe(0);
      expect(p.stderr()).toContain(`${signal}: shutting down`);
      expect(p.stderr()).toMatch(/stopped received=1 responses=1/);
    }
  });

  it('reports a port in use as an error with status 1', async () => {
    // The first one on every core: a second server must still find the port taken.
    const a = startBin('stun', 'stunserver', ['--listen', '127.0.0.1', '--port', '0', '--no-tcp']);
    const port = (await a.waitFor(/udp 127\.0\.0\.1:(\d+)/))[1]!;
    const b = await runBin('stun', 'stunserver', ['--listen', '127.0.0.1', '--port', port]);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/^stunserver: cannot listen on udp 127\.0\.0\.1:\d+: .*EADDRINUSE.*pick one with --port/m);
    expect(await a.stop()).toBe(0);
  });

  it('writes JSON log lines with --log-format json', async () => {
    const p = startBin('stun', 'stunserver', ['--listen', '127.0.0.1', '--port', '0', '--log-format', 'json']);
    const line = (await p.waitFor(/^\{.*\}\n/))[0];
    const j = JSON.parse(line);
    expect(j.program).toBe('stunserver');
    expect(j.msg).toMatch(/listening on udp 127\.0\.0\.1:\d+/);
    expect(await p.stop()).toBe(0);
  });
});

describe('natcheck CLI', () => {
  it('prints usage, and refuses bad input with status 2', async () => {
    const help = (await runBin('stun', 'natcheck', ['--help'])).stdout;
    expect(help).toMatch(/^Usage: natcheck \[options\] SERVER\[:PORT\]/);
    // What "Unknown" and "not tested" mean, where a user looks first.
    expect(help).toMatch(/NAT type \(RFC 3489\)  Unknown +the behaviour tests could not all be made: the server\n +gave no OTHER-ADDRESS/);
    expect(help).toMatch(/hairpinning  not tested +no NAT was found/);
    expect(help).toContain('--no-hairpin was given');
    const none = await runBin('stun', 'natcheck', []);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/which STUN server\?/);
    const badPort = await runBin('stun', 'natcheck', ['127.0.0.1:http']);
    expect(badPort.code).toBe(2);
    expect(badPort.stderr).toMatch(/bad port "http"/);
    const badTimeout = await runBin('stun', 'natcheck', ['--timeout', '5', '127.0.0.1']);
    expect(badTimeout.code).toBe(2);
    expect(badTimeout.stderr).toMatch(/--timeout must be at least 100/);
  });

  it('classifies loopback against stunserver in full mode as Open Internet, in text and JSON', async () => {
    const s = startBin('stun', 'stunserver', ['--listen', '127.0.0.1', '--alternate', '127.0.0.2', '--port', '0']);
    const port = (await s.waitFor(/udp 127\.0\.0\.1:(\d+)/))[1]!;
    const text = await runBin('stun', 'natcheck', [`127.0.0.1:${port}`]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/behind a NAT\s+no/);
    expect(text.stdout).toMatch(/mapping\s+endpoint-independent/);
    expect(text.stdout).toMatch(/filtering\s+endpoint-independent/);
    expect(text.stdout).toMatch(/NAT type \(RFC 3489\)\s+Open Internet/);
    const json = await runBin('stun', 'natcheck', ['--json', `127.0.0.1:${port}`]);
    const r = JSON.parse(json.stdout);
    expect(r.classic).toBe('Open Internet');
    expect(r.otherAddress).toEqual({ family: 'IPv4', address: '127.0.0.2', port: expect.any(Number) });
    expect(r.tests.map((t: { name: string }) => t.name)).toEqual(['mapping I', 'filtering I', 'filtering II']);
    expect(await s.stop()).toBe(0);
  });

  it('exits 3 and says UDP is blocked when nothing answers', async () => {
    const r = await runBin('stun', 'natcheck', ['--timeout', '300', '127.0.0.1:9']);
    expect(r.code).toBe(3);
    expect(r.stdout).toMatch(/UDP is blocked/);
    expect(r.stdout).toMatch(/NAT type \(RFC 3489\)\s+UDP Blocked/);
  });
});
