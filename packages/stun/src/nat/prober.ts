import * as dgram from 'node:dgram';
import { Attr } from '../codec/attributes.js';
import { MessageClass, Method } from '../codec/constants.js';
import { MessageBuilder } from '../codec/encode.js';
import { type Family, type TransportAddress, canonicalIp, ipFamily, ipToBytes } from '../codec/ip.js';
import { decodeMessage } from '../codec/message.js';
import { StunClient } from '../client/client.js';
import type { RetransmitOptions } from '../client/transaction.js';
import { type Clock, realClock } from '../net/clock.js';
import { type DatagramSocket, type Network, nodeNetwork } from '../net/network.js';
import { NatkitError } from '../errors.js';
import { type NatProber, type NatReport, type ProbeAnswer, type ProbeRequest, discoverNat } from './discovery.js';

export interface UdpProberOptions {
  /**
   * The network to open sockets on (default the operating system's). The local address the
   * report gives is the one the kernel routes to the server from; on another network it is
   * `bindAddress`, or with the wildcard the network's only non-loopback address of the
   * server's family (several or none: an error that asks for `bindAddress`).
   */
  network?: Network;
  /** Local address to bind (default the wildcard of the server's family). */
  bindAddress?: string;
  /** Retransmissions per probe; a probe without answer costs the whole schedule. */
  retransmit?: RetransmitOptions;
  software?: string | false;
  clock?: Clock;
}

/** natcheck's default: sends at 0, 250, 750, 1750 ms, gives up at 2750 ms. */
export const PROBE_RETRANSMIT: RetransmitOptions = { rto: 250, rc: 4, rm: 4 };

/** The local IP the kernel picks to reach `to` (a connected UDP socket, nothing sent). */
function routeSource(family: Family, to: TransportAddress, bindAddress: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket(family === 'IPv6' ? 'udp6' : 'udp4');
    s.once('error', (e) => {
      s.close();
      reject(e);
    });
    s.bind(0, bindAddress, () => {
      s.connect(to.port, to.address, () => {
        const a = s.address().address;
        s.close();
        resolve(a);
      });
    });
  });
}

/** The local IP the report gives for `network` (see UdpProberOptions.network). */
async function localSource(network: Network, family: Family, to: TransportAddress, bindAddress: string): Promise<string> {
  if (network === nodeNetwork) return routeSource(family, to, bindAddress);
  const wildcard = ipFamily(bindAddress) !== undefined && ipToBytes(bindAddress).every((b) => b === 0);
  if (!wildcard) return bindAddress;
  const candidates = network.interfaces().filter((a) => a.family === family && !a.internal);
  if (candidates.length !== 1) {
    throw new NatkitError(
      'NO_LOCAL_ADDRESS',
      `cannot tell which of ${candidates.length} ${family} addresses reaches ${to.address}: give bindAddress`,
    );
  }
  return candidates[0]!.address;
}

/**
 * NatProber over UDP sockets (the kernel's unless `network` says otherwise): a primary
 * socket for the mapping tests, a second one for filtering (fresh, so nothing it sent opened the NAT's filter to the alternate
 * address), and a third that sends the hairpinning request.
 */
export class UdpProber implements NatProber {
  private sockets: DatagramSocket[] = [];
  private clients: StunClient[] = [];
  private primary!: StunClient;
  private filtering!: StunClient;
  private locals!: Record<'primary' | 'filtering', TransportAddress>;
  private hairpinWaiters = new Map<string, () => void>();
  private readonly opts: UdpProberOptions;

  private constructor(opts: UdpProberOptions) {
    this.opts = opts;
  }

  static async open(server: TransportAddress, options: UdpProberOptions = {}): Promise<UdpProber> {
    const p = new UdpProber(options);
    const family = ipFamily(server.address) ?? 'IPv4';
    const bindAddress = options.bindAddress ?? (family === 'IPv6' ? '::' : '0.0.0.0');
    try {
      const network = options.network ?? nodeNetwork;
      const localIp = canonicalIp(await localSource(network, family, server, bindAddress));
      const a = await network.createUdpSocket({ family, address: bindAddress });
      p.sockets.push(a);
      const b = await network.createUdpSocket({ family, address: bindAddress });
      p.sockets.push(b);
      const common = { retransmit: options.retransmit ?? PROBE_RETRANSMIT, software: options.software, clock: options.clock ?? realClock };
      p.primary = new StunClient({
        ...common,
        socket: a,
        onUnmatched: (data) => {
          // A hairpinned request arrives here (RFC 5780 section 3.4).
          try {
            const m = decodeMessage(data);
            if (m.cls === MessageClass.Request) p.hairpinWaiters.get(m.transactionId.toString('hex'))?.();
          } catch {
            // not STUN: ignore
          }
        },
      });
      p.filtering = new StunClient({ ...common, socket: b });
      p.clients.push(p.primary, p.filtering);
      p.locals = {
        primary: { family, address: localIp, port: a.address().port },
        filtering: { family, address: localIp, port: b.address().port },
      };
      return p;
    } catch (err) {
      await p.close();
      throw err;
    }
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
    const family = ipFamily(mapped.address) ?? 'IPv4';
    const sender = new StunClient({
      network: this.opts.network,
      retransmit: this.opts.retransmit ?? PROBE_RETRANSMIT,
      bindAddress: this.opts.bindAddress ?? (family === 'IPv6' ? '::' : '0.0.0.0'),
      software: this.opts.software,
      clock: this.opts.clock,
    });
    const b = new MessageBuilder(Method.Binding, MessageClass.Request);
    const key = b.transactionId.toString('hex');
    const abort = new AbortController();
    let arrived = false;
    this.hairpinWaiters.set(key, () => {
      arrived = true;
      abort.abort();
    });
    try {
      await sender.transact(mapped, b.encode({ fingerprint: true }), b.transactionId, { signal: abort.signal });
    } catch {
      // ABORTED when it arrived, TIMEOUT when it did not.
    } finally {
      this.hairpinWaiters.delete(key);
      await sender.close();
    }
    return arrived;
  }

  async close(): Promise<void> {
    await Promise.all(this.clients.map((c) => c.close()));
    await Promise.all(this.sockets.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.sockets = [];
    this.clients = [];
  }
}

/** Runs the discovery with real sockets against `server` and closes them. */
export async function checkNat(
  server: TransportAddress,
  options: UdpProberOptions & { hairpin?: boolean } = {},
): Promise<NatReport> {
  const prober = await UdpProber.open(server, options);
  try {
    return await discoverNat(prober, server, { hairpin: options.hairpin });
  } finally {
    await prober.close();
  }
}
