import { readFileSync } from 'node:fs';
import * as net from 'node:net';
import { describe, expect, it } from 'vitest';
import {
  Attr,
  AttrType,
  ManualClock,
  MessageBuilder,
  MessageClass,
  Method,
  StunClient,
  StunServer,
  StunServerError,
  StunTransactionError,
  decodeMessage,
  verifyFingerprint,
} from '../src/index.js';
import { type RawUdp, openRawUdp } from '../../../test/helpers/udp.js';
import { MemorySegment, inbox } from '../../../test/helpers/memnet.js';
import { useCleanup } from '../../../test/helpers/cleanup.js';

const fixtures = new URL('../../../test/fixtures/', import.meta.url);
const cert = readFileSync(new URL('tls-cert.pem', fixtures));
const key = readFileSync(new URL('tls-key.pem', fixtures));

const { defer, track } = useCleanup();

async function server(opts: Parameters<typeof StunServer.start>[0]): Promise<StunServer> {
  const s = await StunServer.start({ port: 0, ...opts });
  defer(() => s.close());
  return s;
}
function client(opts: ConstructorParameters<typeof StunClient>[0] = {}): StunClient {
  const c = new StunClient({ retransmit: { rto: 200, rc: 4, rm: 8 }, ...opts });
  defer(() => c.close());
  return c;
}

async function rawSocket(): Promise<RawUdp> {
  const r = await openRawUdp();
  defer(() => r.close());
  return r;
}

