// The TURN interop tests' peers and servers (test/interop/turn-*.test.ts): natkit's relay
// run in-process on loopback or as its relayserver binary, coturn's turnserver as a relay, coturn's turnutils_peer
// (a UDP echo server) and turnutils_uclient (a TURN client and load generator) with its
// printed summary parsed. Everything on 127.0.0.1 with free ports; every wait is for a
// line of output or an answer, never a sleep.
import * as dgram from 'node:dgram';
import { mkdtemp, rm } from 'node:fs/promises';
import * as http from 'node:http';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StunClient } from '@natkit/stun';
import { TurnServer, type TurnServerOptions, parseUsers } from '@natkit/turn';
import { type Proc, run, start, startBin } from './spawn.js';
import { coturnCommonArgs } from './interop-servers.js';

export const LOOPBACK = '127.0.0.1';
export const USER = 'natkit-user';
export const PASS = 'natkit-pass';
export const REALM = 'natkit.test';
export const SECRET = 'natkit-rest-secret';

// ---------------------------------------------------------------------------------------
// Ports

function bindUdp(port: number, address = LOOPBACK): Promise<dgram.Socket | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket('udp4');
    s.once('error', () => {
      s.close();
      resolve(undefined);
    });
    s.bind({ address, port, exclusive: true }, () => resolve(s));
  });
}

function listenTcp(port: number, address = LOOPBACK): Promise<net.Server | undefined> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(undefined));
    srv.listen({ host: address, port, exclusive: true }, () => resolve(srv));
  });
}

/**
 * `count` consecutive ports from `base` that are free for UDP (and TCP when asked) on
 * 127.0.0.1 right now; everything bound is closed before this returns.
 */
