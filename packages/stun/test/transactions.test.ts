// The sans-I/O halves of the STUN client: the transaction table (timers, matching,
// integrity rules) and the request flow (401, 438, 300), driven without sockets or timers,
// and StunClient running over an injected Network.
import { describe, expect, it } from 'vitest';
import {
  Attr,
  AttrType,
  AuthCache,
  type DatagramInfo,
  type DatagramSocket,
  DuplicateTransactionError,
  ManualClock,
  MessageBuilder,
  MessageClass,
  Method,
  type Network,
  RequestFlow,
  StunClient,
  type StunMessage,
  StunTransactionError,
  TransactionTable,
  checkIntegrity,
  decodeMessage,
  longTermKey,
  newTransactionId,
  shortTermKey,
} from '../src/index.js';
import { useCleanup } from '../../../test/helpers/cleanup.js';

const { track } = useCleanup();

function request(tid = newTransactionId()): { tid: Buffer; bytes: Buffer } {
  const b = new MessageBuilder(Method.Binding, MessageClass.Request, tid);
  return { tid, bytes: b.encode({ fingerprint: true }) };
}

function success(tid: Buffer, opts: { key?: Buffer; fingerprint?: boolean } = {}): StunMessage {
  const raw = new MessageBuilder(Method.Binding, MessageClass.SuccessResponse, tid)
    .add(Attr.XorMappedAddress, { family: 'IPv4', address: '192.0.2.7', port: 7 })
    .encode({ integrity: opts.key ? { key: opts.key } : undefined, fingerprint: opts.fingerprint ?? true });
  return decodeMessage(raw);
}

function errorResponse(tid: Buffer, code: number, reason: string, add?: (b: MessageBuilder) => void): StunMessage {
  const b = new MessageBuilder(Method.Binding, MessageClass.ErrorResponse, tid).add(Attr.ErrorCode, { code, reason });
  add?.(b);
  return decodeMessage(b.encode());
}

