// Plain line clients nobody here wrote against the signalserver binary: OpenBSD `nc` and
// `socat` exchange the tutorial's candidate lines; a third is closed at once; a party
// leaving frees the place; a JSON client next to them has its room.
import { type ChildProcess, spawn } from 'node:child_process';
import * as http from 'node:http';
import { describe, expect, it } from 'vitest';
import { RawClient } from '../../packages/signal/test/tcp.js';
import { useCleanup } from '../helpers/cleanup.js';
import { needProgram } from '../helpers/programs.js';
import { startBin } from '../helpers/spawn.js';

const { defer, track } = useCleanup();

interface Tool {
  child: ChildProcess;
  out: () => string;
  exited: Promise<number | null>;
  write(line: string): void;
  /** Closes its standard input. */
  end(): void;
  waitOut(text: string, ms?: number): Promise<void>;
}

/** Runs a program with a pipe to its stdin, keeping its stdout; killed after the test. */
function tool(cmd: string, args: string[]): Tool {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  const waiters = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    for (const w of [...waiters]) w();
  });
  child.stderr!.resume();
  child.stdin!.on('error', () => {});
  const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
  defer(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  return {
    child,
    out: () => out,
    exited,
    write: (line) => void child.stdin!.write(line),
    end: () => child.stdin!.end(),
    waitOut: (text, ms = 10_000) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (out.includes(text)) {
            done();
            resolve();
          }
        };
        const t = setTimeout(() => {
          done();
          reject(new Error(`${cmd} did not print ${JSON.stringify(text)} within ${ms} ms; printed ${JSON.stringify(out)}`));
        }, ms);
        const done = () => {
          clearTimeout(t);
          waiters.delete(check);
        };
        waiters.add(check);
        check();
      }),
  };
}

describe('nc and socat as plain clients', () => {
  it('exchange the tutorial\'s candidate lines; a third is closed; a leaver frees the place', async (ctx) => {
    const nc = needProgram(ctx, 'nc');
    const socat = needProgram(ctx, 'socat');
    const server = startBin('signal', 'signalserver', ['--listen', '127.0.0.1', '--port', '0', '--detect-timeout', '0.2', '--close-grace', '1', '--metrics', '127.0.0.1:0']);
    const [, port, metricsUrl] = (await server.waitFor(/listening on tcp 127\.0\.0\.1:(\d+); mode auto; metrics on (\S+)/)) as unknown as [string, string, string];
    const parties = () =>
      new Promise<number>((resolve, reject) => {
        http.get(metricsUrl, { agent: false }, (res) => {
          let body = '';
          res.setEncoding('utf8').on('data', (d: string) => (body += d));
          res.on('end', () => resolve(Number(/^natkit_signal_parties (\d+)$/m.exec(body)?.[1])));
        }).on('error', reject);
      });

    // The tutorial client's format: "%s %d %s %f %s %s %s\n".
    const a = tool(nc, ['-N', '127.0.0.1', port]);
    a.write('192.168.1.20 40001 udp 1.000000 local d2FsbG Zm9vYmFy\n');
    const b = tool(socat, ['-', `TCP:127.0.0.1:${port}`]);
    await b.waitOut('192.168.1.20 40001 udp 1.000000 local d2FsbG Zm9vYmFy\n');
    b.write('203.0.113.50 51234 udp 0.900000 stun cXV4 YmF6cXV4\n');
    await a.waitOut('203.0.113.50 51234 udp 0.900000 stun cXV4 YmF6cXV4\n');

    // A third nc that says nothing (-d: does not read stdin): closed once it counts as a
    // plain party, with nothing written to it; nc exits.
    const third = tool(nc, ['-d', '127.0.0.1', port]);
    expect(await third.exited).toBe(0);
    expect(third.out()).toBe('');
    // A third socat that sends a line is closed as well.
    const fourth = tool(socat, ['-', `TCP:127.0.0.1:${port}`]);
    fourth.write('10.1.1.1 1 udp 1.000000 local x y\n');
    expect(await fourth.exited).toBe(0);
    expect(fourth.out()).toBe('');

    // A JSON client has its own room next to the plain pair.
    const j = track(await RawClient.connect(Number(port)));
    await j.json({ type: 'join', room: 'side' });
    expect((await j.messages(1))[0]).toMatchObject({ type: 'joined', room: 'side' });

    // nc closes its input (-N: and its socket): A has left; what B sends now waits for the
    // next party, and a new nc gets it.
    a.end();
    expect(await a.exited).toBe(0);
    for (let i = 0; (await parties()) !== 2; i++) {
      if (i > 1000) throw new Error('the server did not see nc leave');
      await new Promise((r) => setTimeout(r, 10));
    }
    b.write('203.0.113.50 51235 udp 0.800000 relay cXV4 YmF6cXV4\n');
    const c = tool(nc, ['127.0.0.1', port]);
    await c.waitOut('203.0.113.50 51235 udp 0.800000 relay cXV4 YmF6cXV4\n');
    expect(c.out()).toBe('203.0.113.50 51235 udp 0.800000 relay cXV4 YmF6cXV4\n');
    expect(await server.stop('SIGTERM')).toBe(0);
    // SIGTERM closes them: socat and nc see the end and exit.
    expect(await b.exited).toBe(0);
  });
});
