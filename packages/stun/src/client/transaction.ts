/**
 * Client transaction timing, sans-I/O (RFC 8489 section 6.2). No sockets and no timers:
 * the owner asks `nextTimeout()`, calls `onTimeout(now)` when it passes, and sends what it
 * is told to. Tests drive it with any clock they like.
 */

export interface RetransmitOptions {
  /** RFC 8489 section 6.2.1: initial retransmission timeout; 500 ms by default. */
  rto?: number;
  /** Rc: total number of requests sent over UDP; 7 by default. */
  rc?: number;
  /** Rm: the final wait is Rm * RTO after the last request; 16 by default. */
  rm?: number;
  /** RFC 8489 section 6.2.2: over TCP/TLS, no retransmissions and timeout Ti (39.5 s). */
  reliable?: boolean;
  /** Ti for reliable transports; 39500 ms by default. */
  ti?: number;
}

export const DEFAULT_RTO = 500;
export const DEFAULT_RC = 7;
export const DEFAULT_RM = 16;
export const DEFAULT_TI = 39_500;

export type TimeoutAction = 'retransmit' | 'timeout' | 'wait';

export class TransactionTimer {
  private readonly rc: number;
  private readonly rm: number;
  private readonly reliable: boolean;
  private readonly ti: number;
  private readonly rto: number;
  private interval: number;
  private deadline: number;
  private sent = 1;
  private done = false;
  readonly startedAt: number;

  /** Call when the first request is sent, at `now` (ms). */
  constructor(now: number, options: RetransmitOptions = {}) {
    const rto = options.rto ?? DEFAULT_RTO;
    this.rc = Math.max(1, options.rc ?? DEFAULT_RC);
    this.rm = options.rm ?? DEFAULT_RM;
    this.reliable = options.reliable ?? false;
    this.ti = options.ti ?? DEFAULT_TI;
    this.startedAt = now;
    this.rto = rto;
    this.interval = rto;
    // Over TCP one request, then wait Ti. Over UDP the first retransmission is at RTO,
    // or, if Rc is 1, the only wait is Rm * RTO.
    this.deadline = now + (this.reliable ? this.ti : this.rc === 1 ? this.rm * rto : rto);
  }

  /** When `onTimeout` must next be called, or undefined once finished. */
  nextTimeout(): number | undefined {
    return this.done ? undefined : this.deadline;
  }

  /** Requests sent so far (1 + retransmissions). */
  get sendCount(): number {
    return this.sent;
  }

  /**
   * Time has reached `now`. 'retransmit': send the request again now. 'timeout': the
   * transaction failed (RFC 8489 section 6.2.1: after Rc sends and a final Rm * RTO).
   * 'wait': nothing yet.
   */
  onTimeout(now: number): TimeoutAction {
    if (this.done) return 'wait';
    if (now < this.deadline) return 'wait';
    if (this.reliable || this.sent >= this.rc) {
      this.done = true;
      return 'timeout';
    }
    // RFC 8489 section 6.2.1: the interval doubles after each retransmission; after the
    // Rc-th request the client waits Rm times the initial RTO.
    this.sent++;
    this.interval *= 2;
    this.deadline = now + (this.sent >= this.rc ? this.rm * this.rto : this.interval);
    return 'retransmit';
  }

  /** The transaction ended (a response, a cancel). */
  finish(): void {
    this.done = true;
  }

  get finished(): boolean {
    return this.done;
  }
}
