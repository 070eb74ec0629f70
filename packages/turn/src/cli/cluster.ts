import type { Worker } from 'node:cluster';
import { type IpcMessage, isIpc } from '@natkit/stun/cli';
import { LocalQuotas, type QuotaRefusal, type QuotaRequest, type Quotas } from '../server/quotas.js';

/**
 * Quotas over every worker of relayserver --workers: the primary keeps the one count
 * (LocalQuotas) and each worker asks it over the cluster's IPC channel before it makes an
 * allocation. Messages on one channel arrive in order, so a release sent before an
 * acquire is counted before it. When a worker exits, what it held is released.
 */

/** In a worker: quotas asked of the primary. */
export class ClusterQuotas implements Quotas {
  private seq = 0;
  private readonly waiting = new Map<number, (r: QuotaRefusal | undefined) => void>();

  constructor() {
    process.on('message', (m: unknown) => {
      if (!isIpc(m, 'quota-reply')) return;
      const resolve = this.waiting.get(m.id as number);
      if (!resolve) return;
      this.waiting.delete(m.id as number);
      resolve((m.refusal as QuotaRefusal | null) ?? undefined);
    });
  }

  acquire(r: QuotaRequest): Promise<QuotaRefusal | undefined> {
    const id = ++this.seq;
    return new Promise((resolve) => {
      this.waiting.set(id, resolve);
      this.send({ natkit: 'quota', op: 'acquire', id, username: r.username ?? null, redeeming: r.redeeming ? { owner: r.redeeming.owner ?? null } : null });
    });
  }

  reserve(username: string | undefined): void {
    this.send({ natkit: 'quota', op: 'reserve', username: username ?? null });
  }

  release(username: string | undefined): void {
    this.send({ natkit: 'quota', op: 'release', username: username ?? null });
  }

  private send(m: IpcMessage): void {
    // The primary is gone only while the process is going too.
    if (process.connected) process.send!(m);
  }
}

/** In the primary: the count, and what each worker holds. */
export class QuotaBroker {
  readonly quotas: LocalQuotas;
  /** Worker id -> user ('' for none) -> slots held. */
  private readonly held = new Map<number, Map<string, number>>();

  constructor(options: { userQuota: number; totalQuota: number }) {
    this.quotas = new LocalQuotas(options);
  }

  /** Handles a worker's quota message; answers acquires. */
  handle(worker: Worker, m: IpcMessage): void {
    if (m.natkit !== 'quota') return;
    const user = (m.username as string | null) ?? undefined;
    if (m.op === 'acquire') {
      const redeeming = m.redeeming as { owner: string | null } | null;
      const owner = redeeming ? (redeeming.owner ?? undefined) : undefined;
      const refusal = this.quotas.acquire({ username: user, redeeming: redeeming ? { owner } : undefined });
      if (!refusal && !(redeeming && owner === user)) {
        if (redeeming) this.count(worker.id, owner, -1);
        this.count(worker.id, user, 1);
      }
      worker.send({ natkit: 'quota-reply', id: m.id, refusal: refusal ?? null });
    } else if (m.op === 'reserve') {
      this.quotas.reserve(user);
      this.count(worker.id, user, 1);
    } else if (m.op === 'release') {
      this.quotas.release(user);
      this.count(worker.id, user, -1);
    }
  }

  /** A worker exited: the slots it held are free. */
  exited(worker: Worker): void {
    const mine = this.held.get(worker.id);
    this.held.delete(worker.id);
    if (!mine) return;
    for (const [user, n] of mine) for (let i = 0; i < n; i++) this.quotas.release(user === '' ? undefined : user);
  }

  private count(id: number, user: string | undefined, d: number): void {
    let mine = this.held.get(id);
    if (!mine) this.held.set(id, (mine = new Map()));
    const k = user ?? '';
    const n = (mine.get(k) ?? 0) + d;
    if (n <= 0) mine.delete(k);
    else mine.set(k, n);
  }
}
