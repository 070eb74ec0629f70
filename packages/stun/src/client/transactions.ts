/**
 * The client transaction table, sans-I/O (RFC 8489 section 6.2 and 6.3): transactions by
 * id, their retransmission timers, and the rules for matching a response to one. No
 * sockets, no timers, no clock: the owner sends the request when it starts a transaction,
 * feeds decoded responses to `match(message, now)`, asks `nextTimeout()` when to call
 * `onTimeout(now)`, and performs what that returns (send again, or fail the transaction).
 *
 * StunClient runs its UDP/TCP/TLS transactions on it; the ICE agent core runs its
 * connectivity checks on it (with its own RTO, RFC 8445 section 14.3).
 */
import { Attr } from '../codec/attributes.js';
import { ErrorCode, MessageClass } from '../codec/constants.js';
import { checkIntegrity, verifyFingerprint } from '../codec/integrity.js';
import type { StunMessage } from '../codec/message.js';
import { NatkitError } from '../errors.js';
import { type RetransmitOptions, TransactionTimer } from './transaction.js';

export interface TransactionStart<T> {
  /** Retransmission timing; `reliable: true` for TCP/TLS (one send, then Ti). */
  retransmit?: RetransmitOptions | undefined;
  /**
   * The integrity key the request was signed with. A response other than 401 and 438 must
   * then carry MESSAGE-INTEGRITY or MESSAGE-INTEGRITY-SHA256 that matches it, or it is
   * ignored as if it never arrived (RFC 8489 sections 9.1.4 and 9.2.5).
   */
  verifyKey?: Buffer | undefined;
  /** Anything the owner wants back with the transaction (a promise's callbacks, a pair). */
  context: T;
}

export interface ClientTransaction<T> {
  /** The 96-bit transaction id. */
  readonly id: Buffer;
  /** The request as sent (retransmissions send the same bytes, RFC 8489 section 6.2.1). */
  readonly bytes: Buffer;
  readonly startedAt: number;
  readonly verifyKey: Buffer | undefined;
  readonly context: T;
  /** Requests sent so far (1 + retransmissions). */
  readonly sends: number;
  /** When its timer next needs attention, or undefined once it ended. */
  readonly deadline: number | undefined;
}

/** What `onTimeout` asks the owner to do. */
export type TransactionAction<T> =
  /** Send `transaction.bytes` again now. */
  | { type: 'retransmit'; transaction: ClientTransaction<T> }
  /** The transaction failed: no response after its last send and final wait. It is removed. */
  | { type: 'timeout'; transaction: ClientTransaction<T> };

/** What `match` made of a message. */
export type MatchResult<T> =
  /** The response to `transaction`, which is removed from the table. */
  | { kind: 'response'; transaction: ClientTransaction<T>; message: StunMessage; rtt: number }
  /** Not a response to any transaction here (a request, an indication, someone else's or a late response). */
  | { kind: 'unmatched' }
  /**
   * A response with a transaction's id that must be ignored: its FINGERPRINT is wrong (so
   * it is not STUN, RFC 8489 section 7.3) or its integrity does not check out. The
   * transaction stays and keeps waiting.
   */
  | { kind: 'dropped'; reason: 'fingerprint' | 'integrity'; transaction: ClientTransaction<T> };

class Entry<T> implements ClientTransaction<T> {
  readonly timer: TransactionTimer;
  constructor(
    readonly id: Buffer,
    readonly bytes: Buffer,
    readonly startedAt: number,
    readonly verifyKey: Buffer | undefined,
    readonly context: T,
    retransmit: RetransmitOptions | undefined,
  ) {
    this.timer = new TransactionTimer(startedAt, retransmit);
  }
  get sends(): number {
    return this.timer.sendCount;
  }
  get deadline(): number | undefined {
    return this.timer.nextTimeout();
  }
}

/** `start` with a transaction id that is already under way. */
export class DuplicateTransactionError extends NatkitError {
  constructor(id: Buffer) {
    super('DUPLICATE_TRANSACTION', `transaction ${id.toString('hex')} is already under way`);
  }
}

function keyOf(id: Buffer): string {
  return id.toString('latin1');
}

/**
 * RFC 8489 sections 9.1.4 and 9.2.5: with credentials, a response must be authenticated
 * with the same key, except the 401 and 438 challenges, which cannot be.
 */
export function acceptsResponse(message: StunMessage, verifyKey: Buffer | undefined): boolean {
  if (!verifyKey) return true;
  if (message.isError()) {
    const code = message.get(Attr.ErrorCode)?.code;
    if (code === ErrorCode.Unauthorized || code === ErrorCode.StaleNonce) return true;
  }
  const r = checkIntegrity(message, verifyKey);
  return r === 'sha1' || r === 'sha256';
}

