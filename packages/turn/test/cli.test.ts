// The relayserver binary, spawned from its build (packages/turn/bin/relayserver.js): flags,
// environment and config file, the start-up line, authentication against the running
// process, SIGHUP reloads, SIGTERM drains, metrics. Every wait is for a line of output or a
// protocol answer, never a sleep; every process is stopped and awaited.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Method, StunClient, type StunResponse, type TransportAddress, nodeNetwork } from '@natkit/stun';
import { TurnAttr, TurnClient, restPassword } from '@natkit/turn';
import { type Proc, runBin, startBin } from '../../../test/helpers/spawn.js';
import { openRawUdp } from '../../../test/helpers/udp.js';
import { OPTIONS } from '../src/cli/config.js';
import { useCleanup } from '../../../test/helpers/cleanup.js';
import { httpGet } from '../../../test/helpers/http.js';

const fixtures = new URL('../../../test/fixtures/', import.meta.url);
const CERT = new URL('tls-cert.pem', fixtures).pathname;
const KEY = new URL('tls-key.pem', fixtures).pathname;

const dir = mkdtempSync(join(tmpdir(), 'relayserver-test-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
let fileNo = 0;
function file(text: string, name = `f${++fileNo}`): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

const { defer } = useCleanup();

/** A long-term-credential STUN client, closed after the test. */
function client(username?: string, password?: string): StunClient {
  const c = new StunClient({ credentials: username !== undefined ? { username, password: password! } : undefined, retransmit: { rto: 100, rc: 5, rm: 16 } });
  defer(() => c.close());
  return c;
}

function allocate(c: StunClient, port: number): Promise<StunResponse> {
  return c.request({ address: '127.0.0.1', port }, { method: Method.Allocate, attributes: (b) => b.add(TurnAttr.RequestedTransport, 17) });
}

function refresh(c: StunClient, port: number, lifetime: number): Promise<StunResponse> {
  return c.request({ address: '127.0.0.1', port }, { method: Method.Refresh, attributes: (b) => b.add(TurnAttr.Lifetime, lifetime) });
}

/** Each test relays on its own port range so concurrent runs do not collide. */
let range = 45000;
function ports(): string[] {
  const min = range;
  range += 100;
  return ['--min-port', String(min), '--max-port', String(min + 99)];
}

interface Running {
  proc: Proc;
  line: string;
  port: number;
  min: number;
  max: number;
}

const START = /^relayserver \S+ listening on (.*)\n/m;

/** Starts relayserver on loopback, a free port and a fresh relay range; waits for the start-up line. */
async function start(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Running> {
  const range = ports();
  // One process: these tests are about one relay's behaviour (workers: workers.test.ts).
  const proc = startBin('turn', 'relayserver', ['--listen', '127.0.0.1', '--port', '0', '--workers', '1', ...range, ...args], { env });
  const m = await proc.waitFor(START);
  const udp = /udp 127\.0\.0\.1:(\d+)/.exec(m[1]!);
  return { proc, line: m[0], port: udp ? Number(udp[1]) : 0, min: Number(range[1]), max: Number(range[3]) };
}

describe('relayserver flags', () => {
  it('lists every flag in --help, with its environment variable, and prints --version', async () => {
    const h = await runBin('turn', 'relayserver', ['--help']);
    expect(h.code).toBe(0);
    expect(h.stdout).toMatch(/^Usage: relayserver \[options\]/);
    const documented = [
      'config', 'listen', 'port', 'no-udp', 'no-tcp', 'tls-cert', 'tls-key', 'tls-port', 'relay-ip', 'external-ip', 'min-port', 'max-port',
      'realm', 'user', 'users-file', 'auth-secret', 'auth-secret-file', 'rest-separator', 'userhash', 'no-auth', 'allow-peer', 'deny-peer',
      'user-quota', 'total-quota', 'max-permissions', 'max-channels', 'legacy-channels', 'max-connections-per-ip', 'default-lifetime', 'max-lifetime', 'error-rate', 'metrics',
      'drain-timeout', 'log-format', 'log-level', 'software', 'no-software', 'help', 'version', 'workers', 'auth-log-rate',
    ];
    expect(OPTIONS.map((o) => o.name).sort()).toEqual([...documented].sort());
    for (const name of documented) {
      expect(h.stdout).toMatch(new RegExp(`^  --${name}\\b`, 'm'));
      if (name !== 'help' && name !== 'version') expect(h.stdout).toContain(`env RELAYSERVER_${name.toUpperCase().replace(/-/g, '_')})`);
    }
    expect(h.stdout).toContain('Precedence: flag > environment > config file > default');
    const v = await runBin('turn', 'relayserver', ['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/^relayserver \d+\.\d+\.\d+\n$/);
  });

  const base = ['--listen', '127.0.0.1', '--user', 'alice:pw'];
  const bad: Array<[string, () => string[], NodeJS.ProcessEnv, RegExp]> = [
    ['an unknown flag', () => ['--bogus'], {}, /unknown option --bogus/],
    ['a port that is not a number', () => ['--port', 'abc'], {}, /--port expects a number, got "abc"/],
    ['a port out of range', () => ['--port', '70000'], {}, /--port must be at most 65535/],
    ['--min-port above --max-port', () => [...base, '--min-port', '6000', '--max-port', '5000'], {}, /--min-port 6000 is above --max-port 5000/],
    ['a bad CIDR in --deny-peer', () => [...base, '--deny-peer', '10.0.0.0/33'], {}, /--deny-peer: bad prefix length in "10\.0\.0\.0\/33"/],
    ['a bad CIDR in --allow-peer', () => [...base, '--allow-peer', 'intranet'], {}, /--allow-peer: not a CIDR range: "intranet"/],
    ['a missing users file', () => ['--listen', '127.0.0.1', '--users-file', join(dir, 'nope')], {}, /--users-file: cannot read users file .*nope: ENOENT/],
    ['a malformed users file', () => ['--listen', '127.0.0.1', '--users-file', file('alice:pw\nbob\n', 'bad-users')], {}, /--users-file: .*bad-users line 2: expected user:password/],
    ['a missing auth-secret file', () => ['--listen', '127.0.0.1', '--auth-secret-file', join(dir, 'nope')], {}, /--auth-secret-file: cannot read .*nope/],
    ['--relay-ip twice for one family', () => [...base, '--relay-ip', '127.0.0.1', '--relay-ip', '127.0.0.2'], {}, /--relay-ip: IPv4 is given twice \(127\.0\.0\.1 and 127\.0\.0\.2\)/],
    ['--relay-ip 0.0.0.0', () => [...base, '--relay-ip', '0.0.0.0'], {}, /--relay-ip: 0\.0\.0\.0 is not a specific address/],
    ['--external-ip of a family without a relay address', () => [...base, '--external-ip', '2001:db8::1'], {}, /--external-ip 2001:db8::1 is IPv6, but there is no IPv6 relay address/],
    ['--tls-cert without --tls-key', () => [...base, '--tls-cert', CERT], {}, /--tls-cert and --tls-key go together/],
    ['--tls-port without a certificate', () => [...base, '--tls-port', '5350'], {}, /--tls-port needs --tls-cert and --tls-key/],
    ['a file that is no certificate', () => [...base, '--tls-cert', new URL('README.md', fixtures).pathname, '--tls-key', KEY], {}, /--tls-cert\/--tls-key: .* are not a usable certificate and key/],
    ['no credentials', () => ['--listen', '127.0.0.1'], {}, /no credentials: .*--user USER:PASSWORD.*--users-file FILE.*--auth-secret SECRET.*--auth-secret-file FILE/],
    ['an empty users file and nothing else', () => ['--listen', '127.0.0.1', '--users-file', file('# nobody yet\n')], {}, /no credentials/],
    ['--no-auth with credentials', () => [...base, '--no-auth'], {}, /--no-auth turns authentication off, but credentials are given \(--user\)/],
    ['--user without a password', () => ['--listen', '127.0.0.1', '--user', 'alice'], {}, /--user: expected USER:PASSWORD/],
    ['--listen that is not an address', () => ['--listen', 'localhost', '--user', 'a:b'], {}, /--listen: "localhost" is not an IP address/],
    ['--metrics without a port', () => [...base, '--metrics', '127.0.0.1'], {}, /--metrics: expected ADDR:PORT/],
    ['--log-level trace', () => [...base, '--log-level', 'trace'], {}, /--log-level must be one of debug, info, warn/],
    ['--workers 0', () => [...base, '--workers', '0'], {}, /--workers must be at least 1, got 0/],
    ['--workers that is not a number', () => [...base, '--workers', 'two'], {}, /--workers expects a number, got "two"/],
    ['--workers that is not whole', () => [...base, '--workers', '1.5'], {}, /--workers expects a whole number, got "1\.5"/],
    ['--workers above 1024', () => [...base, '--workers', '1025'], {}, /--workers must be at most 1024, got 1025/],
    ['a negative --auth-log-rate', () => [...base, '--auth-log-rate', '-1'], {}, /--auth-log-rate must be at least 0, got -1/],
    ['--legacy-channels given a value', () => [...base, '--legacy-channels=yes'], {}, /--legacy-channels is a switch; use --legacy-channels or --no-legacy-channels/],
    ['--metrics with a host name', () => [...base, '--metrics', 'localhost:9641'], {}, /--metrics: expected ADDR:PORT .*got "localhost:9641"/],
    ['a bad RELAYSERVER_WORKERS', () => base, { RELAYSERVER_WORKERS: '0' }, /RELAYSERVER_WORKERS must be at least 1, got 0/],
    ['--default-lifetime above --max-lifetime', () => [...base, '--default-lifetime', '4000'], {}, /--default-lifetime 4000 is above --max-lifetime 3600/],
    ['--software with --no-software', () => [...base, '--software', 'x', '--no-software'], {}, /--software and --no-software exclude each other/],
    ['--rest-separator of two characters', () => [...base, '--rest-separator', '::'], {}, /--rest-separator: expected one character/],
    ['nothing to serve', () => [...base, '--no-udp', '--no-tcp'], {}, /nothing to serve/],
    ['an extra argument', () => [...base, 'extra'], {}, /unexpected argument "extra"/],
    ['a bad environment variable', () => base, { RELAYSERVER_PORT: 'twelve' }, /RELAYSERVER_PORT expects a number, got "twelve"/],
    ['a bad CIDR from the environment', () => base, { RELAYSERVER_DENY_PEER: '192.0.2.0/24,nonsense' }, /RELAYSERVER_DENY_PEER: not a CIDR range: "nonsense"/],
    ['a missing config file', () => ['--config', join(dir, 'nope.conf')], {}, /--config: cannot read .*nope\.conf/],
    ['an unknown name in the config file', () => ['--config', file('# settings\nrealm = x\n\nlisen 127.0.0.1\n', 'typo.conf')], {}, /typo\.conf line 4: unknown setting "lisen" \(did you mean listen\?\)/],
    ['a bad value in the config file', () => ['--config', file('listen = 127.0.0.1\nuser = a:b\nmax-port = lots\n', 'badval.conf')], {}, /badval\.conf line 3: max-port expects a number, got "lots"/],
    ['a bad CIDR in the config file', () => ['--config', file('deny-peer 10.0.0.0/8\ndeny-peer 10.0.0.0/40\n', 'cidr.conf')], {}, /cidr\.conf line 2: deny-peer: bad prefix length/],
    ['a config file naming RELAYSERVER_CONFIG', () => base, { RELAYSERVER_CONFIG: join(dir, 'missing-env.conf') }, /--config: cannot read .*missing-env\.conf/],
  ];
  for (const [what, args, env, message] of bad) {
    it(`refuses ${what} with a clear message and status 2`, async () => {
      const r = await runBin('turn', 'relayserver', args(), { env });
      expect(r.stderr).toMatch(message);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain("Try 'relayserver --help'");
      expect(r.stdout).toBe('');
    });
  }

  it('takes values from the config file, the environment over it, and flags over both', async () => {
    const conf = file(
      [
        '# relayserver.conf',
        'realm = from-file',
        'listen 127.0.0.2        # replaced by --listen below',
        'no-tcp',
        'user = carol:c    # users add up across sources',
        'software "natkit # quoted"',
      ].join('\n'),
      'precedence.conf',
    );
    // File only (no --listen: the file's 127.0.0.2 is used).
    const range = ports();
    const a = startBin('turn', 'relayserver', ['--config', conf, '--port', '0', ...range]);
    const la = (await a.waitFor(START))[0];
    expect(la).toMatch(/listening on udp 127\.0\.0\.2:\d+; relaying on 127\.0\.0\.2 /);
    expect(la).toContain('realm from-file; 1 user, 0 REST secrets');
    expect(await a.stop('SIGINT')).toBe(0);
    // Environment over the file: realm, and the file's no-tcp switched back off.
    const b = await start(['--config', conf], { RELAYSERVER_REALM: 'from-env', RELAYSERVER_NO_TCP: 'false', RELAYSERVER_USER: 'dave:d' });
    expect(b.line).toMatch(/listening on udp 127\.0\.0\.1:(\d+), tcp 127\.0\.0\.1:\1; relaying on 127\.0\.0\.1 /);
    expect(b.line).toContain('realm from-env; 2 users');
    expect(await b.proc.stop('SIGINT')).toBe(0);
    // Flags over both.
    const c = await start(['--config', conf, '--realm', 'from-flag', '--user', 'erin:e', '--no-tcp'], { RELAYSERVER_REALM: 'from-env', RELAYSERVER_USER: 'dave:d' });
    expect(c.line).toMatch(/listening on udp 127\.0\.0\.1:\d+; /);
    expect(c.line).toContain('realm from-flag; 3 users');
    // The config file's user authenticates like any other.
    const r = await allocate(client('carol', 'c'), c.port);
    expect(r.message.get(TurnAttr.XorRelayedAddress)?.address).toBe('127.0.0.1');
    expect(r.message.get(TurnAttr.XorRelayedAddress)?.port).toBeGreaterThanOrEqual(c.min);
    expect(await c.proc.stop('SIGINT')).toBe(0);
  });
});

describe('relayserver running', () => {
  it('prints one start-up line, relays an authenticated Allocate over UDP, and refuses a wrong password with 401', async () => {
    const s = await start(['--user', 'alice:wonderland', '--user', 'bob:builder', '--auth-secret', 'shh', '--tls-cert', CERT, '--tls-key', KEY, '--tls-port', '0', '--metrics', '127.0.0.1:0']);
    expect(s.line).toMatch(
      new RegExp(
        `^relayserver \\d+\\.\\d+\\.\\d+ listening on udp 127\\.0\\.0\\.1:(\\d+), tcp 127\\.0\\.0\\.1:\\1, tls 127\\.0\\.0\\.1:\\d+; ` +
          `relaying on 127\\.0\\.0\\.1 ports ${s.min}-${s.max}; realm natkit; 2 users, 1 REST secret; metrics on http://127\\.0\\.0\\.1:\\d+/metrics\\n$`,
      ),
    );
    expect(s.proc.stdout()).toBe(s.line);
    const ok = await allocate(client('alice', 'wonderland'), s.port);
    const relayed = ok.message.get(TurnAttr.XorRelayedAddress)!;
    expect(relayed.address).toBe('127.0.0.1');
    expect(relayed.port).toBeGreaterThanOrEqual(s.min);
    expect(relayed.port).toBeLessThanOrEqual(s.max);
    expect(ok.message.get(TurnAttr.Lifetime)).toBe(600);
    await s.proc.waitFor(/allocation created id=1 user=alice/, 10_000, 'stderr');
    await expect(allocate(client('alice', 'not-the-password'), s.port)).rejects.toMatchObject({ code: 'AUTH_FAILED', errorCode: 401 });
    await expect(allocate(client('mallory', 'wonderland'), s.port)).rejects.toMatchObject({ code: 'AUTH_FAILED', errorCode: 401 });
    expect(await s.proc.stop('SIGINT')).toBe(0);
    expect(s.proc.stderr()).toMatch(/SIGINT: shutting down/);
    expect(s.proc.stderr()).toMatch(/stopped; 1 allocation cut/);
  });

  it('takes TURN REST API credentials from a secret file and a flag, refuses expired ones, and logs at the level asked', async () => {
    const secrets = file('# rotated monthly\nold-secret\n\nnew-secret\n');
    const s = await start(['--auth-secret-file', secrets, '--auth-secret', 'flag-secret', '--log-level', 'warn']);
    expect(s.line).toContain('0 users, 3 REST secrets');
    const now = Math.floor(Date.now() / 1000);
    for (const secret of ['old-secret', 'new-secret', 'flag-secret']) {
      const user = `${now + 3600}:alice`;
      const r = await allocate(client(user, restPassword(secret, user)), s.port);
      expect(r.message.get(TurnAttr.XorRelayedAddress)?.address).toBe('127.0.0.1');
    }
    const expired = `${now - 60}:alice`;
    await expect(allocate(client(expired, restPassword('new-secret', expired)), s.port)).rejects.toMatchObject({ code: 'AUTH_FAILED', errorCode: 401 });
    const forged = `${now + 3600}:alice`;
    await expect(allocate(client(forged, restPassword('guessed', forged)), s.port)).rejects.toMatchObject({ code: 'AUTH_FAILED', errorCode: 401 });
    expect(await s.proc.stop('SIGINT')).toBe(0);
    // --log-level warn: no info lines (allocations, shutdown) on stderr.
    expect(s.proc.stderr()).not.toMatch(/allocation created|shutting down|stopped/);
  });

  it('reloads users on SIGHUP: new users get in, existing allocations survive, a bad file keeps the old credentials', async () => {
    const users = file('alice:wonderland\n', 'turnusers');
    const conf = file(`users-file = ${users}\nuser = carol:c\n`, 'reload.conf');
    const s = await start(['--config', conf]);
    expect(s.line).toContain('2 users, 0 REST secrets');
    const alice = client('alice', 'wonderland');
    await allocate(alice, s.port);
    await expect(allocate(client('bob', 'builder'), s.port)).rejects.toMatchObject({ errorCode: 401 });

    writeFileSync(users, 'alice:wonderland\nbob:builder\n');
    writeFileSync(conf, `users-file = ${users}\nuser = dave:d\n`);
    s.proc.child.kill('SIGHUP');
    await s.proc.waitFor(/credentials reloaded users=3 secrets=0/, 10_000, 'stderr');
    await allocate(client('bob', 'builder'), s.port);
    await allocate(client('dave', 'd'), s.port);
    await expect(allocate(client('carol', 'c'), s.port)).rejects.toMatchObject({ errorCode: 401 });
    // Alice's allocation from before the reload is still there.
    expect((await refresh(alice, s.port, 600)).message.get(TurnAttr.Lifetime)).toBe(600);

    writeFileSync(users, 'alice:wonderland\nthis line is broken\n');
    s.proc.child.kill('SIGHUP');
    await s.proc.waitFor(/error: SIGHUP: reload failed; keeping the old credentials error=.*turnusers line 2: expected user:password/, 10_000, 'stderr');
    await allocate(client('bob', 'builder'), s.port);
    expect((await refresh(alice, s.port, 600)).message.get(TurnAttr.Lifetime)).toBe(600);
    expect(await s.proc.stop('SIGINT')).toBe(0);
    expect(s.proc.stderr()).toMatch(/stopped; 4 allocations cut/);
  });

  it('drains on SIGTERM: new Allocates get 508, and it exits 0 when the drain timeout passes', async () => {
    const s = await start(['--user', 'alice:wonderland', '--drain-timeout', '1']);
    await allocate(client('alice', 'wonderland'), s.port);
    s.proc.child.kill('SIGTERM');
    await s.proc.waitFor(/SIGTERM: draining/, 10_000, 'stderr');
    await expect(allocate(client('alice', 'wonderland'), s.port)).rejects.toMatchObject({ code: 'ERROR_RESPONSE', errorCode: 508 });
    expect(await s.proc.exited).toBe(0);
    expect(s.proc.stderr()).toMatch(/warn: drain timeout: 1 allocation still open/);
    expect(s.proc.stderr()).toMatch(/stopped; 1 allocation cut/);
  });

  it('drains on SIGTERM and exits 0 as soon as the last allocation is released', async () => {
    const s = await start(['--user', 'alice:wonderland', '--drain-timeout', '300']);
    const alice = client('alice', 'wonderland');
    await allocate(alice, s.port);
    s.proc.child.kill('SIGTERM');
    await s.proc.waitFor(/SIGTERM: draining/, 10_000, 'stderr');
    expect((await refresh(alice, s.port, 0)).message.get(TurnAttr.Lifetime)).toBe(0);
    expect(await s.proc.exited).toBe(0);
    expect(s.proc.stderr()).toMatch(/drained: every allocation has ended/);
    expect(s.proc.stderr()).toMatch(/stopped; 0 allocations cut/);
  });

  it('stops at once on a second SIGTERM, or a SIGINT, during the drain', async () => {
    for (const second of ['SIGTERM', 'SIGINT'] as const) {
      const s = await start(['--user', 'alice:wonderland', '--drain-timeout', '300']);
      await allocate(client('alice', 'wonderland'), s.port);
      s.proc.child.kill('SIGTERM');
      await s.proc.waitFor(/SIGTERM: draining/, 10_000, 'stderr');
      expect(await s.proc.stop(second)).toBe(0);
      expect(s.proc.stderr()).toContain(`${second} while draining: stopping now`);
      expect(s.proc.stderr()).toMatch(/stopped; 1 allocation cut/);
    }
  });

  it('serves Prometheus metrics over HTTP, counting allocations and relayed packets', async () => {
    const s = await start(['--user', 'alice:wonderland', '--allow-peer', '127.0.0.0/8', '--metrics', '127.0.0.1:0']);
    const url = /metrics on (http:\/\/\S+)$/.exec(s.line.trim())![1]!;
    const before = await httpGet(url);
    expect(before.status).toBe(200);
    expect(before.body).toMatch(/^natkit_turn_allocations 0$/m);
    expect(before.body).toMatch(/^natkit_turn_relayed_packets_total\{direction="to_peer"\} 0$/m);

    const peer = await openRawUdp('127.0.0.1');
    defer(() => peer.close());
    const turn = await TurnClient.allocate({ server: { address: '127.0.0.1', port: s.port }, username: 'alice', password: 'wonderland' });
    defer(() => turn.close());
    const peerAddr: TransportAddress = { family: 'IPv4', address: '127.0.0.1', port: peer.port };
    await turn.createPermission(peerAddr);
    await turn.send(peerAddr, Buffer.from('ping'));
    const [got, from] = await peer.next();
    expect(got.toString()).toBe('ping');
    const back = new Promise<Buffer>((r) => turn.once('data', (d) => r(d)));
    await peer.send(Buffer.from('pong'), from.port, from.address);
    expect((await back).toString()).toBe('pong');
    await s.proc.waitFor(/relaying id=1 user=alice/, 10_000, 'stderr');

    const after = await httpGet(url);
    expect(after.body).toMatch(/^natkit_turn_allocations 1$/m);
    expect(after.body).toMatch(/^natkit_turn_relayed_packets_total\{direction="to_peer"\} 1$/m);
    expect(after.body).toMatch(/^natkit_turn_relayed_packets_total\{direction="to_client"\} 1$/m);
    // 'ping' and 'pong': four application bytes each way, and one allocation made.
    expect(after.body).toMatch(/^natkit_turn_relayed_bytes_total\{direction="to_peer"\} 4$/m);
    expect(after.body).toMatch(/^natkit_turn_relayed_bytes_total\{direction="to_client"\} 4$/m);
    expect(after.body).toMatch(/^natkit_turn_allocations_created_total 1$/m);
    expect((await httpGet(url.replace('/metrics', '/healthz'))).body).toBe('ok\n');
    await turn.close();
    expect(await s.proc.stop('SIGINT')).toBe(0);
  });

  it('warns loudly with --no-auth and then relays without credentials', async () => {
    const s = await start(['--no-auth']);
    expect(s.line).toContain('; authentication OFF');
    expect(s.proc.stderr()).toMatch(/relayserver: warn: WARNING: authentication is OFF \(--no-auth\): anyone who can reach this server can relay through it/);
    const r = await allocate(client(), s.port);
    expect(r.message.get(TurnAttr.XorRelayedAddress)?.address).toBe('127.0.0.1');
    expect(await s.proc.stop('SIGINT')).toBe(0);
  });

  it('writes JSON logs with --log-format json', async () => {
    const range = ports();
    const p = startBin('turn', 'relayserver', ['--listen', '127.0.0.1', '--port', '0', ...range, '--user', 'a:b', '--log-format', 'json']);
    const line = JSON.parse((await p.waitFor(/^\{.*\}\n/))[0]);
    expect(line).toMatchObject({ level: 'info', program: 'relayserver', msg: expect.stringMatching(/^relayserver \S+ listening on udp 127\.0\.0\.1:\d+/) });
    expect(await p.stop('SIGINT')).toBe(0);
    for (const l of p.stderr().trim().split('\n')) expect(JSON.parse(l).program).toBe('relayserver');
  });

  it('exits 1 naming the cause when the port is in use or the relay address is not this host’s', async () => {
    const a = await start(['--user', 'a:b', '--no-tcp']);
    const b = await runBin('turn', 'relayserver', ['--listen', '127.0.0.1', '--port', String(a.port), ...ports(), '--user', 'a:b']);
    expect(b.code).toBe(1);
    expect(b.stderr).toMatch(/relayserver: cannot listen on udp 127\.0\.0\.1:\d+: .*EADDRINUSE.*pick one with --port/);
    expect(b.stdout).toBe('');
    expect(await a.proc.stop('SIGINT')).toBe(0);
    // 198.51.100.0/24 is TEST-NET-2 (RFC 5737): no host has it.
    const c = await runBin('turn', 'relayserver', ['--listen', '127.0.0.1', '--port', '0', '--relay-ip', '198.51.100.254', '--user', 'a:b']);
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(/relayserver: cannot bind relay address 198\.51\.100\.254: .*EADDRNOTAVAIL/);
  });
});

describe('relayserver as a new user runs it', () => {
  it('starts with --user alone: listening on 0.0.0.0, relaying on the host\'s first non-loopback address (or saying it needs --relay-ip)', async () => {
    const first = nodeNetwork.interfaces().find((i) => i.family === 'IPv4' && !i.internal)?.address;
    // The README's command, on a free port (3478 may be taken on a shared machine).
    const args = ['--user', 'alice:s3cret', '--port', '0', '--workers', '1', ...ports()];
    if (!first) {
      const r = await runBin('turn', 'relayserver', args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/--relay-ip is needed: listening on 0\.0\.0\.0 does not say which address relayed sockets bind to, and this host has no address but loopback/);
      return;
    }
    const proc = startBin('turn', 'relayserver', args);
    defer(() => proc.stop('SIGINT'));
    const m = await proc.waitFor(/listening on udp 0\.0\.0\.0:(\d+), tcp 0\.0\.0\.0:\1; relaying on (\S+) ports/);
    expect(m[2]).toBe(first);
    const r = await allocate(client('alice', 's3cret'), Number(m[1]));
    expect(r.message.get(TurnAttr.XorRelayedAddress)?.address).toBe(first);
    expect(await proc.stop('SIGINT')).toBe(0);
  });

  it('refuses a certificate and key that do not belong together', async () => {
    const r = await runBin('turn', 'relayserver', ['--listen', '127.0.0.1', '--user', 'a:b', '--tls-cert', CERT, '--tls-key', new URL('other-key.pem', fixtures).pathname]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--tls-cert\/--tls-key: .*tls-cert\.pem and .*other-key\.pem are not a usable certificate and key: .*key values mismatch/);
  });

  it('re-reads the REST secret file on SIGHUP: a new secret works, a removed one no longer does, allocations stay', async () => {
    const secrets = file('first-secret\n', 'rest-secrets');
    const s = await start(['--auth-secret-file', secrets]);
    expect(s.line).toContain('0 users, 1 REST secret');
    const user = `${Math.floor(Date.now() / 1000) + 3600}:alice`;
    const early = client(user, restPassword('first-secret', user));
    await allocate(early, s.port);
    await expect(allocate(client(user, restPassword('second-secret', user)), s.port)).rejects.toMatchObject({ errorCode: 401 });
    writeFileSync(secrets, '# rotated\nsecond-secret\n');
    s.proc.child.kill('SIGHUP');
    await s.proc.waitFor(/credentials reloaded users=0 secrets=1/, 10_000, 'stderr');
    await allocate(client(user, restPassword('second-secret', user)), s.port);
    await expect(allocate(client(user, restPassword('first-secret', user)), s.port)).rejects.toMatchObject({ errorCode: 401 });
    // The allocation made with the old secret lives on (its refresh is signed with the new key it no longer has: 401).
    await expect(refresh(early, s.port, 600)).rejects.toMatchObject({ errorCode: 401 });
    expect(await s.proc.stop('SIGINT')).toBe(0);
    expect(s.proc.stderr()).toMatch(/stopped; 2 allocations cut/);
  });
});

describe('the metrics endpoints: every series named, typed and explained, in the Prometheus text format', () => {
  const CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
  /** Each family's HELP and TYPE lines, from the exposition text. */
  function families(text: string): Map<string, { help?: string; type?: string; samples: number }> {
    const out = new Map<string, { help?: string; type?: string; samples: number }>();
    const get = (n: string) => out.get(n) ?? (out.set(n, { samples: 0 }), out.get(n)!);
    for (const line of text.split('\n')) {
      let m = /^# HELP (\S+) (.+)$/.exec(line);
      if (m) get(m[1]!).help = m[2];
      else if ((m = /^# TYPE (\S+) (\S+)$/.exec(line))) get(m[1]!).type = m[2];
      else if ((m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{[^}]*\})? \S+$/.exec(line))) {
        const base = m[1]!.replace(/_(bucket|sum|count)$/, '');
        (out.get(m[1]!) ?? out.get(base) ?? get(m[1]!)).samples++;
      }
    }
    return out;
  }
  function expectFamilies(text: string, expected: Record<string, 'counter' | 'gauge'>): void {
    const f = families(text);
    for (const [name, type] of Object.entries(expected)) {
      const fam = f.get(name);
      expect(fam, name).toBeDefined();
      expect(fam!.type, name).toBe(type);
      expect(fam!.help, name).toMatch(/\w/);
      expect(fam!.samples, name).toBeGreaterThan(0);
    }
    // Every natkit series has its HELP and TYPE, and nothing natkit serves is left out above.
    for (const [name, fam] of f) {
      if (!name.startsWith('natkit_')) continue;
      expect(expected[name], `unexpected series ${name}`).toBeDefined();
      expect(fam.help && fam.type, name).toBeTruthy();
    }
    // prom-client's process, GC and event-loop metrics come along.
    for (const name of ['process_cpu_user_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_seconds', 'nodejs_heap_size_used_bytes']) {
      expect(f.get(name)?.type, name).toMatch(/counter|gauge/);
    }
  }

  it('relayserver /metrics', async () => {
    const s = await start(['--user', 'alice:wonderland', '--metrics', '127.0.0.1:0']);
    await allocate(client('alice', 'wonderland'), s.port);
    const url = /metrics on (http:\/\/\S+)$/.exec(s.line.trim())![1]!;
    const r = await httpGet(url);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe(CONTENT_TYPE);
    expectFamilies(r.body, {
      natkit_turn_allocations_created_total: 'counter',
      natkit_turn_relayed_packets_total: 'counter',
      natkit_turn_relayed_bytes_total: 'counter',
      natkit_turn_auth_failures_total: 'counter',
      natkit_turn_requests_total: 'counter',
      natkit_turn_error_responses_total: 'counter',
      natkit_turn_dropped_total: 'counter',
      natkit_turn_allocations: 'gauge',
      natkit_turn_permissions: 'gauge',
      natkit_turn_channels: 'gauge',
      natkit_turn_users: 'gauge',
      natkit_turn_draining: 'gauge',
    });
    expect(r.body).toMatch(/^natkit_turn_users 1$/m);
    expect(r.body).toMatch(/^natkit_turn_error_responses_total\{code="401"\} 1$/m);
    expect((await httpGet(url.replace('/metrics', '/nothing'))).status).toBe(404);
    expect(await s.proc.stop('SIGINT')).toBe(0);
  });

  it('stunserver /metrics', async () => {
    const p = startBin('stun', 'stunserver', ['--listen', '127.0.0.1', '--port', '0', '--workers', '1', '--metrics', '127.0.0.1:0']);
    defer(() => p.stop('SIGINT'));
    const m = await p.waitFor(/listening on udp 127\.0\.0\.1:(\d+).*; metrics on (http:\/\/\S+)\n/);
    const c = new StunClient();
    defer(() => c.close());
    await c.binding({ address: '127.0.0.1', port: Number(m[1]) });
    // An error answer too, so the series by code has a sample.
    await expect(c.request({ address: '127.0.0.1', port: Number(m[1]) }, { method: Method.Allocate })).rejects.toMatchObject({ errorCode: 400 });
    const r = await httpGet(m[2]!);
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe(CONTENT_TYPE);
    expectFamilies(r.body, {
      natkit_stun_requests_total: 'counter',
      natkit_stun_responses_total: 'counter',
      natkit_stun_error_responses_total: 'counter',
      natkit_stun_dropped_total: 'counter',
      natkit_stun_connections: 'gauge',
    });
    expect(r.body).toMatch(/^natkit_stun_responses_total 1$/m);
    expect(r.body).toMatch(/^natkit_stun_error_responses_total\{code="400"\} 1$/m);
    expect(await p.stop('SIGINT')).toBe(0);
  });
});
