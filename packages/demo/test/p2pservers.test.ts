// p2pservers, the one command for a public host, spawned from its build on loopback: bad
// flags; the three servers up and the p2pdemo line they print, which two peers then use
// (with a generated user, and with a TURN REST credential through the relay); secrets kept
// out of the servers' command lines; a server that cannot start or dies takes the others
// down; SIGTERM stops all three.
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createHmac } from 'node:crypto';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../../../test/helpers/cleanup.js';
import { type Proc, natkitBin, run, start } from '../../../test/helpers/spawn.js';
import { plan, restCredential, shellQuote } from '../src/servers.js';
import { Demo, kindOf } from './helpers.js';

const { defer } = useCleanup();
const P2PSERVERS = natkitBin('demo', 'p2pservers');
const LOOPBACK = ['--listen', '127.0.0.1', '--stun-port', '0', '--turn-port', '0', '--signal-port', '0', '--allow-peer', '127.0.0.0/8', '--drain-timeout', '0'];

/** The processes p2pservers started (its children), with their command lines. */
function children(pid: number): Array<{ pid: number; cmdline: string }> {
  let out = '';
  try {
    out = execFileSync('pgrep', ['-P', String(pid)], { encoding: 'utf8' });
  } catch {
    return [];
  }
  return out
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((p) => ({ pid: Number(p), cmdline: (() => { try { return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' '); } catch { return ''; } })() }));
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function ready(p: Proc): Promise<Record<string, unknown> & { p2pdemo: string[] }> {
  const m = await p.waitFor(/^(\{"event":"ready".*\})$/m, 30_000);
  return JSON.parse(m[1]!) as Record<string, unknown> & { p2pdemo: string[] };
}

describe('p2pservers flags', () => {
  it('--help says what it starts and how it is secured; --version', async () => {
    const r = await run(process.execPath, [P2PSERVERS, '--help']);
    expect(r.code).toBe(0);
    // The option rows: every option, none left out (nor one the test does not know).
    expect([...r.stdout.matchAll(/^ {2}(--[a-z][a-z0-9-]*)/gm)].map((m) => m[1])).toEqual([
      '--listen', '--public-ip', '--alternate', '--stun-port', '--turn-port', '--signal-port', '--user', '--auth-secret-file', '--rest-user', '--credential-ttl',
      '--room', '--allow-peer', '--drain-timeout', '--json', '--help', '--version',
    ]);
    expect(r.stdout).toContain('TURN authentication is always on');
    const v = await run(process.execPath, [P2PSERVERS, '--version']);
    expect(v.stdout).toMatch(/^p2pservers \d+\.\d+\.\d+\n$/);
  });

  it.each([
    [['--listen', 'here'], '--listen: "here" is not an IP address'],
    [['--public-ip', 'example.org'], '--public-ip: "example.org" is not an IP address'],
    [['--listen', '127.0.0.1', '--public-ip', '127.0.0.2'], '--public-ip 127.0.0.2 is an address of this host, but the servers listen on 127.0.0.1 only'],
    [['--listen', '127.0.0.1', '--alternate', '127.0.0.1'], '--alternate must be a second address, not the first'],
    [['--listen', '127.0.0.1', '--alternate', '::1'], '--alternate must be of the same family as --listen'],
    [['--listen', '127.0.0.1', '--stun-port', '3478'], '--stun-port 3478 and --turn-port 3478 must differ: both are UDP'],
    [['--listen', '127.0.0.1', '--alternate', '127.0.0.2', '--stun-port', '3477'], '--stun-port 3477 (and 3478) and --turn-port 3478 must differ: both are UDP'],
    [['--listen', '127.0.0.1', '--user', 'alice'], '--user: expected USER:PASSWORD'],
    [['--listen', '127.0.0.1', '--user', 'alice:short'], '--user: a password of at least 8 characters, please'],
    [['--listen', '127.0.0.1', '--user', 'a:longenough', '--auth-secret-file', '/x'], 'give --user or --auth-secret-file, not both'],
    [['--listen', '127.0.0.1', '--credential-ttl', '600'], '--rest-user and --credential-ttl go with --auth-secret-file'],
    [['--listen', '127.0.0.1', '--auth-secret-file', '/nonexistent/secrets'], '--auth-secret-file: cannot read /nonexistent/secrets'],
    [['--listen', '127.0.0.1', '--room', 'no spaces'], '--room: "no spaces" is not 1-64 letters'],
    [['--listen', '127.0.0.1', 'extra'], 'unexpected argument "extra"'],
  ])('%j exits 2: %s', async (args, message) => {
    const r = await run(process.execPath, [P2PSERVERS, ...args]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`p2pservers: ${message}`);
    expect(r.stderr).toContain("Try 'p2pservers --help'");
  });
});

