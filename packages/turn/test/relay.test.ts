import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  Attr,
  AttrType,
  ManualClock,
  MessageBuilder,
  MessageClass,
  Method,
  StunClient,
  decodeMessage,
  longTermKey,
  type TransportAddress,
} from '@natkit/stun';
import {
  type Authenticator,
  LocalQuotas,
  LongTermAuthenticator,
  type RelayPorts,
  TRANSPORT_UDP,
  TurnAttr,
  TurnClient,
  TurnServer,
  type TurnServerOptions,
  parseUsers,
  restPassword,
} from '../src/index.js';
import { type RawUdp, openRawUdp } from '../../../test/helpers/udp.js';
import { useCleanup } from '../../../test/helpers/cleanup.js';
import { waitFor } from '../../../test/helpers/wait.js';

const fixtures = new URL('../../../test/fixtures/', import.meta.url);
const cert = readFileSync(new URL('tls-cert.pem', fixtures));
const key = readFileSync(new URL('tls-key.pem', fixtures));

const { defer, track } = useCleanup();

const USERS = parseUsers('alice:wonderland\nbob:builder\n');

async function relay(opts: TurnServerOptions = {}): Promise<TurnServer> {
  return track(
    await TurnServer.start({
      listen: ['127.0.0.1'],
      port: 0,
      users: USERS,
      // On loopback the peers are on 127.0.0.1, which the default policy refuses.
      allowPeers: ['127.0.0.0/8'],
      relayPortMin: 40000,
      relayPortMax: 44999,
      ...opts,
    }),
  );
}

function udpPort(s: TurnServer): number {
  return s.listening.find((l) => l.transport === 'udp')!.port;
}

async function peer(address = '127.0.0.1'): Promise<RawUdp & { addr: TransportAddress }> {
  const p = await openRawUdp(address);
  defer(() => p.close());
  return Object.assign(p, { addr: { family: 'IPv4' as const, address, port: p.port } });
}

async function client(s: TurnServer, extra: Partial<ConstructorParameters<typeof TurnClient>[0]> = {}): Promise<TurnClient> {
  const transport = extra.server?.transport ?? 'udp';
  const l = s.listening.find((x) => x.transport === transport)!;
  return track(
    await TurnClient.allocate({
      username: 'alice',
      password: 'wonderland',
      ...extra,
      server: { address: '127.0.0.1', port: l.port, ...extra.server },
    }),
  );
}

function nextData(c: TurnClient): Promise<[Buffer, TransportAddress]> {
  return new Promise((r) => c.once('data', (d, p) => r([Buffer.from(d), p])));
}

/** A raw authenticated request over a StunClient (for error cases the TurnClient never makes). */
function stun(s: TurnServer, user = 'alice', password = 'wonderland', socketClient?: StunClient): StunClient {
  return socketClient ?? track(new StunClient({ credentials: { username: user, password }, retransmit: { rto: 200, rc: 4, rm: 8 } }));
}
async function expectError(p: Promise<unknown>, code: number): Promise<void> {
  await expect(p).rejects.toMatchObject({ errorCode: code });
}

/** Waits (seconds, not event-loop turns) until `cond` holds: drop counters bumped by datagrams in flight. */
const until = (cond: () => boolean, what: string) => waitFor(cond, what);

/**
 * Sets a ManualClock's time without firing its timers: the server's sweep (a timer) does
 * not run, so what is checked is the expiry test on each packet, not the sweep.
 */
function jump(clock: ManualClock, to: number): void {
  (clock as unknown as { t: number }).t = to;
}