describe('stunserver, basic mode', () => {
  it('answers a Binding request over UDP with XOR-MAPPED-ADDRESS and SOFTWARE', async () => {
    const s = await server({ address: '127.0.0.1' });
    const c = client();
    const local = await c.localAddress();
    const r = await c.binding({ address: '127.0.0.1', port: s.listening[0]!.port });
    expect(r.mapped).toEqual({ family: 'IPv4', address: '127.0.0.1', port: local.port });
    expect(r.message.has(AttrType.XOR_MAPPED_ADDRESS)).toBe(true);
    expect(r.message.has(AttrType.MAPPED_ADDRESS)).toBe(false);
    // Padded with spaces to a multiple of 4 bytes for RFC 3489 parsers (softwareText).
    expect(r.software).toBe('natkit  ');
    // Basic mode serves no behaviour discovery, so no OTHER-ADDRESS.
    expect(r.otherAddress).toBeUndefined();
    expect(verifyFingerprint(r.message)).toBe(true);
    expect(s.stats.responses).toBe(1);
  });

  it('answers over TCP on the same port, and over TLS', async () => {
    const s = await server({ address: '127.0.0.1', tls: { cert, key, port: 0 } });
    const c = client();
    const tcp = s.listening.find((l) => l.transport === 'tcp')!;
    const r = await c.binding({ address: '127.0.0.1', port: tcp.port, transport: 'tcp' });
    expect(r.mapped.address).toBe('127.0.0.1');
    expect(r.mapped.port).toBe(r.local.port);
    const tlsL = s.listening.find((l) => l.transport === 'tls')!;
    const t = await c.binding({ address: '127.0.0.1', port: tlsL.port, transport: 'tls', servername: 'natkit.test', tls: { ca: cert } });
    expect(t.mapped.address).toBe('127.0.0.1');
    expect(t.mapped.port).toBe(t.local.port);
  });

  it('answers an IPv6 client with an IPv6 XOR-MAPPED-ADDRESS', async () => {
    const s = await server({ address: '::1' });
    const c = client();
    const r = await c.binding({ address: '::1', port: s.listening[0]!.port });
    expect(r.mapped.family).toBe('IPv6');
    expect(r.mapped.address).toBe('::1');
    expect(r.mapped.port).toBe((await c.localAddress('IPv6')).port);
  });

  it('answers CHANGE-REQUEST with 420 when it has only one address', async () => {
    expect.assertions(2);
    const s = await server({ address: '127.0.0.1' });
    const c = client();
    try {
      await c.binding({ address: '127.0.0.1', port: s.listening[0]!.port }, { attributes: (b) => b.add(Attr.ChangeRequest, { changeIp: true, changePort: false }) });
    } catch (e) {
      expect(e).toBeInstanceOf(StunTransactionError);
      expect((e as StunTransactionError).errorCode).toBe(420);
    }
  });

  it('answers an unknown comprehension-required attribute with 420 listing it', async () => {
    const s = await server({ address: '127.0.0.1' });
    const { send, next } = await rawSocket();
    const req = new MessageBuilder(Method.Binding, MessageClass.Request).addRaw(0x7777, Buffer.from('x')).encode({ fingerprint: true });
    send(req, s.listening[0]!.port, '127.0.0.1');
    const [res] = await next();
    const m = decodeMessage(res);
    expect(m.cls).toBe(MessageClass.ErrorResponse);
    expect(m.get(Attr.ErrorCode)!.code).toBe(420);
    expect(m.get(Attr.UnknownAttributes)).toEqual([0x7777]);
    expect(m.transactionId.equals(decodeMessage(req).transactionId)).toBe(true);
    expect(verifyFingerprint(m)).toBe(true);
  });

  it('answers another method with 400 and ignores indications', async () => {
    const s = await server({ address: '127.0.0.1' });
    const { send, next } = await rawSocket();
    const port = s.listening[0]!.port;
    send(new MessageBuilder(Method.Binding, MessageClass.Indication).encode(), port, '127.0.0.1');
    send(new MessageBuilder(Method.Allocate, MessageClass.Request).encode(), port, '127.0.0.1');
    const [res] = await next();
    const m = decodeMessage(res);
    expect(m.method).toBe(Method.Allocate);
    expect(m.get(Attr.ErrorCode)!.code).toBe(400);
    expect(s.stats.dropped.notRequest).toBe(1);
  });

  it('drops garbage, truncated and bad-fingerprint packets, counts them, and keeps serving', async () => {
    const s = await server({ address: '127.0.0.1' });
    const { send } = await rawSocket();
    const port = s.listening[0]!.port;
    const good = new MessageBuilder(Method.Binding, MessageClass.Request).encode({ fingerprint: true });
    const badFp = Buffer.from(good);
    badFp[badFp.length - 1]! ^= 1;
    const junk = [Buffer.from('GET / HTTP/1.1\r\n\r\n'), Buffer.alloc(0), good.subarray(0, 19), Buffer.concat([good, Buffer.from([0])]), badFp, Buffer.alloc(64, 0)];
    for (const j of junk) await send(j, port, '127.0.0.1');
    // A request sent after the junk is answered, so the junk has been seen by then.
    const c = client();
    await c.binding({ address: '127.0.0.1', port });
    const d = s.stats.dropped;
    expect(d.notStun).toBe(3); // the HTTP text, the empty datagram, 19 bytes (shorter than a header)
    expect(d.malformed).toBe(2); // a trailing byte; zeros whose length field says 20 bytes
    expect(d.badFingerprint).toBe(1);
    expect(s.stats.responses).toBe(1);
  });

  it('rate-limits error answers per source', async () => {
    // The injected clock stands still: a slow run cannot refill the bucket and change the count.
    const s = await server({ address: '127.0.0.1', errorRate: 1, errorBurst: 3, clock: new ManualClock(0) });
    const { send, next } = await rawSocket();
    const port = s.listening[0]!.port;
    for (let i = 0; i < 10; i++) send(new MessageBuilder(Method.Allocate, MessageClass.Request).encode(), port, '127.0.0.1');
    const c = client();
    await c.binding({ address: '127.0.0.1', port });
    for (let i = 0; i < 3; i++) expect(decodeMessage((await next())[0]).get(Attr.ErrorCode)!.code).toBe(400);
    expect(s.stats.errors[400]).toBe(3);
    expect(s.stats.dropped.rateLimited).toBe(7);
  });

  it('answers CHANGE-REQUEST and RESPONSE-PORT over TCP with 420 (behaviour discovery is UDP only)', async () => {
    const s = await server({ address: '127.0.0.1', alternateAddress: '127.0.0.2' });
    const c = client();
    const tcp = { address: '127.0.0.1', port: s.listening.find((l) => l.transport === 'tcp')!.port, transport: 'tcp' as const };
    const change = c.binding(tcp, { attributes: (b) => b.add(Attr.ChangeRequest, { changeIp: true, changePort: false }) });
    await expect(change).rejects.toMatchObject({ code: 'ERROR_RESPONSE', errorCode: 420 });
    const port = c.binding(tcp, { attributes: (b) => b.add(Attr.ResponsePort, 40000) });
    await expect(port).rejects.toMatchObject({ code: 'ERROR_RESPONSE', errorCode: 420 });
    // A plain Binding on the same connection is answered.
    expect((await c.binding(tcp)).mapped.address).toBe('127.0.0.1');
  });

  it('closes a TCP connection that sends bytes that are not STUN', async () => {
    // No idle timeout within the test's time: only the framing check may close it.
    const s = await server({ address: '127.0.0.1', udp: false, idleTimeoutMs: 600_000 });
    const port = s.listening.find((l) => l.transport === 'tcp')!.port;
    const sock = net.connect(port, '127.0.0.1');
    const closed = new Promise<void>((r) => sock.on('close', () => r()));
    sock.on('error', () => {});
    sock.write('\xff\xff garbage that is not STUN');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      closed,
      new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error('the server did not close the connection')), 5000))),
    ]).finally(() => {
      clearTimeout(timer);
      sock.destroy();
    });
    expect(s.streamDrops).toEqual({ refused: 0, badFraming: 1, idle: 0 });
  });
});