describe('the plan', () => {
  it('TURN on 3478, STUN on 3479 (and 3480 with a second address), signalling on 14141; the user in the environment only', () => {
    const p = plan({
      listen: '0.0.0.0', publicIp: '203.0.113.7', publicIsLocal: true, alternate: '203.0.113.8', stunPort: 3479, turnPort: 3478, signalPort: 14141,
      auth: { user: 'p2pdemo', password: 'Xy7secretsecretsecret123', generated: true }, room: 'r1', allowPeer: [], drainTimeoutSec: 5, now: 1_700_000_000,
    });
    expect(p.servers.map((s) => s.name)).toEqual(['stunserver', 'relayserver', 'signalserver']);
    expect(p.servers[0]!.args).toEqual(['--listen', '0.0.0.0', '--port', '3479', '--alternate', '203.0.113.8', '--alt-port', '3480']);
    expect(p.servers[1]!.args).toEqual(['--listen', '0.0.0.0', '--port', '3478', '--drain-timeout', '5']);
    expect(p.servers[1]!.args.join(' ')).not.toContain('Xy7secret');
    expect(p.servers[1]!.env).toEqual({ RELAYSERVER_USER: 'p2pdemo:Xy7secretsecretsecret123' });
    expect(p.p2pdemo).toEqual(['--signal', '203.0.113.7:14141', '--room', 'r1', '--stun', 'stun:203.0.113.7:3479', '--turn', 'turn:203.0.113.7:3478', '--user', 'p2pdemo', '--credential', 'Xy7secretsecretsecret123']);
  });

  it('behind 1:1 NAT the relay advertises the public address; IPv6 URLs get brackets', () => {
    const p = plan({
      listen: '::', publicIp: '2001:db8::7', publicIsLocal: false, stunPort: 3479, turnPort: 3478, signalPort: 14141,
      auth: { user: 'u', password: 'passwordpassword', generated: false }, room: 'r', allowPeer: ['10.0.0.0/8'], drainTimeoutSec: 5, now: 0,
    });
    expect(p.servers[1]!.args).toContain('--external-ip');
    expect(p.servers[1]!.args.slice(-4)).toEqual(['--external-ip', '2001:db8::7', '--allow-peer', '10.0.0.0/8']);
    expect(p.stunUrl).toBe('stun:[2001:db8::7]:3479');
    expect(p.signal).toBe('[2001:db8::7]:14141');
  });

  it('a TURN REST credential: expiry:user and base64(HMAC-SHA1(secret, username))', () => {
    const c = restCredential('north', 'p2pdemo', 3600, 1_700_000_000.7);
    expect(c.username).toBe('1700003600:p2pdemo');
    expect(c.password).toBe(createHmac('sha1', 'north').update('1700003600:p2pdemo').digest('base64'));
    expect(c.expires).toBe(1_700_003_600);
  });

  it('shell quoting for the printed line', () => {
    expect(shellQuote('turn:203.0.113.7:3478')).toBe('turn:203.0.113.7:3478');
    expect(shellQuote("it's")).toBe("'it'\\''s'");
    expect(shellQuote('a b')).toBe("'a b'");
  });
});

