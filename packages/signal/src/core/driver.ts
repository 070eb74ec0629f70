import { type Clock, realClock } from '@natkit/stun';
import type { SignalCore } from './core.js';
import type { ConnId, CoreAction, CoreEvent, Directory, JoinResult, Packet } from './types.js';

/** What the driver needs from the outside: sockets, the bus to other instances, logs. */
export interface DriverIo {
  write(conn: ConnId, data: Buffer | string): void;
  close(conn: ConnId, graceful: boolean, code: string): void;
  publish?(instance: string, packet: Packet): void;
  log?(level: 'debug' | 'info' | 'warn', msg: string, fields?: Record<string, unknown>): void;
}

/**
 * Runs a SignalCore: feeds it events with the clock's time, performs its actions (writes,
 * closes, publishes through `io`; joins and leaves through the directory, whose answers go
 * back in as events, at once for an in-memory directory, when they come for Redis), and
 * keeps one timer for the core's next deadline. No sockets here: the Node adapter and the
 * tests each supply `io`.
 */
export class Driver {
  private timer: unknown;
  private timerAt = Number.POSITIVE_INFINITY;
  private queue: CoreEvent[] = [];
  private running = false;
  private stopped = false;
  /** Joins and leaves sent to an asynchronous directory and not answered yet. */
  private inflight = new Set<Promise<unknown>>();

  constructor(
    readonly core: SignalCore,
    readonly directory: Directory,
    private readonly io: DriverIo,
    private readonly clock: Clock = realClock,
    /** Least delay between ticks (ms): coarser timers cost less with many connections. */
    private readonly resolution = 0,
  ) {}

  feed(event: CoreEvent): void {
    if (this.stopped) return;
    this.queue.push(event);
    if (this.running) return;
    this.running = true;
    try {
      while (this.queue.length) {
        const ev = this.queue.shift()!;
        let actions: CoreAction[];
        try {
          actions = this.core.handle(ev, this.clock.now());
        } catch (err) {
          // A bug must cost the event, never the server.
          this.io.log?.('warn', 'internal error handling an event', { event: ev.type, error: (err as Error).stack ?? String(err) });
          continue;
        }
        for (const a of actions) this.perform(a);
      }
    } finally {
      this.running = false;
    }
    this.schedule();
  }

  private perform(a: CoreAction): void {
    switch (a.type) {
      case 'write':
        this.io.write(a.conn, a.data);
        return;
      case 'close':
        this.io.close(a.conn, a.graceful, a.code);
        return;
      case 'publish':
        this.io.publish?.(a.instance, a.packet);
        return;
      case 'log':
        this.io.log?.(a.level, a.msg, a.fields);
        return;
      case 'join': {
        const done = (result: JoinResult) => this.feed({ type: 'join-result', token: a.token, result });
        let r: JoinResult | Promise<JoinResult>;
        try {
          r = this.directory.join(a.request);
        } catch (err) {
          this.io.log?.('warn', 'directory join failed', { error: (err as Error).message });
          r = { ok: false, reason: 'unavailable' };
        }
        if (r instanceof Promise) {
          const p = r.then(done, (err: Error) => {
            this.io.log?.('warn', 'directory join failed', { error: err.message });
            done({ ok: false, reason: 'unavailable' });
          });
          this.track(p);
        } else {
          this.queue.push({ type: 'join-result', token: a.token, result: r });
        }
        return;
      }
      case 'leave': {
        try {
          const r = this.directory.leave(a.room, a.member);
          if (r instanceof Promise) this.track(r.catch((err: Error) => this.io.log?.('warn', 'directory leave failed', { error: err.message })));
        } catch (err) {
          this.io.log?.('warn', 'directory leave failed', { error: (err as Error).message });
        }
        return;
      }
    }
  }

  private track(p: Promise<unknown>): void {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
  }

  /** Waits for the directory calls under way (joins and leaves) to finish. */
  async settle(): Promise<void> {
    while (this.inflight.size) await Promise.allSettled([...this.inflight]);
  }

  private schedule(): void {
    if (this.stopped) return;
    const at = this.core.nextTimeout();
    if (!Number.isFinite(at)) return;
    const now = this.clock.now();
    const when = Math.max(at, now + this.resolution);
    if (this.timer !== undefined && when >= this.timerAt) return;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timerAt = when;
    this.timer = this.clock.setTimeout(() => {
      this.timer = undefined;
      this.timerAt = Number.POSITIVE_INFINITY;
      this.feed({ type: 'tick' });
    }, Math.max(0, when - now));
    (this.timer as { unref?: () => void }).unref?.();
  }

  /** No more events; the timer is cleared. */
  stop(): void {
    this.stopped = true;
    if (this.timer !== undefined) this.clock.clearTimeout(this.timer);
    this.timer = undefined;
  }
}
