import { randomBytes } from 'node:crypto';
import { type Clock, type DatagramInfo, type DatagramSocket, type Family, NatkitError, type Network, type TransportAddress, nodeNetwork, realClock } from '@natkit/stun';
import { DNS_TYPE_A, DNS_TYPE_AAAA, decodeAnswer, encodeQuery, mdnsName } from './dns.js';

export type MdnsErrorCode = 'BAD_NAME' | 'TIMEOUT' | 'UNREACHABLE' | 'CLOSED';

export class MdnsError extends NatkitError {
  declare readonly code: MdnsErrorCode;
  constructor(code: MdnsErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

/** RFC 6762 section 3: the mDNS IPv4 group and port. */
export const MDNS_IPV4: TransportAddress = { family: 'IPv4', address: '224.0.0.251', port: 5353 };

export interface MdnsResolverOptions {
  network?: Network;
  clock?: Clock;
  /** Give up on a name after this long, ms. Default 3000. */
  timeoutMs?: number;
  /** Ask again after this long without an answer, ms (RFC 6762 5.2 spacing). Default 1000. */
  retryMs?: number;
  /** Where queries go: the mDNS group by default; a unicast responder in tests. */
  server?: TransportAddress;
}

interface Query {
  name: string;
  resolve: (a: Array<{ family: Family; address: string }>) => void;
  reject: (e: Error) => void;
  timers: unknown[];
}

/**
 * Resolves `.local` names with one-shot mDNS queries (RFC 6762 section 5.1): a query for the
 * A and AAAA records, sent from an ephemeral port (so responders answer by unicast, RFC 6762
 * 6.7) to 224.0.0.251:5353, repeated after `retryMs`, given up after `timeoutMs`. This is how
 * a remote `<uuid>.local` host candidate from a browser (draft-ietf-mmusic-mdns-ice-candidates)
 * becomes an address. The socket exists only while queries are pending.
 */
export class MdnsResolver {
  private readonly network: Network;
  private readonly clock: Clock;
  private readonly timeoutMs: number;
  private readonly retryMs: number;
  private readonly server: TransportAddress;
  private socket: Promise<DatagramSocket> | undefined;
  private readonly pending = new Set<Query>();
  private closed = false;

  constructor(options: MdnsResolverOptions = {}) {
    this.network = options.network ?? nodeNetwork;
    this.clock = options.clock ?? realClock;
    this.timeoutMs = options.timeoutMs ?? 3000;
    this.retryMs = options.retryMs ?? 1000;
    this.server = options.server ?? MDNS_IPV4;
  }

  /** The addresses `name` has (IPv4 and IPv6, as answered). Rejects with MdnsError. */
  resolve(name: string): Promise<Array<{ family: Family; address: string }>> {
    if (this.closed) return Promise.reject(new MdnsError('CLOSED', 'the mDNS resolver is closed'));
    const lower = mdnsName(name);
    let query: Buffer;
    try {
      if (lower === undefined) throw new RangeError('not under .local');
      query = encodeQuery(randomBytes(2).readUInt16BE(0), lower, [DNS_TYPE_A, DNS_TYPE_AAAA]);
    } catch (e) {
      return Promise.reject(new MdnsError('BAD_NAME', `${JSON.stringify(name)} is not an mDNS name (RFC 6762: a name under .local)`, { cause: e }));
    }
    return new Promise((resolve, reject) => {
      const q: Query = { name: lower, resolve, reject, timers: [] };
      this.pending.add(q);
      const send = () => {
        if (!this.pending.has(q)) return;
        this.open().then(
          (s) => {
            if (!this.pending.has(q)) {
              if (this.pending.size === 0) void this.closeSocket();
              return;
            }
            s.send(query, this.server.port, this.server.address, (err) => err && this.finish(q, new MdnsError('UNREACHABLE', `mDNS query could not be sent: ${err.message}`, { cause: err })));
          },
          (err: Error) => this.finish(q, new MdnsError('UNREACHABLE', `no socket for mDNS: ${err.message}`, { cause: err })),
        );
      };
      send();
      for (let t = this.retryMs; t < this.timeoutMs; t += this.retryMs) q.timers.push(this.clock.setTimeout(send, t));
      q.timers.push(this.clock.setTimeout(() => this.finish(q, new MdnsError('TIMEOUT', `no mDNS answer for ${lower} within ${this.timeoutMs} ms`)), this.timeoutMs));
    });
  }

  private open(): Promise<DatagramSocket> {
    this.socket ??= this.network.createUdpSocket({ family: this.server.family }).then((s) => {
      s.on('message', this.onMessage);
      s.on('error', () => {});
      return s;
    });
    return this.socket;
  }

  private readonly onMessage = (msg: Buffer, _rinfo: DatagramInfo): void => {
    const answer = decodeAnswer(msg);
    if (!answer || !answer.response) return;
    for (const q of [...this.pending]) {
      const found = answer.addresses.filter((a) => a.name === q.name).map((a) => ({ family: a.family, address: a.address }));
      if (found.length > 0) this.finish(q, undefined, found);
    }
  };

  private finish(q: Query, err: Error | undefined, addresses?: Array<{ family: Family; address: string }>): void {
    if (!this.pending.delete(q)) return;
    for (const t of q.timers) this.clock.clearTimeout(t);
    if (err) q.reject(err);
    else q.resolve(addresses!);
    if (this.pending.size === 0) void this.closeSocket();
  }

  private async closeSocket(): Promise<void> {
    const s = this.socket;
    this.socket = undefined;
    if (!s) return;
    const sock = await s.catch(() => undefined);
    if (!sock) return;
    sock.off('message', this.onMessage);
    await new Promise<void>((r) => {
      try {
        sock.close(() => r());
      } catch {
        r();
      }
    });
  }

  /** Rejects pending queries (CLOSED) and closes the socket. */
  async close(): Promise<void> {
    this.closed = true;
    for (const q of [...this.pending]) this.finish(q, new MdnsError('CLOSED', 'the mDNS resolver was closed'));
    await this.closeSocket();
  }
}
