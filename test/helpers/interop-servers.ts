// STUN servers for the interop tests (test/interop): natkit's own stunserver and the
// servers nobody here wrote (coturn's turnserver, Debian's stund, node-stun's server),
// each on 127.0.0.1 and 127.0.0.2 with free ports, started, proven ready by a line of
// output and a STUN Binding request, and stopped. No sleeps: every wait is for a line of
// output or an answer, with a bounded time.
import * as dgram from 'node:dgram';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BindingResult, type ServerSpec, StunClient } from '@natkit/stun';
import { DEBIAN_PACKAGES, type SkipCtx, needProgram, skipOrFail, systemProgram } from './programs.js';
import { type Proc, ROOT, start, startBin } from './spawn.js';
import { expect } from 'vitest';

/** The two loopback addresses every interop server listens on (both work on Linux lo). */
export const A = '127.0.0.1';
export const A2 = '127.0.0.2';

/** node-stun's command-line programs (from the node-stun 0.1.2 dev dependency). */
export const NODE_STUN_SERVER = `${ROOT}node_modules/node-stun/bin/server.js`;
export const NODE_STUN_CLIENT = `${ROOT}node_modules/node-stun/bin/client.js`;

/**
 * Like needProgram (skipped off CI, a failure under CI=true when missing), but only a
 * program installed in the system directories counts. Under vitest PATH starts with
 * node_modules/.bin, where the npm package `stun` (a dev dependency) installs a `stun`
 * binary that starts a STUN *server* on 0.0.0.0:3478: needProgram('stun') finds that one
 * instead of Debian's stun client.
 */
export function needSystemProgram(ctx: SkipCtx, program: string): string {
  needProgram(ctx, program);
  return (
    systemProgram(program) ??
    skipOrFail(ctx, `${program} from the Debian package ${DEBIAN_PACKAGES[program] ?? '?'} is not installed in the system directories (only another program of that name is on PATH)`)
  );
}

/** A server started for a test: its addresses, the process, and how to stop it. */
export interface RunningServer {
  proc: Proc;
  /** Primary port P (on A and A2). */
  port: number;
  /** Second port P2 (on A and A2). */
  altPort: number;
  /** Stops the process (SIGTERM), waits for its exit, removes its temporary files. */
  stop(): Promise<number | string>;
}

/** The port could not be had (someone took it between our check and the server's bind). */
class PortTaken extends Error {}

function bindUdp(address: string, port: number): Promise<dgram.Socket | undefined> {
  return new Promise((resolve) => {
    const s = dgram.createSocket({ type: 'udp4', reuseAddr: false });
    s.once('error', () => {
      s.close();
      resolve(undefined);
    });
    s.bind({ address, port, exclusive: true }, () => resolve(s));
  });
}

function listenTcp(address: string, port: number): Promise<net.Server | undefined> {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(undefined));
    srv.listen({ host: address, port, exclusive: true }, () => resolve(srv));
  });
}

/**
 * Whether `port` can be bound for UDP (and TCP when asked) on every address. Everything
 * bound here is closed again before this returns.
 */
async function portFree(port: number, tcp: boolean, addresses: string[]): Promise<boolean> {
  const udp: dgram.Socket[] = [];
  const servers: net.Server[] = [];
  let ok = true;
  for (const a of addresses) {
    const s = await bindUdp(a, port);
    if (!s) {
      ok = false;
      break;
    }
    udp.push(s);
    if (tcp) {
      const t = await listenTcp(a, port);
      if (!t) {
        ok = false;
        break;
      }
      servers.push(t);
    }
  }
  await Promise.all(udp.map((s) => new Promise<void>((r) => s.close(() => r()))));
  await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  return ok;
}

/**
 * `n` distinct ports that are free right now for UDP (and TCP) on 127.0.0.1 and
 * 127.0.0.2: the kernel picks one (bind to port 0), we check it on every address and
 * protocol, and close everything. A server started on them may still lose a race, so
 * callers retry on "address in use".
 */
