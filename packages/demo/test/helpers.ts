// What the demo's tests share: natkit's servers on loopback (spawned from their builds), and
// p2pdemo processes whose --json events are read as they come.
import { type Proc, natkitBin, start, startBin } from '../../../test/helpers/spawn.js';

export const P2PDEMO = natkitBin('demo', 'p2pdemo');
export const TURN_USER = 'demo';
export const TURN_PASSWORD = 'demo-password-1';

export interface Servers {
  stun: Proc;
  relay: Proc;
  signal: Proc;
  stunPort: number;
  relayPort: number;
  signalPort: number;
  /** p2pdemo's flags for them (loopback only, a byte every 0.2 s). */
  args(room: string): string[];
  stop(): Promise<void>;
}

const portIn = (line: string, proto: 'udp' | 'tcp') => Number(new RegExp(`${proto} 127\\.0\\.0\\.1:(\\d+)`).exec(line)![1]);

/** relayserver on 127.0.0.1 (free port unless given), loopback peers allowed, one worker, no drain. */
export async function startRelay(port = 0): Promise<{ proc: Proc; port: number }> {
  const proc = startBin('turn', 'relayserver', [
    '--listen', '127.0.0.1', '--port', String(port), '--no-tcp', '--user', `${TURN_USER}:${TURN_PASSWORD}`, '--allow-peer', '127.0.0.0/8', '--workers', '1', '--drain-timeout', '0', '--log-level', 'debug',
  ]);
  const m = await proc.waitFor(/relayserver \S+ listening on (.*)/, 20_000);
  return { proc, port: portIn(m[1]!, 'udp') };
}

/** stunserver (RFC 5780 mode on 127.0.0.1 and 127.0.0.2), relayserver and signalserver on free loopback ports. */
export async function startServers(opts: { signalMode?: 'auto' | 'plain' | 'rooms' } = {}): Promise<Servers> {
  const stun = startBin('stun', 'stunserver', ['--listen', '127.0.0.1', '--alternate', '127.0.0.2', '--port', '0', '--workers', '1']);
  const signal = startBin('signal', 'signalserver', ['--listen', '127.0.0.1', '--port', '0', '--mode', opts.signalMode ?? 'auto']);
  const [s, g, r] = await Promise.all([stun.waitFor(/stunserver \S+ listening on (.*)/, 20_000), signal.waitFor(/signalserver \S+ listening on (.*)/, 20_000), startRelay()]);
  const servers: Servers = {
    stun,
    relay: r.proc,
    signal,
    stunPort: portIn(s[1]!, 'udp'),
    relayPort: r.port,
    signalPort: portIn(g[1]!, 'tcp'),
    args: (room) => [
      '--signal', `127.0.0.1:${servers.signalPort}`, '--room', room,
      '--stun', `stun:127.0.0.1:${servers.stunPort}`, '--turn', `turn:127.0.0.1:${servers.relayPort}`, '--user', TURN_USER, '--credential', TURN_PASSWORD,
      '--address', '127.0.0.1', '--interval', '0.2',
    ],
    stop: async () => {
      await Promise.all([servers.stun.stop(), servers.relay.stop(), servers.signal.stop()]);
    },
  };
  return servers;
}

export type Ev = Record<string, unknown> & { event: string; t: number };

/** A p2pdemo process with --json: its events as they come. */
export class Demo {
  readonly proc: Proc;
  readonly events: Ev[] = [];
  readonly bad: string[] = [];
  private buf = '';

  constructor(args: string[], opts: { json?: boolean } = {}) {
    this.proc = start(process.execPath, [P2PDEMO, ...args, ...(opts.json === false ? [] : ['--json'])]);
    this.proc.child.stdout!.on('data', (d: string) => {
      this.buf += d;
      let i: number;
      while ((i = this.buf.indexOf('\n')) >= 0) {
        const line = this.buf.slice(0, i);
        this.buf = this.buf.slice(i + 1);
        if (opts.json === false) continue;
        try {
          this.events.push(JSON.parse(line) as Ev);
        } catch {
          this.bad.push(line);
        }
      }
    });
  }

  /** The first event (at index >= from) that `match` accepts, with its index. */
  async next(match: (e: Ev) => boolean, ms = 20_000, from = 0): Promise<{ e: Ev; index: number }> {
    const deadline = Date.now() + ms;
    for (;;) {
      const index = this.events.findIndex((e, k) => k >= from && match(e));
      if (index >= 0) return { e: this.events[index]!, index };
      if (this.proc.child.exitCode !== null || this.proc.child.signalCode !== null) {
        await new Promise((r) => setTimeout(r, 50)); // the last lines
        const again = this.events.findIndex((e, k) => k >= from && match(e));
        if (again >= 0) return { e: this.events[again]!, index: again };
        throw new Error(`p2pdemo exited (${this.proc.child.exitCode ?? this.proc.child.signalCode}) before the event\n${this.tail()}`);
      }
      if (Date.now() > deadline) throw new Error(`no such event within ${ms} ms\n${this.tail()}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  event(name: string, ms?: number, from?: number): Promise<Ev> {
    return this.next((e) => e.event === name, ms, from).then((x) => x.e);
  }

  tail(): string {
    return `events: ${this.events.map((e) => e.event).join(',')}\nstdout (end): ${this.proc.stdout().split('\n').slice(-8).join('\n')}\nstderr: ${this.proc.stderr()}`;
  }
}

export const kindOf = (e: Ev) => (e.path as { kind: string }).kind;
export const typesOf = (e: Ev) => {
  const p = e.path as { local: { type: string }; remote: { type: string } };
  return [p.local.type, p.remote.type];
};
