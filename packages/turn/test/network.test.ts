// The relay over an injected Network: every UDP socket it opens (listening and relayed)
// comes from the network it is given, the interface addresses its peer policy refuses
// too, and time from a ManualClock. Here an in-memory network (test/helpers/memnet.ts)
// stands in for the kernel: no real socket is opened.
import { describe, expect, it } from 'vitest';
import {
  Attr,
  type DatagramSocket,
  ManualClock,
  MessageBuilder,
  MessageClass,
  Method,
  type StunMessage,
  type TransportAddress,
  decodeMessage,
  longTermKey,
} from '@natkit/stun';
import { TRANSPORT_UDP, TurnAttr, TurnServer, decodeChannelData, encodeChannelData, parseUsers, turnRegistry } from '../src/index.js';
import { MemorySegment, inbox } from '../../../test/helpers/memnet.js';
import { useCleanup } from '../../../test/helpers/cleanup.js';

const { defer, track } = useCleanup();

async function open(host: ReturnType<MemorySegment['host']>, address: string): Promise<DatagramSocket> {
  const s = await host.createUdpSocket({ family: 'IPv4', address });
  defer(() => new Promise<void>((r) => s.close(() => r())));
  return s;
}

describe('the relay over an in-memory network with a manual clock', () => {
  it('allocates, refuses its own interface address as a peer, relays both ways, and expires on the clock', async () => {
    const segment = new MemorySegment();
    // The relay's host has a second, public, address it does not listen on: its interfaces.
    const relayHost = segment.host('192.0.2.10', '203.0.113.5');
    const clock = new ManualClock(0);
    const s = track(await TurnServer.start({ network: relayHost, listen: ['192.0.2.10'], port: 3478, tcp: false, clock, users: parseUsers('alice:pw') }));
    expect(s.listening).toEqual([{ transport: 'udp', family: 'IPv4', address: '192.0.2.10', port: 3478 }]);
    expect(segment.open).toBe(1);

    const client = await open(segment.host('198.51.100.20'), '198.51.100.20');
    const peerSock = await open(segment.host('198.51.100.30'), '198.51.100.30');
    const fromServer = inbox(client);
    const atPeer = inbox(peerSock);
    const server = { address: '192.0.2.10', port: 3478 };
    const peer: TransportAddress = { family: 'IPv4', address: '198.51.100.30', port: peerSock.address().port };

    let realm = '';
    let nonce = '';
    const ask = async (method: number, add: (b: MessageBuilder) => void, sign = true): Promise<StunMessage> => {
      const b = new MessageBuilder(method, MessageClass.Request);
      add(b);
      if (sign) b.add(Attr.Username, 'alice').add(Attr.Realm, realm).add(Attr.Nonce, nonce);
      const req = b.encode(sign ? { integrity: { key: longTermKey('alice', realm, 'pw') } } : {});
      client.send(req, server.port, server.address);
      const [res] = await fromServer.next();
      const m = decodeMessage(res, { registry: turnRegistry });
      expect(m.transactionId.equals(req.subarray(8, 20))).toBe(true);
      return m;
    };
    const code = (m: StunMessage) => (m.cls === MessageClass.SuccessResponse ? 'success' : m.get(Attr.ErrorCode)!.code);

    const challenge = await ask(Method.Allocate, (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP), false);
    expect(code(challenge)).toBe(401);
    realm = challenge.get(Attr.Realm)!;
    nonce = challenge.get(Attr.Nonce)!;
    const ok = await ask(Method.Allocate, (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP));
    expect(code(ok)).toBe('success');
    const relayed = ok.get(TurnAttr.XorRelayedAddress)!;
    expect(relayed.address).toBe('192.0.2.10');
    expect(relayed.port).toBeGreaterThanOrEqual(49152);
    expect(ok.get(Attr.XorMappedAddress)).toEqual({ family: 'IPv4', address: '198.51.100.20', port: client.address().port });
    // The relayed socket was opened on the injected network too.
    expect(segment.open).toBe(1 + 2 + 1);

    // 203.0.113.5 is a public address, refused only because the network says it is one of
    // the relay host's own.
    expect(code(await ask(Method.CreatePermission, (b) => b.add(TurnAttr.XorPeerAddress, { family: 'IPv4', address: '203.0.113.5', port: 9 })))).toBe(403);
    expect(code(await ask(Method.CreatePermission, (b) => b.add(TurnAttr.XorPeerAddress, peer)))).toBe('success');

    // Send indication out, Data indication back.
    client.send(new MessageBuilder(Method.Send, MessageClass.Indication).add(TurnAttr.XorPeerAddress, peer).add(TurnAttr.Data, Buffer.from('hi peer')).encode(), server.port, server.address);
    const [out, outFrom] = await atPeer.next();
    expect(out.toString()).toBe('hi peer');
    expect({ address: outFrom.address, port: outFrom.port }).toEqual({ address: relayed.address, port: relayed.port });
    peerSock.send(Buffer.from('hi client'), relayed.port, relayed.address);
    const data = decodeMessage((await fromServer.next())[0], { registry: turnRegistry });
    expect(data.method).toBe(Method.Data);
    expect(data.get(TurnAttr.Data)!.toString()).toBe('hi client');
    expect(data.get(TurnAttr.XorPeerAddress)).toEqual(peer);

    // A channel: ChannelData both ways.
    expect(code(await ask(Method.ChannelBind, (b) => b.add(TurnAttr.ChannelNumber, 0x4001).add(TurnAttr.XorPeerAddress, peer)))).toBe('success');
    client.send(encodeChannelData(0x4001, Buffer.from('by channel')), server.port, server.address);
    expect((await atPeer.next())[0].toString()).toBe('by channel');
    peerSock.send(Buffer.from('back by channel'), relayed.port, relayed.address);
    expect(decodeChannelData((await fromServer.next())[0])).toMatchObject({ channel: 0x4001, data: Buffer.from('back by channel') });

    // The manual clock runs the server's sweep: at 600 s the allocation ends and its
    // relayed socket is closed on the network.
    clock.advance(599_000);
    expect(s.allocationCount).toBe(1);
    clock.advance(2_000);
    expect(s.allocationCount).toBe(0);
    expect(segment.open).toBe(1 + 2);
    const lost = segment.undeliverable;
    peerSock.send(Buffer.from('too late'), relayed.port, relayed.address);
    // A Binding request sent after it is answered once the late datagram has been handled.
    expect(code(await ask(Method.Binding, () => {}, false))).toBe('success');
    expect(segment.undeliverable).toBe(lost + 1);
    expect(fromServer.queued).toBe(0);
    await s.close();
    expect(segment.open).toBe(2);
  });

  it('logs failed authentications at warn, at most one line a second, saying how many it left out, and counts every one', async () => {
    const segment = new MemorySegment();
    const clock = new ManualClock(0);
    const lines: Array<{ level: string; msg: string; fields?: Record<string, unknown> }> = [];
    const s = track(
      await TurnServer.start({
        network: segment.host('192.0.2.10'),
        listen: ['192.0.2.10'],
        port: 3478,
        tcp: false,
        clock,
        users: parseUsers('alice:pw'),
        log: (level, msg, fields) => lines.push({ level, msg, fields }),
      }),
    );
    const sock = await open(segment.host('198.51.100.20'), '198.51.100.20');
    const box = inbox(sock);
    const ask = async (b: MessageBuilder, key?: Buffer): Promise<StunMessage> => {
      const req = b.encode(key ? { integrity: { key } } : {});
      sock.send(req, 3478, '192.0.2.10');
      return decodeMessage((await box.next())[0], { registry: turnRegistry });
    };
    const challenge = await ask(new MessageBuilder(Method.Allocate, MessageClass.Request).add(TurnAttr.RequestedTransport, TRANSPORT_UDP));
    const realm = challenge.get(Attr.Realm)!;
    const nonce = challenge.get(Attr.Nonce)!;
    // The first, unsigned request is how every client starts: not a failure.
    expect(lines.filter((l) => l.msg === 'authentication failed')).toEqual([]);
    const wrong = (user: string) =>
      ask(new MessageBuilder(Method.Allocate, MessageClass.Request).add(TurnAttr.RequestedTransport, TRANSPORT_UDP).add(Attr.Username, user).add(Attr.Realm, realm).add(Attr.Nonce, nonce), longTermKey(user, realm, 'guess'));
    for (let i = 0; i < 30; i++) expect((await wrong(i % 2 ? 'alice' : 'mallory')).get(Attr.ErrorCode)!.code).toBe(401);
    let failed = lines.filter((l) => l.msg === 'authentication failed');
    expect(failed).toEqual([{ level: 'warn', msg: 'authentication failed', fields: { client: 'udp 198.51.100.20:' + sock.address().port, user: 'mallory', code: 401, reason: 'unknown user' } }]);
    expect(s.counters.authFailures).toBe(30);
    // A second later, the next one is logged with the count of those left out.
    clock.advance(1000);
    await wrong('alice');
    failed = lines.filter((l) => l.msg === 'authentication failed');
    expect(failed).toHaveLength(2);
    expect(failed[1]!.fields).toMatchObject({ user: 'alice', reason: 'wrong credentials', suppressed: 29 });
    expect(s.counters.authFailures).toBe(31);
    expect(await s.metrics.metrics()).toMatch(/^natkit_turn_auth_failures_total 31$/m);
  });

  it('fails to start naming a relay address the network does not have', async () => {
    const host = new MemorySegment().host('192.0.2.10');
    await expect(TurnServer.start({ network: host, listen: ['192.0.2.10'], relayAddresses: { IPv4: '192.0.2.99' }, tcp: false, users: parseUsers('a:b') })).rejects.toThrow(
      /cannot bind relay address 192\.0\.2\.99: .*EADDRNOTAVAIL \(it is not an address of this host\)/,
    );
  });
});
