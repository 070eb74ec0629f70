// A test double of the Gatherer (the contract's shape, /work/notes/ice-contract.md): one UDP
// socket per given address through any Network (the kernel's on loopback, or the in-memory
// one), each the base of one host candidate; optionally "relay" bases, which are sockets too
// but say they are TURN allocations and record bindChannel calls. Used by the agent tests.
import { EventEmitter } from 'node:events';
import type { DatagramInfo, DatagramSocket, Network, TransportAddress } from '@natkit/stun';
import { type CandidateBase, type GathererLike, type LocalCandidate, TYPE_PREFERENCE, candidateFoundation, candidatePriority } from '../../src/index.js';

export class TestBase implements CandidateBase {
  onPacket: ((data: Buffer, from: TransportAddress) => void) | undefined;
  readonly channels: TransportAddress[] = [];
  sent = 0;
  /** Set to drop everything this base would send or receive (a peer that goes silent). */
  mute = false;
  readonly bindChannel: ((peer: TransportAddress) => Promise<void>) | undefined;

  constructor(
    readonly id: number,
    readonly kind: 'host' | 'relay',
    readonly address: TransportAddress,
    readonly socket: DatagramSocket,
  ) {
    socket.on('message', (m: Buffer, r: DatagramInfo) => {
      if (!this.mute) this.onPacket?.(m, { family: r.family, address: r.address, port: r.port });
    });
    socket.on('error', () => {});
    this.bindChannel =
      kind === 'relay'
        ? async (peer) => {
            this.channels.push(peer);
          }
        : undefined;
  }

  send(data: Uint8Array, to: TransportAddress): void {
    if (this.mute) return;
    this.sent++;
    try {
      this.socket.send(data, to.port, to.address);
    } catch {
      // a closed socket: a lost datagram
    }
  }

  close(): Promise<void> {
    return new Promise((r) => {
      try {
        this.socket.close(() => r());
      } catch {
        r();
      }
    });
  }
}

export class TestGatherer extends EventEmitter implements GathererLike {
  readonly candidates: LocalCandidate[] = [];
  readonly bases: TestBase[] = [];
  private closed = false;
  private running: Promise<void> | undefined;

  constructor(
    private readonly opts: {
      network: Network;
      /** Host candidates, one socket each. */
      addresses: string[];
      /** Sockets that pose as TURN allocations (relayed candidates). */
      relays?: string[];
      /** Called before each candidate is emitted (to space them out in tests). */
      pace?: () => Promise<void>;
    },
  ) {
    super();
  }

  gather(): Promise<void> {
    this.running ??= this.run();
    return this.running;
  }

  private async run(): Promise<void> {
    let id = 0;
    const all = [...this.opts.addresses.map((a) => ['host', a] as const), ...(this.opts.relays ?? []).map((a) => ['relay', a] as const)];
    for (const [kind, address] of all) {
      if (this.closed) return;
      const family = address.includes(':') ? 'IPv6' : 'IPv4';
      const socket = await this.opts.network.createUdpSocket({ family, address });
      const a = socket.address();
      const base = new TestBase(++id, kind, { family, address, port: a.port }, socket);
      this.bases.push(base);
      if (this.closed) {
        await base.close();
        return;
      }
      const type = kind === 'host' ? 'host' : 'relay';
      const c: LocalCandidate = {
        foundation: candidateFoundation(type, address, kind === 'relay' ? '192.0.2.99' : undefined, 'udp'),
        component: 1,
        transport: 'udp',
        priority: candidatePriority(TYPE_PREFERENCE[type], 65535 - id, 1),
        address,
        port: a.port,
        type,
        base: base.address,
        baseId: base.id,
      };
      if (kind === 'relay') {
        c.relatedAddress = address;
        c.relatedPort = a.port;
      }
      await this.opts.pace?.();
      this.candidates.push(c);
      this.emit('candidate', c);
    }
    if (!this.closed) this.emit('complete');
  }

  base(id: number): TestBase | undefined {
    return this.bases.find((b) => b.id === id);
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.running?.catch(() => {});
    await Promise.all(this.bases.map((b) => b.close()));
  }
}
