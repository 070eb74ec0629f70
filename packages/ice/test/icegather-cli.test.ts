// The icegather binary (the built dist, through bin/icegather.js): its table, its JSON, its
// exit codes, --help, and bad flags. Servers run in this process on loopback; icegather is
// told to gather on 127.0.0.1 only, so the test does not depend on this machine's interfaces.
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { StunServer } from '@natkit/stun';
import { TurnServer, parseUsers } from '@natkit/turn';
import { runBin } from '../../../test/helpers/spawn.js';
import { useCleanup } from '../../../test/helpers/cleanup.js';
import { forbiddingServer, mappingServer, silentServer } from './gather-helpers.js';
import { candidateRow, serverLine } from '../src/cli/report.js';
import type { LocalCandidate } from '../src/candidate.js';

const cleanup = useCleanup();
const { track, defer } = cleanup;

const fixtures = new URL('../../../test/fixtures/', import.meta.url);
const certPath = fileURLToPath(new URL('tls-cert.pem', fixtures));
const cert = readFileSync(certPath);
const key = readFileSync(new URL('tls-key.pem', fixtures));

const icegather = (args: string[], env?: NodeJS.ProcessEnv) => runBin('ice', 'icegather', args, { env, timeoutMs: 60_000 });

async function relay() {
  const s = track(
    await TurnServer.start({ listen: ['127.0.0.1'], port: 0, users: parseUsers('alice:wonderland\n'), allowPeers: ['127.0.0.0/8'], relayPortMin: 52000, relayPortMax: 54999, tls: { cert, key, port: 0 } }),
  );
  const port = (t: string) => s.listening.find((l) => l.transport === t)!.port;
  return { s, udp: port('udp'), tcp: port('tcp'), tls: port('tls') };
}