export class TransactionTable<T = unknown> {
  private readonly entries = new Map<string, Entry<T>>();

  /** Transactions under way. */
  get size(): number {
    return this.entries.size;
  }

  /**
   * Starts a transaction whose request (`bytes`, transaction id `id`) the owner sends now,
   * at `now`. Throws DuplicateTransactionError if `id` is already under way.
   */
  start(id: Buffer, bytes: Buffer, now: number, options: TransactionStart<T>): ClientTransaction<T> {
    const key = keyOf(id);
    if (this.entries.has(key)) throw new DuplicateTransactionError(id);
    const e = new Entry(Buffer.from(id), bytes, now, options.verifyKey, options.context, options.retransmit);
    this.entries.set(key, e);
    return e;
  }

  /**
   * Whether a raw STUN message (isStunMessage: cookie and length checked) can answer a
   * transaction under way: a success or error response (class bit C1 set, RFC 8489 section
   * 5) carrying the id of one. Read from the header alone, so that a client sharing a socket
   * leaves everything else (a peer's ICE checks, TURN Data indications) undecoded for the
   * socket's owner, which decodes it anyway.
   */
  awaits(raw: Buffer): boolean {
    return (raw[0]! & 0x01) !== 0 && this.entries.has(raw.toString('latin1', 8, 20));
  }

  get(id: Buffer): ClientTransaction<T> | undefined {
    return this.entries.get(keyOf(id));
  }

  has(id: Buffer): boolean {
    return this.entries.has(keyOf(id));
  }

  values(): IterableIterator<ClientTransaction<T>> {
    return this.entries.values();
  }

  /** Ends a transaction without a response (cancelled, aborted); returns it if it was there. */
  cancel(id: Buffer): ClientTransaction<T> | undefined {
    const key = keyOf(id);
    const e = this.entries.get(key);
    if (!e) return undefined;
    e.timer.finish();
    this.entries.delete(key);
    return e;
  }

  /** Ends every transaction; returns them (to fail each). */
  clear(): ClientTransaction<T>[] {
    const all = [...this.entries.values()];
    for (const e of all) e.timer.finish();
    this.entries.clear();
    return all;
  }

  /**
   * A decoded message arrived. Requests, indications and RFC 3489 messages are never
   * responses (RFC 8489 section 6.3); a success or error response is matched by
   * transaction id, then checked: FINGERPRINT (section 7.3) and, with a key, integrity
   * (sections 9.1.4, 9.2.5). A response that passes ends its transaction.
   */
  match(message: StunMessage, now: number): MatchResult<T> {
    if (message.rfc3489 || (message.cls !== MessageClass.SuccessResponse && message.cls !== MessageClass.ErrorResponse)) return { kind: 'unmatched' };
    const key = keyOf(message.transactionId);
    const e = this.entries.get(key);
    if (!e) return { kind: 'unmatched' };
    if (message.fingerprintAt >= 0 && !verifyFingerprint(message)) return { kind: 'dropped', reason: 'fingerprint', transaction: e };
    if (!acceptsResponse(message, e.verifyKey)) return { kind: 'dropped', reason: 'integrity', transaction: e };
    e.timer.finish();
    this.entries.delete(key);
    return { kind: 'response', transaction: e, message, rtt: now - e.startedAt };
  }

  /** The earliest time `onTimeout` must be called, or undefined when nothing waits. */
  nextTimeout(): number | undefined {
    let t: number | undefined;
    for (const e of this.entries.values()) {
      const d = e.timer.nextTimeout();
      if (d !== undefined && (t === undefined || d < t)) t = d;
    }
    return t;
  }

  /**
   * Time has reached `now`: every transaction due retransmits (RFC 8489 section 6.2.1:
   * intervals doubling from RTO, Rc requests in all) or, after its last request and the
   * final Rm * RTO wait (Ti over TCP/TLS, section 6.2.2), times out and is removed.
   */
  onTimeout(now: number): TransactionAction<T>[] {
    const out: TransactionAction<T>[] = [];
    for (const [key, e] of this.entries) {
      const d = e.timer.nextTimeout();
      if (d === undefined || d > now) continue;
      const a = e.timer.onTimeout(now);
      if (a === 'retransmit') out.push({ type: 'retransmit', transaction: e });
      else if (a === 'timeout') {
        this.entries.delete(key);
        out.push({ type: 'timeout', transaction: e });
      }
    }
    return out;
  }
}