describe('relayserver: allocations and relaying', () => {
  for (const transport of ['udp', 'tcp', 'tls'] as const) {
    it(`allocates over ${transport} and relays both ways by Send/Data indications and by ChannelData`, async () => {
      const s = await relay({ tls: { cert, key, port: 0 } });
      const p = await peer();
      const c = await client(s, { server: { address: '127.0.0.1', transport, servername: 'natkit.test', tls: { ca: cert } } });
      expect(c.relayed).toHaveLength(1);
      expect(c.relayed[0]!.address).toBe('127.0.0.1');
      expect(c.relayed[0]!.port).toBeGreaterThanOrEqual(40000);
      expect(c.relayed[0]!.port).toBeLessThanOrEqual(44999);
      expect(c.mapped!.address).toBe('127.0.0.1');
      expect(c.lifetime).toBe(600);
      await c.createPermission(p.addr);

      // Client to peer by Send indication; the peer sees the relayed address as source.
      await c.send(p.addr, Buffer.from('hello peer'));
      const [got, from] = await p.next();
      expect(got.toString()).toBe('hello peer');
      expect(from.port).toBe(c.relayed[0]!.port);

      // Peer to client by Data indication.
      const d1 = nextData(c);
      await p.send(Buffer.from('hello client'), c.relayed[0]!.port, '127.0.0.1');
      expect((await d1)[0].toString()).toBe('hello client');
      expect((await d1)[1]).toEqual(p.addr);

      // With a channel, both directions use ChannelData; odd lengths test stream padding.
      const ch = await c.bindChannel(p.addr);
      expect(ch).toBeGreaterThanOrEqual(0x4000);
      expect(ch).toBeLessThanOrEqual(0x4fff);
      await c.send(p.addr, Buffer.from('abc'));
      expect((await p.next())[0].toString()).toBe('abc');
      const d2 = nextData(c);
      await p.send(Buffer.from('defgh'), c.relayed[0]!.port, '127.0.0.1');
      expect((await d2)[0].toString()).toBe('defgh');

      const a = s.allAllocations()[0]!;
      expect(a.counters).toEqual({ toPeerPackets: 2, toPeerBytes: 13, toClientPackets: 2, toClientBytes: 17 });
      expect(a.client.transport).toBe(transport);
      // The server-wide counters (Prometheus) say the same: application bytes, not the
      // bytes of the Send/Data indications or ChannelData headers around them.
      const metrics = (await s.metrics.metrics());
      expect(metrics).toMatch(/^natkit_turn_allocations_created_total 1$/m);
      expect(metrics).toMatch(/^natkit_turn_relayed_packets_total\{direction="to_peer"\} 2$/m);
      expect(metrics).toMatch(/^natkit_turn_relayed_bytes_total\{direction="to_peer"\} 13$/m);
      expect(metrics).toMatch(/^natkit_turn_relayed_packets_total\{direction="to_client"\} 2$/m);
      expect(metrics).toMatch(/^natkit_turn_relayed_bytes_total\{direction="to_client"\} 17$/m);
    });
  }

  it('drops peer data without a permission and client data to peers without one', async () => {
    const s = await relay();
    const p = await peer();
    const q = await peer('127.0.0.2'); // permissions are per IP, so q needs another address
    const c = await client(s);
    await c.createPermission(p.addr);
    // q has no permission: its datagram to the relayed address is dropped.
    await q.send(Buffer.from('intruder'), c.relayed[0]!.port, '127.0.0.1');
    // The client's Send to q is dropped too.
    await c.send(q.addr, Buffer.from('to q'));
    // p is let through; once its data arrives, q's has been seen and dropped.
    const d = nextData(c);
    await p.send(Buffer.from('friend'), c.relayed[0]!.port, '127.0.0.1');
    expect((await d)[0].toString()).toBe('friend');
    await c.send(p.addr, Buffer.from('sync'));
    expect((await p.next())[0].toString()).toBe('sync');
    expect(s.dropped('no_permission')).toBe(2);
    expect(q.queued).toBe(0);
  });

  it('answers a retransmitted Allocate with the same answer and another one with 437', async () => {
    const s = await relay();
    const raw = await openRawUdp();
    defer(() => raw.close());
    const port = udpPort(s);
    // Get a nonce, then sign one Allocate by hand and send the very same bytes twice.
    await raw.send(new MessageBuilder(Method.Allocate, MessageClass.Request).add(TurnAttr.RequestedTransport, TRANSPORT_UDP).encode(), port, '127.0.0.1');
    const challenge = decodeMessage((await raw.next())[0]);
    expect(challenge.get(Attr.ErrorCode)!.code).toBe(401);
    const realm = challenge.get(Attr.Realm)!;
    const signed = (tid?: Buffer) =>
      new MessageBuilder(Method.Allocate, MessageClass.Request, tid)
        .add(TurnAttr.RequestedTransport, TRANSPORT_UDP)
        .add(Attr.Username, 'alice')
        .add(Attr.Realm, realm)
        .add(Attr.Nonce, challenge.get(Attr.Nonce)!)
        .encode({ integrity: { key: longTermKey('alice', realm, 'wonderland') }, fingerprint: true });
    const req = signed();
    await raw.send(req, port, '127.0.0.1');
    const first = (await raw.next())[0];
    await raw.send(req, port, '127.0.0.1');
    const again = (await raw.next())[0];
    expect(decodeMessage(first).cls).toBe(MessageClass.SuccessResponse);
    expect(again.equals(first)).toBe(true);
    expect(s.allocationCount).toBe(1);
    // A new transaction on the same 5-tuple is a mismatch.
    await raw.send(signed(), port, '127.0.0.1');
    expect(decodeMessage((await raw.next())[0]).get(Attr.ErrorCode)!.code).toBe(437);
  });

  it('refreshes, and deletes the allocation on LIFETIME 0', async () => {
    const s = await relay();
    const c = await client(s);
    expect(await c.refresh(1200)).toBe(1200);
    expect(await c.refresh(99999)).toBe(3600); // capped at the maximum
    expect(await c.refresh(30)).toBe(600); // never below the default
    expect(s.allocationCount).toBe(1);
    await c.refresh(0);
    expect(s.allocationCount).toBe(0);
    await expectError(c.refresh(600), 437);
  });

  it('gives an even port with EVEN-PORT, and the next port for the RESERVATION-TOKEN', async () => {
    const s = await relay();
    const a = stun(s);
    const r1 = (
      await a.request(
        { address: '127.0.0.1', port: udpPort(s) },
        { method: Method.Allocate, attributes: (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP).add(TurnAttr.EvenPort, { reserve: true }) },
      )
    ).message;
    const port1 = r1.get(TurnAttr.XorRelayedAddress)!.port;
    expect(port1 % 2).toBe(0);
    const token = r1.get(TurnAttr.ReservationToken)!;
    expect(token).toHaveLength(8);
    const b = stun(s);
    const r2 = (
      await b.request(
        { address: '127.0.0.1', port: udpPort(s) },
        { method: Method.Allocate, attributes: (x) => x.add(TurnAttr.RequestedTransport, TRANSPORT_UDP).add(TurnAttr.ReservationToken, token) },
      )
    ).message;
    expect(r2.get(TurnAttr.XorRelayedAddress)!.port).toBe(port1 + 1);
    // A token works once.
    const c = stun(s);
    await expectError(
      c.request({ address: '127.0.0.1', port: udpPort(s) }, { method: Method.Allocate, attributes: (x) => x.add(TurnAttr.RequestedTransport, TRANSPORT_UDP).add(TurnAttr.ReservationToken, token) }),
      508,
    );
  });
});