describe('icegather', () => {
  it('--help documents the flags and exit codes; --version prints the version', async () => {
    const r = await icegather(['--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^Usage: icegather \[options\] \[URL\.\.\.\]/);
    for (const flag of ['--stun', '--turn', '--user', '--credential', '--ice-servers', '--timeout', '--json', '--relay-only', '--include-loopback', '--include-link-local', '--interface', '--address', '--family', '--ca', '--insecure']) {
      expect(r.stdout).toContain(flag);
    }
    expect(r.stdout).toMatch(/Exit status: 0 every server answered .* 1 one or more servers failed,\s+2 bad usage .* 3 no candidate at all/s);
    const v = await icegather(['--version']);
    expect(v.code).toBe(0);
    expect(v.stdout).toMatch(/^icegather \d+\.\d+\.\d+\n$/);
  });

  const badFlags: Array<[string[], RegExp]> = [
    [['--bogus'], /unknown option --bogus/],
    [['--stun'], /--stun needs a value/],
    [['--stun', 'stun://127.0.0.1'], /no "\/\/" after "stun:"/],
    [['--stun', 'turn:127.0.0.1'], /a TURN URL; give it with --turn/],
    [['--turn', 'stun:127.0.0.1', '--user', 'u', '--credential', 'p'], /not a turn: or turns: URL/],
    [['--turn', 'turn:127.0.0.1'], /TURN servers need --user and --credential/],
    [['--turn', 'turns:127.0.0.1?transport=udp', '--user', 'u', '--credential', 'p'], /DTLS/],
    [['stun:[::1'], /unbalanced "\["/],
    [['--user', 'u'], /--user and --credential are for --turn servers/],
    [['--timeout', '5'], /--timeout must be at least 100/],
    [['--timeout', '200000'], /--timeout must be at most 120000/],
    [['--timeout', 'soon'], /--timeout expects a number/],
    [['--family', 'ipv5'], /--family must be one of ipv4, ipv6, both/],
    [['--address', 'localhost'], /--address: "localhost" is not an IP address/],
    [['--ice-servers', '{nope'], /--ice-servers is not valid JSON/],
    [['--ice-servers', '{"urls":"stun:a"}'], /must be a JSON array/],
    [['--ice-servers', '[{"urls":[]}]'], /entry 1: urls must be a string or a non-empty array/],
    [['--ice-servers', '[{"urls":"stun:a","password":"x"}]'], /entry 1: unknown field "password"/],
    [['--ice-servers', '[{"urls":"turn:a"}]'], /needs username and credential/],
    [['--ice-servers', '@/nonexistent/servers.json'], /--ice-servers: cannot read \/nonexistent\/servers\.json/],
    [['--relay-only', '--stun', 'stun:127.0.0.1'], /--relay-only needs a TURN server/],
    [['--relay-only', '--ice-servers', '[{"urls":["stun:127.0.0.1","stuns:127.0.0.1"]}]'], /--relay-only needs a TURN server/],
    [['--ca', '/nonexistent/ca.pem', '--stun', 'stun:127.0.0.1'], /--ca: cannot read/],
  ];
  for (const [args, message] of badFlags) {
    it(`refuses ${args.join(' ')} with exit 2 and says why`, async () => {
      const r = await icegather(args);
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).toContain("Try 'icegather --help'");
      expect(r.stdout).toBe('');
    });
  }

  it('prints a row per candidate and a line per server, with the reason for each failure; exit 1', async () => {
    const stun = track(await StunServer.start({ address: '127.0.0.1', port: 0, tcp: false }));
    const mapping = await mappingServer(cleanup, { address: '203.0.113.5', port: 5000 });
    const dead = await silentServer(cleanup);
    const forbidding = await forbiddingServer(cleanup, { username: 'alice', password: 'wonderland' });
    const t = await relay();
    const r = await icegather([
      '--address', '127.0.0.1',
      '--timeout', '1500',
      '--stun', `stun:127.0.0.1:${stun.listening[0]!.port}`,
      '--stun', `stun:127.0.0.1:${mapping.port}`,
      '--stun', `stun:127.0.0.1:${dead.port}`,
      '--turn', `turn:127.0.0.1:${t.udp}`,
      '--turn', `turn:127.0.0.1:${t.tcp}?transport=tcp`,
      '--turn', `turns:127.0.0.1:${t.tls}`,
      '--turn', `turn:127.0.0.1:${forbidding.port}`,
      '--user', 'alice', '--credential', 'wonderland', '--ca', certPath,
    ]);
    const out = r.stdout;
    expect(r.code, `${out}\n${r.stderr}`).toBe(1);
    const lines = out.split('\n');
    expect(lines[0]).toMatch(/^Time +Type +Foundation +Protocol +Address +Port +Priority +Related +Server$/);
    expect(out).toMatch(/^\d+\.\d{3} +host +\d+ +udp +127\.0\.0\.1 +\d+ +126 \| 65535 \| 255$/m);
    expect(out).toMatch(new RegExp(`^\\d+\\.\\d{3} +srflx +\\d+ +udp +203\\.0\\.113\\.5 +5000 +100 \\| 65535 \\| 255 +127\\.0\\.0\\.1:\\d+ +stun:127\\.0\\.0\\.1:${mapping.port}$`, 'm'));
    for (const u of [`turn:127.0.0.1:${t.udp}`, `turn:127.0.0.1:${t.tcp}\\?transport=tcp`, `turns:127.0.0.1:${t.tls}`]) {
      expect(out).toMatch(new RegExp(`^\\d+\\.\\d{3} +relay +\\d+ +udp +127\\.0\\.0\\.1 +\\d+ +0 \\| \\d+ \\| 255 +127\\.0\\.0\\.1:\\d+ +${u}$`, 'm'));
    }
    // One line per server.
    expect(out).toMatch(new RegExp(`^ok +stun:127\\.0\\.0\\.1:${stun.listening[0]!.port} \\(127\\.0\\.0\\.1:\\d+\\) in \\d+ ms: mapped 127\\.0\\.0\\.1:\\d+, the host address itself \\(no NAT; redundant\\)$`, 'm'));
    expect(out).toMatch(new RegExp(`^ok +stun:127\\.0\\.0\\.1:${mapping.port} .* in \\d+ ms: srflx 203\\.0\\.113\\.5:5000$`, 'm'));
    expect(out).toMatch(new RegExp(`^FAILED +stun:127\\.0\\.0\\.1:${dead.port} .* after \\d+ ms: TIMEOUT: no answer from udp 127\\.0\\.0\\.1 .*within 1500 ms$`, 'm'));
    expect(out).toMatch(new RegExp(`^FAILED +turn:127\\.0\\.0\\.1:${forbidding.port} .*: FORBIDDEN 403: .*403 Forbidden$`, 'm'));
    expect(out).toMatch(new RegExp(`^ok +turns:127\\.0\\.0\\.1:${t.tls} .*: relay 127\\.0\\.0\\.1:\\d+$`, 'm'));
    expect(out).toMatch(/^Done in \d+\.\d{3} s: 5 candidate\(s\) \(1 host, 1 srflx, 3 relay\); 5 of 7 server\(s\) answered$/m);
    // Every allocation was given back before icegather exited.
    expect(t.s.allAllocations()).toHaveLength(0);
  });

  it('--json prints the whole report; exit 0 when every server answered; a wrong password is AUTH_FAILED 401 and exit 1', async () => {
    const t = await relay();
    const dir = await mkdtemp(join(tmpdir(), 'icegather-'));
    defer(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'servers.json');
    await writeFile(file, JSON.stringify({ iceServers: [{ urls: [`turn:127.0.0.1:${t.udp}`], username: 'alice', credential: 'wonderland' }] }));
    const r = await icegather(['--json', '--address', '127.0.0.1', '--ice-servers', `@${file}`]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.candidates.map((c: { type: string }) => c.type)).toEqual(['host', 'relay']);
    expect(report.candidates[1]).toMatchObject({ type: 'relay', transport: 'udp', address: '127.0.0.1', relatedAddress: '127.0.0.1', server: `turn:127.0.0.1:${t.udp}` });
    expect(typeof report.candidates[1].priority).toBe('number');
    expect(typeof report.candidates[1].elapsedMs).toBe('number');
    expect(report.servers).toEqual([expect.objectContaining({ url: `turn:127.0.0.1:${t.udp}`, ok: true, kind: 'turn', transport: 'udp' })]);
    const bad = await icegather(['--json', '--address', '127.0.0.1', '--turn', `turn:127.0.0.1:${t.udp}`, '--user', 'alice'], { ICEGATHER_CREDENTIAL: 'wrong' });
    expect(bad.code).toBe(1);
    const b = JSON.parse(bad.stdout);
    expect(b.servers[0]).toMatchObject({ ok: false, error: { code: 'AUTH_FAILED', errorCode: 401 } });
  });

  it('--relay-only gives relayed candidates only and says the STUN servers were skipped', async () => {
    const t = await relay();
    const mapping = await mappingServer(cleanup, { address: '203.0.113.5', port: 5000 });
    const r = await icegather(['--address', '127.0.0.1', '--relay-only', `stun:127.0.0.1:${mapping.port}`, `turn:127.0.0.1:${t.udp}`, '--user', 'alice', '--credential', 'wonderland']);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.stdout).not.toMatch(/ host /);
    expect(r.stdout).toMatch(/ relay /);
    expect(r.stdout).toMatch(/^skipped +stun:127\.0\.0\.1:\d+: not used: policy relay/m);
    expect(mapping.seen).toHaveLength(0);
  });

  it('--interface and --include-loopback pick the addresses; no usable address is exit 3', async () => {
    const lo = await icegather(['--interface', 'lo', '--include-loopback', '--family', 'ipv4']);
    expect(lo.code, lo.stderr).toBe(0);
    expect(lo.stdout).toMatch(/ host +\d+ +udp +127\.0\.0\.1 /);
    expect(lo.stdout).toMatch(/1 candidate\(s\) \(1 host, 0 srflx, 0 relay\); no servers/);
    const none = await icegather(['--interface', 'no-such-interface0']);
    expect(none.code).toBe(3);
    expect(none.stderr).toMatch(/no usable local address/);
  });
});