async function rangeFree(base: number, count: number, tcp: boolean): Promise<boolean> {
  const udp: dgram.Socket[] = [];
  const tcps: net.Server[] = [];
  let ok = true;
  for (let p = base; p < base + count && ok; p++) {
    const u = await bindUdp(p);
    if (u) udp.push(u);
    else ok = false;
    if (ok && tcp) {
      const t = await listenTcp(p);
      if (t) tcps.push(t);
      else ok = false;
    }
  }
  await Promise.all(udp.map((s) => new Promise<void>((r) => s.close(() => r()))));
  await Promise.all(tcps.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ok;
}

/**
 * A run of `count` consecutive free ports. With `from`/`to` it is picked at random in that
 * window (relay port ranges: below Linux's ephemeral range 32768-60999, so port-0 binds
 * elsewhere do not land in it); otherwise the kernel picks the first (bind to port 0).
 * A program started on them can still lose a race: callers retry.
 */
export async function freePortRun(count: number, opts: { tcp?: boolean; from?: number; to?: number } = {}): Promise<number> {
  for (let i = 0; i < 200; i++) {
    let base: number;
    if (opts.from !== undefined && opts.to !== undefined) {
      base = opts.from + Math.floor(Math.random() * (opts.to - opts.from - count));
    } else {
      const s = await bindUdp(0);
      if (!s) continue;
      base = s.address().port;
      await new Promise<void>((r) => s.close(() => r()));
      if (base + count > 65535) continue;
    }
    if (await rangeFree(base, count, opts.tcp ?? false)) return base;
  }
  throw new Error(`no run of ${count} free ports on ${LOOPBACK}`);
}

// ---------------------------------------------------------------------------------------
// natkit's relay, in-process

/** Relay ports of natkit's relay in these tests. */
export const NATKIT_RELAY_MIN = 20000;
export const NATKIT_RELAY_MAX = 29999;

export interface NatkitRelay {
  server: TurnServer;
  udpPort: number;
  tcpPort: number;
  /** The server's structured log: allocations made and deleted (with their counters), refusals. */
  log: Array<{ level: string; msg: string; fields: Record<string, unknown> }>;
  /** The log as text, for failure messages. */
  logText(): string;
  close(): Promise<void>;
}

/**
 * natkit's TurnServer on 127.0.0.1, port 0, UDP and TCP, user USER:PASS and the REST
 * secret SECRET, realm REALM. Every peer in these tests is on loopback, which the
 * server's secure default refuses (SSRF protection): `allowPeers: ['127.0.0.0/8']` opens
 * it, here only.
 */
export async function startNatkitRelay(extra: TurnServerOptions = {}): Promise<NatkitRelay> {
  const log: NatkitRelay['log'] = [];
  const server = await TurnServer.start({
    listen: [LOOPBACK],
    port: 0,
    realm: REALM,
    users: parseUsers(`${USER}:${PASS}\n`),
    secrets: [SECRET],
    allowPeers: ['127.0.0.0/8'],
    relayPortMin: NATKIT_RELAY_MIN,
    relayPortMax: NATKIT_RELAY_MAX,
    log: (level, msg, fields) => log.push({ level, msg, fields: fields ?? {} }),
    ...extra,
  });
  const udpPort = server.listening.find((l) => l.transport === 'udp')?.port ?? 0;
  const tcpPort = server.listening.find((l) => l.transport === 'tcp')?.port ?? 0;
  return {
    server,
    udpPort,
    tcpPort,
    log,
    logText: () => log.map((l) => `${l.level} ${l.msg} ${JSON.stringify(l.fields)}`).join('\n'),
    close: () => server.close(),
  };
}

/**
 * One series of natkit's Prometheus exposition (`await server.metrics.metrics()`, or the
 * text a relayserver served), e.g.
 * await metric(s, 'natkit_turn_relayed_packets_total', { direction: 'to_peer' }); 0 when the
 * series is absent (error answers by code appear on first use).
 */
export async function metric(server: TurnServer | string, name: string, labels: Record<string, string> = {}): Promise<number> {
  const want = Object.keys(labels)
    .sort()
    .map((k) => `${k}="${labels[k]}"`)
    .join(',');
  const head = want ? `${name}{${want}} ` : `${name} `;
  const text = typeof server === 'string' ? server : await server.metrics.metrics();
  const line = text.split('\n').find((l) => l.startsWith(head));
  return line ? Number(line.slice(head.length)) : 0;
}

// ---------------------------------------------------------------------------------------
// natkit's relayserver binary (packages/turn/bin/relayserver.js, the built dist)

export interface RelayserverBinary {
  proc: Proc;
  port: number;
  /** The Prometheus exposition from its --metrics endpoint. */
  scrape(): Promise<string>;
  stop(): Promise<number | string>;
}

/**
 * relayserver on 127.0.0.1, port 0 (UDP and TCP), relay ports NATKIT_RELAY_MIN..MAX,
 * user USER:PASS, REST secret SECRET, realm REALM, loopback peers allowed (see
 * startNatkitRelay), metrics on 127.0.0.1 port 0, JSON log lines. Ready when it prints
 * its start-up line, which names its ports. Stopped with SIGINT (at once: SIGTERM would
 * drain for allocations uclient never deletes, such as its probe allocation).
 */
export async function startRelayserverBinary(extra: string[] = []): Promise<RelayserverBinary> {
  const proc = startBin('turn', 'relayserver', [
    '--listen', LOOPBACK,
    '--port', '0',
    '--min-port', String(NATKIT_RELAY_MIN),
    '--max-port', String(NATKIT_RELAY_MAX),
    '--realm', REALM,
    '--user', `${USER}:${PASS}`,
    '--auth-secret', SECRET,
    '--allow-peer', '127.0.0.0/8',
    '--metrics', `${LOOPBACK}:0`,
    '--log-format', 'json',
    ...extra,
  ]);
  const m = await proc.waitFor(/listening on udp 127\.0\.0\.1:(\d+), tcp 127\.0\.0\.1:\1\b.*metrics on (http:\/\/127\.0\.0\.1:\d+\/metrics)/);
  const url = m[2]!;
  return {
    proc,
    port: Number(m[1]),
    scrape: () =>
      new Promise((resolve, reject) => {
        // One connection, closed after the answer (no keep-alive socket left open).
        const req = http.get(url, { agent: false, headers: { connection: 'close' } }, (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => {
            body += d;
          });
          res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: HTTP ${res.statusCode}`))));
        });
        req.on('error', reject);
      }),
    stop: () => proc.stop('SIGINT'),
  };
}

// ---------------------------------------------------------------------------------------
// A UDP peer in the test process

export interface UdpPeer {
  address: string;
  port: number;
  /** Datagrams received so far: payload and source. */
  received: Array<{ data: Buffer; from: dgram.RemoteInfo }>;
  /** Resolves once `n` datagrams have arrived (or rejects after `ms`). */
  waitFor(n: number, ms?: number): Promise<void>;
  send(data: Buffer, port: number, address?: string): Promise<void>;
  close(): Promise<void>;
}

export async function openUdpPeer(opts: { echo?: (data: Buffer) => Buffer } = {}): Promise<UdpPeer> {
  const sock = dgram.createSocket('udp4');
  const received: UdpPeer['received'] = [];
  const waiters = new Set<() => void>();
  sock.on('message', (data, from) => {
    received.push({ data, from });
    if (opts.echo) sock.send(opts.echo(data), from.port, from.address);
    for (const w of waiters) w();
  });
  await new Promise<void>((r) => sock.bind(0, LOOPBACK, () => r()));
  return {
    address: LOOPBACK,
    port: sock.address().port,
    received,
    waitFor(n, ms = 10_000) {
      return new Promise((resolve, reject) => {
        const check = () => {
          if (received.length < n) return;
          done();
          resolve();
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`UDP peer got ${received.length} of ${n} datagrams within ${ms} ms`));
        }, ms);
        const done = () => {
          clearTimeout(timer);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      });
    },
    send: (data, port, address = LOOPBACK) =>
      new Promise((resolve, reject) => sock.send(data, port, address, (err) => (err ? reject(err) : resolve()))),
    close: () => new Promise((r) => sock.close(() => r())),
  };
}

// ---------------------------------------------------------------------------------------
// coturn's turnutils_peer

export interface TurnutilsPeer {
  proc: Proc;
  /** It echoes on `port` and `port + 1` (uclient's "RTCP" peer). */
  port: number;
  stop(): Promise<number | string>;
}

/**
 * turnutils_peer -L 127.0.0.1 -p P -v: a UDP echo server on P and P+1. With -v it prints
 * "udp_create_server_socket:98:end" once per socket it bound; a port it cannot bind it
 * skips without a word, so we wait for both lines and then for an echo on P, and start
 * again with other ports when they do not come.
 */
export async function startTurnutilsPeer(program: string): Promise<TurnutilsPeer> {
  let last: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePortRun(2);
    const proc = start(program, ['-L', LOOPBACK, '-p', String(port), '-v']);
    try {
      await proc.waitFor(/udp_create_server_socket:\d+:end[\s\S]*udp_create_server_socket:\d+:end/, 5_000);
      await echoProbe(port);
      return { proc, port, stop: () => proc.stop() };
    } catch (err) {
      last = err;
      await proc.stop('SIGKILL');
    }
  }
  throw new Error(`turnutils_peer did not start: ${(last as Error)?.message}`);
}

async function echoProbe(port: number): Promise<void> {
  const peer = await openUdpPeer();
  try {
    for (let i = 0; i < 20; i++) {
      await peer.send(Buffer.from(`natkit probe ${i}`), port);
      try {
        await peer.waitFor(1, 250);
        return;
      } catch {
        // try again
      }
    }
    throw new Error(`no echo from 127.0.0.1:${port}`);
  } finally {
    await peer.close();
  }
}

// ---------------------------------------------------------------------------------------
// coturn's turnutils_uclient

export interface UclientResult {
  code: number | string;
  stdout: string;
  stderr: string;
  /** The final summary ("start_mclient: tot_send_msgs=N, tot_recv_msgs=M" ...). */
  sentMsgs?: number;
  recvMsgs?: number;
  sentBytes?: number;
  recvBytes?: number;
  lost?: number;
  sendDropped?: number;
  /** Channel numbers a ChannelBind was refused for with 400 "outside 0x4000-0x4FFF", with the hint how to get past it. */
  refusedChannels: number[];
  ms: number;
}

export function parseUclient(stdout: string): Omit<UclientResult, 'code' | 'stdout' | 'stderr' | 'ms'> {
  const num = (re: RegExp, i = 1) => {
    const m = re.exec(stdout);
    return m ? Number(m[i]) : undefined;
  };
  return {
    sentMsgs: num(/start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)$/m, 1),
    recvMsgs: num(/start_mclient: tot_send_msgs=(\d+), tot_recv_msgs=(\d+)$/m, 2),
    sentBytes: num(/start_mclient: tot_send_bytes ~ (\d+), tot_recv_bytes ~ (\d+)$/m, 1),
    recvBytes: num(/start_mclient: tot_send_bytes ~ (\d+), tot_recv_bytes ~ (\d+)$/m, 2),
    lost: num(/Total lost packets (\d+) /),
    sendDropped: num(/total send dropped (\d+) /),
    refusedChannels: [...stdout.matchAll(/channel bind: error 400 \([^)]*channel 0x([0-9a-f]+) is outside 0x4000-0x4FFF \(RFC 5766 numbers: relayserver --legacy-channels\)\)/g)].map((m) => parseInt(m[1]!, 16)),
  };
}

export async function runUclient(program: string, args: string[], timeoutMs = 40_000): Promise<UclientResult> {
  const t0 = Date.now();
  const r = await run(program, args, { timeoutMs });
  return { ...r, ...parseUclient(r.stdout), ms: Date.now() - t0 };
}

// ---------------------------------------------------------------------------------------
// coturn's turnserver as a relay

export interface CoturnRelay {
  proc: Proc;
  /** UDP and TCP (and, with `tls`, TLS too: coturn tells them apart per connection). */
  port: number;
  /** With `tls`: the TLS port (TLS and TCP). */
  tlsPort: number | undefined;
  relayMin: number;
  relayMax: number;
  stop(): Promise<number | string>;
}

/**
 * coturn 4.6.1's turnserver as a TURN relay on 127.0.0.1:P (UDP and TCP; with `tls`, TLS on
 * P+1 with that certificate and key as well), relaying from
 * 127.0.0.1 ports [R, R+15], realm REALM, with either long-term credentials (-a -u
 * USER:PASS) or the TURN REST API secret (--use-auth-secret --static-auth-secret SECRET).
 * coturn refuses loopback peers unless --allow-loopback-peers ("CONFIG WARNING:
 * allow_loopback_peers opens a possible security vulnerability"); no DTLS (nor TLS without `tls`), no CLI,
 * its pid file and SQLite database in a temporary directory, -v logging to stdout (one
 * line per session event, "peer usage: ... rp=, rb=, sp=, sb=" when a session ends).
 * A taken listener port makes it retry for ever ("errno=98"): we start again elsewhere.
 */
export async function startCoturnRelay(program: string, auth: 'long-term' | 'rest', opts: { tls?: { cert: string; key: string } } = {}): Promise<CoturnRelay> {
  let last: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    // with TLS, its port is the next one
    const port = await freePortRun(opts.tls ? 2 : 1, { tcp: true });
    const tlsPort = opts.tls ? port + 1 : undefined;
    const relayMin = await freePortRun(16, { from: 20000, to: 32000 });
    const relayMax = relayMin + 15;
    const dir = await mkdtemp(join(tmpdir(), 'natkit-coturn-relay-'));
    const creds = auth === 'long-term' ? ['-a', '-u', `${USER}:${PASS}`] : ['--use-auth-secret', '--static-auth-secret', SECRET];
    const tls = opts.tls ? ['--tls-listening-port', String(tlsPort), '--cert', opts.tls.cert, '--pkey', opts.tls.key] : [];
    const common = coturnCommonArgs(dir).filter((a) => !(opts.tls && a === '--no-tls'));
    // prettier-ignore
    const proc = start(program, [
      '-L', LOOPBACK, '-p', String(port), ...tls, '--relay-ip', LOOPBACK, '--min-port', String(relayMin), '--max-port', String(relayMax),
      ...creds, '-r', REALM, '--allow-loopback-peers', ...common,
    ]);
    const stop = async () => {
      const code = await proc.stop();
      await rm(dir, { recursive: true, force: true });
      return code;
    };
    const conflict = /errno=98|Address already in use/;
    try {
      const p = String(port);
      // ("TCP listener" also matches coturn's "TLS/TCP listener" of a port that does both)
      const listeners = [new RegExp(`UDP listener opened on: 127\\.0\\.0\\.1:${p}\\b|${conflict.source}`), new RegExp(`TCP listener opened on : 127\\.0\\.0\\.1:${p}\\b|${conflict.source}`)];
      if (tlsPort) listeners.push(new RegExp(`TLS/TCP listener opened on : 127\\.0\\.0\\.1:${tlsPort}\\b|${conflict.source}`));
      for (const re of listeners) {
        const m = await proc.waitFor(re, 10_000);
        if (conflict.test(m[0])) throw new Error(`port ${port}${tlsPort ? ` or ${tlsPort}` : ''} is taken`);
      }
      await proc.waitFor(/Relay ports initialization done/, 10_000);
      await stunReady(port);
      return { proc, port, tlsPort, relayMin, relayMax, stop };
    } catch (err) {
      last = err;
      await stop();
    }
  }
  throw new Error(`turnserver did not start: ${(last as Error)?.message}`);
}

/** A Binding request answered over UDP (coturn answers STUN on its TURN port). */
async function stunReady(port: number, ms = 10_000): Promise<void> {
  const client = new StunClient({ software: false, retransmit: { rto: 50, rc: 3, rm: 4 } });
  const deadline = Date.now() + ms;
  try {
    for (;;) {
      try {
        await client.binding({ address: LOOPBACK, port, transport: 'udp' });
        return;
      } catch (err) {
        if ((err as { code?: string }).code !== 'TIMEOUT' || Date.now() > deadline) throw err;
      }
    }
  } finally {
    await client.close();
  }
}

/**
 * coturn's account of a finished session's peer traffic (it prints it when the session is
 * deleted: at once for TCP, about a second after a Refresh with lifetime 0 on UDP):
 *   session 000000000000000001: peer usage: realm=<r>, username=<u>, rp=2, rb=20, sp=2, sb=10
 * rp/rb: packets/bytes received from peers; sp/sb: sent to peers.
 */
export async function coturnPeerUsage(proc: Proc, username: string, ms = 10_000): Promise<{ rp: number; rb: number; sp: number; sb: number }> {
  const u = username.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const m = await proc.waitFor(new RegExp(`session \\d+: peer usage: realm=<[^>]*>, username=<${u}>, rp=(\\d+), rb=(\\d+), sp=(\\d+), sb=(\\d+)`), ms);
  return { rp: Number(m[1]), rb: Number(m[2]), sp: Number(m[3]), sb: Number(m[4]) };
}