describe('relayserver: error codes', () => {
  const alloc = (c: StunClient, s: TurnServer, add: (b: MessageBuilder) => void) =>
    c.request({ address: '127.0.0.1', port: udpPort(s) }, { method: Method.Allocate, attributes: add });

  it('400 without REQUESTED-TRANSPORT, 442 for TCP, 420 for DONT-FRAGMENT', async () => {
    const s = await relay();
    await expectError(alloc(stun(s), s, () => {}), 400);
    await expectError(alloc(stun(s), s, (b) => b.add(TurnAttr.RequestedTransport, 6)), 442);
    const e = await alloc(stun(s), s, (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP).add(TurnAttr.DontFragment, true)).catch((x) => x);
    expect(e.errorCode).toBe(420);
  });

  it('400 for attribute combinations RFC 8656 section 7.2 forbids, and 508 while draining', async () => {
    const s = await relay();
    const udp = (b: MessageBuilder) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP);
    const token = Buffer.alloc(8, 1);
    await expectError(alloc(stun(s), s, (b) => udp(b).add(TurnAttr.ReservationToken, token).add(TurnAttr.EvenPort, { reserve: false })), 400);
    await expectError(alloc(stun(s), s, (b) => udp(b).add(TurnAttr.ReservationToken, token).add(TurnAttr.RequestedAddressFamily, 'IPv4')), 400);
    await expectError(alloc(stun(s), s, (b) => udp(b).add(TurnAttr.RequestedAddressFamily, 'IPv4').add(TurnAttr.AdditionalAddressFamily, 'IPv6')), 400);
    await expectError(alloc(stun(s), s, (b) => udp(b).add(TurnAttr.AdditionalAddressFamily, 'IPv4')), 400);
    expect(s.allocationCount).toBe(0);
    // With no IPv6 relay address, a dual-stack request still gets its IPv4 allocation and an
    // ADDRESS-ERROR-CODE for IPv6 (RFC 8656 section 7.2).
    const dual = await alloc(stun(s), s, (b) => udp(b).add(TurnAttr.AdditionalAddressFamily, 'IPv6'));
    expect(dual.message.getAll(TurnAttr.XorRelayedAddress).map((a) => a.family)).toEqual(['IPv4']);
    expect(dual.message.get(TurnAttr.AddressErrorCode)).toMatchObject({ family: 'IPv6', code: 440 });
    const draining = s.drain(60_000);
    await expectError(alloc(stun(s), s, udp), 508);
    await s.close();
    expect(await draining).toBe(1);
  });

  it('400 for CreatePermission without XOR-PEER-ADDRESS and ChannelBind without its attributes', async () => {
    const s = await relay();
    const c = await client(s);
    const sc = (c as unknown as { stun: StunClient }).stun;
    const peer = { family: 'IPv4' as const, address: '127.0.0.1', port: 5000 };
    await expectError(sc.request(c.server, { method: Method.CreatePermission }), 400);
    await expectError(sc.request(c.server, { method: Method.ChannelBind, attributes: (b) => b.add(TurnAttr.XorPeerAddress, peer) }), 400);
    await expectError(sc.request(c.server, { method: Method.ChannelBind, attributes: (b) => b.add(TurnAttr.ChannelNumber, 0x4000) }), 400);
    expect(s.allAllocations()[0]!.permissions.size).toBe(0);
    expect(s.allAllocations()[0]!.channels.size).toBe(0);
  });

  it('401 without credentials and with a wrong password; 438 for a stale nonce', async () => {
    const clock = new ManualClock(1_000_000);
    const s = await relay({ clock, nonceLifetimeMs: 60_000 });
    const anon = track(new StunClient({ retransmit: { rto: 200, rc: 4, rm: 8 } }));
    await expectError(alloc(anon, s, (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP)), 401);
    await expect(alloc(stun(s, 'alice', 'nope'), s, (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP))).rejects.toMatchObject({ code: 'AUTH_FAILED' });
    await expect(alloc(stun(s, 'mallory', 'x'), s, (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP))).rejects.toMatchObject({ code: 'AUTH_FAILED' });
    // A stale nonce: the client retries with the new one by itself, so watch the wire.
    const sc = stun(s);
    await alloc(sc, s, (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP));
    clock.advance(61_000);
    const before = (await s.metrics.metrics());
    const r = await sc.request({ address: '127.0.0.1', port: udpPort(s) }, { method: Method.Refresh, attributes: (b) => b.add(TurnAttr.Lifetime, 600) });
    expect(r.message.get(TurnAttr.Lifetime)).toBe(600);
    expect(before).not.toMatch(/code="438"/);
    expect((await s.metrics.metrics())).toMatch(/natkit_turn_error_responses_total\{code="438"\} 1/);
  });

  it('403 for a peer the policy refuses, 443 for a peer of another family', async () => {
    const s = await relay({ allowPeers: [] });
    const c = await client(s);
    await expectError(c.createPermission({ family: 'IPv4', address: '127.0.0.1', port: 1 }), 403);
    await expectError(c.createPermission({ family: 'IPv4', address: '10.1.2.3', port: 1 }), 403);
    await expectError(c.bindChannel({ family: 'IPv4', address: '192.168.1.1', port: 1 }), 403);
    await expectError(c.createPermission({ family: 'IPv6', address: '2001:db8::1', port: 1 }), 443);
    await c.createPermission({ family: 'IPv4', address: '198.51.100.7', port: 1 });
  });

  it('440 for an IPv6 relay the server does not have', async () => {
    const s = await relay();
    await expectError(alloc(stun(s), s, (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP).add(TurnAttr.RequestedAddressFamily, 'IPv6')), 440);
  });

  it('441 when another user touches an allocation on the same 5-tuple', async () => {
    const s = await relay();
    const a = stun(s);
    await alloc(a, s, (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP));
    // Bob on Alice's socket: a second client sharing the first one's UDP socket.
    const sock = (a as unknown as { sockets: Map<string, import('node:dgram').Socket> }).sockets.get('IPv4')!;
    const bob = track(new StunClient({ socket: sock, credentials: { username: 'bob', password: 'builder' }, retransmit: { rto: 200, rc: 4, rm: 8 } }));
    await expectError(bob.request({ address: '127.0.0.1', port: udpPort(s) }, { method: Method.Refresh }), 441);
  });

  it('486 past the per-user quota, 508 past the total', async () => {
    const s = await relay({ userQuota: 2, totalQuota: 3 });
    const add = (b: MessageBuilder) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP);
    await alloc(stun(s), s, add);
    await alloc(stun(s), s, add);
    await expectError(alloc(stun(s), s, add), 486);
    await alloc(stun(s, 'bob', 'builder'), s, add);
    await expectError(alloc(stun(s, 'bob', 'builder'), s, add), 508);
  });

  it('400 for a channel number out of range or bound to another peer', async () => {
    const s = await relay();
    const c = await client(s);
    const p = { family: 'IPv4' as const, address: '127.0.0.1', port: 5000 };
    const q = { family: 'IPv4' as const, address: '127.0.0.1', port: 5001 };
    const sc = (c as unknown as { stun: StunClient }).stun;
    const bind = (n: number, peerAddr: TransportAddress) =>
      sc.request(c.server, { method: Method.ChannelBind, attributes: (b) => b.add(TurnAttr.ChannelNumber, n).add(TurnAttr.XorPeerAddress, peerAddr) });
    await expectError(bind(0x3fff, p), 400);
    await expectError(bind(0x5000, p), 400);
    await bind(0x4000, p);
    await expectError(bind(0x4000, q), 400); // number taken by p
    await expectError(bind(0x4001, p), 400); // p already on 0x4000
    await bind(0x4000, p); // refreshing the same binding is fine
  });

  it('accepts RFC 5766 channel numbers up to 0x7FFF only when legacyChannels is set', async () => {
    const s = await relay({ legacyChannels: true });
    const c = await client(s);
    const sc = (c as unknown as { stun: StunClient }).stun;
    const bind = (n: number, port: number) =>
      sc.request(c.server, { method: Method.ChannelBind, attributes: (b) => b.add(TurnAttr.ChannelNumber, n).add(TurnAttr.XorPeerAddress, { family: 'IPv4', address: '127.0.0.1', port }) });
    await bind(0x5d0f, 5000);
    await bind(0x7fff, 5001);
    await expectError(bind(0x8000, 5002), 400);
  });
});