export async function freePorts(n: number, opts: { tcp?: boolean; addresses?: string[] } = {}): Promise<number[]> {
  const addresses = opts.addresses ?? [A, A2];
  const out: number[] = [];
  for (let tries = 0; out.length < n; tries++) {
    if (tries > 200) throw new Error(`could not find ${n} free ports on ${addresses.join(', ')}`);
    const s = await bindUdp(addresses[0]!, 0);
    if (!s) continue;
    const port = s.address().port;
    await new Promise<void>((r) => s.close(() => r()));
    if (out.includes(port)) continue;
    if (await portFree(port, opts.tcp ?? false, addresses)) out.push(port);
  }
  return out;
}

/**
 * Sends Binding requests (short retransmissions) until one is answered or `ms` passes.
 * SOFTWARE is left out of these polls: RFC 3489-era servers (stund, node-stun) drop
 * requests whose SOFTWARE length is not a multiple of 4 (see test/interop), and a poll
 * is only about readiness.
 */
export async function waitForStun(server: ServerSpec, ms = 10_000): Promise<BindingResult> {
  const deadline = Date.now() + ms;
  const client = new StunClient({ software: false, retransmit: { rto: 50, rc: 3, rm: 4 } });
  let last: unknown;
  try {
    while (Date.now() < deadline) {
      try {
        return await client.binding({ ...server, transport: 'udp' });
      } catch (err) {
        if ((err as { code?: string }).code !== 'TIMEOUT') throw err;
        last = err;
      }
    }
  } finally {
    await client.close();
  }
  throw new Error(`no STUN answer from udp ${server.address}:${server.port} within ${ms} ms: ${(last as Error)?.message}`);
}

async function retrying(what: string, attempt: () => Promise<RunningServer>): Promise<RunningServer> {
  let last: unknown;
  for (let i = 0; i < 5; i++) {
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof PortTaken)) throw err;
      last = err;
    }
  }
  throw new Error(`${what}: ports kept being taken: ${(last as Error).message}`);
}

/** natkit's stunserver in RFC 5780 full mode on A and A2, free ports (--port 0). */
export async function startStunserver(extra: string[] = []): Promise<RunningServer> {
  const proc = startBin('stun', 'stunserver', ['--listen', A, '--alternate', A2, '--port', '0', ...extra]);
  const m = await proc.waitFor(/listening on udp 127\.0\.0\.1:(\d+), udp 127\.0\.0\.1:(\d+), udp 127\.0\.0\.2:\1, udp 127\.0\.0\.2:\2, tcp 127\.0\.0\.1:\1 \(RFC 5780 full mode\)/);
  return { proc, port: Number(m[1]), altPort: Number(m[2]), stop: () => proc.stop() };
}

/**
 * Debian's stund (Vovida STUN server 0.97, RFC 3489): `stund -v -h A -p P -a A2 -o P2`.
 * It exits ("Port N for receiving UDP is in use") when a port is taken; then we retry.
 */
