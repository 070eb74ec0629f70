/**
 * The relay's counters: plain numbers that the request core and the data path bump (one
 * field increment on the per-packet path), read by the metrics (prom-client collect()
 * callbacks at scrape time) and by tests.
 */

export const DROP_REASONS = [
  'not_stun',
  'malformed',
  'bad_fingerprint',
  'oversized',
  'no_allocation',
  'no_permission',
  'no_channel',
  'rate_limited',
  'unknown_attribute',
  'unexpected',
  'send_failed',
  'internal_error',
] as const;

export type DropReason = (typeof DROP_REASONS)[number];

export const REQUEST_METHODS = ['binding', 'allocate', 'refresh', 'create_permission', 'channel_bind', 'other'] as const;
export type RequestMethod = (typeof REQUEST_METHODS)[number];

export class TurnCounters {
  allocationsCreated = 0;
  toPeerPackets = 0;
  toPeerBytes = 0;
  toClientPackets = 0;
  toClientBytes = 0;
  /** Requests refused for their credentials (401, 438 with MESSAGE-INTEGRITY; 441). */
  authFailures = 0;
  readonly dropped: Record<DropReason, number> = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
  readonly requests: Record<RequestMethod, number> = Object.fromEntries(REQUEST_METHODS.map((m) => [m, 0])) as Record<RequestMethod, number>;
  /** Error answers sent, by code. */
  readonly errors = new Map<number, number>();

  error(code: number): void {
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1);
  }
}