describe('relayserver: credentials', () => {
  it('accepts TURN REST API credentials and refuses expired ones', async () => {
    const clock = new ManualClock(1_700_000_000_000);
    const s = await relay({ secrets: ['rest-secret'], clock, wallClock: () => clock.now() });
    const expiry = Math.floor(clock.now() / 1000) + 3600;
    const user = `${expiry}:carol`;
    const c = track(await TurnClient.allocate({ server: { address: '127.0.0.1', port: udpPort(s) }, username: user, password: restPassword('rest-secret', user), clock }));
    expect(c.relayed).toHaveLength(1);
    const old = `${expiry - 7200}:carol`;
    await expect(
      TurnClient.allocate({ server: { address: '127.0.0.1', port: udpPort(s) }, username: old, password: restPassword('rest-secret', old), clock }),
    ).rejects.toMatchObject({ code: 'AUTH_FAILED' });
  });

  it('judges REST expiry by the wall clock even with the default (monotonic) server clock', async () => {
    const s = await relay({ secrets: ['rest-secret'] });
    const now = Math.floor(Date.now() / 1000);
    const ok = `${now + 600}:erin`;
    const c = track(await TurnClient.allocate({ server: { address: '127.0.0.1', port: udpPort(s) }, username: ok, password: restPassword('rest-secret', ok) }));
    expect(c.relayed).toHaveLength(1);
    const late = `${now - 1}:erin`;
    await expect(
      TurnClient.allocate({ server: { address: '127.0.0.1', port: udpPort(s) }, username: late, password: restPassword('rest-secret', late) }),
    ).rejects.toMatchObject({ code: 'AUTH_FAILED' });
  });

  it('uses SHA-256 keys and MESSAGE-INTEGRITY-SHA256 with RFC 8489 clients, SHA-1 with RFC 5389 ones', async () => {
    const s = await relay();
    const modern = stun(s);
    const r = await modern.request({ address: '127.0.0.1', port: udpPort(s) }, { method: Method.Allocate, attributes: (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP) });
    expect(r.message.has(AttrType.MESSAGE_INTEGRITY_SHA256)).toBe(true);
    const old = track(new StunClient({ credentials: { username: 'alice', password: 'wonderland', integrity: 'sha1' } }));
    const r2 = await old.request({ address: '127.0.0.1', port: udpPort(s) }, { method: Method.Allocate, attributes: (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP) });
    expect(r2.message.has(AttrType.MESSAGE_INTEGRITY)).toBe(true);
  });

  it('sends USERHASH when the server requires it, and accepts it', async () => {
    const s = await relay({ requireUserhash: true });
    const c = await client(s);
    expect(c.relayed).toHaveLength(1);
  });

  it('keeps allocations across a credentials reload, lets new users in, and stops removed ones refreshing', async () => {
    const s = await relay();
    const alice = await client(s);
    const bob = await client(s, { username: 'bob', password: 'builder' });
    const p = await peer();
    await bob.createPermission(p.addr);
    s.reloadCredentials(parseUsers('alice:wonderland\ndave:pw'), []);
    const dave = await client(s, { username: 'dave', password: 'pw' });
    expect(dave.relayed).toHaveLength(1);
    expect(s.allocationCount).toBe(3);
    expect(await alice.refresh(600)).toBe(600);
    // Bob was removed: his allocation is not dropped by the reload, and still relays
    // until its lifetime ends (his permission from before the reload holds), but he can no
    // longer make permissions or refresh it.
    await bob.send(p.addr, Buffer.from('bob still relays'));
    expect((await p.next())[0].toString()).toBe('bob still relays');
    await expect(bob.createPermission({ ...p.addr, address: '127.0.0.2' })).rejects.toMatchObject({ code: 'AUTH_FAILED', errorCode: 401 });
    await expect(bob.refresh(600)).rejects.toMatchObject({ code: 'AUTH_FAILED', errorCode: 401 });
    expect(s.allAllocations().map((a) => a.username).sort()).toEqual(['alice', 'bob', 'dave']);
  });
});

