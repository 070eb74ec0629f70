// p2pdemo, spawned from its build, with natkit's servers on loopback: --help and bad flags;
// two peers in a room (direct), one of them relay-only (relayed), the tutorial's plain lines
// (through signalserver's plain mode and through the tutorial's own Python server), the
// verdict when no path exists, a path that breaks (the relay dies) and recovers through an
// ICE restart, and a clean stop that deletes the TURN allocations.
import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../../../test/helpers/cleanup.js';
import { needProgram } from '../../../test/helpers/programs.js';
import { waitFor } from '../../../test/helpers/wait.js';
import { ROOT, run, start } from '../../../test/helpers/spawn.js';
import { Demo, type Ev, kindOf, P2PDEMO, startRelay, startServers, typesOf } from './helpers.js';

const { defer } = useCleanup();

const p2pdemo = (args: string[]) => run(process.execPath, [P2PDEMO, ...args], { timeoutMs: 30_000 });

/** The tutorial's line: "%s %d %s %f %s %s %s\n" (address port protocol preference type username password). */
const TUTORIAL_LINE = /^(\S+) (\d+) (udp) (\d\.\d{6}) (local|stun|relay) (\S+) (\S+)$/;

async function stopped(d: Demo): Promise<number | string> {
  const code = await d.proc.stop('SIGTERM');
  return code;
}

