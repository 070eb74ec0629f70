import type { Allocation, ClientPath } from './allocation.js';

/**
 * The allocation table (RFC 8656 section 2.2: an allocation is known by its 5-tuple): it
 * owns the allocations, the 5-tuple index the data path uses (UDP: listener, client IP,
 * client port; streams: the connection), and the Allocates still being made (their relay
 * sockets being bound). Nothing else keeps allocation state.
 */
export class AllocationTable {
  private readonly byKey = new Map<string, Allocation>();
  /** UDP listener number -> client IP -> client port -> allocation. */
  private readonly udp: Array<Map<string, Map<number, Allocation>>> = [];
  /** Stream connection -> its allocation (one at most: RFC 8656 section 7.2). */
  private readonly streams = new Map<object, Allocation>();
  /** 5-tuple key -> the transaction making an allocation there. */
  private readonly pending = new Map<string, string>();

  /** The 5-tuple key of a client path. */
  static key(path: ClientPath): string {
    return `${path.transport}|${path.local.address}|${path.local.port}|${path.remote.address}|${path.remote.port}`;
  }

  get size(): number {
    return this.byKey.size;
  }

  get pendingCount(): number {
    return this.pending.size;
  }

  get(key: string): Allocation | undefined {
    return this.byKey.get(key);
  }

  values(): IterableIterator<Allocation> {
    return this.byKey.values();
  }

  /** The allocation of a UDP client (the per-packet lookup). */
  udpLookup(listener: number, ip: string, port: number): Allocation | undefined {
    return this.udp[listener]?.get(ip)?.get(port);
  }

  /** The allocation of a stream connection. */
  streamLookup(conn: object): Allocation | undefined {
    return this.streams.get(conn);
  }

  add(a: Allocation): void {
    this.byKey.set(a.key, a);
    const via = a.client.via;
    if (typeof via === 'number') {
      let byIp = this.udp[via];
      if (!byIp) this.udp[via] = byIp = new Map();
      let byPort = byIp.get(a.client.remote.address);
      if (!byPort) byIp.set(a.client.remote.address, (byPort = new Map()));
      byPort.set(a.client.remote.port, a);
    } else {
      this.streams.set(via, a);
    }
  }

  remove(a: Allocation): void {
    if (this.byKey.get(a.key) === a) this.byKey.delete(a.key);
    const via = a.client.via;
    if (typeof via === 'number') {
      const byIp = this.udp[via];
      const byPort = byIp?.get(a.client.remote.address);
      if (byPort?.get(a.client.remote.port) === a) {
        byPort.delete(a.client.remote.port);
        if (byPort.size === 0) byIp!.delete(a.client.remote.address);
      }
    } else if (this.streams.get(via) === a) {
      this.streams.delete(via);
    }
  }

  pendingFor(key: string): string | undefined {
    return this.pending.get(key);
  }

  setPending(key: string, tid: string): void {
    this.pending.set(key, tid);
  }

  clearPending(key: string): void {
    this.pending.delete(key);
  }

  /** Entries in every index (for tests: nothing is kept after allocations end). */
  get indexed(): { udp: number; streams: number; pending: number } {
    let udp = 0;
    for (const byIp of this.udp) if (byIp) for (const byPort of byIp.values()) udp += byPort.size;
    return { udp, streams: this.streams.size, pending: this.pending.size };
  }
}