describe('relayserver: lifetimes with an injected clock', () => {
  it('the client refreshes at half the granted lifetime; without refreshes the server expires it', async () => {
    const clock = new ManualClock(0);
    const s = await relay({ clock });
    const c = await client(s, { clock });
    const a = s.allAllocations()[0]!;
    expect(a.expiresAt).toBe(600_000);
    const refreshed = new Promise<void>((resolve) => {
      const check = setInterval(() => {
        if (a.expiresAt > 600_000) {
          clearInterval(check);
          resolve();
        }
      }, 5);
    });
    clock.advance(300_000); // half of 600 s: the client's refresh timer fires
    await refreshed;
    expect(a.expiresAt).toBe(900_000);
    // Stop the client's timers without deleting the allocation, then let it run out.
    (c as unknown as { schedule: { clear(): void } }).schedule.clear();
    // Shortly before the end: a permission for p (Send/Data indications) and a channel to
    // q (ChannelData), and data flows both ways with each.
    const p = await peer();
    const q = await peer('127.0.0.2');
    jump(clock, 800_000);
    await c.createPermission(p.addr);
    await c.bindChannel(q.addr);
    for (const x of [p, q]) {
      const d = nextData(c);
      await x.send(Buffer.from('alive'), c.relayed[0]!.port, '127.0.0.1');
      expect((await d)[0].toString()).toBe('alive');
      await c.send(x.addr, Buffer.from('alive'));
      expect((await x.next())[0].toString()).toBe('alive');
    }
    // At 900 s it has expired, though the sweep has not run: the permissions (until
    // 1100 s) and the channel no longer count, nothing is relayed either way, and a Refresh
    // gets 437.
    jump(clock, 900_000);
    const want = { no_permission: s.dropped('no_permission') + 2, no_allocation: s.dropped('no_allocation') + 1, no_channel: s.dropped('no_channel') + 1 };
    for (const x of [p, q]) {
      await x.send(Buffer.from('too late'), c.relayed[0]!.port, '127.0.0.1');
      await c.send(x.addr, Buffer.from('too late'));
    }
    await until(
      () => (Object.keys(want) as Array<keyof typeof want>).every((r) => s.dropped(r) === want[r]),
      'both peers\' datagrams, the Send indication and the ChannelData dropped',
    );
    await expectError(c.refresh(600), 437);
    expect(a.counters).toMatchObject({ toPeerPackets: 2, toClientPackets: 2 });
    expect(p.queued + q.queued).toBe(0);
    s.sweep();
    expect(s.allocationCount).toBe(0);
  });

  it('a new Allocate on the 5-tuple of an allocation that just expired succeeds (no 437 while it awaits the sweep)', async () => {
    const clock = new ManualClock(0);
    const s = await relay({ clock });
    const sc = stun(s);
    const allocate = () =>
      sc.request({ address: '127.0.0.1', port: udpPort(s) }, { method: Method.Allocate, attributes: (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP) });
    await allocate();
    // Past the lifetime, but the server's sweep timer has not run (the manual clock moves
    // only the time the handlers read).
    (clock as unknown as { t: number }).t = 600_000;
    const again = await allocate();
    expect(again.message.getAll(TurnAttr.XorRelayedAddress)).toHaveLength(1);
    expect(s.allocationCount).toBe(1);
  });

  it('permissions last 300 s and channels 600 s unless refreshed, for the data relayed too', async () => {
    const clock = new ManualClock(0);
    const s = await relay({ clock });
    const c = await client(s, { lifetime: 3600 });
    const p = await peer();
    const relayedPort = c.relayed[0]!.port;
    await c.createPermission(p.addr);
    const a = s.allAllocations()[0]!;
    expect(a.permitted('127.0.0.1', 299_999)).toBe(true);
    expect(a.permitted('127.0.0.1', 300_000)).toBe(false);
    /** One datagram each way, each arriving as sent (and first: nothing dropped before it got through). */
    const through = async (text: string) => {
      const d = nextData(c);
      await p.send(Buffer.from(text), relayedPort, '127.0.0.1');
      expect((await d)[0].toString()).toBe(text);
      await c.send(p.addr, Buffer.from(text));
      expect((await p.next())[0].toString()).toBe(text);
    };
    /** One datagram each way, both refused for want of a permission; waits until the server has counted them. */
    const refused = async (text: string) => {
      const want = s.dropped('no_permission') + 2;
      await p.send(Buffer.from(text), relayedPort, '127.0.0.1');
      await c.send(p.addr, Buffer.from(text));
      await until(() => s.dropped('no_permission') === want, `${text}: both dropped`);
    };
    // The times below are set without running the server's sweep (see jump()).
    jump(clock, 299_999);
    await through('in time');
    jump(clock, 300_000);
    await refused('permission over');
    // A channel binding at 300 s: the channel until 900 s, the permission until 600 s.
    await c.bindChannel(p.addr);
    await through('by channel');
    jump(clock, 600_000);
    await refused('channel without permission');
    // A new permission at 700 s (until 1000 s); the channel still holds until 900 s.
    jump(clock, 700_000);
    await c.createPermission(p.addr);
    await through('by channel again');
    jump(clock, 900_000);
    // The channel is over: the client's ChannelData on it is dropped, while the peer's
    // datagrams still reach the client (by Data indication) under the permission.
    const noChannel = s.dropped('no_channel');
    await c.send(p.addr, Buffer.from('channel over'));
    await until(() => s.dropped('no_channel') === noChannel + 1, 'ChannelData on the expired channel dropped');
    const d = nextData(c);
    await p.send(Buffer.from('as Data'), relayedPort, '127.0.0.1');
    expect((await d)[0].toString()).toBe('as Data');
    expect(p.queued).toBe(0);
    jump(clock, 1_000_000);
    s.sweep();
    expect(a.channels.size).toBe(0);
    expect(a.permissions.size).toBe(0);
  });
});

