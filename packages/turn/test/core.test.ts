// The relay's request core (RequestCore), sans-I/O: bytes and a client path in, actions
// out. No socket is opened and no timer set; time is a number the test moves. The
// adapter's part (binding relayed sockets) is played by the test, with fake relay sockets.
import { describe, expect, it } from 'vitest';
import {
  Attr,
  type DatagramSocket,
  type Family,
  MessageBuilder,
  MessageClass,
  Method,
  type StunMessage,
  type TransportAddress,
  decodeMessage,
  longTermKey,
} from '@natkit/stun';
import {
  type AllocateTicket,
  type ClientPath,
  type CoreAction,
  LongTermAuthenticator,
  NoAuthenticator,
  PeerPolicy,
  type RelaySocket,
  RequestCore,
  TRANSPORT_UDP,
  TurnAttr,
  TurnCounters,
  type TurnEvent,
  parseUsers,
  resolveLimits,
  turnRegistry,
} from '../src/index.js';

const SERVER: TransportAddress = { family: 'IPv4', address: '192.0.2.10', port: 3478 };

function core(o: { auth?: boolean; legacyChannels?: boolean; maxPermissions?: number } = {}): RequestCore {
  return new RequestCore({
    authenticator: o.auth === false ? new NoAuthenticator() : new LongTermAuthenticator({ realm: 'natkit', users: parseUsers('alice:pw\nbob:pw2') }),
    peerPolicy: new PeerPolicy({ ownAddresses: [SERVER.address] }),
    limits: resolveLimits({ legacyChannels: o.legacyChannels, maxPermissions: o.maxPermissions }),
    counters: new TurnCounters(),
    relayFamilies: () => ({ IPv4: SERVER.address }),
  });
}

/** A UDP client path that records what is sent to it. */
function udpClient(port = 50000, address = '198.51.100.20'): ClientPath & { sent: Buffer[] } {
  const sent: Buffer[] = [];
  return { transport: 'udp', stream: false, remote: { family: 'IPv4', address, port }, local: SERVER, send: (d) => void sent.push(d), via: 0, sent };
}

/** A relay socket that never touches the network (the core only holds it). */
function fakeRelay(port: number, family: Family = 'IPv4'): RelaySocket {
  return { family, address: SERVER.address, port, socket: {} as DatagramSocket };
}

const replies = (acts: CoreAction[]) => acts.filter((a): a is Extract<CoreAction, { type: 'reply' }> => a.type === 'reply').map((a) => decodeMessage(a.data, { registry: turnRegistry }));
const events = (acts: CoreAction[]) => acts.filter((a): a is Extract<CoreAction, { type: 'event' }> => a.type === 'event').map((a) => a.event);
const code = (m: StunMessage) => (m.cls === MessageClass.SuccessResponse ? 'success' : m.get(Attr.ErrorCode)!.code);

/** A client speaking to the core directly: builds, signs, hands over, and plays the adapter for Allocates. */
class Client {
  realm = '';
  nonce = '';
  constructor(
    readonly c: RequestCore,
    readonly path = udpClient(),
    readonly user = 'alice',
    readonly password = 'pw',
  ) {}

  bytes(method: number, add?: (b: MessageBuilder) => void, sign = true, cls: number = MessageClass.Request): Buffer {
    const b = new MessageBuilder(method, cls);
    add?.(b);
    if (!sign) return b.encode();
    b.add(Attr.Username, this.user).add(Attr.Realm, this.realm).add(Attr.Nonce, this.nonce);
    return b.encode({ integrity: { key: longTermKey(this.user, this.realm, this.password) } });
  }

  send(method: number, now: number, add?: (b: MessageBuilder) => void, sign = true): CoreAction[] {
    return this.c.message(this.bytes(method, add, sign), this.path, now);
  }

  challenge(now: number): void {
    const [m] = replies(this.send(Method.Allocate, now, (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP), false));
    expect(code(m!)).toBe(401);
    this.realm = m!.get(Attr.Realm)!;
    this.nonce = m!.get(Attr.Nonce)!;
  }

