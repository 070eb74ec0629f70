// A tiny UDP program for lab tests, run inside a namespace: what it sends and receives is
// driven through stdin and reported on stdout, so a test sees exactly which datagrams crossed
// which NAT, with the addresses they carried.
import type { LabProcess, NatLab } from '../helpers/natlab.js';

// stdin: "host port text" sends text; stdout: "bound PORT", then "recv ADDR:PORT text" for
// each datagram, and "sent ADDR:PORT text" once each datagram of stdin's has been handed to the
// kernel. With REFLECT=1 it answers every datagram with "text ADDR:PORT" (the sender's).
export const UDP_PEER = `
const dgram = require('node:dgram');
const s = dgram.createSocket('udp4');
s.on('message', (m, r) => {
  process.stdout.write('recv ' + r.address + ':' + r.port + ' ' + m + '\\n');
  if (process.env.REFLECT) s.send(m + ' ' + r.address + ':' + r.port, r.port, r.address);
});
s.bind(Number(process.argv[1]), process.argv[2] || undefined, () => process.stdout.write('bound ' + s.address().port + '\\n'));
let buf = '';
process.stdin.on('data', (d) => {
  buf += d;
  let i;
  while ((i = buf.indexOf('\\n')) >= 0) {
    const [host, port, ...text] = buf.slice(0, i).split(' ');
    buf = buf.slice(i + 1);
    const t = text.join(' ');
    s.send(t, Number(port), host, () => process.stdout.write('sent ' + host + ':' + port + ' ' + t + '\\n'));
  }
});
process.stdin.on('end', () => s.close());
`;

export class Peer {
  private constructor(readonly proc: LabProcess) {}

  /** A peer on `port` (of `address`; default all addresses) in `ns`; with `reflect`, a reflector. */
  static async start(lab: NatLab, ns: string, port: number, reflect = false, address?: string): Promise<Peer> {
    const proc = lab.spawn(ns, process.execPath, ['-e', UDP_PEER, String(port), ...(address ? [address] : [])], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, REFLECT: reflect ? '1' : '' },
    });
    await proc.waitFor(/^bound \d+$/m);
    return new Peer(proc);
  }

  send(to: string, text: string): void {
    const [host, port] = to.split(':');
    this.proc.child.stdin!.write(`${host} ${port} ${text}\n`);
  }

  /** Sends `text` to `to` and waits until it has left the socket. */
  async sendNow(to: string, text: string): Promise<void> {
    this.send(to, text);
    await this.proc.waitFor(new RegExp(`^sent ${to.replace(/\./g, '\\.')} ${text}$`, 'm'), { timeoutMs: 5000 });
  }

  /** Where `text` came from (waits for it). */
  async from(text: string): Promise<string> {
    const m = await this.proc.waitFor(new RegExp(`^recv (\\S+) ${text}$`, 'm'), { timeoutMs: 5000 });
    return m[1]!;
  }

  received(): string[] {
    return [...this.proc.stdout().matchAll(/^recv \S+ (.*)$/gm)].map((m) => m[1]!);
  }

  /** How many datagrams whose text matches `re` have arrived so far. */
  count(re: RegExp): number {
    return this.received().filter((t) => re.test(t)).length;
  }

  /**
   * Waits until no datagram has arrived for `quietMs` (at most `timeoutMs` in all): for tests
   * that must count what did NOT arrive, after everything that will arrive has.
   */
  async quiet(quietMs: number, timeoutMs = 10_000): Promise<void> {
    const deadline = performance.now() + timeoutMs;
    let seen = this.proc.stdout().length;
    let since = performance.now();
    while (performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 25));
      const now = this.proc.stdout().length;
      if (now !== seen) {
        seen = now;
        since = performance.now();
      } else if (performance.now() - since >= quietMs) {
        return;
      }
    }
  }

  async stop(): Promise<void> {
    this.proc.child.stdin!.end();
    await this.proc.stop();
  }
}

/**
 * Sends `tag` to the reflector and waits for its answer: the peer's public address:port as the
 * server saw it. The answer also orders things: every datagram that reached the peer's socket
 * before it has been printed by then.
 */
export async function reflect(peer: Peer, reflector: string, tag: string): Promise<string> {
  peer.send(reflector, tag);
  const m = await peer.proc.waitFor(new RegExp(`^recv ${reflector.replace(/\./g, '\\.')} ${tag} (\\S+)$`, 'm'), { timeoutMs: 5000 });
  return m[1]!;
}

