import type * as dgram from 'node:dgram';
import {
  Attr,
  type Clock,
  type DatagramSocket,
  type Family,
  MessageBuilder,
  MessageClass,
  Method,
  type NatProber,
  PROBE_RETRANSMIT,
  type ProbeAnswer,
  type ProbeRequest,
  type RetransmitOptions,
  StunClient,
  type TransportAddress,
  decodeMessage,
  ipFamily,
} from '@natkit/stun';
import { VnetError } from './core.js';
import type { Host } from './host.js';

// natkit's NAT discovery (discoverNat) over sockets of the virtual network: the same three
// sockets as UdpProber (natcheck's): a primary socket for the mapping tests, a fresh one for
// the filtering tests, and a third that sends the hairpinning request to the primary's mapping.
// StunClient runs over a vnet socket as over a dgram socket (it only uses the DatagramSocket
// part); time is the network's clock.

export interface VnetProberOptions {
  clock: Clock;
  /** Default natcheck's: requests at 0, 250, 750, 1750 ms, given up at 2750 ms. */
  retransmit?: RetransmitOptions;
}

const asDgram = (s: DatagramSocket) => s as unknown as dgram.Socket;

export class VnetProber implements NatProber {
  private readonly waiters = new Map<string, () => void>();
  private primary!: StunClient;
  private filtering!: StunClient;
  private sockets: DatagramSocket[] = [];
  private locals!: Record<'primary' | 'filtering', TransportAddress>;

  private constructor(
    private readonly host: Host,
    private readonly opts: VnetProberOptions,
  ) {}

  static async open(host: Host, server: TransportAddress, options: VnetProberOptions): Promise<VnetProber> {
    const p = new VnetProber(host, options);
    const family = (ipFamily(server.address) ?? 'IPv4') as Family;
    // the local IP the host's routing picks towards the server (UdpProber asks the kernel)
    const iface = host.route(server.address, family);
    if (!iface) throw new VnetError(`${host.name} has no route to ${server.address}`);
    const localIp = iface.address(family)!;
    const a = await host.network.createUdpSocket({ family });
    const b = await host.network.createUdpSocket({ family });
    p.sockets.push(a, b);
    const common = { retransmit: options.retransmit ?? PROBE_RETRANSMIT, clock: options.clock };
    p.primary = new StunClient({
      ...common,
      socket: asDgram(a),
      onUnmatched: (data) => {
        // a hairpinned request arrives here (RFC 5780 section 3.4)
        try {
          const m = decodeMessage(data);
          if (m.cls === MessageClass.Request) p.waiters.get(m.transactionId.toString('hex'))?.();
        } catch {
          // not STUN
        }
      },
    });
    p.filtering = new StunClient({ ...common, socket: asDgram(b) });
    p.locals = {
      primary: { family, address: localIp, port: a.address().port },
      filtering: { family, address: localIp, port: b.address().port },
    };
    return p;
  }

  local(socket: 'primary' | 'filtering'): TransportAddress {
    return this.locals[socket];
  }

  async probe(req: ProbeRequest): Promise<ProbeAnswer | undefined> {
    const client = req.socket === 'primary' ? this.primary : this.filtering;
    try {
      const r = await client.binding(req.to, {
        attributes: req.changeIp || req.changePort ? (b) => b.add(Attr.ChangeRequest, { changeIp: !!req.changeIp, changePort: !!req.changePort }) : undefined,
      });
      return { mapped: r.mapped, otherAddress: r.otherAddress, responseOrigin: r.responseOrigin, from: r.from };
    } catch (err) {
      if ((err as { code?: string }).code === 'TIMEOUT') return undefined;
      throw err;
    }
  }

  async hairpin(mapped: TransportAddress): Promise<boolean> {
    const family = (ipFamily(mapped.address) ?? 'IPv4') as Family;
    const s = await this.host.network.createUdpSocket({ family });
    const sender = new StunClient({ retransmit: this.opts.retransmit ?? PROBE_RETRANSMIT, clock: this.opts.clock, socket: asDgram(s) });
    const b = new MessageBuilder(Method.Binding, MessageClass.Request);
    const key = b.transactionId.toString('hex');
    const abort = new AbortController();
    let arrived = false;
    this.waiters.set(key, () => {
      arrived = true;
      abort.abort();
    });
    try {
      await sender.transact(mapped, b.encode({ fingerprint: true }), b.transactionId, { signal: abort.signal });
    } catch {
      // ABORTED when it arrived, TIMEOUT when it did not
    } finally {
      this.waiters.delete(key);
      await sender.close();
      await new Promise<void>((r) => s.close(() => r()));
    }
    return arrived;
  }

  async close(): Promise<void> {
    await Promise.all([this.primary?.close(), this.filtering?.close()]);
    await Promise.all(this.sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.sockets = [];
  }
}