describe('p2pservers on loopback', () => {
  it('starts the three servers, prints the line, two p2pdemo peers connect with it; SIGTERM stops all three', async () => {
    const s = start(process.execPath, [P2PSERVERS, ...LOOPBACK, '--alternate', '127.0.0.2']);
    defer(() => s.stop('SIGKILL'));
    const m = await s.waitFor(/Run this on each of the two peers.*\n\n {2}(p2pdemo .*)\n/, 30_000);
    const line = m[1]!.split(' ');
    expect(line.slice(0, 2)).toEqual(['p2pdemo', '--signal']);
    expect(s.stdout()).toContain('The TURN password was generated for this run');
    // the generated password is on the printed line, and on no server's command line
    const credential = line[line.indexOf('--credential') + 1]!;
    expect(credential).toMatch(/^[A-Za-z0-9]{24}$/);
    const kids = children(s.child.pid!);
    expect(kids).toHaveLength(3);
    for (const k of kids) expect(k.cmdline).not.toContain(credential);
    for (const prefix of ['[stunserver]', '[relayserver]', '[signalserver]']) expect(s.stdout()).toContain(prefix);

    const args = [...line.slice(1), '--address', '127.0.0.1', '--interval', '0.2'];
    const a = new Demo(args);
    const b = new Demo(args);
    defer(() => Promise.all([a.proc.stop(), b.proc.stop()]));
    const [ca, cb] = await Promise.all([a.event('connected'), b.event('connected')]);
    expect([kindOf(ca), kindOf(cb)]).toEqual(['direct', 'direct']);
    // --alternate: stunserver in RFC 5780 mode, so the peers' NAT check ran the behaviour tests
    expect(await a.event('nat')).toMatchObject({ rfc5780: true, classic: 'Open Internet' });
    await Promise.all([a.next((e) => e.event === 'data'), b.next((e) => e.event === 'data')]);
    await Promise.all([a.proc.stop(), b.proc.stop()]);

    expect(await s.stop('SIGTERM')).toBe(0);
    expect(s.stdout()).toContain('p2pservers: all three stopped');
    for (const k of kids) expect(alive(k.pid)).toBe(false);
  });

  it('--auth-secret-file: the peers get a TURN REST credential, and the relay takes it', async () => {
    const file = join(tmpdir(), `p2pservers-secret-${process.pid}`);
    writeFileSync(file, '# rotation: the first is used for new credentials\nnorth-secret\nold-secret\n', { mode: 0o600 });
    defer(() => rmSync(file, { force: true }));
    const s = start(process.execPath, [P2PSERVERS, ...LOOPBACK, '--auth-secret-file', file, '--credential-ttl', '600', '--json']);
    defer(() => s.stop('SIGKILL'));
    const r = await ready(s);
    const user = r.user as string;
    expect(user).toMatch(/^\d+:p2pdemo$/);
    const expiry = Number(user.split(':')[0]);
    expect(expiry).toBeGreaterThan(Date.now() / 1000 + 590);
    expect(expiry).toBeLessThanOrEqual(Date.now() / 1000 + 601);
    expect(r.credential).toBe(createHmac('sha1', 'north-secret').update(user).digest('base64'));
    expect(new Date(r.expires as string).getTime() / 1000).toBe(expiry);
    // SIGHUP reaches the relay (it re-reads the secrets), and p2pservers stays up
    s.child.kill('SIGHUP');
    // (on Node 22.12 and newer the relay runs a worker per core, and each says it: relayserver[1]: ...)
    await s.waitFor(/\[relayserver\] +relayserver(?:\[\d+\])?: SIGHUP: reloading credentials/, 10_000, 'stderr');
    expect(s.child.exitCode).toBeNull();
    // through the relay, so TURN authentication is what is tested
    const args = [...r.p2pdemo, '--address', '127.0.0.1', '--interval', '0.2', '--no-natcheck'];
    const a = new Demo([...args, '--relay-only']);
    const b = new Demo(args);
    defer(() => Promise.all([a.proc.stop(), b.proc.stop()]));
    const [ca] = await Promise.all([a.event('connected'), b.event('connected')]);
    expect(kindOf(ca)).toBe('relayed');
    await Promise.all([a.proc.stop(), b.proc.stop()]);
    expect(await s.stop('SIGTERM')).toBe(0);
  });

  it('a server that cannot start (its port is taken): the others are stopped, exit 1, and it says which', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
    defer(() => new Promise<void>((r) => taken.close(() => r())));
    const port = (taken.address() as net.AddressInfo).port;
    const s = start(process.execPath, [P2PSERVERS, ...LOOPBACK, '--signal-port', String(port), '--json']);
    defer(() => s.stop('SIGKILL'));
    const code = await s.exited;
    expect(code).toBe(1);
    expect(s.stderr()).toMatch(/p2pservers: signalserver exited \(1\) before it was ready/);
    expect(s.stderr()).toContain('EADDRINUSE');
    // the two others had started, and were stopped before p2pservers exited
    const spawned = s.stdout().trim().split('\n').map((l) => JSON.parse(l) as { event: string; server: string; pid: number });
    expect(spawned.map((x) => [x.event, x.server])).toEqual([['spawned', 'stunserver'], ['spawned', 'relayserver'], ['spawned', 'signalserver']]);
    for (const x of spawned) expect(alive(x.pid)).toBe(false);
  });

  it('a server that dies later takes the others down: exit 1', async () => {
    const s = start(process.execPath, [P2PSERVERS, ...LOOPBACK, '--json']);
    defer(() => s.stop('SIGKILL'));
    await ready(s);
    const kids = children(s.child.pid!);
    const sig = kids.find((k) => k.cmdline.includes('signalserver'))!;
    process.kill(sig.pid, 'SIGKILL');
    expect(await s.exited).toBe(1);
    expect(s.stderr()).toContain('p2pservers: signalserver exited (SIGKILL); stopping the others');
    for (const k of kids) expect(alive(k.pid)).toBe(false);
  });
});