describe('relayserver: nothing kept after allocations end', () => {
  it('empties every per-allocation table when allocations are deleted, expire or lose their connection', async () => {
    const clock = new ManualClock(0);
    const s = await relay({ clock, userQuota: 100 });
    const relays = s.relays as RelayPorts;
    const quotas = s.quotas as LocalQuotas;
    const made = await Promise.all(Array.from({ length: 20 }, (_, i) => client(s, i % 2 ? { server: { address: '127.0.0.1', transport: 'tcp' } } : {})));
    for (const c of made) await c.bindChannel({ family: 'IPv4', address: '127.0.0.1', port: 9 });
    expect(s.allocationCount).toBe(20);
    expect(relays.inUse).toBe(20);
    expect(quotas.held).toBe(20);
    // Half deleted by Refresh 0, a quarter expire, the TCP rest lose their connection.
    for (const c of made.slice(0, 10)) await c.close();
    clock.advance(3_600_001);
    s.sweep();
    for (const c of made.slice(10)) await c.close();
    expect(s.allocationCount).toBe(0);
    expect(relays.inUse).toBe(0);
    expect(relays.reservedCount).toBe(0);
    expect(quotas.held).toBe(0);
    expect(quotas.users).toBe(0);
    expect(s.table.indexed).toEqual({ udp: 0, streams: 0, pending: 0 });
    // The server sees the TCP connections close once the kernel tells it.
    await waitFor(() => s.connections === 0, 'the server letting go of every TCP connection');
  });
});

