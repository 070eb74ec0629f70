import { randomBytes, randomInt } from 'node:crypto';
import { type Family, type Network, nodeNetwork } from '@natkit/stun';
import type { RelaySocket } from './allocation.js';

/**
 * Relayed transport addresses: UDP sockets bound to a relay IP on a port from the
 * configured range, chosen at random (RFC 8656 section 7.2 wants them hard to guess),
 * with even ports and reservations (EVEN-PORT with R, RESERVATION-TOKEN, section 7.2).
 */

export interface Reservation {
  token: string;
  relay: RelaySocket;
  expiresAt: number;
  /** Who asked for it: reservations count against that user's quota until redeemed. */
  owner: string;
}

/**
 * Where relayed transport addresses come from (RFC 8656 section 7.2 step 8): sockets on
 * the relay's addresses, even ports, and reservations by token. RelayPorts is the default;
 * replace it to pick addresses and ports your own way (a port pool shared with other
 * services, a socket per family on another interface...). The relay closes a socket
 * through release() only.
 */
export interface RelayAllocator {
  /** The relay address of each family served (an Allocate for another family gets 440). */
  readonly addresses: Partial<Record<Family, string>>;
  /** A relayed socket (on an even port if asked); undefined when none can be had. */
  allocate(family: Family, even?: boolean): Promise<RelaySocket | undefined>;
  /** EVEN-PORT with R: an even port now, the next one held under the returned token. */
  allocatePair(family: Family, now: number, owner?: string): Promise<{ relay: RelaySocket; token: Buffer } | undefined>;
  /**
   * Takes a reserved socket by its token: the socket and who reserved it (their quota slot
   * passes to the redeemer). `relay` undefined: the reservation was there, but its port
   * could not be had (the owner's slot ends). Undefined: unknown or expired token.
   */
  redeem(token: Buffer, now: number): Redeemed | undefined | Promise<Redeemed | undefined>;
  /** Drops reservations whose time is up; returns them (their quota slots end). */
  sweep(now: number): Reservation[];
  release(relay: RelaySocket): void;
  /** Closes every reservation; returns them. */
  close(): Reservation[];
}

export interface Redeemed {
  relay: RelaySocket | undefined;
  /** Who reserved it ('' without authentication). */
  owner: string;
}

export class RelayPorts implements RelayAllocator {
  readonly min: number;
  readonly max: number;
  readonly addresses: Partial<Record<Family, string>>;
  private readonly used = new Set<string>();
  private readonly reservations = new Map<string, Reservation>();
  /** How long a reserved port is kept for its token (RFC 8656 suggests about 30 s). */
  readonly reservationMs: number;
  private readonly network: Network;
  private readonly randomInt: (min: number, maxExclusive: number) => number;

  constructor(options: {
    min?: number;
    max?: number;
    addresses: Partial<Record<Family, string>>;
    reservationMs?: number;
    network?: Network;
    /** Where random ports come from: crypto's randomInt by default (tests on a virtual network seed it). */
    randomInt?: (min: number, maxExclusive: number) => number;
  }) {
    this.network = options.network ?? nodeNetwork;
    this.randomInt = options.randomInt ?? randomInt;
    this.min = options.min ?? 49152;
    this.max = options.max ?? 65535;
    if (this.min < 1 || this.max > 65535 || this.min > this.max) throw new Error(`bad relay port range ${this.min}-${this.max}`);
    this.addresses = options.addresses;
    this.reservationMs = options.reservationMs ?? 30_000;
  }

  /** A relay socket on exactly this port, or undefined if it cannot be had. */
  protected bindOne(family: Family, port: number): Promise<RelaySocket | undefined> {
    const address = this.addresses[family]!;
    const key = `${family}:${port}`;
    if (this.used.has(key)) return Promise.resolve(undefined);
    this.used.add(key);
    return this.network.createUdpSocket({ family, address, port }).then(
      (socket) => ({ family, address, port, socket }),
      () => {
        this.used.delete(key);
        return undefined;
      },
    );
  }

  /** A relay socket on a random free port (even, if asked); undefined when none is free. */
  async allocate(family: Family, even = false, attempts = 32): Promise<RelaySocket | undefined> {
    if (!this.addresses[family]) return undefined;
    for (let i = 0; i < attempts; i++) {
      let port = this.randomInt(this.min, this.max + 1);
      if (even && port % 2 === 1) port = port === this.max ? port - 1 : port + 1;
      if (even && port < this.min) continue;
      const r = await this.bindOne(family, port);
      if (r) return r;
    }
    return undefined;
  }

  /**
   * EVEN-PORT with R set: an even port for now and the next (odd) one held under a
   * token. Both or neither.
   */
  async allocatePair(family: Family, now: number, owner = '', attempts = 32): Promise<{ relay: RelaySocket; token: Buffer } | undefined> {
    for (let i = 0; i < attempts; i++) {
      let port = this.randomInt(this.min, this.max);
      if (port % 2 === 1) port--;
      if (port < this.min || port + 1 > this.max) continue;
      const a = await this.bindOne(family, port);
      if (!a) continue;
      const b = await this.bindOne(family, port + 1);
      if (!b) {
        this.release(a);
        continue;
      }
      const token = randomBytes(8);
      this.reservations.set(token.toString('hex'), { token: token.toString('hex'), relay: b, expiresAt: now + this.reservationMs, owner });
      return { relay: a, token };
    }
    return undefined;
  }

  /**
   * Takes a reserved relay socket by token (RESERVATION-TOKEN), or undefined. An expired
   * reservation is left for sweep(), which ends it (and so its quota slot) in one place.
   */
  redeem(token: Buffer, now: number): Redeemed | Promise<Redeemed | undefined> | undefined {
    const r = this.take(token, now);
    return r ? { relay: r.relay, owner: r.owner } : undefined;
  }

  /** Removes a live reservation and returns it (its socket still open), or undefined. */
  protected take(token: Buffer | string, now: number): Reservation | undefined {
    const key = typeof token === 'string' ? token : token.toString('hex');
    const r = this.reservations.get(key);
    if (!r || r.expiresAt <= now) return undefined;
    this.reservations.delete(key);
    return r;
  }

  /** Releases reservations that were not redeemed in time, and returns them. */
  sweep(now: number): Reservation[] {
    const gone: Reservation[] = [];
    for (const [k, r] of this.reservations) {
      if (r.expiresAt > now) continue;
      this.reservations.delete(k);
      this.release(r.relay);
      gone.push(r);
    }
    return gone;
  }

  get reservedCount(): number {
    return this.reservations.size;
  }

  /** The owner of a live reservation, or undefined. */
  ownerOf(token: Buffer): string | undefined {
    return this.reservations.get(token.toString('hex'))?.owner;
  }

  /** Reservations held for one user. */
  reservedBy(owner: string): number {
    let n = 0;
    for (const r of this.reservations.values()) if (r.owner === owner) n++;
    return n;
  }

  get inUse(): number {
    return this.used.size;
  }

  /** Forgets a relay port whose socket was closed elsewhere (handed to another worker). */
  protected forget(relay: RelaySocket): void {
    this.used.delete(`${relay.family}:${relay.port}`);
  }

  release(relay: RelaySocket): void {
    this.used.delete(`${relay.family}:${relay.port}`);
    try {
      relay.socket.close();
    } catch {
      // already closed
    }
  }

  close(): Reservation[] {
    const gone = [...this.reservations.values()];
    for (const r of gone) this.release(r.relay);
    this.reservations.clear();
    return gone;
  }
}
