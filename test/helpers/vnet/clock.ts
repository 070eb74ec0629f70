import { ManualClock } from '@natkit/stun';

interface Timer {
  id: number;
  at: number;
  /** Insertion order: timers due at the same instant fire in the order they were set. */
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * The virtual network's clock: a ManualClock (so it goes wherever one is accepted) whose
 * timers sit in a binary heap, and which can fire them one at a time (`step`), so that the
 * network's driver can let promise continuations run between two timers, as the real event
 * loop does between two callbacks. Timers due at the same instant fire in the order they were
 * set; nothing here reads real time.
 */
export class VirtualClock extends ManualClock {
  #now: number;
  #seq = 0;
  #heap: Timer[] = [];
  #live = new Map<number, Timer>();
  /** Timers fired so far. */
  fired = 0;

  constructor(start = 0) {
    super(start);
    this.#now = start;
  }

  override now(): number {
    return this.#now;
  }

  override setTimeout(fn: () => void, ms: number): unknown {
    // Like ManualClock: a negative or NaN delay is "now".
    const delay = Number.isFinite(ms) && ms > 0 ? ms : 0;
    const t: Timer = { id: ++this.#seq, at: this.#now + delay, seq: this.#seq, fn, cancelled: false };
    this.#live.set(t.id, t);
    this.#push(t);
    return t.id;
  }

  override clearTimeout(handle: unknown): void {
    const t = this.#live.get(handle as number);
    if (!t) return;
    t.cancelled = true;
    this.#live.delete(t.id);
  }

  override get pending(): number {
    return this.#live.size;
  }

  override nextAt(): number | undefined {
    this.#prune();
    return this.#heap[0]?.at;
  }

  /**
   * Fires the earliest timer if it is due by `limit` (any time by default), moving time to
   * its instant. Returns false when there is none.
   */
  step(limit = Number.POSITIVE_INFINITY): boolean {
    this.#prune();
    const top = this.#heap[0];
    if (!top || top.at > limit) return false;
    this.#pop();
    this.#live.delete(top.id);
    if (top.at > this.#now) this.#now = top.at;
    this.fired++;
    top.fn();
    return true;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in time order. */
  override advance(ms: number): void {
    const target = this.#now + Math.max(0, ms);
    while (this.step(target));
    this.#now = target;
  }

  #prune(): void {
    while (this.#heap.length > 0 && this.#heap[0]!.cancelled) this.#pop();
  }

  #before(a: Timer, b: Timer): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  #push(t: Timer): void {
    const h = this.#heap;
    h.push(t);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#before(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  #pop(): void {
    const h = this.#heap;
    const last = h.pop()!;
    if (h.length === 0) return;
    h[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < h.length && this.#before(h[l]!, h[m]!)) m = l;
      if (r < h.length && this.#before(h[r]!, h[m]!)) m = r;
      if (m === i) break;
      [h[i], h[m]] = [h[m]!, h[i]!];
      i = m;
    }
  }
}
