// A wire tap for the TURN interop tests: a transparent UDP or TCP forwarder on 127.0.0.1
// between a TURN client nobody here wrote (or natkit's) and a TURN server (natkit's or
// coturn's), counting what each side actually put on the wire: ChannelData frames, Send
// and Data indications, other STUN messages, and the channel numbers seen. natkit's
// metrics count relayed packets but not how they travelled; the tap says whether a peer
// really used channels or indications, from neither side's code.
//
// UDP: one upstream socket per client source address (so the server sees one 5-tuple per
// client, as without the tap). TCP: one upstream connection per client connection; bytes
// are forwarded as they come, and a copy is framed (RFC 8656 section 12.5: STUN is 20 +
// length bytes, ChannelData 4 + length padded to a multiple of 4 on streams) only to count.
import * as dgram from 'node:dgram';
import * as net from 'node:net';

export interface WireCounts {
  /** ChannelData frames (first two bits 01) and their channel numbers. */
  channelData: number;
  channelDataBytes: number;
  channels: Set<number>;
  /** Send indications (0x0016) and Data indications (0x0017). */
  sendIndications: number;
  dataIndications: number;
  /** Other STUN messages by type, e.g. 0x0003 Allocate request, 0x0113 error response. */
  stun: Map<number, number>;
  /** Frames that were neither (a stream out of step counts here once and stops counting). */
  other: number;
}

function emptyCounts(): WireCounts {
  return { channelData: 0, channelDataBytes: 0, channels: new Set(), sendIndications: 0, dataIndications: 0, stun: new Map(), other: 0 };
}

function countFrame(c: WireCounts, f: Buffer): void {
  if (f.length >= 4 && (f[0]! & 0xc0) === 0x40) {
    c.channelData++;
    c.channelDataBytes += f.readUInt16BE(2);
    c.channels.add(f.readUInt16BE(0));
    return;
  }
  if (f.length >= 20 && (f[0]! & 0xc0) === 0 && f.readUInt32BE(4) === 0x2112a442) {
    const type = f.readUInt16BE(0);
    if (type === 0x0016) c.sendIndications++;
    else if (type === 0x0017) c.dataIndications++;
    else c.stun.set(type, (c.stun.get(type) ?? 0) + 1);
    return;
  }
  c.other++;
}

/** Splits a byte stream into STUN / ChannelData frames, for counting only. */
class StreamCounter {
  private buf: Buffer = Buffer.alloc(0);
  private broken = false;
  constructor(private readonly counts: WireCounts) {}
  push(chunk: Buffer): void {
    if (this.broken) return;
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 4) {
      const kind = this.buf[0]! >> 6;
      const len = this.buf.readUInt16BE(2);
      let total: number;
      if (kind === 0) total = 20 + len;
      else if (kind === 1) total = 4 + ((len + 3) & ~3);
      else {
        this.counts.other++;
        this.broken = true;
        return;
      }
      if (this.buf.length < total) return;
      countFrame(this.counts, this.buf.subarray(0, kind === 1 ? 4 + len : total));
      this.buf = this.buf.subarray(total);
    }
  }
}

export interface TurnTap {
  transport: 'udp' | 'tcp';
  address: string;
  port: number;
  /** Client to server, and server to client. */
  toServer: WireCounts;
  toClient: WireCounts;
  /** Distinct client 5-tuples (UDP sources or TCP connections) seen. */
  readonly flows: number;
  close(): Promise<void>;
}

/** Starts a tap on 127.0.0.1, port 0, forwarding to `target`. */
export async function startTurnTap(transport: 'udp' | 'tcp', target: { address: string; port: number }): Promise<TurnTap> {
  return transport === 'udp' ? startUdpTap(target) : startTcpTap(target);
}

async function startUdpTap(target: { address: string; port: number }): Promise<TurnTap> {
  const toServer = emptyCounts();
  const toClient = emptyCounts();
  const front = dgram.createSocket('udp4');
  const upstream = new Map<string, dgram.Socket>();
  const pending = new Map<string, Buffer[]>();
  let closed: Promise<void> | undefined;
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.bind(0, '127.0.0.1', () => {
      front.off('error', reject);
      resolve();
    });
  });
  front.on('message', (msg, rinfo) => {
    countFrame(toServer, msg);
    const key = `${rinfo.address}:${rinfo.port}`;
    const up = upstream.get(key);
    if (up) {
      const queued = pending.get(key);
      if (queued) queued.push(msg);
      else up.send(msg, target.port, target.address);
      return;
    }
    const s = dgram.createSocket('udp4');
    upstream.set(key, s);
    pending.set(key, [msg]);
    s.on('message', (back) => {
      countFrame(toClient, back);
      front.send(back, rinfo.port, rinfo.address);
    });
    s.on('error', () => {});
    s.bind(0, '127.0.0.1', () => {
      for (const m of pending.get(key) ?? []) s.send(m, target.port, target.address);
      pending.delete(key);
    });
  });
  return {
    transport: 'udp',
    address: '127.0.0.1',
    port: front.address().port,
    toServer,
    toClient,
    get flows() {
      return upstream.size;
    },
    async close() {
      if (closed) return closed;
      closed = Promise.all([front, ...upstream.values()].map((s) => new Promise<void>((r) => s.close(() => r())))).then(() => {});
      return closed;
    },
  };
}

async function startTcpTap(target: { address: string; port: number }): Promise<TurnTap> {
  const toServer = emptyCounts();
  const toClient = emptyCounts();
  const sockets = new Set<net.Socket>();
  let flows = 0;
  let closed: Promise<void> | undefined;
  const track = (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  };
  const server = net.createServer((down) => {
    flows++;
    track(down);
    down.setNoDelay(true);
    const up = net.connect({ host: target.address, port: target.port });
    track(up);
    up.setNoDelay(true);
    const cs = new StreamCounter(toServer);
    const cc = new StreamCounter(toClient);
    down.on('data', (d: Buffer) => {
      cs.push(d);
      up.write(d);
    });
    up.on('data', (d: Buffer) => {
      cc.push(d);
      down.write(d);
    });
    // A close on either side closes the other (TURN over TCP: the allocation lives as long
    // as the connection), errors included.
    down.on('end', () => up.end());
    up.on('end', () => down.end());
    down.on('close', () => up.destroy());
    up.on('close', () => down.destroy());
    down.on('error', () => down.destroy());
    up.on('error', () => up.destroy());
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve();
    });
  });
  return {
    transport: 'tcp',
    address: '127.0.0.1',
    port: (server.address() as net.AddressInfo).port,
    toServer,
    toClient,
    get flows() {
      return flows;
    },
    async close() {
      if (closed) return closed;
      const stopped = new Promise<void>((r) => server.close(() => r()));
      const ends = [...sockets].map((s) => new Promise<void>((r) => (s.destroyed ? r() : (s.once('close', () => r()), s.destroy()))));
      closed = Promise.all([stopped, ...ends]).then(() => {});
      return closed;
    },
  };
}

/** A one-line summary for failure messages. */
export function describeCounts(c: WireCounts): string {
  const stun = [...c.stun].map(([t, n]) => `0x${t.toString(16).padStart(4, '0')}x${n}`).join(' ');
  return `ChannelData ${c.channelData} (${c.channelDataBytes} B, channels ${[...c.channels].map((n) => `0x${n.toString(16)}`).join(',') || '-'}), Send ${c.sendIndications}, Data ${c.dataIndications}, other STUN [${stun}], unknown ${c.other}`;
}
