/**
 * When a TURN client must refresh what it holds, sans-I/O: the allocation at about half
 * the lifetime the server granted (RFC 8656 section 8 leaves the margin to the client;
 * half is what a careful client does, like a SIP phone re-registering well before its
 * deadline), permissions a minute before their 5 minutes run out (section 9), channel
 * bindings a minute before their 10 minutes (section 12).
 */

export const PERMISSION_REFRESH_MS = 240_000;
export const CHANNEL_REFRESH_MS = 540_000;

export type Due =
  | { kind: 'keepalive' }
  | { kind: 'allocation' }
  | { kind: 'permissions'; peers: string[] }
  | { kind: 'channel'; number: number };

export class RefreshSchedule {
  private allocationAt: number | undefined;
  private keepaliveMs: number | undefined;
  private lastSentAt = 0;
  private readonly permissionAt = new Map<string, number>();
  private readonly channelAt = new Map<number, number>();

  /** The server granted `lifetimeS` seconds at `now`. */
  allocationRefreshed(now: number, lifetimeS: number): void {
    this.allocationAt = now + Math.max(1, Math.floor(lifetimeS / 2)) * 1000;
  }

  /**
   * Keep the NAT's mapping towards the server alive: something must go to the server at
   * least every `intervalMs` (undefined: never). RFC 4787 REQ-5 lets a NAT drop an idle UDP
   * mapping after 2 minutes (some do after 30 s), long before the allocation's own refresh
   * at half its lifetime; a refresh that then arrives from a new mapping gets 437 and the
   * allocation is lost.
   */
  keepAlive(intervalMs: number | undefined, now: number): void {
    this.keepaliveMs = intervalMs && intervalMs > 0 ? intervalMs : undefined;
    this.lastSentAt = now;
  }

  /** Something went to the server at `now` (a request, data, a keepalive). */
  sent(now: number): void {
    this.lastSentAt = now;
  }

  permissionRefreshed(peerIp: string, now: number): void {
    this.permissionAt.set(peerIp, now + PERMISSION_REFRESH_MS);
  }

  channelRefreshed(number: number, now: number): void {
    this.channelAt.set(number, now + CHANNEL_REFRESH_MS);
  }

  forgetChannel(number: number): void {
    this.channelAt.delete(number);
  }

  clear(): void {
    this.allocationAt = undefined;
    this.keepaliveMs = undefined;
    this.permissionAt.clear();
    this.channelAt.clear();
  }

  /** The earliest deadline, or undefined when nothing is held. */
  next(): number | undefined {
    let t = this.allocationAt;
    if (this.keepaliveMs !== undefined && t !== undefined) t = Math.min(t, this.lastSentAt + this.keepaliveMs);
    for (const v of this.permissionAt.values()) if (t === undefined || v < t) t = v;
    for (const v of this.channelAt.values()) if (t === undefined || v < t) t = v;
    return t;
  }

  /**
   * What is due at `now`. Permissions due within `batchMs` are refreshed together in one
   * CreatePermission. Due items are pushed out by a minute so a failed refresh is retried
   * rather than lost; a success resets them through the *Refreshed methods.
   */
  due(now: number, batchMs = 30_000): Due[] {
    const out: Due[] = [];
    if (this.keepaliveMs !== undefined && this.lastSentAt + this.keepaliveMs <= now) {
      out.push({ kind: 'keepalive' });
      this.lastSentAt = now;
    }
    if (this.allocationAt !== undefined && this.allocationAt <= now) {
      out.push({ kind: 'allocation' });
      this.allocationAt = now + 60_000;
    }
    const peers: string[] = [];
    let anyDue = false;
    for (const v of this.permissionAt.values()) if (v <= now) anyDue = true;
    if (anyDue) {
      for (const [ip, v] of this.permissionAt) {
        if (v <= now + batchMs) {
          peers.push(ip);
          this.permissionAt.set(ip, now + 60_000);
        }
      }
      out.push({ kind: 'permissions', peers });
    }
    for (const [n, v] of this.channelAt) {
      if (v <= now) {
        out.push({ kind: 'channel', number: n });
        this.channelAt.set(n, now + 60_000);
      }
    }
    return out;
  }
}
