import { type DatagramInfo, type DatagramSocket, type Network, type RetransmitOptions, StunClient, StunTransactionError, type Clock, type TransportAddress, canonicalIp } from '@natkit/stun';
import type { TurnClient } from '@natkit/turn';
import type { CandidateBase } from '../base.js';

/**
 * The two kinds of CandidateBase the gatherer makes (src/base.ts): a host base is a bound
 * UDP socket; a relay base is a TURN allocation.
 */

/** A failed send on UDP is a lost datagram; one function for all of them, not a closure per send. */
const ignoreSendResult = (): void => {};

/**
 * A UDP socket bound to one local address: the base of its host candidate and of the
 * server-reflexive candidates learned through it (RFC 8445 section 5.1.1.2: the Binding
 * request goes out of this very socket, so the mapping is this socket's). Its StunClient
 * takes the responses to the gatherer's own Binding requests; everything else that arrives
 * goes to `onPacket`.
 */
export class HostBase implements CandidateBase {
  readonly kind = 'host' as const;
  onPacket: ((data: Buffer, from: TransportAddress) => void) | undefined;
  /** Runs the gatherer's Binding requests on this socket. */
  readonly stun: StunClient;
  /** Datagrams that arrived while nobody listened (before the agent set onPacket). */
  unclaimed = 0;
  private closed = false;

  constructor(
    readonly id: number,
    readonly address: TransportAddress,
    readonly socket: DatagramSocket,
    options: { network: Network; clock: Clock; retransmit?: RetransmitOptions | undefined; software?: string | false | undefined },
  ) {
    this.stun = new StunClient({ socket, listen: false, network: options.network, clock: options.clock, retransmit: options.retransmit, software: options.software });
    socket.on('message', this.onMessage);
    socket.on('error', this.onError);
  }

  private readonly onMessage = (data: Buffer, rinfo: DatagramInfo): void => {
    const from: TransportAddress = { family: rinfo.family, address: rinfo.address, port: rinfo.port };
    if (this.stun.receive(data, from)) return;
    if (this.onPacket) this.onPacket(data, from);
    else this.unclaimed++;
  };

  private readonly onError = (): void => {
    // An unconnected UDP socket's errors concern one send (ICMP and the like): a lost datagram.
  };

  send(data: Uint8Array, to: TransportAddress): void {
    if (this.closed) return;
    try {
      this.socket.send(data, to.port, to.address, ignoreSendResult);
    } catch {
      // A bad address or a closed socket: the datagram is lost, as on UDP.
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.stun.close();
    this.socket.off('message', this.onMessage);
    await new Promise<void>((r) => {
      try {
        this.socket.close(() => r());
      } catch {
        r();
      }
    });
    this.socket.off('error', this.onError);
  }
}

/** At most this many datagrams wait per peer IP for its permission; more are dropped. */
export const MAX_QUEUED_PER_PEER = 64;

/**
 * A TURN allocation: the base of its relayed candidate (RFC 8445 section 5.1.1.2). `send`
 * installs a permission for the peer's IP first (RFC 8656 section 9) and holds the peer's
 * datagrams until it is in place, then sends them in order (ChannelData once a channel is
 * bound, Send indications otherwise); data the relay delivers (Data indications and
 * ChannelData) reaches `onPacket` with the peer's address as `from`.
 */
export class RelayBase implements CandidateBase {
  readonly kind = 'relay' as const;
  readonly address: TransportAddress;
  onPacket: ((data: Buffer, from: TransportAddress) => void) | undefined;
  /** Called once if the allocation is lost (a refresh refused) or closed. */
  onClosed: ((err?: Error) => void) | undefined;
  /** Datagrams dropped: the permission was refused, too many waited for it, or the datagram could not be sent. */
  dropped = 0;
  unclaimed = 0;
  private readonly waiting = new Map<string, Array<[Uint8Array, TransportAddress]>>();
  /**
   * Peer IPs the server refused a permission for (403, RFC 8656 section 9.2: its policy, e.g.
   * natkit's relay denies private addresses by default). Not asked again for this allocation:
   * ICE sends a check and six retransmissions to every remote candidate, and each would
   * otherwise be one more CreatePermission transaction.
   */
  private readonly refused = new Set<string>();
  private closed = false;
  private lastError: Error | undefined;
  /** The peer the last datagram went to and its canonical IP: the data path sends to one peer. */
  private lastTo: TransportAddress | undefined;
  private lastIp = '';
  private readonly onSendFailed = (): void => {
    this.dropped++;
  };