  /** Allocate: the core asks for a relayed socket; the test hands one back. */
  allocate(now: number, relayPort = 60000, add?: (b: MessageBuilder) => void): { ticket: AllocateTicket; answer: StunMessage; acts: CoreAction[] } {
    const acts = this.send(Method.Allocate, now, (b) => {
      b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP);
      add?.(b);
    });
    const t = acts.find((a) => a.type === 'allocate');
    expect(t, JSON.stringify(replies(acts).map(code))).toBeDefined();
    const ticket = (t as Extract<CoreAction, { type: 'allocate' }>).ticket;
    const done = this.c.allocated(ticket, { ok: true, relays: { IPv4: fakeRelay(relayPort) } }, now);
    const [answer] = replies(done);
    return { ticket, answer: answer!, acts: done };
  }
}

describe('the request core, without sockets, on a clock the test moves', () => {
  it('challenges, asks the adapter for a relayed socket, and answers the Allocate once it has one', () => {
    const c = core();
    const cl = new Client(c);
    cl.challenge(0);
    const request = cl.bytes(Method.Allocate, (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP).add(TurnAttr.Lifetime, 1200));
    const acts = c.message(request, cl.path, 10);
    // Nothing is answered yet: the core wants a relayed socket first.
    expect(acts.map((a) => a.type)).toEqual(['allocate']);
    const ticket = (acts[0] as Extract<CoreAction, { type: 'allocate' }>).ticket;
    expect(ticket).toMatchObject({ username: 'alice', family: 'IPv4', even: false, reserve: false, lifetimeMs: 1_200_000 });
    expect(c.table.pendingCount).toBe(1);
    // A retransmission meanwhile is not a second allocation, and not a 437 either: it waits
    // for the answer; another transaction on the 5-tuple is a mismatch.
    expect(c.message(request, cl.path, 11)).toEqual([]);
    expect(replies(cl.send(Method.Allocate, 12, (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP))).map(code)).toEqual([437]);
    const done = c.allocated(ticket, { ok: true, relays: { IPv4: fakeRelay(60000) } }, 20);
    const [answer] = replies(done);
    expect(code(answer!)).toBe('success');
    expect(answer!.get(TurnAttr.XorRelayedAddress)).toEqual({ family: 'IPv4', address: '192.0.2.10', port: 60000 });
    expect(answer!.get(TurnAttr.Lifetime)).toBe(1200);
    expect(answer!.get(Attr.XorMappedAddress)).toEqual(cl.path.remote);
    expect(events(done).map((e) => e.type)).toEqual(['allocation-created']);
    expect(c.table.size).toBe(1);
    expect(c.table.pendingCount).toBe(0);
    expect(c.table.get(ticket.key)!.expiresAt).toBe(20 + 1_200_000);
    expect(c.counters.allocationsCreated).toBe(1);
    expect(c.counters.requests.allocate).toBe(4);
    // Retransmitted after it is made: the same answer, byte for byte.
    expect(c.message(request, cl.path, 30)).toEqual([{ type: 'reply', path: cl.path, data: (done[0] as Extract<CoreAction, { type: 'reply' }>).data }]);
  });

  it('a refused outcome (quota, no port) is answered with its code, signed, and leaves nothing behind', () => {
    const c = core();
    const cl = new Client(c);
    cl.challenge(0);
    const acts = cl.send(Method.Allocate, 1, (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP));
    const ticket = (acts[0] as Extract<CoreAction, { type: 'allocate' }>).ticket;
    const [m] = replies(c.allocated(ticket, { ok: false, code: 486, reason: 'at most 10 allocations per user' }, 2));
    expect(code(m!)).toBe(486);
    expect(m!.get(Attr.ErrorCode)!.reason).toBe('Allocation Quota Reached: at most 10 allocations per user');
    expect(m!.integrityAt).toBeGreaterThan(0);
    expect(c.table.size).toBe(0);
    expect(c.table.pendingCount).toBe(0);
  });

  it('permissions, channels, refresh and expiry move with the time passed in', () => {
    const c = core();
    const cl = new Client(c);
    cl.challenge(0);
    const { answer, ticket } = cl.allocate(0);
    expect(code(answer)).toBe('success');
    const alloc = c.table.get(ticket.key)!;
    const peer: TransportAddress = { family: 'IPv4', address: '203.0.113.7', port: 7000 };
    const perm = cl.send(Method.CreatePermission, 1000, (b) => b.add(TurnAttr.XorPeerAddress, peer));
    expect(replies(perm).map(code)).toEqual(['success']);
    expect(events(perm)).toEqual([{ type: 'permission', allocation: alloc, peers: ['203.0.113.7'] }]);
    expect(alloc.permitted('203.0.113.7', 300_999)).toBe(true);
    expect(alloc.permitted('203.0.113.7', 301_000)).toBe(false);
    const bind = cl.send(Method.ChannelBind, 2000, (b) => b.add(TurnAttr.ChannelNumber, 0x4001).add(TurnAttr.XorPeerAddress, peer));
    expect(replies(bind).map(code)).toEqual(['success']);
    expect(events(bind)).toEqual([{ type: 'channel', allocation: alloc, channel: 0x4001, peer }]);
    expect(alloc.channels.get(0x4001)!.expiresAt).toBe(602_000);
    // Refresh at 500 s for the default lifetime: until 1100 s.
    const r = cl.send(Method.Refresh, 500_000);
    expect(replies(r)[0]!.get(TurnAttr.Lifetime)).toBe(600);
    expect(events(r).map((e) => e.type)).toEqual(['allocation-refreshed']);
    // The sweep at 1099 s keeps it (and has dropped the expired channel); at 1100 s it is gone.
    expect(c.sweep(1_099_999)).toEqual([]);
    expect(alloc.channels.size).toBe(0);
    const gone = c.sweep(1_100_000);
    expect(gone).toEqual([{ type: 'deleted', allocation: alloc, reason: 'expired' }]);
    expect(c.table.size).toBe(0);
    expect(c.table.indexed).toEqual({ udp: 0, streams: 0, pending: 0 });
    cl.challenge(1_100_001); // the nonce from 0 s has expired by now (438 otherwise)
    expect(code(replies(cl.send(Method.Refresh, 1_100_002))[0]!)).toBe(437);
  });

  it('refuses peers by the policy (403, with an event) and channel numbers by RFC 8656, saying how to get past it', () => {
    const c = core();
    const cl = new Client(c);
    cl.challenge(0);
    const { ticket } = cl.allocate(0);
    const alloc = c.table.get(ticket.key)!;
    for (const address of ['10.0.0.1', '127.0.0.1', SERVER.address]) {
      const peer: TransportAddress = { family: 'IPv4', address, port: 1 };
      const acts = cl.send(Method.CreatePermission, 1, (b) => b.add(TurnAttr.XorPeerAddress, peer));
      expect(replies(acts).map(code), address).toEqual([403]);
      expect(events(acts)).toEqual([{ type: 'peer-refused', allocation: alloc, peer, reason: expect.any(String) }]);
    }
    const peer = { family: 'IPv4' as const, address: '203.0.113.7', port: 7 };
    const [m] = replies(cl.send(Method.ChannelBind, 2, (b) => b.add(TurnAttr.ChannelNumber, 0x5d0f).add(TurnAttr.XorPeerAddress, peer)));
    expect(code(m!)).toBe(400);
    expect(m!.get(Attr.ErrorCode)!.reason).toBe('Bad Request: channel 0x5d0f is outside 0x4000-0x4FFF (RFC 5766 numbers: relayserver --legacy-channels)');
    // With legacyChannels the same number is bound.
    const l = core({ legacyChannels: true });
    const lc = new Client(l);
    lc.challenge(0);
    lc.allocate(0);
    expect(replies(lc.send(Method.ChannelBind, 2, (b) => b.add(TurnAttr.ChannelNumber, 0x5d0f).add(TurnAttr.XorPeerAddress, peer))).map(code)).toEqual(['success']);
    expect(replies(lc.send(Method.ChannelBind, 3, (b) => b.add(TurnAttr.ChannelNumber, 0x3fff).add(TurnAttr.XorPeerAddress, { ...peer, port: 8 }))).map(code)).toEqual([400]);
  });

  it('a wrong password is a 401 with a challenge and an auth-failure event naming the user; another user on the 5-tuple is a 441', () => {
    const c = core();
    const cl = new Client(c);
    cl.challenge(0);
    cl.allocate(0);
    const wrong = new Client(c, cl.path, 'alice', 'nope');
    wrong.realm = cl.realm;
    wrong.nonce = cl.nonce;
    const acts = wrong.send(Method.Refresh, 5);
    const [m] = replies(acts);
    expect(code(m!)).toBe(401);
    expect(m!.get(Attr.Nonce)).toBeDefined();
    expect(events(acts)).toEqual([{ type: 'auth-failure', client: cl.path, username: 'alice', code: 401, reason: 'wrong credentials' }]);
    const bob = new Client(c, cl.path, 'bob', 'pw2');
    bob.realm = cl.realm;
    bob.nonce = cl.nonce;
    const b = bob.send(Method.Refresh, 6);
    expect(replies(b).map(code)).toEqual([441]);
    expect(events(b).map((e) => (e as Extract<TurnEvent, { type: 'auth-failure' }>).code)).toEqual([441]);
    expect(c.counters.authFailures).toBe(2);
    // The first, unsigned request is the normal start: no failure counted.
    new Client(c, udpClient(50001)).challenge(7);
    expect(c.counters.authFailures).toBe(2);
  });

  it('rate-limits unauthenticated error answers per source on the time passed in, not the wall clock', () => {
    const c = new RequestCore({
      authenticator: new LongTermAuthenticator({ realm: 'natkit', users: parseUsers('alice:pw') }),
      peerPolicy: new PeerPolicy(),
      limits: resolveLimits({ errorRate: 1 }), // burst 20
      counters: new TurnCounters(),
      relayFamilies: () => ({ IPv4: SERVER.address }),
    });
    const cl = new Client(c);
    const flood = (n: number, now: number) => {
      let answered = 0;
      for (let i = 0; i < n; i++) answered += replies(cl.send(Method.Allocate, now, (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP), false)).length;
      return answered;
    };
    expect(flood(50, 0)).toBe(20);
    expect(c.counters.dropped.rate_limited).toBe(30);
    // However long it takes, the same instant gives nothing more; a second gives one.
    expect(flood(5, 0)).toBe(0);
    expect(flood(5, 1000)).toBe(1);
    expect(flood(30, 3_600_000)).toBe(20);
  });

  it('without authentication: anonymous allocations, unsigned answers, no per-user quota asked for', () => {
    const c = core({ auth: false });
    const cl = new Client(c);
    const acts = cl.send(Method.Allocate, 0, (b) => b.add(TurnAttr.RequestedTransport, TRANSPORT_UDP), false);
    const ticket = (acts[0] as Extract<CoreAction, { type: 'allocate' }>).ticket;
    expect(ticket.username).toBeUndefined();
    const [m] = replies(c.allocated(ticket, { ok: true, relays: { IPv4: fakeRelay(60000) } }, 0));
    expect(code(m!)).toBe('success');
    expect(m!.integrityAt).toBe(-1);
    expect(c.table.get(ticket.key)!.anonymous).toBe(true);
  });

  it('drops what is not a request or Send indication, counting each by reason; a Send indication goes to the data path', () => {
    const c = core();
    const cl = new Client(c);
    expect(c.message(Buffer.from('GET / HTTP/1.1\r\n\r\n'), cl.path, 0)).toEqual([]);
    expect(c.message(Buffer.alloc(19), cl.path, 0)).toEqual([]);
    const success = new MessageBuilder(Method.Binding, MessageClass.SuccessResponse).encode();
    expect(c.message(success, cl.path, 0)).toEqual([]);
    const data = new MessageBuilder(Method.Data, MessageClass.Indication).encode();
    expect(c.message(data, cl.path, 0)).toEqual([]);
    expect(c.counters.dropped).toMatchObject({ not_stun: 2, unexpected: 2 });
    // A Binding indication is a client's NAT keepalive: no answer, and not counted as a drop.
    expect(c.message(new MessageBuilder(Method.Binding, MessageClass.Indication).encode({ fingerprint: true }), cl.path, 0)).toEqual([]);
    expect(Object.values(c.counters.dropped).reduce((a, b) => a + b, 0)).toBe(4);
    const send = new MessageBuilder(Method.Send, MessageClass.Indication).add(TurnAttr.XorPeerAddress, { family: 'IPv4', address: '203.0.113.7', port: 9 }).add(TurnAttr.Data, Buffer.from('x')).encode();
    expect(c.message(send, cl.path, 0).map((a) => a.type)).toEqual(['indication']);
    // A Binding request is answered by the STUN Binding service, on the same path.
    const [b] = replies(c.message(new MessageBuilder(Method.Binding, MessageClass.Request).encode(), cl.path, 0));
    expect(b!.get(Attr.XorMappedAddress)).toEqual(cl.path.remote);
  });
});