describe('relayserver: hostile input', () => {
  it('drops garbage and truncated packets, counts them by reason, and keeps serving', async () => {
    const s = await relay();
    const raw = await openRawUdp();
    defer(() => raw.close());
    const port = udpPort(s);
    const junk = [
      Buffer.from('GET / HTTP/1.1\r\n\r\n'),
      Buffer.from([0x40, 0x00, 0x00, 0x10, 1, 2]), // ChannelData without an allocation
      Buffer.from([0x00, 0x03, 0x00, 0x08]), // a STUN header cut short
      new MessageBuilder(Method.Allocate, MessageClass.Request).add(TurnAttr.RequestedTransport, TRANSPORT_UDP).encode().subarray(0, 22),
      Buffer.alloc(0),
    ];
    for (const j of junk) await raw.send(j, port, '127.0.0.1');
    const c = await client(s);
    expect(c.relayed).toHaveLength(1);
    // 'G' (0x47) has the ChannelData bits (01), so the HTTP text is ChannelData to the relay.
    expect(s.dropped('no_allocation')).toBe(2);
    expect(s.dropped('not_stun')).toBe(2);
    expect(s.dropped('malformed')).toBe(1);
  });

  it('does not rate-limit challenges over TCP, where the source is proven and nothing is retransmitted', async () => {
    const s = await relay({ errorRate: 1 });
    const tcp = s.listening.find((l) => l.transport === 'tcp')!.port;
    const { connect } = await import('node:net');
    const sock = connect(tcp, '127.0.0.1');
    const { StreamFramer } = await import('@natkit/stun');
    const framer = new StreamFramer();
    let answers = 0;
    const all = new Promise<void>((resolve) =>
      sock.on('data', (d) =>
        framer.push(d, (f) => {
          expect(decodeMessage(f).get(Attr.ErrorCode)!.code).toBe(401);
          if (++answers === 40) resolve();
        }),
      ),
    );
    for (let i = 0; i < 40; i++) sock.write(new MessageBuilder(Method.Allocate, MessageClass.Request).add(TurnAttr.RequestedTransport, TRANSPORT_UDP).encode());
    await all;
    expect(s.dropped('rate_limited')).toBe(0);
    sock.destroy();
    await new Promise<void>((r) => (sock.closed ? r() : sock.once('close', () => r())));
  });

  it('closes TCP connections past the per-IP limit and keeps the others', async () => {
    const s = await relay({ maxConnectionsPerIp: 2 });
    const tcp = s.listening.find((l) => l.transport === 'tcp')!.port;
    const { connect } = await import('node:net');
    const open = () =>
      new Promise<import('node:net').Socket>((resolve) => {
        const c = connect(tcp, '127.0.0.1', () => resolve(c));
        c.on('error', () => {});
      });
    const a = await open();
    const b = await open();
    const c = await open();
    await new Promise<void>((r) => c.once('close', () => r()));
    expect(a.destroyed || b.destroyed).toBe(false);
    expect(s.dropped('rate_limited')).toBe(1);
    a.destroy();
    b.destroy();
    await Promise.all([a, b].map((x) => new Promise<void>((r) => (x.closed ? r() : x.once('close', () => r())))));
  });

  it('rate-limits error answers to unauthenticated requests', async () => {
    // The injected clock stands still: a slow run cannot refill the bucket and change the count.
    const s = await relay({ errorRate: 1, clock: new ManualClock(0) });
    const raw = await openRawUdp();
    defer(() => raw.close());
    const req = () => new MessageBuilder(Method.Allocate, MessageClass.Request).add(TurnAttr.RequestedTransport, TRANSPORT_UDP).encode();
    for (let i = 0; i < 50; i++) await raw.send(req(), udpPort(s), '127.0.0.1');
    // A Binding request is answered (not an error), so once it is back all 50 were handled.
    await raw.send(new MessageBuilder(Method.Binding, MessageClass.Request).encode(), udpPort(s), '127.0.0.1');
    let answers = 0;
    for (;;) {
      const [b] = await raw.next();
      const m = decodeMessage(b);
      if (m.method === Method.Binding) break;
      expect(m.get(Attr.ErrorCode)!.code).toBe(401);
      answers++;
    }
    expect(answers).toBe(20); // the burst
    expect(s.dropped('rate_limited')).toBe(30);
  });
});