describe('stunserver, RFC 5780 full mode on 127.0.0.1 and 127.0.0.2', () => {
  it('listens on four UDP sockets A:P, A:P2, A2:P, A2:P2', async () => {
    const s = await server({ address: '127.0.0.1', alternateAddress: '127.0.0.2' });
    const udp = s.listening.filter((l) => l.transport === 'udp');
    expect(udp).toHaveLength(4);
    const [ap, ap2, a2p, a2p2] = udp;
    expect([ap!.address, ap2!.address, a2p!.address, a2p2!.address]).toEqual(['127.0.0.1', '127.0.0.1', '127.0.0.2', '127.0.0.2']);
    expect(a2p!.port).toBe(ap!.port);
    expect(a2p2!.port).toBe(ap2!.port);
    expect(ap2!.port).not.toBe(ap!.port);
    expect(s.full).toBe(true);
  });

  it('answers CHANGE-REQUEST from the right socket, with OTHER-ADDRESS and RESPONSE-ORIGIN', async () => {
    const s = await server({ address: '127.0.0.1', alternateAddress: '127.0.0.2' });
    const [ap, ap2, a2p, a2p2] = s.listening.filter((l) => l.transport === 'udp').map((l) => ({ family: 'IPv4', address: l.address, port: l.port }));
    const c = client();
    const cases: Array<[boolean, boolean, typeof ap]> = [
      [false, false, ap],
      [false, true, ap2],
      [true, false, a2p],
      [true, true, a2p2],
    ];
    for (const [changeIp, changePort, expected] of cases) {
      const r = await c.binding({ address: '127.0.0.1', port: ap!.port }, { attributes: (b) => b.add(Attr.ChangeRequest, { changeIp, changePort }) });
      expect(r.from).toEqual(expected);
      expect(r.responseOrigin).toEqual(expected);
      expect(r.otherAddress).toEqual(a2p2);
    }
    // A request to A2:P has OTHER-ADDRESS A:P2.
    const r = await c.binding({ address: '127.0.0.2', port: a2p!.port });
    expect(r.otherAddress).toEqual(ap2);
    expect(r.responseOrigin).toEqual(a2p);
  });

  it('sends the answer to RESPONSE-PORT, and pads it when asked for PADDING', async () => {
    const s = await server({ address: '127.0.0.1', alternateAddress: '127.0.0.2' });
    const port = s.listening[0]!.port;
    const a = await rawSocket();
    const b = await rawSocket();
    const bPort = b.port;
    const req = new MessageBuilder(Method.Binding, MessageClass.Request).add(Attr.ResponsePort, bPort).encode();
    a.send(req, port, '127.0.0.1');
    const [res] = await b.next();
    const m = decodeMessage(res);
    expect(m.transactionId.equals(decodeMessage(req).transactionId)).toBe(true);
    // The mapped address is that of the socket the request came from.
    expect(m.get(Attr.XorMappedAddress)!.port).toBe(a.port);

    const padded = new MessageBuilder(Method.Binding, MessageClass.Request).add(Attr.Padding, Buffer.alloc(200)).encode();
    a.send(padded, port, '127.0.0.1');
    const [pres] = await a.next();
    const pm = decodeMessage(pres);
    expect(pm.get(Attr.Padding)!.length).toBe(1500);

    // RFC 5780 section 6.1: PADDING with RESPONSE-PORT is refused with 400.
    const both = new MessageBuilder(Method.Binding, MessageClass.Request).add(Attr.ResponsePort, bPort).add(Attr.Padding, Buffer.alloc(8)).encode();
    a.send(both, port, '127.0.0.1');
    const [eres] = await a.next();
    expect(decodeMessage(eres).get(Attr.ErrorCode)!.code).toBe(400);
  });

  it('answers an RFC 3489 request (no magic cookie) with MAPPED-ADDRESS, SOURCE-ADDRESS and CHANGED-ADDRESS', async () => {
    const s = await server({ address: '127.0.0.1', alternateAddress: '127.0.0.2' });
    const [ap, , , a2p2] = s.listening.filter((l) => l.transport === 'udp');
    const raw = await rawSocket();
    const { send, next } = raw;
    const tid = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
    const req = new MessageBuilder(Method.Binding, MessageClass.Request, tid).add(Attr.ChangeRequest, { changeIp: false, changePort: false }).encode();
    send(req, ap!.port, '127.0.0.1');
    const [res] = await next();
    const m = decodeMessage(res);
    expect(m.rfc3489).toBe(true);
    expect(m.transactionId.equals(tid)).toBe(true);
    expect(m.get(Attr.MappedAddress)).toEqual({ family: 'IPv4', address: '127.0.0.1', port: raw.port });
    expect(m.has(AttrType.XOR_MAPPED_ADDRESS)).toBe(false);
    expect(m.get(Attr.SourceAddress)).toEqual({ family: 'IPv4', address: ap!.address, port: ap!.port });
    expect(m.get(Attr.ChangedAddress)).toEqual({ family: 'IPv4', address: a2p2!.address, port: a2p2!.port });
  });

  it('answers RESPONSE-PORT 0 with 400 and ignores a source port of 0 (it cannot be sent to)', async () => {
    const s = await server({ address: '127.0.0.1', alternateAddress: '127.0.0.2' });
    const raw = await rawSocket();
    raw.send(new MessageBuilder(Method.Binding, MessageClass.Request).add(Attr.ResponsePort, 0).encode(), s.listening[0]!.port, '127.0.0.1');
    const [res] = await raw.next();
    expect(decodeMessage(res).get(Attr.ErrorCode)!.code).toBe(400);
    const req = new MessageBuilder(Method.Binding, MessageClass.Request).encode();
    expect(s.service.handleDatagram(req, { family: 'IPv4', address: '127.0.0.1', port: 0 }, 0, 0)).toBeUndefined();
    expect(s.stats.dropped.malformed).toBe(1);
  });

  it('refuses a wildcard, mismatched or identical alternate address', async () => {
    const cases: Array<[Parameters<typeof StunServer.start>[0], RegExp]> = [
      [{ port: 0, address: '0.0.0.0', alternateAddress: '127.0.0.2' }, /specific/],
      [{ port: 0, address: '127.0.0.1', alternateAddress: '::1' }, /family/],
      [{ port: 0, address: '127.0.0.1', alternateAddress: '127.0.0.1' }, /must differ/],
    ];
    expect.assertions(cases.length * 2);
    for (const [opts, message] of cases) {
      const err = await StunServer.start(opts).then(
        (s) => s.close(),
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(StunServerError);
      expect(err).toMatchObject({ code: 'CONFIG', message: expect.stringMatching(message) });
    }
  });
});

describe('stunserver over an injected Network (in memory, no kernel sockets)', () => {
  it('opens its four RFC 5780 sockets on the given network and answers CHANGE-REQUEST from the right one', async () => {
    const segment = new MemorySegment();
    const host = segment.host('192.0.2.1', '192.0.2.2');
    const s = await server({ address: '192.0.2.1', alternateAddress: '192.0.2.2', tcp: false, network: host });
    const udp = s.listening.filter((l) => l.transport === 'udp');
    expect(udp.map((l) => l.address)).toEqual(['192.0.2.1', '192.0.2.1', '192.0.2.2', '192.0.2.2']);
    expect(segment.open).toBe(4);
    const client = await segment.host('198.51.100.9').createUdpSocket({ family: 'IPv4', address: '198.51.100.9' });
    defer(() => new Promise<void>((r) => client.close(() => r())));
    const box = inbox(client);
    const req = new MessageBuilder(Method.Binding, MessageClass.Request).add(Attr.ChangeRequest, { changeIp: true, changePort: true }).encode();
    client.send(req, udp[0]!.port, '192.0.2.1');
    const [res, from] = await box.next();
    const m = decodeMessage(res);
    expect(m.get(Attr.XorMappedAddress)).toEqual({ family: 'IPv4', address: '198.51.100.9', port: client.address().port });
    // Changed IP and port: from A2:P2, and RESPONSE-ORIGIN says so.
    expect({ address: from.address, port: from.port }).toEqual({ address: '192.0.2.2', port: udp[3]!.port });
    expect(m.get(Attr.ResponseOrigin)).toEqual({ family: 'IPv4', address: '192.0.2.2', port: udp[3]!.port });
    await s.close();
    expect(segment.open).toBe(1); // only the client's
  });

  it('fails to start with the network\'s bind error (an address the host does not have)', async () => {
    const host = new MemorySegment().host('192.0.2.1');
    await expect(StunServer.start({ address: '192.0.2.7', port: 3478, tcp: false, network: host })).rejects.toMatchObject({ name: 'StunServerError', code: 'LISTEN', errno: 'EADDRNOTAVAIL', message: expect.stringMatching(/^cannot listen on udp 192\.0\.2\.7:3478: /) });
  });
});
