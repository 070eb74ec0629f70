/**
 * Per-key token buckets (e.g. per source IP), for rate-limiting error answers so a server
 * cannot be used to reflect floods of errors. Time is passed in; memory is bounded: when
 * `maxKeys` is reached, buckets that have refilled completely are dropped, and if none
 * can be, the whole table is cleared (a full bucket for everyone is the safe side).
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();
  readonly ratePerSecond: number;
  readonly burst: number;
  readonly maxKeys: number;

  constructor(options: { ratePerSecond: number; burst?: number; maxKeys?: number }) {
    this.ratePerSecond = options.ratePerSecond;
    this.burst = options.burst ?? Math.max(1, options.ratePerSecond);
    this.maxKeys = options.maxKeys ?? 65_536;
  }

  /** Takes one token for `key` at time `nowMs`; false when the bucket is empty. */
  take(key: string, nowMs: number): boolean {
    if (this.ratePerSecond <= 0) return true;
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size >= this.maxKeys) this.prune(nowMs);
      b = { tokens: this.burst, at: nowMs };
      this.buckets.set(key, b);
    } else {
      b.tokens = Math.min(this.burst, b.tokens + ((nowMs - b.at) / 1000) * this.ratePerSecond);
      b.at = nowMs;
    }
    if (b.tokens < 1) return false;
    b.tokens -= 1;
    return true;
  }

  get size(): number {
    return this.buckets.size;
  }

  private prune(nowMs: number): void {
    const full = (this.burst / this.ratePerSecond) * 1000;
    for (const [k, b] of this.buckets) if (nowMs - b.at >= full) this.buckets.delete(k);
    if (this.buckets.size >= this.maxKeys) this.buckets.clear();
  }
}
