// A raw TCP client for tests: keeps every byte it receives, and waits for bytes or for the
// close with a generous deadline (never a sleep).
import * as net from 'node:net';
import { type ServerMessage, parseServerMessage } from '../src/index.js';

export class RawClient {
  data = Buffer.alloc(0);
  closed = false;
  /** How the connection ended: 'end' (FIN from the server), 'reset' (an error such as ECONNRESET). */
  ending: 'end' | 'reset' | undefined;
  private waiters = new Set<() => void>();
  private taken = 0;

  private constructor(readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.data = Buffer.concat([this.data, d]);
      this.poke();
    });
    sock.on('end', () => {
      this.ending ??= 'end';
    });
    sock.on('error', () => {
      this.ending ??= 'reset';
    });
    sock.on('close', () => {
      this.closed = true;
      this.poke();
    });
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.createConnection({ host, port });
      const c = new RawClient(s);
      s.once('connect', () => resolve(c));
      s.once('error', reject);
    });
  }

  private poke(): void {
    for (const w of [...this.waiters]) w();
  }

  get text(): string {
    return this.data.toString('utf8');
  }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve) => {
      if (this.sock.destroyed) resolve();
      else this.sock.write(data, () => resolve());
    });
  }

  json(...msgs: object[]): Promise<void> {
    return this.write(msgs.map((m) => `${JSON.stringify(m)}\n`).join(''));
  }

  /** Waits until `check()` is true, or fails after `ms` saying what it waited for. */
  until(check: () => boolean, what: string, ms = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const test = () => {
        if (check()) {
          done();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`waited ${ms} ms for ${what}; received ${JSON.stringify(this.text.slice(-300))}, closed=${this.closed}`));
      }, ms);
      // Bytes and the close wake it at once; other conditions (a server's state) are polled.
      const poll = setInterval(test, 10);
      const done = () => {
        clearTimeout(timer);
        clearInterval(poll);
        this.waiters.delete(test);
      };
      this.waiters.add(test);
      test();
    });
  }

  /** Waits until the received text is at least `expected` long, then returns it (must equal). */
  async received(expected: string, ms?: number): Promise<string> {
    const n = Buffer.byteLength(expected);
    await this.until(() => this.data.length >= n || this.closed, `${JSON.stringify(expected.slice(0, 80))}`, ms);
    return this.text;
  }

  waitClosed(ms?: number): Promise<void> {
    return this.until(() => this.closed, 'the close', ms);
  }

  /** Waits for `n` more complete JSON lines and returns them. */
  async messages(n: number, ms?: number): Promise<ServerMessage[]> {
    const complete = () => this.data.subarray(this.taken).toString('utf8').split('\n').slice(0, -1);
    await this.until(() => complete().length >= n || this.closed, `${n} messages`, ms);
    const lines = complete().slice(0, n);
    if (lines.length < n) throw new Error(`closed after ${lines.length} of ${n} messages: ${JSON.stringify(this.data.subarray(this.taken).toString('utf8'))}`);
    this.taken += lines.reduce((a, l) => a + Buffer.byteLength(l) + 1, 0);
    return lines.map(parseServerMessage);
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.sock.destroy();
    return this.until(() => this.closed, 'the close');
  }
}

/** Waits until `check()` is true (polled), or fails after `ms` saying what it waited for. */
export function eventually(check: () => boolean, what: string, ms = 10_000): Promise<void> {
  return new Promise((resolve, reject) => {
    const start = Date.now();
    const t = setInterval(() => {
      if (check()) {
        clearInterval(t);
        resolve();
      } else if (Date.now() - start > ms) {
        clearInterval(t);
        reject(new Error(`waited ${ms} ms for ${what}`));
      }
    }, 10);
  });
}
