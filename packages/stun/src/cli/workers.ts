import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';

/**
 * Every core for natkit's UDP servers (--workers N): the primary forks N workers; each
 * opens its own UDP sockets on the same ports with SO_REUSEPORT, and the kernel hashes each
 * client's 5-tuple to one of them, so a client (and a TURN allocation, which is per
 * 5-tuple) stays on one worker. TCP and TLS listeners are shared through the primary
 * (node:cluster). Node has dgram's reusePort from 22.12 on (Linux); before that the
 * servers run one worker and say so once.
 */

/** Node >= 22.12 (dgram reusePort), on Linux. */
export function reusePortSupported(version = process.versions.node, platform = process.platform): boolean {
  const [major, minor] = version.split('.').map(Number) as [number, number];
  return platform === 'linux' && (major > 22 || (major === 22 && minor >= 12));
}

export interface WorkerPlan {
  /** Processes that serve (1: no cluster, the process serves itself). */
  count: number;
  /** Why fewer than asked (said once, at start). */
  note?: string;
  /** The note is about workers asked for explicitly (a warning), not the default (information). */
  asked?: boolean;
}

/** How many workers to run: `requested` (default: every core), or 1 where reusePort is missing. */
export function planWorkers(requested: number | undefined, supported = reusePortSupported(), cores = availableParallelism()): WorkerPlan {
  const want = requested ?? cores;
  if (want <= 1) return { count: 1 };
  if (!supported) {
    return {
      count: 1,
      asked: requested !== undefined,
      note: `running one worker: Node ${process.versions.node} has no SO_REUSEPORT for UDP (dgram reusePort needs Node 22.12 or newer on Linux)${requested === undefined ? '' : `; --workers ${requested} ignored`}`,
    };
  }
  return { count: want };
}

/** Messages between natkit's primary and workers carry this tag. */
export const IPC_TAG = 'natkit';

export interface IpcMessage {
  natkit: string;
  [k: string]: unknown;
}

export function isIpc(m: unknown, kind?: string): m is IpcMessage {
  return typeof m === 'object' && m !== null && typeof (m as IpcMessage).natkit === 'string' && (kind === undefined || (m as IpcMessage).natkit === kind);
}

/** In a worker: this worker's number (1, 2, ...), or undefined in a single process. */
export function workerId(): number | undefined {
  return cluster.isWorker ? cluster.worker!.id : undefined;
}

/** Carries the ports the first worker got to the workers forked after it. */
const WORKER_PORTS = 'NATKIT_WORKER_PORTS';

/**
 * In a worker: the ports the first worker told (tellListening), which this one must take
 * too; undefined in the first worker and in a single process.
 */
export function firstWorkerPorts<T extends object>(): T | undefined {
  const v = process.env[WORKER_PORTS];
  return v ? (JSON.parse(v) as T) : undefined;
}

export interface PrimaryOptions {
  count: number;
  /** A message from a worker (not the workers' own bookkeeping). */
  onMessage?: (worker: Worker, m: IpcMessage) => void;
  /** A worker exited (its state is gone: release what it held). */
  onExit?: (worker: Worker, code: number | null, signal: string | null) => void;
}

/**
 * In the primary: forks `count` workers one after the other (each waits until the one
 * before is listening, so the ports the first one told, picked by the kernel when asked
 * for 0, reach the others: firstWorkerPorts), forwards SIGHUP, SIGTERM and SIGINT to every
 * worker, and resolves with the workers' exit codes once all have exited. A worker tells
 * it is listening with tellListening.
 */
export class Primary {
  readonly workers: Worker[] = [];
  private readonly opts: PrimaryOptions;
  private stopping = false;
  private started = false;
  /** Workers that said they have stopped, with the status they stopped with. */
  private readonly stopped = new Map<Worker, number>();

  constructor(opts: PrimaryOptions) {
    this.opts = opts;
  }