describe('relayserver: IPv6 relayed addresses and TLS certificates', () => {
  it("natkit's client asks for an IPv6 relayed address and relays both ways with an IPv6 peer, by indications and by channel", async () => {
    const s = await relay({ listen: ['127.0.0.1', '::1'], allowPeers: ['::1/128'] });
    const p = await openRawUdp('::1', 'udp6');
    defer(() => p.close());
    const peerAddr: TransportAddress = { family: 'IPv6', address: '::1', port: p.port };
    const c = await client(s, { family: 'IPv6' });
    expect(c.relayed).toEqual([{ family: 'IPv6', address: '::1', port: expect.any(Number) }]);
    const relayed = c.relayed[0]!;
    await c.createPermission(peerAddr);
    await c.send(peerAddr, Buffer.from('to v6 peer'));
    const [got, from] = await p.next();
    expect(got.toString()).toBe('to v6 peer');
    expect({ address: from.address, port: from.port }).toEqual({ address: '::1', port: relayed.port });
    const d1 = nextData(c);
    await p.send(Buffer.from('from v6 peer'), relayed.port, '::1');
    expect(await d1).toEqual([Buffer.from('from v6 peer'), peerAddr]);
    await c.bindChannel(peerAddr);
    await c.send(peerAddr, Buffer.from('v6 channel'));
    expect((await p.next())[0].toString()).toBe('v6 channel');
    const d2 = nextData(c);
    await p.send(Buffer.from('v6 channel back'), relayed.port, '::1');
    expect((await d2)[0].toString()).toBe('v6 channel back');
    expect(s.allAllocations()[0]!.counters).toEqual({ toPeerPackets: 2, toPeerBytes: 20, toClientPackets: 2, toClientBytes: 27 });
  });

  it('a TLS client refuses a certificate it does not trust, or one for another name; the relay serves the next client', async () => {
    const other = readFileSync(new URL('other-cert.pem', fixtures));
    const s = await relay({ tls: { cert, key, port: 0 } });
    const port = s.listening.find((l) => l.transport === 'tls')!.port;
    const attempt = (servername: string, ca: Buffer) =>
      TurnClient.allocate({ username: 'alice', password: 'wonderland', server: { address: '127.0.0.1', port, transport: 'tls', servername, tls: { ca } } });
    // Signed by nobody the client trusts.
    await expect(attempt('natkit.test', other)).rejects.toMatchObject({ message: expect.stringMatching(/self[- ]signed certificate/i) });
    // Trusted, but for natkit.test, not the name asked for.
    await expect(attempt('other.test', cert)).rejects.toMatchObject({ message: expect.stringMatching(/Hostname\/IP does not match certificate's altnames/) });
    expect(s.allocationCount).toBe(0);
    const ok = track(await attempt('natkit.test', cert));
    expect(ok.relayed).toHaveLength(1);
  });
});

describe("the README's embedding example: a custom authenticator, quotas and events", () => {
  it('authenticates from a lookup, refuses clients the wrapper refuses (403), and tells allocations created and deleted', async () => {
    const accounts = new Map([['carol', 'from-db']]);
    const lookups: string[] = [];
    const longTerm = new LongTermAuthenticator({
      realm: 'example.org',
      lookup: (username) => {
        lookups.push(username);
        return accounts.has(username) ? { password: accounts.get(username)! } : undefined;
      },
    });
    const authenticator: Authenticator = {
      authenticate: (msg, client, now) =>
        client.address === '127.0.0.1' ? longTerm.authenticate(msg, client, now) : { ok: false, code: 403, reason: 'not from the office network', challenge: false },
      challenge: (b, client, now) => longTerm.challenge(b, client, now),
    };
    const s = await relay({ authenticator, quotas: new LocalQuotas({ userQuota: 1, totalQuota: 500 }) });
    const created: string[] = [];
    const deleted: string[] = [];
    s.on('allocation-created', ({ allocation, lifetime }) => created.push(`${allocation.username} ${lifetime}`));
    s.on('allocation-deleted', ({ allocation, reason }) => deleted.push(`${allocation.username} ${reason}`));
    const c = await client(s, { username: 'carol', password: 'from-db' });
    expect(c.relayed).toHaveLength(1);
    expect(lookups).toContain('carol');
    // The quota of one: a second allocation of carol's gets 486.
    await expect(client(s, { username: 'carol', password: 'from-db' })).rejects.toMatchObject({ errorCode: 486 });
    // Unknown to the lookup: 401 like any unknown user.
    await expect(client(s, { username: 'dave', password: 'x' })).rejects.toMatchObject({ code: 'AUTH_FAILED' });
    // From another address the wrapper refuses before any password is checked.
    const far = track(new StunClient({ bindAddress: '127.0.0.2', credentials: { username: 'carol', password: 'from-db' }, retransmit: { rto: 200, rc: 4, rm: 8 } }));
    await expectError(far.request({ address: '127.0.0.1', port: udpPort(s) }, { method: Method.Allocate, attributes: (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP) }), 403);
    await c.close();
    expect(created).toEqual(['carol 600']);
    expect(deleted).toEqual(['carol refreshed with lifetime 0']);
  });
});