describe("icegather's report lines", () => {
  it('write IPv6 addresses in brackets and IPv4 ones bare, with their ports', () => {
    const base = { family: 'IPv6' as const, address: '2001:db8::2', port: 5000 };
    const srflx: LocalCandidate = {
      foundation: '7', component: 1, transport: 'udp', priority: 1694498815, address: '2001:db8::99', port: 6000, type: 'srflx',
      relatedAddress: '2001:db8::2', relatedPort: 5000, base, baseId: 1, server: 'stun:[2001:db8::1]', elapsedMs: 12,
    };
    expect(candidateRow(srflx)).toMatch(/^0\.012 +srflx +7 +udp +2001:db8::99 +6000 +100 \| 65535 \| 255 +\[2001:db8::2\]:5000 +stun:\[2001:db8::1\]$/);
    const server = { family: 'IPv6' as const, address: '2001:db8::1', port: 3478 };
    const v4 = { family: 'IPv4' as const, address: '192.0.2.1', port: 40000 };
    const line = serverLine({ url: 'stun:[2001:db8::1]', kind: 'stun', transport: 'udp', server, ok: true, candidates: [srflx], mapped: [{ local: base, mapped: v4 }], elapsedMs: 20 });
    expect(line).toBe('ok       stun:[2001:db8::1] ([2001:db8::1]:3478) in 20 ms: srflx [2001:db8::99]:6000, mapped 192.0.2.1:40000 (redundant)');
  });
});
