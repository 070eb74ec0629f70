import type { DatagramSocket, Family, TransportAddress } from '@natkit/stun';

/**
 * One allocation's state (RFC 8656 section 2.2): the client's 5-tuple, the relayed
 * transport address(es), lifetime, permissions (section 9) and channel bindings (section
 * 12). Time is passed in; nothing here touches a socket except holding the relay sockets
 * the server gave it.
 */

/** How the server reaches the client: a UDP listener or a stream connection. */
export interface ClientPath {
  transport: 'udp' | 'tcp' | 'tls';
  /** The client's address as the server sees it. */
  remote: TransportAddress;
  /** The server's address the client talks to. */
  local: TransportAddress;
  /** Sends bytes to the client (a datagram, or a write on the connection). */
  send(data: Buffer): void;
  /** Stream transports pad ChannelData to a multiple of 4 (RFC 8656 section 12.5). */
  readonly stream: boolean;
  /**
   * What the client came through, for the allocation table's index: the UDP listener's
   * number, or the stream connection (one object per connection).
   */
  readonly via: number | object;
}

export interface RelaySocket {
  family: Family;
  address: string;
  port: number;
  socket: DatagramSocket;
}

export interface Channel {
  number: number;
  peer: TransportAddress;
  expiresAt: number;
}

export interface AllocationCounters {
  /** Datagrams and bytes relayed client to peer, and peer to client. */
  toPeerPackets: number;
  toPeerBytes: number;
  toClientPackets: number;
  toClientBytes: number;
}

export const PERMISSION_LIFETIME_MS = 300_000; // RFC 8656 section 9
export const CHANNEL_LIFETIME_MS = 600_000; // RFC 8656 section 12

export class Allocation {
  readonly id: number;
  readonly key: string;
  readonly client: ClientPath;
  readonly username: string;
  /** Made without authentication (NoAuthenticator): no user, no per-user quota. */
  readonly anonymous: boolean;
  /** The long-term key the allocation was made with (undefined without authentication). */
  readonly hmacKey: Buffer | undefined;
  readonly integrity: 'sha1' | 'sha256';
  readonly relays: Partial<Record<Family, RelaySocket>>;
  readonly createdAt: number;
  expiresAt: number;
  /** The transaction that created it and the answer sent, for retransmitted Allocates. */
  readonly createdBy: string;
  response: Buffer | undefined;
  /** Peer IP -> when the permission expires. Ports do not matter (section 9). */
  readonly permissions = new Map<string, number>();
  readonly channels = new Map<number, Channel>();
  /** Peer IP -> port -> channel, for the peer-to-client direction. */
  readonly peerChannels = new Map<string, Map<number, Channel>>();
  readonly counters: AllocationCounters = { toPeerPackets: 0, toPeerBytes: 0, toClientPackets: 0, toClientBytes: 0 };
  closed = false;
  /** Set once the first datagram has been relayed (the 'relaying' event). */
  relaying = false;

  constructor(init: {
    id: number;
    key: string;
    client: ClientPath;
    username: string;
    anonymous?: boolean;
    hmacKey: Buffer | undefined;
    integrity: 'sha1' | 'sha256';
    relays: Partial<Record<Family, RelaySocket>>;
    now: number;
    lifetimeMs: number;
    createdBy: string;
  }) {
    this.id = init.id;
    this.key = init.key;
    this.client = init.client;
    this.username = init.username;
    this.anonymous = init.anonymous ?? false;
    this.hmacKey = init.hmacKey;
    this.integrity = init.integrity;
    this.relays = init.relays;
    this.createdAt = init.now;
    this.expiresAt = init.now + init.lifetimeMs;
    this.createdBy = init.createdBy;
  }

  families(): Family[] {
    return (['IPv4', 'IPv6'] as const).filter((f) => this.relays[f] !== undefined);
  }

  /** Live permission for this peer IP at `now`. */
  permitted(ip: string, now: number): boolean {
    const exp = this.permissions.get(ip);
    return exp !== undefined && exp > now;
  }

  /** Installs or refreshes a permission (RFC 8656 section 9.2). */
  permit(ip: string, now: number): void {
    this.permissions.set(ip, now + PERMISSION_LIFETIME_MS);
  }

  /** Live permissions, after dropping expired ones. */
  livePermissions(now: number): number {
    for (const [ip, exp] of this.permissions) if (exp <= now) this.permissions.delete(ip);
    return this.permissions.size;
  }

  channelForPeer(peer: TransportAddress): Channel | undefined {
    return this.peerChannels.get(peer.address)?.get(peer.port);
  }

  /**
   * Binds or refreshes a channel (RFC 8656 section 12.2). The caller has checked that the
   * number and peer are not bound to something else.
   */
  bind(number: number, peer: TransportAddress, now: number): Channel {
    let ch = this.channels.get(number);
    if (ch) {
      ch.expiresAt = now + CHANNEL_LIFETIME_MS;
    } else {
      ch = { number, peer, expiresAt: now + CHANNEL_LIFETIME_MS };
      this.channels.set(number, ch);
      let byPort = this.peerChannels.get(peer.address);
      if (!byPort) this.peerChannels.set(peer.address, (byPort = new Map()));
      byPort.set(peer.port, ch);
    }
    // RFC 8656 section 12.2: a channel binding also installs or refreshes the permission.
    this.permit(peer.address, now);
    return ch;
  }

  /** Drops expired permissions and channels (section 12: an expired binding is unbound). */
  sweep(now: number): void {
    for (const [ip, exp] of this.permissions) if (exp <= now) this.permissions.delete(ip);
    for (const [n, ch] of this.channels) {
      if (ch.expiresAt > now) continue;
      this.channels.delete(n);
      const byPort = this.peerChannels.get(ch.peer.address);
      byPort?.delete(ch.peer.port);
      if (byPort && byPort.size === 0) this.peerChannels.delete(ch.peer.address);
    }
  }
}
