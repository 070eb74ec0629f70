import { ErrorCode } from '@natkit/stun';

/**
 * Allocation quotas (RFC 8656 section 7.2 step 10: 486 Allocation Quota Reached per user;
 * 508 Insufficient Capacity for the server). A slot is held by each allocation and each
 * EVEN-PORT reservation until it ends. The relay asks before it binds a relayed address
 * and tells when one ends; the answer may be a promise, so the count can live elsewhere
 * (relayserver --workers keeps it in the primary process, so quotas hold across workers).
 */

export interface QuotaRefusal {
  /** 486 (this user) or 508 (the server). */
  code: number;
  reason: string;
}

export interface QuotaRequest {
  /** Undefined without authentication: no per-user quota then. */
  username: string | undefined;
  /**
   * A reservation is being redeemed (RESERVATION-TOKEN): its owner's slot passes to this
   * allocation instead of a new one being taken.
   */
  redeeming?: { owner: string | undefined };
}

export interface Quotas {
  /** Takes a slot for a new allocation, or says why not. */
  acquire(r: QuotaRequest): QuotaRefusal | undefined | Promise<QuotaRefusal | undefined>;
  /** Takes a slot for an EVEN-PORT reservation, past the quota if need be (the allocation that made it was admitted). */
  reserve(username: string | undefined): void;
  /** Gives back a slot (allocation deleted, reservation redeemed or expired, allocation failed). */
  release(username: string | undefined): void;
}

/** Quotas counted in this process. */
export class LocalQuotas implements Quotas {
  readonly userQuota: number;
  readonly totalQuota: number;
  private readonly perUser = new Map<string, number>();
  private total = 0;

  constructor(options: { userQuota: number; totalQuota: number }) {
    this.userQuota = options.userQuota;
    this.totalQuota = options.totalQuota;
  }

  acquire(r: QuotaRequest): QuotaRefusal | undefined {
    const user = r.username;
    if (r.redeeming) {
      // Redeeming one's own reservation turns its slot into this allocation.
      if (r.redeeming.owner === user) return undefined;
      if (user !== undefined && this.count(user) >= this.userQuota) return this.userRefusal();
      this.release(r.redeeming.owner);
      this.add(user);
      return undefined;
    }
    if (user !== undefined && this.count(user) >= this.userQuota) return this.userRefusal();
    if (this.total >= this.totalQuota) return { code: ErrorCode.InsufficientCapacity, reason: 'the server is full' };
    this.add(user);
    return undefined;
  }

  reserve(username: string | undefined): void {
    this.add(username);
  }

  release(username: string | undefined): void {
    if (this.total > 0) this.total--;
    if (username === undefined) return;
    const n = (this.perUser.get(username) ?? 1) - 1;
    if (n <= 0) this.perUser.delete(username);
    else this.perUser.set(username, n);
  }

  /** Slots held by one user, and in all. */
  count(username: string): number {
    return this.perUser.get(username) ?? 0;
  }

  get held(): number {
    return this.total;
  }

  /** Users holding slots (for tests: nothing is kept once they are released). */
  get users(): number {
    return this.perUser.size;
  }

  private add(username: string | undefined): void {
    this.total++;
    if (username !== undefined) this.perUser.set(username, (this.perUser.get(username) ?? 0) + 1);
  }

  private userRefusal(): QuotaRefusal {
    return { code: ErrorCode.AllocationQuotaReached, reason: `at most ${this.userQuota} allocations per user (relayserver --user-quota)` };
  }
}
