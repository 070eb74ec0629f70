// A peer in a child process that speaks the ice-peers line protocol on stdin/stdout
// (libnice's C harness, aioice's Python script, werift's Node script). The child is
// killed if it does not exit by itself within a few seconds of close(); closing stdin
// also ends each harness, so a child never outlives its test.
import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { EventLog, type IcePeer, type PeerCommand, type PeerEvent, type Role, describeEvents, syncId, synced } from './peer.js';

const live = new Set<ProcessPeer>();

export class ProcessPeer implements IcePeer {
  readonly log = new EventLog();
  private readonly child: ChildProcess;
  private stderr = '';
  private readonly exited: Promise<void>;
  private exitInfo: string | undefined;
  private closing: Promise<void> | undefined;

  constructor(
    readonly kind: string,
    readonly role: Role,
    cmd: string,
    args: string[],
    env: NodeJS.ProcessEnv = {},
  ) {
    this.child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    live.add(this);
    this.child.stdin!.on('error', () => {
      // the child is gone; exit/close handlers report it
    });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      this.stderr += d;
      if (this.stderr.length > 200_000) this.stderr = this.stderr.slice(-100_000);
    });
    const lines = createInterface({ input: this.child.stdout! });
    lines.on('line', (line) => {
      if (!line.startsWith('{')) {
        this.stderr += `[stdout] ${line}\n`;
        return;
      }
      let e: PeerEvent;
      try {
        e = JSON.parse(line) as PeerEvent;
      } catch {
        this.stderr += `[stdout, not JSON] ${line}\n`;
        return;
      }
      this.log.push(e);
    });
    this.exited = new Promise((resolve) => {
      this.child.on('error', (err) => {
        this.stderr += `[spawn] ${err.message}\n`;
      });
      this.child.on('close', (code, signal) => {
        this.exitInfo = `exited ${code ?? signal}`;
        live.delete(this);
        this.log.end(this.exitInfo);
        resolve();
      });
    });
  }

  get events(): readonly PeerEvent[] {
    return this.log.events;
  }
  subscribe(fn: (e: PeerEvent) => void): () => void {
    return this.log.subscribe(fn);
  }

  command(c: PeerCommand): void {
    if (this.exitInfo || this.child.stdin!.destroyed) return;
    this.child.stdin!.write(`${JSON.stringify(c)}\n`);
  }
  setRemoteParameters(p: { ufrag: string; pwd: string }): void {
    this.command({ cmd: 'remote-params', ufrag: p.ufrag, pwd: p.pwd });
  }
  addRemoteCandidate(line: string): void {
    this.command({ cmd: 'candidate', line });
  }
  endOfRemoteCandidates(): void {
    this.command({ cmd: 'end-of-candidates' });
  }
  send(data: Buffer): void {
    this.command({ cmd: 'send', hex: data.toString('hex') });
  }
  async sync(): Promise<void> {
    const id = syncId();
    this.command({ cmd: 'sync', id });
    await synced(this, id);
  }

  /** The exit code or signal, once exited. */
  get exit(): string | undefined {
    return this.exitInfo;
  }

  close(): Promise<void> {
    this.closing ??= (async () => {
      this.command({ cmd: 'close' });
      this.child.stdin!.end();
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 5_000);
      await this.exited;
      clearTimeout(timer);
    })();
    return this.closing;
  }

  diagnostics(): string {
    return `--- ${this.kind} (${this.role}) pid ${this.child.pid} ${this.exitInfo ?? 'running'}\nevents:\n${describeEvents(this.events, 60, this.log.times)}\nstderr:\n${this.stderr.slice(-6000)}`;
  }
}

/** Closes every process peer still running (for afterEach). */
export async function closeAllProcessPeers(): Promise<void> {
  await Promise.all([...live].map((p) => p.close()));
}