  constructor(
    readonly id: number,
    readonly client: TurnClient,
    /** The local address the allocation was made from. */
    readonly local: TransportAddress,
  ) {
    this.address = client.relayed[0]!;
    client.on('data', (data, peer) => {
      if (this.onPacket) this.onPacket(data, peer);
      else this.unclaimed++;
    });
    client.on('error', (err) => {
      this.lastError = err;
    });
    client.on('closed', () => {
      if (this.closed) return;
      this.closed = true;
      this.waiting.clear();
      this.onClosed?.(this.lastError);
    });
  }

  /** The server-reflexive address the TURN server saw (XOR-MAPPED-ADDRESS of the Allocate response). */
  get mapped(): TransportAddress | undefined {
    return this.client.mapped;
  }

  send(data: Uint8Array, to: TransportAddress): void {
    if (this.closed) return;
    let ip: string;
    if (to === this.lastTo) ip = this.lastIp;
    else {
      try {
        ip = canonicalIp(to.address);
      } catch {
        this.dropped++;
        return;
      }
      this.lastTo = to;
      this.lastIp = ip;
    }
    if (this.refused.size > 0 && this.refused.has(ip)) {
      this.dropped++;
      return;
    }
    const queue = this.waiting.size > 0 ? this.waiting.get(ip) : undefined;
    if (queue) {
      if (queue.length >= MAX_QUEUED_PER_PEER) this.dropped++;
      else queue.push([data, to]);
      return;
    }
    if (this.client.hasPermission(ip)) {
      this.forward(data, to);
      return;
    }
    // RFC 8656 section 9: no permission yet. Hold this peer's datagrams until CreatePermission succeeds.
    this.waiting.set(ip, [[data, to]]);
    this.client.createPermission({ ...to, address: ip }).then(
      () => {
        const list = this.waiting.get(ip) ?? [];
        this.waiting.delete(ip);
        for (const [d, t] of list) this.forward(d, t);
      },
      (err: unknown) => {
        this.dropped += this.waiting.get(ip)?.length ?? 0;
        this.waiting.delete(ip);
        if (err instanceof StunTransactionError && err.errorCode === 403) this.refused.add(ip);
      },
    );
  }

  /**
   * Hands a datagram to the TURN client once the peer's permission is in place: over UDP at
   * once (ChannelData or a Send indication, no promise per datagram); over TCP/TLS through
   * the client's asynchronous send. What cannot be encoded (more than ChannelData's or
   * DATA's 65535 bytes) is a lost datagram, as on a host socket, not an exception.
   */
  private forward(data: Uint8Array, to: TransportAddress): void {
    let sent: boolean;
    try {
      sent = this.client.sendNow(to, data);
    } catch {
      this.dropped++;
      return;
    }
    if (!sent) this.client.send(to, data).catch(this.onSendFailed);
  }

  /** RFC 8656 section 12: binds a channel to the peer (and its permission), so data flows as ChannelData. */
  async bindChannel(peer: TransportAddress): Promise<void> {
    await this.client.bindChannel(peer);
  }

  /** Deletes the allocation (Refresh with LIFETIME 0, RFC 8656 section 7.3) and closes its socket. */
  async close(): Promise<void> {
    this.closed = true;
    this.waiting.clear();
    await this.client.close();
  }
}