describe('TransactionTable (RFC 8489 sections 6.2 and 6.3), sans-I/O', () => {
  it('retransmits each transaction on its own RFC schedule and times it out, from nextTimeout/onTimeout alone', () => {
    const t = new TransactionTable<string>();
    const a = request();
    const b = request();
    t.start(a.tid, a.bytes, 0, { context: 'a' });
    t.start(b.tid, b.bytes, 200, { context: 'b', retransmit: { rto: 100, rc: 2, rm: 3 } });
    const log: string[] = [];
    for (let now = t.nextTimeout(); now !== undefined; now = t.nextTimeout()) {
      for (const act of t.onTimeout(now)) log.push(`${now} ${act.type} ${act.transaction.context} #${act.transaction.sends}`);
    }
    expect(log).toEqual([
      '300 retransmit b #2', // b: RTO 100 after its start at 200
      '500 retransmit a #2',
      '600 timeout b #2', // b: Rc = 2 sends, then Rm * RTO = 300
      '1500 retransmit a #3',
      '3500 retransmit a #4',
      '7500 retransmit a #5',
      '15500 retransmit a #6',
      '31500 retransmit a #7',
      '39500 timeout a #7',
    ]);
    expect(t.size).toBe(0);
  });

  it('over a reliable transport sends once and times out after Ti', () => {
    const t = new TransactionTable();
    const a = request();
    t.start(a.tid, a.bytes, 1000, { context: undefined, retransmit: { reliable: true } });
    expect(t.nextTimeout()).toBe(40_500);
    expect(t.onTimeout(40_499)).toEqual([]);
    expect(t.onTimeout(40_500).map((x) => x.type)).toEqual(['timeout']);
  });

  it('matches a response by transaction id, with its RTT, and ends the transaction', () => {
    const t = new TransactionTable<number>();
    const a = request();
    t.start(a.tid, a.bytes, 100, { context: 42 });
    const other = success(newTransactionId());
    expect(t.match(other, 150)).toEqual({ kind: 'unmatched' });
    const r = t.match(success(a.tid), 180);
    expect(r.kind).toBe('response');
    if (r.kind !== 'response') return;
    expect(r.transaction.context).toBe(42);
    expect(r.rtt).toBe(80);
    expect(r.message.get(Attr.XorMappedAddress)?.address).toBe('192.0.2.7');
    expect(t.size).toBe(0);
    expect(t.nextTimeout()).toBeUndefined();
    // A second copy of the response (a retransmission answered twice) is no longer matched.
    expect(t.match(success(a.tid), 190).kind).toBe('unmatched');
  });

  it('never takes a request, an indication or an RFC 3489 message for a response', () => {
    const t = new TransactionTable();
    const a = request();
    t.start(a.tid, a.bytes, 0, { context: undefined });
    expect(t.match(decodeMessage(a.bytes), 1).kind).toBe('unmatched');
    const ind = decodeMessage(new MessageBuilder(Method.Binding, MessageClass.Indication, a.tid).encode());
    expect(t.match(ind, 1).kind).toBe('unmatched');
    const old = Buffer.from(success(a.tid).raw);
    old.writeUInt32BE(0x01020304, 4); // no magic cookie: an RFC 3489 message
    expect(t.match(decodeMessage(old), 1).kind).toBe('unmatched');
    expect(t.size).toBe(1);
  });

  it('awaits() tells from the header alone whether a message can answer a transaction under way', () => {
    const t = new TransactionTable();
    const a = request();
    t.start(a.tid, a.bytes, 0, { context: undefined });
    expect(t.awaits(success(a.tid).raw)).toBe(true);
    expect(t.awaits(errorResponse(a.tid, 400, 'Bad Request').raw)).toBe(true);
    // The same id on a request or an indication (class bit C1 clear), or another id: no.
    expect(t.awaits(a.bytes)).toBe(false);
    expect(t.awaits(new MessageBuilder(Method.Binding, MessageClass.Indication, a.tid).encode())).toBe(false);
    expect(t.awaits(success(newTransactionId()).raw)).toBe(false);
    t.cancel(a.tid);
    expect(t.awaits(success(a.tid).raw)).toBe(false);
  });

  it('drops a response whose FINGERPRINT is wrong and keeps waiting (RFC 8489 section 7.3)', () => {
    const t = new TransactionTable();
    const a = request();
    t.start(a.tid, a.bytes, 0, { context: undefined });
    const raw = Buffer.from(success(a.tid).raw);
    raw[raw.length - 1]! ^= 1;
    const r = t.match(decodeMessage(raw), 1);
    expect(r).toMatchObject({ kind: 'dropped', reason: 'fingerprint' });
    expect(t.size).toBe(1);
  });

  it('with a key: takes 401/438 unauthenticated, other responses only with matching integrity (RFC 8489 9.1.4, 9.2.5)', () => {
    const key = shortTermKey('pass');
    const t = new TransactionTable();
    const a = request();
    t.start(a.tid, a.bytes, 0, { context: undefined, verifyKey: key });
    expect(t.match(success(a.tid), 1)).toMatchObject({ kind: 'dropped', reason: 'integrity' });
    expect(t.match(success(a.tid, { key: Buffer.from('other key') }), 1)).toMatchObject({ kind: 'dropped', reason: 'integrity' });
    expect(t.match(errorResponse(a.tid, 400, 'Bad Request'), 1)).toMatchObject({ kind: 'dropped', reason: 'integrity' });
    expect(t.match(success(a.tid, { key }), 1).kind).toBe('response');
    for (const code of [401, 438]) {
      const b = request();
      t.start(b.tid, b.bytes, 0, { context: undefined, verifyKey: key });
      expect(t.match(errorResponse(b.tid, code, 'x'), 1).kind).toBe('response');
    }
  });

  it('refuses a transaction id already under way, cancels one, and clears all', () => {
    const t = new TransactionTable<string>();
    const a = request();
    t.start(a.tid, a.bytes, 0, { context: 'first' });
    let err: unknown;
    try {
      t.start(a.tid, a.bytes, 0, { context: 'again' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DuplicateTransactionError);
    expect((err as DuplicateTransactionError).code).toBe('DUPLICATE_TRANSACTION');
    expect(t.cancel(a.tid)?.context).toBe('first');
    expect(t.cancel(a.tid)).toBeUndefined();
    expect(t.match(success(a.tid), 1).kind).toBe('unmatched');
    const b = request();
    const c = request();
    t.start(b.tid, b.bytes, 0, { context: 'b' });
    t.start(c.tid, c.bytes, 0, { context: 'c' });
    expect(t.clear().map((x) => x.context)).toEqual(['b', 'c']);
    expect(t.nextTimeout()).toBeUndefined();
  });
});

describe('RequestFlow: 401, 438 and 300 as sans-I/O state (RFC 8489 sections 9.2 and 10)', () => {
  const creds = { username: 'alice', password: 's3cret' };
  const target = { address: '192.0.2.1', port: 3478, transport: 'udp' as const };

  it('answers a 401 with long-term credentials, a 438 with the new nonce, and succeeds', () => {
    const auth = new AuthCache();
    const flow = new RequestFlow({ target, credentials: creds, auth });
    const first = flow.next();
    expect(first.verifyKey).toBeUndefined();
    expect(decodeMessage(first.bytes).has(AttrType.USERNAME)).toBe(false);
    const challenge = errorResponse(first.transactionId, 401, 'Unauthorized', (b) => b.add(Attr.Realm, 'example.org').add(Attr.Nonce, 'n1'));
    expect(flow.onResponse(challenge)).toEqual({ kind: 'retry', target, why: 'challenge' });
    const second = flow.next();
    const key = longTermKey('alice', 'example.org', 's3cret');
    expect(second.verifyKey!.equals(key)).toBe(true);
    const m2 = decodeMessage(second.bytes);
    expect(m2.get(Attr.Username)).toBe('alice');
    expect(m2.get(Attr.Nonce)).toBe('n1');
    expect(checkIntegrity(m2, key)).toBe('sha1');
    expect(second.transactionId.equals(first.transactionId)).toBe(false);
    const stale = errorResponse(second.transactionId, 438, 'Stale Nonce', (b) => b.add(Attr.Realm, 'example.org').add(Attr.Nonce, 'n2'));
    expect(flow.onResponse(stale)).toMatchObject({ kind: 'retry', why: 'stale-nonce' });
    const third = flow.next();
    expect(decodeMessage(third.bytes).get(Attr.Nonce)).toBe('n2');
    const ok = success(third.transactionId, { key });
    expect(flow.onResponse(ok)).toMatchObject({ kind: 'success', target });
    // The cache serves the next request to that server: authenticated from the start.
    const again = new RequestFlow({ target, credentials: creds, auth }).next();
    expect(decodeMessage(again.bytes).get(Attr.Nonce)).toBe('n2');
    expect(auth.get(target)?.realm).toBe('example.org');
  });

  it('gives up with AUTH_FAILED when the same credentials are refused again', () => {
    expect.assertions(3);
    const flow = new RequestFlow({ target, credentials: creds });
    const a = flow.next();
    flow.onResponse(errorResponse(a.transactionId, 401, 'Unauthorized', (b) => b.add(Attr.Realm, 'r').add(Attr.Nonce, 'n')));
    const b = flow.next();
    try {
      flow.onResponse(errorResponse(b.transactionId, 401, 'Unauthorized', (x) => x.add(Attr.Realm, 'r').add(Attr.Nonce, 'n')));
    } catch (e) {
      expect(e).toBeInstanceOf(StunTransactionError);
      expect((e as StunTransactionError).code).toBe('AUTH_FAILED');
      expect((e as StunTransactionError).errorCode).toBe(401);
    }
  });

  it('a 401 without credentials, or any other error, is ERROR_RESPONSE with the code', () => {
    const flow = new RequestFlow({ target });
    const a = flow.next();
    expect(() => flow.onResponse(errorResponse(a.transactionId, 401, 'Unauthorized'))).toThrow(expect.objectContaining({ code: 'ERROR_RESPONSE', errorCode: 401 }));
    const f2 = new RequestFlow({ target, credentials: creds });
    const b = f2.next();
    expect(() => f2.onResponse(errorResponse(b.transactionId, 403, 'Forbidden'))).toThrow(expect.objectContaining({ code: 'ERROR_RESPONSE', errorCode: 403, reason: 'Forbidden' }));
  });

  it('follows 300 ALTERNATE-SERVER on the same transport and stops at a loop or after maxRedirects', () => {
    const flow = new RequestFlow({ target, maxRedirects: 2 });
    const alt = (to: string) => (b: MessageBuilder) => b.add(Attr.AlternateServer, { family: 'IPv4', address: to, port: 3479 });
    const a = flow.next();
    expect(flow.onResponse(errorResponse(a.transactionId, 300, 'Try Alternate', alt('192.0.2.2')))).toEqual({
      kind: 'retry',
      target: { address: '192.0.2.2', port: 3479, transport: 'udp' },
      why: 'redirect',
    });
    expect(flow.next().target.address).toBe('192.0.2.2');
    const b = flow.next();
    expect(() => flow.onResponse(errorResponse(b.transactionId, 300, 'Try Alternate', alt('192.0.2.2')))).toThrow(expect.objectContaining({ code: 'REDIRECT_LOOP' }));
    const f2 = new RequestFlow({ target, maxRedirects: 1 });
    f2.onResponse(errorResponse(f2.next().transactionId, 300, 'Try Alternate', alt('192.0.2.3')));
    expect(() => f2.onResponse(errorResponse(f2.next().transactionId, 300, 'Try Alternate', alt('192.0.2.4')))).toThrow(/too many redirects/);
  });

  it('signs every attempt with short-term credentials, both integrity attributes by default', () => {
    const flow = new RequestFlow({ target, credentials: { kind: 'short-term', username: 'a:b', password: 'pwd' } });
    const a = flow.next();
    const m = decodeMessage(a.bytes);
    expect(m.get(Attr.Username)).toBe('a:b');
    expect(m.has(AttrType.MESSAGE_INTEGRITY)).toBe(true);
    expect(m.has(AttrType.MESSAGE_INTEGRITY_SHA256)).toBe(true);
    expect(a.verifyKey!.equals(shortTermKey('pwd'))).toBe(true);
  });
});

/**
 * A Network with no kernel behind it: sockets deliver to `answer`, which may reply; the
 * reply comes back on a later microtask. Records what was opened.
 */
function fakeNetwork(answer: (msg: Buffer, to: { address: string; port: number }) => Buffer | undefined) {
  const opened: Array<{ family: string; address?: string; port?: number }> = [];
  let closed = 0;
  const network: Network = {
    async createUdpSocket(o) {
      opened.push({ family: o.family, address: o.address, port: o.port });
      const listeners = new Set<(m: Buffer, r: DatagramInfo) => void>();
      const local = { address: o.address ?? '0.0.0.0', family: o.family, port: 40000 + opened.length };
      const s: DatagramSocket = {
        address: () => local,
        send(msg, port, address, cb) {
          const reply = answer(Buffer.from(msg), { address, port });
          cb?.(null, msg.length);
          if (reply) queueMicrotask(() => listeners.forEach((l) => l(reply, { address, port, family: 'IPv4', size: reply.length })));
        },
        on(ev: string, l: never) {
          if (ev === 'message') listeners.add(l);
          return s;
        },
        off(ev: string, l: never) {
          if (ev === 'message') listeners.delete(l);
          return s;
        },
        close(cb?: () => void) {
          closed++;
          cb?.();
        },
      } as DatagramSocket;
      return s;
    },
    interfaces: () => [],
    lookup: async (h) => [{ address: h, family: 'IPv4' }],
  };
  return { network, opened, closed: () => closed };
}

describe('StunClient over an injected Network and clock', () => {
  it('opens its UDP socket through the Network, on the bind address asked, and closes it', async () => {
    const net = fakeNetwork((msg) => {
      const m = decodeMessage(msg);
      return new MessageBuilder(Method.Binding, MessageClass.SuccessResponse, m.transactionId)
        .add(Attr.XorMappedAddress, { family: 'IPv4', address: '203.0.113.9', port: 999 })
        .encode();
    });
    const c = new StunClient({ network: net.network, clock: new ManualClock(), bindAddress: '10.0.0.2' });
    const r = await c.binding({ address: '198.51.100.1', port: 3478 });
    expect(r.mapped).toEqual({ family: 'IPv4', address: '203.0.113.9', port: 999 });
    expect(r.local).toEqual({ family: 'IPv4', address: '10.0.0.2', port: 40001 });
    expect(net.opened).toEqual([{ family: 'IPv4', address: '10.0.0.2', port: 0 }]);
    await c.close();
    expect(net.closed()).toBe(1);
  });

  it('retransmits on the injected clock alone (RFC 8489 section 6.2.1) and times out', async () => {
    const sent: number[] = [];
    const clock = new ManualClock();
    const net = fakeNetwork(() => {
      sent.push(clock.now());
      return undefined;
    });
    const c = track(new StunClient({ network: net.network, clock, retransmit: { rto: 100, rc: 3, rm: 4 } }));
    const p = c.binding({ address: '198.51.100.1', port: 3478 }).catch((e: unknown) => e);
    while (sent.length === 0) await Promise.resolve();
    while (clock.pending > 0) clock.advance(clock.nextAt()! - clock.now());
    const err = (await p) as StunTransactionError;
    expect(err.code).toBe('TIMEOUT');
    expect(sent).toEqual([0, 100, 300]);
    expect(clock.now()).toBe(700);
  });

  it('uses a socket it was given (a DatagramSocket from any Network) and leaves it open', async () => {
    const net = fakeNetwork((msg) => {
      const m = decodeMessage(msg);
      return new MessageBuilder(Method.Binding, MessageClass.SuccessResponse, m.transactionId).add(Attr.XorMappedAddress, { family: 'IPv4', address: '203.0.113.1', port: 1 }).encode();
    });
    const s = await net.network.createUdpSocket({ family: 'IPv4', address: '10.0.0.9' });
    const c = new StunClient({ socket: s, network: net.network });
    const r = await c.binding({ address: '198.51.100.1', port: 3478 });
    expect(r.local.address).toBe('10.0.0.9');
    await c.close();
    expect(net.opened).toHaveLength(1);
    expect(net.closed()).toBe(0);
  });

  it('with listen: false leaves the socket to its owner, which hands datagrams to receive(); only its own answers are taken', async () => {
    const net = fakeNetwork((msg) => {
      const m = decodeMessage(msg);
      return new MessageBuilder(Method.Binding, MessageClass.SuccessResponse, m.transactionId).add(Attr.XorMappedAddress, { family: 'IPv4', address: '203.0.113.2', port: 2 }).encode();
    });
    const s = await net.network.createUdpSocket({ family: 'IPv4', address: '10.0.0.9' });
    const c = track(new StunClient({ socket: s, listen: false, network: net.network }));
    const mine: boolean[] = [];
    const from = { family: 'IPv4' as const, address: '198.51.100.1', port: 3478 };
    s.on('message', (d, r) => mine.push(c.receive(d, { family: r.family, address: r.address, port: r.port })));
    const r = await c.binding(from);
    expect(r.mapped.address).toBe('203.0.113.2');
    expect(mine).toEqual([true]);
    // Someone else's response, a request, and bytes that are not STUN are the owner's.
    expect(c.receive(success(newTransactionId()).raw, from)).toBe(false);
    expect(c.receive(request().bytes, from)).toBe(false);
    expect(c.receive(Buffer.alloc(24), from)).toBe(false);
    expect(c.receive(Buffer.from('hello'), from)).toBe(false);
  });
});