describe('p2pdemo flags', () => {
  it('--help says what it does and lists every option; --version', async () => {
    const r = await p2pdemo(['--help']);
    expect(r.code).toBe(0);
    // The option rows: every option, none left out (nor one the test does not know).
    expect([...r.stdout.matchAll(/^ {2}(--[a-z][a-z0-9-]*)/gm)].map((m) => m[1])).toEqual([
      '--signal', '--room', '--plain', '--stun', '--turn', '--user', '--credential', '--ice-servers', '--relay-only', '--natcheck', '--nat-server', '--nat-timeout',
      '--hairpin', '--interval', '--timeout', '--disconnected-after', '--address', '--interface', '--include-loopback', '--family', '--server-timeout', '--ca',
      '--insecure', '--json', '--help', '--version',
    ]);
    expect(r.stdout).toContain('--no-natcheck to skip');
    expect(r.stdout).toContain('P2PDEMO_CREDENTIAL');
    expect(r.stdout).toMatch(/Exit status: 0 stopped/);
    const v = await p2pdemo(['--version']);
    expect(v.stdout).toMatch(/^p2pdemo \d+\.\d+\.\d+\n$/);
  });

  const S = ['--signal', '127.0.0.1'];
  it.each([
    [[], "which signalling server? give --signal HOST[:PORT]"],
    [['--bogus'], 'unknown option --bogus'],
    [['--signal', '127.0.0.1:99999'], '--signal: port 99999 is out of range'],
    [['--signal', '127.0.0.1:x'], '--signal: bad port "x" in "127.0.0.1:x"'],
    [[...S, '--turn', 'turn:127.0.0.1'], 'TURN servers need --user and --credential (or P2PDEMO_USER and P2PDEMO_CREDENTIAL)'],
    [[...S, '--user', 'u', '--credential', 'p'], '--user and --credential are for --turn servers; none was given'],
    [[...S, '--stun', 'turn:127.0.0.1'], '--stun turn:127.0.0.1: a TURN URL; give it with --turn'],
    [[...S, '--turn', 'stun:127.0.0.1', '--user', 'u', '--credential', 'p'], '--turn stun:127.0.0.1: not a turn: or turns: URL; give STUN servers with --stun'],
    [[...S, '--stun', 'stun://127.0.0.1'], '--stun: "stun://127.0.0.1"'],
    [[...S, '--relay-only'], '--relay-only needs a TURN server (--turn or --ice-servers)'],
    [[...S, '--ice-servers', '[{"urls":"stun:x","user":"u"}]'], '--ice-servers entry 1: unknown field "user" (urls, username, credential)'],
    [[...S, '--ice-servers', '{'], '--ice-servers is not valid JSON'],
    [[...S, '--interval', '0'], '--interval: at least 0.01 s, got 0'],
    [[...S, '--interval', '5-1'], '--interval: 5-1 goes backwards'],
    [[...S, '--interval', 'soon'], '--interval: expected SECONDS or MIN-MAX (e.g. 2, 0.5 or 1-15), got "soon"'],
    [[...S, '--plain', '--room', 'r1'], '--plain has no rooms: give --room or --plain, not both'],
    [[...S, '--room', 'a b'], '--room: "a b" is not 1-64 letters, digits, ".", "_", "~" or "-"'],
    [[...S, '--address', 'localhost'], '--address: "localhost" is not an IP address'],
    [[...S, '--disconnected-after', '0.5'], '--disconnected-after must be at least 1, got 0.5'],
    [[...S, '--timeout', '0'], '--timeout must be at least 1, got 0'],
    [[...S, '--no-natcheck', '--nat-server', '127.0.0.1'], '--nat-server goes with the NAT check; drop --no-natcheck'],
    [[...S, '--family', 'ipv5'], '--family must be one of ipv4, ipv6, both; got "ipv5"'],
    [[...S, 'extra'], 'unexpected argument "extra"'],
  ])('%j exits 2: %s', async (args, message) => {
    const r = await p2pdemo(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`p2pdemo: ${message}`);
    expect(r.stderr).toContain("Try 'p2pdemo --help'");
    expect(r.stdout).toBe('');
  });

  it('a bad environment value exits 2 naming the variable', async () => {
    const r = await run(process.execPath, [P2PDEMO, '--signal', '127.0.0.1'], { env: { P2PDEMO_INTERVAL: 'x' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--interval: expected SECONDS or MIN-MAX');
  });

  it('a signalling server that does not answer: exit 3 and why', async () => {
    // a port nothing listens on: take one and close it
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    await new Promise<void>((r) => srv.close(() => r()));
    const r = await p2pdemo(['--signal', `127.0.0.1:${port}`, '--no-natcheck', '--json']);
    expect(r.code).toBe(3);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Ev);
    expect(events.filter((e) => e.event === 'signal').map((e) => e.state)).toEqual(['reconnecting', 'reconnecting', 'reconnecting']);
    expect(events.find((e) => e.event === 'error')?.message).toMatch(new RegExp(`cannot reach the signalling server 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`));
    expect(events.at(-1)).toMatchObject({ event: 'stopped', reason: 'the signalling server cannot be reached' });
  });
});

describe('two p2pdemo peers on loopback', () => {
  it('in a room: the NAT report, roles by who came first, a direct path, bytes both ways; SIGTERM stops cleanly and deletes the allocations', async () => {
    const s = await startServers();
    defer(() => s.stop());
    const a = new Demo(s.args('r1'));
    await a.event('session');
    const b = new Demo(s.args('r1'));
    const [ca, cb] = await Promise.all([a.event('connected'), b.event('connected')]);
    for (const [d, c] of [[a, ca], [b, cb]] as const) {
      const nat = await d.event('nat');
      expect(nat).toMatchObject({ classic: 'Open Internet', rfc5780: true, natPresent: false, mapping: 'endpoint-independent', filtering: 'endpoint-independent', server: `127.0.0.1:${s.stunPort}` });
      expect(kindOf(c)).toBe('direct');
      expect(typesOf(c)).toEqual(['host', 'host']);
      expect(c.meaning).toMatch(/^direct, host to host/);
      expect(c.iceMs).toBeGreaterThanOrEqual(0);
      expect(d.bad).toEqual([]);
    }
    // the first in the room controls (signalserver's initiator); each saw the other's NAT
    expect(await a.event('signal')).toMatchObject({ state: 'joined', initiator: true, peer: false });
    expect(await b.event('signal')).toMatchObject({ state: 'joined', initiator: false, peer: true });
    expect((await a.event('session')).role).toBe('controlling');
    expect((await b.event('session')).role).toBe('controlled');
    expect((await a.event('peer-nat')).nat).toMatchObject({ classic: 'Open Internet' });
    // both ends name the same two addresses
    const pa = ca.path as { local: { port: number }; remote: { port: number } };
    const pb = cb.path as { local: { port: number }; remote: { port: number } };
    expect([pa.local.port, pa.remote.port]).toEqual([pb.remote.port, pb.local.port]);
    // random bytes, both ways: what one sent is what the other got
    await Promise.all([a.next((e) => e.event === 'data' && (e.received as number) >= 3), b.next((e) => e.event === 'data' && (e.received as number) >= 3)]);
    const sentA = a.events.filter((e) => e.event === 'sent').map((e) => e.byte);
    const gotB = b.events.filter((e) => e.event === 'data').map((e) => e.byte);
    expect(sentA.slice(0, 3)).toEqual(gotB.slice(0, 3));
    for (const x of sentA) expect(x).toSatisfy((n: number) => Number.isInteger(n) && n >= 0 && n <= 255);

    expect(await stopped(a)).toBe(0);
    expect(await stopped(b)).toBe(0);
    for (const d of [a, b]) expect(d.events.at(-1)).toMatchObject({ event: 'stopped', reason: 'SIGTERM' });
    // every allocation the peers made was deleted on the way out (Refresh with lifetime 0);
    // the relay logs a deletion after it answers the Refresh, so its line may reach the
    // pipe after the peer has exited: wait for it
    const log = () => s.relay.stdout() + s.relay.stderr();
    const created = () => [...log().matchAll(/allocation created id=(\d+)/g)].map((m) => m[1]!).sort();
    const deleted = () => [...log().matchAll(/allocation deleted id=(\d+) \S+ why="refreshed with lifetime 0"/g)].map((m) => m[1]!).sort();
    expect(created().length).toBeGreaterThanOrEqual(2);
    await waitFor(() => deleted().length >= created().length, 'the relay to log every allocation deleted').catch(() => {});
    expect(deleted()).toEqual(created());
  });

  it('one peer --relay-only: both report the relayed path, and what it means', async () => {
    const s = await startServers();
    defer(() => s.stop());
    const a = new Demo([...s.args('r2'), '--relay-only']);
    const b = new Demo(s.args('r2'));
    defer(() => Promise.all([a.proc.stop(), b.proc.stop()]));
    const [ca, cb] = await Promise.all([a.event('connected'), b.event('connected')]);
    expect(kindOf(ca)).toBe('relayed');
    expect(kindOf(cb)).toBe('relayed');
    expect(typesOf(ca)[0]).toBe('relay');
    expect(ca.meaning).toBe('relayed, as asked (--relay-only): every byte goes through the TURN server');
    expect(cb.meaning).toBe('relayed, as the peer asked (--relay-only): every byte goes through the TURN server');
    // the relay-only peer gathered no host candidate
    expect(a.events.filter((e) => e.event === 'candidate' && e.direction === 'local').map((e) => e.type)).toEqual(['relay']);
    await Promise.all([a.next((e) => e.event === 'data'), b.next((e) => e.event === 'data')]);
  });

  it("--plain: the tutorial's candidate lines through signalserver's plain mode; the role conflict is settled", async () => {
    const s = await startServers({ signalMode: 'plain' });
    defer(() => s.stop());
    const args = s.args('unused').filter((x, i, all) => x !== '--room' && all[i - 1] !== '--room');
    const a = new Demo([...args, '--plain']);
    const b = new Demo([...args, '--plain']);
    defer(() => Promise.all([a.proc.stop(), b.proc.stop()]));
    const [ca, cb] = await Promise.all([a.event('connected'), b.event('connected')]);
    expect(kindOf(ca)).toBe('direct');
    expect(kindOf(cb)).toBe('direct');
    // what went on the wire, exactly the tutorial's format
    const wires = [a, b].flatMap((d) => d.events.filter((e) => e.event === 'candidate' && e.direction === 'local').map((e) => e.wire as string));
    expect(wires.length).toBeGreaterThanOrEqual(4);
    for (const w of wires) expect(w).toMatch(TUTORIAL_LINE);
    // both start controlling; RFC 8445's tie-breaker leaves exactly one so
    const finalRole = (d: Demo) => (d.events.filter((e) => e.event === 'role').at(-1)?.role as string | undefined) ?? (d.events.find((e) => e.event === 'session')!.role as string);
    expect([finalRole(a), finalRole(b)].sort()).toEqual(['controlled', 'controlling']);
    await Promise.all([a.next((e) => e.event === 'data'), b.next((e) => e.event === 'data')]);
  });

  it("--plain through the tutorial's own signalling server (its Python, run by Debian's python3)", async (ctx) => {
    const python = needProgram(ctx, '/usr/bin/python3');
    const s = await startServers();
    defer(() => s.stop());
    const tutorial = start(python, [`${ROOT}packages/signal/test/reference/tutorial_server.py`, '127.0.0.1', '0']);
    defer(() => tutorial.stop());
    const port = Number((await tutorial.waitFor(/listening on (\d+)/, 20_000))[1]);
    const args = s.args('unused').filter((x, i, all) => x !== '--room' && all[i - 1] !== '--room').map((x) => (x === `127.0.0.1:${s.signalPort}` ? `127.0.0.1:${port}` : x));
    const a = new Demo([...args, '--plain']);
    await a.event('gathered');
    const b = new Demo([...args, '--plain']);
    defer(() => Promise.all([a.proc.stop(), b.proc.stop()]));
    const [ca, cb] = await Promise.all([a.event('connected'), b.event('connected')]);
    expect([kindOf(ca), kindOf(cb)]).toEqual(['direct', 'direct']);
    await Promise.all([a.next((e) => e.event === 'data'), b.next((e) => e.event === 'data')]);
    // the tutorial's server buffered A's lines for B, then forwarded both ways
    expect(tutorial.stdout()).toContain('Buffering data');
    expect(tutorial.stdout()).toContain('Forwarding data');
  });

  it('no path and no TURN server: the verdict is "impossible without a relay", exit 1', async () => {
    // The test is the other peer, on the plain pipe: it signals one candidate nobody answers
    // at (a closed port) and reads p2pdemo's lines, which must be the tutorial's.
    const s = await startServers({ signalMode: 'plain' });
    defer(() => s.stop());
    const sock = net.createConnection({ host: '127.0.0.1', port: s.signalPort });
    defer(() => sock.destroy());
    await new Promise<void>((r) => sock.once('connect', () => r()));
    let got = '';
    sock.setEncoding('utf8').on('data', (d: string) => (got += d));
    const dead = net.createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
    const deadPort = (dead.address() as net.AddressInfo).port;
    await new Promise<void>((r) => dead.close(() => r()));
    sock.write(`127.0.0.1 ${deadPort} udp 1.000000 local 7+deadpeer AAAAAAAAAAAAAAAAAAAAAAAA\n`);
    const r = await run(process.execPath, [P2PDEMO, '--signal', `127.0.0.1:${s.signalPort}`, '--plain', '--stun', `stun:127.0.0.1:${s.stunPort}`, '--address', '127.0.0.1', '--timeout', '2', '--json'], { timeoutMs: 30_000 });
    expect(r.code).toBe(1);
    const events = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Ev);
    // it followed the peer's session 7
    expect(events.find((e) => e.event === 'restart')).toMatchObject({ by: 'peer', session: 7 });
    const failed = events.find((e) => e.event === 'failed')!;
    expect(failed).toMatchObject({ verdict: 'impossible without a relay', session: 7 });
    expect(failed.reason).toBe("no path within 2 s of the peer's candidates");
    expect(failed.meaning).toContain('no TURN server was given: run both peers with --turn');
    expect(events.at(-1)).toMatchObject({ event: 'stopped', reason: 'no path' });
    const lines = got.trim().split('\n');
    expect(lines.length).toBeGreaterThanOrEqual(1);
    for (const l of lines) expect(l).toMatch(TUTORIAL_LINE);
    expect(lines.some((l) => /^127\.0\.0\.1 \d+ udp 1\.000000 local 7\+[A-Za-z0-9]{8} [A-Za-z0-9]{24}$/.test(l))).toBe(true);
  });

  it('in a room, the peer that gives up first tells the other, and both give the verdict', async () => {
    // One peer on IPv4 loopback, the other on IPv6: no candidate pair at all, no TURN server.
    const s = await startServers();
    defer(() => s.stop());
    const common = ['--signal', `127.0.0.1:${s.signalPort}`, '--room', 'r5', '--no-natcheck'];
    const a = new Demo([...common, '--address', '127.0.0.1', '--timeout', '2']);
    const b = new Demo([...common, '--address', '::1', '--timeout', '20']);
    defer(() => Promise.all([a.proc.stop(), b.proc.stop()]));
    const [fa, fb] = await Promise.all([a.event('failed', 30_000), b.event('failed', 30_000)]);
    expect(fa).toMatchObject({ verdict: 'impossible without a relay', reason: "no path within 2 s of the peer's candidates" });
    // B's own 20 s are not over: it heard A's verdict
    expect(fb).toMatchObject({ verdict: 'impossible without a relay', reason: "the peer found no path either (no path within 2 s of the peer's candidates)" });
    expect(fb.t).toBeLessThan(15);
    expect(await a.proc.exited).toBe(1);
    expect(await b.proc.exited).toBe(1);
    for (const d of [a, b]) expect(d.events.some((e) => e.event === 'connected')).toBe(false);
  });

  it('a third peer in a full room is told so and exits 1', async () => {
    const s = await startServers();
    defer(() => s.stop());
    const a = new Demo([...s.args('r3'), '--no-natcheck']);
    const b = new Demo([...s.args('r3'), '--no-natcheck']);
    defer(() => Promise.all([a.proc.stop(), b.proc.stop()]));
    await Promise.all([a.event('connected'), b.event('connected')]);
    const r = await p2pdemo([...s.args('r3'), '--no-natcheck', '--json']);
    expect(r.code).toBe(1);
    expect(r.stdout).toMatch(/"event":"error","message":"the signalling server closed the connection: server: room-full/);
  });

  it('the path breaks (the TURN relay dies): both notice, restart ICE through the signalling server, and say how long recovery took', async () => {
    const s = await startServers();
    defer(() => s.stop());
    // A can only use the relay; consent checks every 0.8 s, broken after 2 s without answers
    const fast = ['--disconnected-after', '2', '--no-natcheck'];
    const a = new Demo([...s.args('r4'), ...fast, '--relay-only']);
    const b = new Demo([...s.args('r4'), ...fast]);
    defer(() => Promise.all([a.proc.stop(), b.proc.stop()]));
    await Promise.all([a.event('connected'), b.event('connected')]);
    await Promise.all([a.next((e) => e.event === 'data'), b.next((e) => e.event === 'data')]);
    const from = [a.events.length, b.events.length];
    // the relay dies; a new one comes up on the same port (its allocations are gone)
    await s.relay.stop('SIGKILL');
    const relay2 = await startRelay(s.relayPort);
    s.relay = relay2.proc;
    const rec = await Promise.all([a, b].map((d, i) => d.next((e) => e.event === 'recovered', 30_000, from[i])));
    for (const [i, d] of [a, b].entries()) {
      const seen = d.events.slice(from[i]).map((e) => e.event);
      // the break is reported before the recovery, with a restart in between
      expect(seen.indexOf('disconnected')).toBeGreaterThanOrEqual(0);
      expect(seen.indexOf('restart')).toBeGreaterThan(seen.indexOf('disconnected'));
      expect(seen.indexOf('recovered')).toBeGreaterThan(seen.indexOf('restart'));
      const { e } = rec[i]!;
      expect(kindOf(e)).toBe('relayed');
      expect(e.recoveryMs).toBeGreaterThan(0);
      expect(e.recoveryMs).toBeLessThan(30_000);
      expect(e.session).toBeGreaterThanOrEqual(1);
    }
    // both ended up in the same session, and bytes flow again
    expect(rec[0]!.e.session).toBe(rec[1]!.e.session);
    await Promise.all([a, b].map((d, i) => d.next((e) => e.event === 'data', 10_000, rec[i]!.index)));
    const disc = a.events.slice(from[0]).find((e) => e.event === 'disconnected')!;
    expect(disc.reason).toMatch(/^consent|peer-restarted$/);
  });
});