export function startStund(stund = 'stund'): Promise<RunningServer> {
  return retrying('stund', async () => {
    const [port, altPort] = await freePorts(2);
    const proc = start(stund, ['-v', '-h', A, '-a', A2, '-p', String(port), '-o', String(altPort)]);
    try {
      // Verbose lines go to stderr, unbuffered. It opens A:P, A:P2, A2:P, A2:P2 in that
      // order, so the second "Opened port P2" is the last socket.
      await proc.waitFor(new RegExp(`Opened port ${altPort} with fd \\d+[\\s\\S]*Opened port ${altPort} with fd \\d+`), 10_000, 'stderr');
      await waitForStun({ address: A, port });
    } catch (err) {
      await proc.stop('SIGKILL');
      if (/is in use|Can't open/.test(proc.stderr())) throw new PortTaken(proc.stderr());
      throw err;
    }
    return { proc, port, altPort, stop: () => proc.stop() };
  });
}

/**
 * What every coturn turnserver started by the tests shares: no config file (-n), no CLI,
 * no TLS/DTLS, logging to stdout line by line with each listener it opens (-v), and its pid
 * file and user database in the test's own temporary directory.
 */
export function coturnCommonArgs(dir: string): string[] {
  // prettier-ignore
  return ['-n', '--no-cli', '--no-tls', '--no-dtls', '--log-file', 'stdout', '--simple-log', '-v',
    '--pidfile', join(dir, 'turnserver.pid'), '--userdb', join(dir, 'turndb')];
}

/**
 * coturn's turnserver as a STUN server on A and A2 (RFC 5780 on: two listening
 * addresses of one family turn it on; --alt-listening-port sets P2), no TLS/DTLS, no
 * CLI, its pid file and database in a temporary directory, logging to stdout (-v prints
 * each listener it opens). coturn retries a taken port for ever ("errno=98"), so we
 * watch for that and start again with other ports.
 */
export function startTurnserver(turnserver = 'turnserver'): Promise<RunningServer> {
  return retrying('turnserver', async () => {
    const [port, altPort] = await freePorts(2, { tcp: true });
    const dir = await mkdtemp(join(tmpdir(), 'natkit-coturn-'));
    const args = ['-L', A, '-L', A2, '-p', String(port), '--alt-listening-port', String(altPort), ...coturnCommonArgs(dir)];
    const proc = start(turnserver, args);
    const cleanup = async () => {
      const code = await proc.stop();
      await rm(dir, { recursive: true, force: true });
      return code;
    };
    const conflict = /errno=98|Address already in use/;
    try {
      for (const a of [A, A2]) {
        for (const p of [port, altPort]) {
          for (const t of ['UDP listener opened on: ', 'TCP listener opened on : ']) {
            const m = await proc.waitFor(new RegExp(`${t}${a.replaceAll('.', '\\.')}:${p}\\b|${conflict.source}`));
            if (conflict.test(m[0])) throw new PortTaken(`${a}:${p} is taken`);
          }
        }
      }
      if (conflict.test(proc.stdout())) throw new PortTaken('a listener port is taken');
      await waitForStun({ address: A, port });
    } catch (err) {
      await cleanup();
      throw err;
    }
    return { proc, port, altPort, stop: cleanup };
  });
}

/**
 * node-stun's server (bin/server.js), which reads node-stun.ini from its working
 * directory: a temporary directory holding
 *   [primary] host = 127.0.0.1, port = P   [secondary] host = 127.0.0.2, port = P2
 * It logs "soc[i] listening on ADDR:PORT" for its four sockets, and dies of an unhandled
 * EADDRINUSE when a port is taken.
 */
export function startNodeStunServer(): Promise<RunningServer> {
  return retrying('node-stun server', async () => {
    const [port, altPort] = await freePorts(2);
    const dir = await mkdtemp(join(tmpdir(), 'natkit-node-stun-'));
    await writeFile(join(dir, 'node-stun.ini'), `; written by natkit's interop tests\n[primary]\nhost = ${A}\nport = ${port}\n\n[secondary]\nhost = ${A2}\nport = ${altPort}\n`);
    const proc = start(process.execPath, [NODE_STUN_SERVER], { cwd: dir });
    const cleanup = async () => {
      const code = await proc.stop();
      await rm(dir, { recursive: true, force: true });
      return code;
    };
    try {
      for (const [a, p] of [[A, port], [A, altPort], [A2, port], [A2, altPort]] as const) {
        await proc.waitFor(new RegExp(`listening on ${a.replaceAll('.', '\\.')}:${p}\\b`));
      }
      await waitForStun({ address: A, port });
    } catch (err) {
      await cleanup();
      if (/EADDRINUSE/.test(proc.stderr())) throw new PortTaken(proc.stderr());
      throw err;
    }
    return { proc, port, altPort, stop: cleanup };
  });
}

/**
 * natcheck's text report for a loopback run against a server on A:port with its other
 * address A2:altPort: no NAT, endpoint-independent mapping and filtering, Open Internet.
 * `why` goes into the first assertion's message (what the server logged).
 */
export function expectOpenInternetReport(stdout: string, port: number, altPort: number, why?: string): void {
  expect(stdout, why).toMatch(new RegExp(`^STUN server +127\\.0\\.0\\.1:${port} \\(other address 127\\.0\\.0\\.2:${altPort}\\)$`, 'm'));
  expect(stdout).toMatch(/^behind a NAT +no$/m);
  expect(stdout).toMatch(/^mapping +endpoint-independent$/m);
  expect(stdout).toMatch(/^filtering +endpoint-independent$/m);
  expect(stdout).toMatch(/^NAT type \(RFC 3489\) +Open Internet$/m);
}
