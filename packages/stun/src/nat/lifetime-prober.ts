import { Attr, softwareText } from '../codec/attributes.js';
import { ErrorCode, MessageClass, Method } from '../codec/constants.js';
import { MessageBuilder } from '../codec/encode.js';
import { type Family, type TransportAddress, canonicalIp, formatAddress, ipFamily } from '../codec/ip.js';
import { type StunMessage, decodeMessage } from '../codec/message.js';
import { type RetransmitOptions, TransactionTimer } from '../client/transaction.js';
import { type Clock, realClock } from '../net/clock.js';
import { type DatagramSocket, type Network, nodeNetwork } from '../net/network.js';
import { type LifetimeOptions, type LifetimePort, type LifetimeProber, type LifetimeReport, LifetimeError, discoverBindingLifetime } from './lifetime.js';
import { PROBE_RETRANSMIT } from './prober.js';

export interface UdpLifetimeProberOptions {
  /** The network to open sockets on (default the operating system's). */
  network?: Network;
  /** Local address for every socket (default the wildcard of the server's family). */
  bindAddress?: string;
  /** Retransmissions of each request (default natcheck's: 0, 250, 750, 1750 ms, gives up at 2750). */
  retransmit?: RetransmitOptions;
  software?: string | false;
  clock?: Clock;
}

type Where = { socket: DatagramSocket; message: StunMessage };

/**
 * The lifetime test's sockets (RFC 5780 section 4.6): one port Y for the probes, opened at
 * once, and a fresh port X for each `open()`. Every socket hears every answer, so a probe's
 * answer is matched by transaction id wherever it arrives: on its X (the mapping lives), on Y
 * (the NAT gave the expired mapping's port to Y), nowhere.
 */
export class UdpLifetimeProber implements LifetimeProber {
  private readonly sockets = new Set<DatagramSocket>();
  private readonly waiters = new Map<string, (w: Where) => void>();
  private readonly cancels = new Set<() => void>();
  private readonly clock: Clock;
  private readonly software: string | undefined;
  private readonly family: Family;
  private y!: DatagramSocket;
  private closed = false;

  private constructor(
    readonly server: TransportAddress,
    private readonly opts: UdpLifetimeProberOptions,
  ) {
    this.clock = opts.clock ?? realClock;
    this.software = opts.software === false ? undefined : softwareText(opts.software ?? 'natkit');
    this.family = ipFamily(server.address) ?? 'IPv4';
  }

  static async open(server: TransportAddress, options: UdpLifetimeProberOptions = {}): Promise<UdpLifetimeProber> {
    const p = new UdpLifetimeProber({ ...server, address: canonicalIp(server.address) }, options);
    p.y = await p.socket();
    return p;
  }

  private async socket(): Promise<DatagramSocket> {
    if (this.closed) throw new LifetimeError('ABORTED', 'the prober is closed');
    const s = await (this.opts.network ?? nodeNetwork).createUdpSocket({ family: this.family, address: this.opts.bindAddress });
    s.on('error', () => {
      // a send that failed is a request that got no answer; the transaction times out
    });
    s.on('message', (buf) => {
      let m: StunMessage;
      try {
        m = decodeMessage(buf);
      } catch {
        return; // not STUN
      }
      if (m.cls !== MessageClass.SuccessResponse && m.cls !== MessageClass.ErrorResponse) return;
      this.waiters.get(m.transactionId.toString('hex'))?.({ socket: s, message: m });
    });
    this.sockets.add(s);
    return s;
  }

  /** One Binding transaction sent from `from`, retransmitted (RFC 8489 6.2.1); where its answer arrived. */
  private transact(from: DatagramSocket, build: (b: MessageBuilder) => void): Promise<Where | undefined> {
    const b = new MessageBuilder(Method.Binding, MessageClass.Request);
    build(b);
    if (this.software) b.add(Attr.Software, this.software);
    const bytes = b.encode({ fingerprint: true });
    const key = b.transactionId.toString('hex');
    return new Promise((resolve) => {
      const timer = new TransactionTimer(this.clock.now(), this.opts.retransmit ?? PROBE_RETRANSMIT);
      let handle: unknown;
      const send = () => from.send(bytes, this.server.port, this.server.address);
      const finish = (w: Where | undefined) => {
        timer.finish();
        this.clock.clearTimeout(handle);
        this.waiters.delete(key);
        this.cancels.delete(cancel);
        resolve(w);
      };
      const cancel = () => finish(undefined);
      const schedule = () => {
        const at = timer.nextTimeout();
        if (at !== undefined) handle = this.clock.setTimeout(onTimer, Math.max(0, at - this.clock.now()));
      };
      const onTimer = () => {
        const action = timer.onTimeout(this.clock.now());
        if (action === 'timeout') return finish(undefined);
        if (action === 'retransmit') send();
        schedule();
      };
      this.waiters.set(key, finish);
      this.cancels.add(cancel);
      send();
      schedule();
    });
  }

  async open(): Promise<LifetimePort> {
    const x = await this.socket();
    const server = formatAddress(this.server);
    return {
      bind: async () => {
        const w = await this.transact(x, () => {});
        if (!w || w.socket !== x) return undefined;
        if (w.message.cls === MessageClass.ErrorResponse) {
          const e = w.message.get(Attr.ErrorCode);
          throw new LifetimeError('NO_ANSWER', `${server} answered a Binding request with ${e?.code ?? '?'} ${e?.reason ?? ''}`.trim());
        }
        return w.message.get(Attr.XorMappedAddress) ?? w.message.get(Attr.MappedAddress);
      },
      probe: async (mapped) => {
        // RFC 5780 section 7.5: the answer goes to the request's source IP and this port
        const w = await this.transact(this.y, (b) => b.add(Attr.ResponsePort, mapped.port));
        if (!w) return 'none';
        if (w.message.cls === MessageClass.ErrorResponse) {
          const e = w.message.get(Attr.ErrorCode);
          if (e?.code === ErrorCode.UnknownAttribute) {
            throw new LifetimeError('RESPONSE_PORT_UNSUPPORTED', `${server} answered 420 (Unknown Attribute) to RESPONSE-PORT: it does not do RFC 5780 section 7.5`);
          }
          throw new LifetimeError('NO_ANSWER', `${server} answered a request with RESPONSE-PORT with ${e?.code ?? '?'} ${e?.reason ?? ''}`.trim());
        }
        // on this X: the mapping lives; anywhere else (Y, or another X): it expired and the
        // NAT handed its public port to a new mapping
        return w.socket === x ? 'x' : 'y';
      },
      close: async () => {
        this.sockets.delete(x);
        await new Promise<void>((r) => x.close(() => r()));
      },
    };
  }

  /** Ends every transaction and closes every socket. */
  async close(): Promise<void> {
    this.closed = true;
    for (const c of [...this.cancels]) c();
    const all = [...this.sockets];
    this.sockets.clear();
    await Promise.all(all.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

/** RFC 5780 section 4.6 with real sockets against `server`; closes them before it returns. */
export async function checkBindingLifetime(server: TransportAddress, options: UdpLifetimeProberOptions & LifetimeOptions = {}): Promise<LifetimeReport> {
  const prober = await UdpLifetimeProber.open(server, options);
  try {
    return await discoverBindingLifetime(prober, server, options);
  } finally {
    await prober.close();
  }
}