  /** Starts the workers; resolves with each one's 'listening' message. */
  async start(): Promise<IpcMessage[]> {
    const ready: IpcMessage[] = [];
    let ports: unknown;
    for (let i = 0; i < this.opts.count; i++) {
      if (this.stopping) break;
      const w = cluster.fork(ports ? { [WORKER_PORTS]: JSON.stringify(ports) } : {});
      this.workers.push(w);
      w.on('message', (m: unknown) => {
        if (isIpc(m, 'stopped')) this.stopped.set(w, Number(m.code) || 0);
        else if (isIpc(m) && m.natkit !== 'listening') this.opts.onMessage?.(w, m);
      });
      w.on('exit', (code, signal) => this.opts.onExit?.(w, code, signal));
      const first = await new Promise<IpcMessage | undefined>((resolve) => {
        const onMsg = (m: unknown) => {
          if (!isIpc(m, 'listening')) return;
          w.off('message', onMsg);
          w.off('exit', onExit);
          resolve(m);
        };
        const onExit = () => {
          w.off('message', onMsg);
          resolve(undefined);
        };
        w.on('message', onMsg);
        w.once('exit', onExit);
      });
      if (!first) throw new Error(`worker ${i + 1} exited before it was listening (its error is above)`);
      ready.push(first);
      if (i === 0) ports = first.ports;
    }
    this.started = true;
    return ready;
  }

  /**
   * Every worker has started and no stop signal has been passed on since: a worker that
   * exits now is a crash (before, it is a failed start; after, a stop).
   */
  get serving(): boolean {
    return this.started && !this.stopping;
  }

  /**
   * start(), then `then` (what the primary serves itself, e.g. the workers' summed
   * metrics). If either fails, the workers are stopped (SIGINT) and waited for before the
   * error is thrown on.
   */
  async startWith<T>(then: () => Promise<T>): Promise<{ ready: IpcMessage[]; then: T }> {
    try {
      const ready = await this.start();
      return { ready, then: await then() };
    } catch (err) {
      this.signal('SIGINT');
      await this.exited();
      throw err;
    }
  }

  /** The status a worker said it stopped with, or undefined (still serving, or it crashed). */
  stoppedWith(w: Worker): number | undefined {
    return this.stopped.get(w);
  }

  /** Sends a signal to every live worker. */
  signal(signal: NodeJS.Signals): void {
    if (signal !== 'SIGHUP') this.stopping = true;
    // A worker that has stopped is on its way out: a signal now could only kill it mid-exit.
    for (const w of this.workers) if (!w.isDead() && !this.stopped.has(w)) w.process.kill(signal);
  }

  /**
   * Resolves when every worker has exited, with their statuses: what a worker said it
   * stopped with, else its exit code (1 if a signal ended it).
   */
  exited(): Promise<number[]> {
    return Promise.all(
      this.workers.map(
        (w) =>
          new Promise<number>((resolve) => {
            const status = (code: number | null) => this.stopped.get(w) ?? code ?? 1;
            if (w.isDead()) resolve(status(w.process.exitCode));
            else w.once('exit', (code) => resolve(status(code)));
          }),
      ),
    );
  }
}

/**
 * In a worker: tells the primary it is listening, with its start-up line (the primary
 * prints the first worker's) and its ports (the first worker's go to the later ones).
 */
export function tellListening(line: string, ports: Record<string, number | undefined>): void {
  process.send?.({ natkit: 'listening', line, ports });
}

/**
 * In the primary, before forking: fails with EADDRINUSE if a UDP port the workers will
 * share is held by someone else. Workers bind with SO_REUSEPORT, which the kernel lets any
 * process of the same user join: without this check a second server started on the same
 * port would silently split the first one's clients with it.
 */
export async function checkUdpPortsFree(endpoints: ReadonlyArray<{ address: string; port: number }>): Promise<void> {
  const dgram = await import('node:dgram');
  for (const { address, port } of endpoints) {
    if (port === 0) continue;
    await new Promise<void>((resolve, reject) => {
      const s = dgram.createSocket(address.includes(':') ? 'udp6' : 'udp4');
      s.once('error', (err) => {
        s.close();
        reject(Object.assign(new Error(`cannot listen on udp ${address.includes(':') ? `[${address}]` : address}:${port}: ${err.message}`), { code: (err as NodeJS.ErrnoException).code }));
      });
      s.bind({ address, port, exclusive: true }, () => s.close(() => resolve()));
    });
  }
}
