import type { Worker } from 'node:cluster';
import { ErrorCode, type Family } from '@natkit/stun';
import { type IpcMessage, isIpc } from '@natkit/stun/cli';
import type { RelaySocket } from '../server/allocation.js';
import { LocalQuotas, type QuotaRefusal, type QuotaRequest, type Quotas } from '../server/quotas.js';
import { type Redeemed, RelayPorts } from '../server/relayports.js';

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
      if (send({ natkit: 'quota', op: 'acquire', id, username: r.username ?? null, redeeming: r.redeeming ? { owner: r.redeeming.owner ?? null } : null })) return;
      // The primary is gone (the process is going too): no answer will come.
      this.waiting.delete(id);
      resolve({ code: ErrorCode.InsufficientCapacity, reason: 'the relay is shutting down' });
    });
  }

  reserve(username: string | undefined): void {
    send({ natkit: 'quota', op: 'reserve', username: username ?? null });
  }

  release(username: string | undefined): void {
    send({ natkit: 'quota', op: 'release', username: username ?? null });
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
      if (!refusal) {
        // A redeemed reservation's slot moves to this worker (the reservation may have been
        // another worker's); a new allocation takes one of its own.
        if (redeeming) this.count(this.holder(owner, worker.id), owner, -1);
        this.count(worker.id, user, 1);
      }
      worker.send({ natkit: 'quota-reply', id: m.id, refusal: refusal ?? null });
    } else if (m.op === 'reserve') {
      this.quotas.reserve(user);
      this.count(worker.id, user, 1);
    } else if (m.op === 'release') {
      this.quotas.release(user);
      this.count(this.holder(user, worker.id), user, -1);
    }
  }

  /** A worker exited: the slots it held are free. */
  exited(worker: Worker): void {
    const mine = this.held.get(worker.id);
    this.held.delete(worker.id);
    if (!mine) return;
    for (const [user, n] of mine) for (let i = 0; i < n; i++) this.quotas.release(user === '' ? undefined : user);
  }

  /** A worker that holds a slot of `user`, this one first. */
  private holder(user: string | undefined, prefer: number): number {
    const k = user ?? '';
    if ((this.held.get(prefer)?.get(k) ?? 0) > 0) return prefer;
    for (const [id, mine] of this.held) if ((mine.get(k) ?? 0) > 0) return id;
    return prefer;
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

/**
 * In a worker: relay ports whose EVEN-PORT reservations can be redeemed on any worker. The
 * kernel puts the client's next Allocate (another 5-tuple) on whichever worker its hash
 * says, so a token unknown here is asked of the primary, which has the worker that holds it
 * give the reserved port up (its socket closed); this worker then binds that very port.
 */
export class ClusterRelayPorts extends RelayPorts {
  private seq = 0;
  private readonly waiting = new Map<number, (r: { family: Family; port: number; owner: string } | null) => void>();

  constructor(options: ConstructorParameters<typeof RelayPorts>[0]) {
    super(options);
    process.on('message', (m: unknown) => {
      if (isIpc(m, 'redeem-reply')) {
        const resolve = this.waiting.get(m.id as number);
        this.waiting.delete(m.id as number);
        resolve?.(m.reservation as { family: Family; port: number; owner: string } | null);
      } else if (isIpc(m, 'give-up')) {
        void this.giveUp(m);
      }
    });
  }

  override async allocatePair(family: Family, now: number, owner = '', attempts?: number): Promise<{ relay: RelaySocket; token: Buffer } | undefined> {
    const pair = await super.allocatePair(family, now, owner, attempts);
    if (pair) send({ natkit: 'reservation', token: pair.token.toString('hex') });
    return pair;
  }

  override async redeem(token: Buffer, now: number): Promise<Redeemed | undefined> {
    const mine = await super.redeem(token, now);
    if (mine) return mine;
    const id = ++this.seq;
    const there = await new Promise<{ family: Family; port: number; owner: string } | null>((resolve) => {
      this.waiting.set(id, resolve);
      if (!send({ natkit: 'redeem', id, token: token.toString('hex') })) resolve(null);
    });
    if (!there || !this.addresses[there.family]) return undefined;
    return { relay: await this.bindOne(there.family, there.port), owner: there.owner };
  }

  /** The primary asks for a reservation of this worker's: close its socket and say which port it was. */
  private async giveUp(m: IpcMessage): Promise<void> {
    const r = this.take(m.token as string, this.clockNow());
    if (r) await new Promise<void>((resolve) => r.relay.socket.close(() => resolve()));
    if (r) this.forget(r.relay);
    send({ natkit: 'give-up-reply', id: m.id, reservation: r ? { family: r.relay.family, port: r.relay.port, owner: r.owner } : null });
  }

  /** Time for reservations' expiry, the relay's clock's (set by the server). */
  clockNow: () => number = () => performance.now();
}

/** Sends to the primary; false if it is gone (only while this process is going too). */
function send(m: IpcMessage): boolean {
  if (!process.connected) return false;
  process.send!(m);
  return true;
}

/** In the primary: which worker holds each reservation token, and the hand-over between workers. */
export class ReservationBroker {
  private readonly owners = new Map<string, number>();
  private seq = 0;
  /** Give-ups asked of `owner` for a redeem by `from` (its request `id`). */
  private readonly asked = new Map<number, { from: Worker; id: unknown; owner: Worker }>();

  constructor(private readonly workers: () => Worker[]) {}

  handle(worker: Worker, m: IpcMessage): void {
    if (m.natkit === 'reservation') {
      this.owners.set(m.token as string, worker.id);
    } else if (m.natkit === 'redeem') {
      const ownerId = this.owners.get(m.token as string);
      this.owners.delete(m.token as string);
      const owner = this.workers().find((w) => w.id === ownerId && !w.isDead() && w !== worker);
      if (!owner) {
        worker.send({ natkit: 'redeem-reply', id: m.id, reservation: null });
        return;
      }
      const id = ++this.seq;
      this.asked.set(id, { from: worker, id: m.id, owner });
      owner.send({ natkit: 'give-up', id, token: m.token });
    } else if (m.natkit === 'give-up-reply') {
      const a = this.asked.get(m.id as number);
      this.asked.delete(m.id as number);
      if (a && !a.from.isDead()) a.from.send({ natkit: 'redeem-reply', id: a.id, reservation: m.reservation });
    }
  }

  exited(worker: Worker): void {
    for (const [token, id] of this.owners) if (id === worker.id) this.owners.delete(token);
    for (const [k, a] of this.asked) {
      if (a.from !== worker && a.owner !== worker) continue;
      this.asked.delete(k);
      // The worker asked to give the port up is gone, and its reservation with it: the
      // redeeming worker gets its answer (none) instead of waiting for ever.
      if (a.from !== worker && !a.from.isDead()) a.from.send({ natkit: 'redeem-reply', id: a.id, reservation: null });
    }
  }
}
