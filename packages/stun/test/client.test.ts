import * as dgram from 'node:dgram';
import { describe, expect, it } from 'vitest';
import {
  Attr,
  AttrType,
  ManualClock,
  MessageBuilder,
  MessageClass,
  Method,
  PasswordAlgorithm,
  SecurityFeature,
  StunClient,
  type StunMessage,
  StunServer,
  StunTransactionError,
  TransactionTimer,
  checkIntegrity,
  decodeMessage,
  longTermKey,
  makeNonceCookie,
  offeredAlgorithms,
  sameAlgorithms,
  userhash,
} from '../src/index.js';
import { useCleanup } from '../../../test/helpers/cleanup.js';

const { defer, track } = useCleanup();


describe('TransactionTimer (RFC 8489 section 6.2.1)', () => {
  it('sends at 0, 500, 1500, 3500, 7500, 15500, 31500 ms and gives up at 39500 ms', () => {
    const t = new TransactionTimer(0);
    const sends = [0];
    let now = 0;
    for (;;) {
      now = t.nextTimeout()!;
      const a = t.onTimeout(now);
      if (a === 'timeout') break;
      expect(a).toBe('retransmit');
      sends.push(now);
    }
    expect(sends).toEqual([0, 500, 1500, 3500, 7500, 15500, 31500]);
    expect(now).toBe(39500);
    expect(t.sendCount).toBe(7);
    expect(t.nextTimeout()).toBeUndefined();
  });

  it('waits Ti = 39.5 s without retransmitting over a reliable transport', () => {
    const t = new TransactionTimer(1000, { reliable: true });
    expect(t.nextTimeout()).toBe(40500);
    expect(t.onTimeout(40499)).toBe('wait');
    expect(t.onTimeout(40500)).toBe('timeout');
    expect(t.sendCount).toBe(1);
  });

  it('honours other RTO, Rc and Rm values, and stops when finished', () => {
    const t = new TransactionTimer(0, { rto: 100, rc: 3, rm: 2 });
    expect(t.nextTimeout()).toBe(100);
    expect(t.onTimeout(100)).toBe('retransmit');
    expect(t.nextTimeout()).toBe(300);
    expect(t.onTimeout(300)).toBe('retransmit');
    expect(t.nextTimeout()).toBe(500); // Rm * RTO after the third send
    t.finish();
    expect(t.onTimeout(500)).toBe('wait');
    expect(t.nextTimeout()).toBeUndefined();
    // Rc = 1: the only request is also the last, so the one wait is Rm * RTO, not RTO.
    const once = new TransactionTimer(1000, { rto: 100, rc: 1, rm: 4 });
    expect(once.nextTimeout()).toBe(1400);
    expect(once.onTimeout(1399)).toBe('wait');
    expect(once.onTimeout(1400)).toBe('timeout');
    expect(once.sendCount).toBe(1);
  });
});

/** A UDP socket that records requests and answers with `reply` (or stays silent). */
async function fakeServer(reply: (m: StunMessage, n: number) => Buffer | undefined) {
  const sock = dgram.createSocket('udp4');
  const seen: StunMessage[] = [];
  sock.on('message', (buf, rinfo) => {
    const m = decodeMessage(buf);
    seen.push(m);
    const out = reply(m, seen.length);
    if (out) sock.send(out, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  defer(() => new Promise<void>((r) => sock.close(() => r())));
  return { port: sock.address().port, seen, arrived: (n: number) => waitUntil(() => seen.length >= n) };
}

async function waitUntil(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 2000 && !cond(); i++) await new Promise((r) => setImmediate(r));
  if (!cond()) throw new Error('condition not met');
}

describe('StunClient over UDP with an injected clock', () => {
  it('retransmits on the RFC schedule and fails with TIMEOUT after Rc sends', async () => {
    expect.assertions(5);
    const srv = await fakeServer(() => undefined);
    const clock = new ManualClock();
    const c = track(new StunClient({ clock }));
    const p = c.request({ address: '127.0.0.1', port: srv.port }).catch((e) => e);
    await srv.arrived(1);
    for (const [at, n] of [[500, 2], [1500, 3], [3500, 4], [7500, 5], [15500, 6], [31500, 7]] as const) {
      clock.advance(at - clock.now());
      await srv.arrived(n);
    }
    // Every retransmission is the same request, same transaction id.
    expect(new Set(srv.seen.map((m) => m.transactionId.toString('hex'))).size).toBe(1);
    clock.advance(39500 - clock.now() - 1);
    expect(clock.pending).toBe(1);
    clock.advance(1);
    const err = await p;
    expect(err).toBeInstanceOf(StunTransactionError);
    expect(err.code).toBe('TIMEOUT');
    expect(srv.seen).toHaveLength(7);
  });

  it('matches the response by transaction id; others go to onUnmatched', async () => {
    const sock = dgram.createSocket('udp4');
    sock.on('message', (buf, rinfo) => {
      const m = decodeMessage(buf);
      // First an answer to some other transaction, then one with the right id whose
      // FINGERPRINT does not match (not STUN, RFC 8489 section 7.3), then the right one.
      const wrong = new MessageBuilder(Method.Binding, MessageClass.SuccessResponse)
        .add(Attr.XorMappedAddress, { family: 'IPv4', address: '1.2.3.4', port: 1 })
        .encode();
      const badFingerprint = new MessageBuilder(Method.Binding, MessageClass.SuccessResponse, m.transactionId)
        .add(Attr.XorMappedAddress, { family: 'IPv4', address: '6.6.6.6', port: 6 })
        .encode({ fingerprint: true });
      badFingerprint[badFingerprint.length - 1]! ^= 1;
      const right = new MessageBuilder(Method.Binding, MessageClass.SuccessResponse, m.transactionId)
        .add(Attr.XorMappedAddress, { family: 'IPv4', address: '5.6.7.8', port: 9 })
        .encode({ fingerprint: true });
      sock.send(wrong, rinfo.port, rinfo.address);
      sock.send(badFingerprint, rinfo.port, rinfo.address);
      sock.send(right, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    defer(() => new Promise<void>((r) => sock.close(() => r())));
    const unmatched: Buffer[] = [];
    const c = track(new StunClient({ onUnmatched: (d) => unmatched.push(d) }));
    const r = await c.binding({ address: '127.0.0.1', port: sock.address().port });
    expect(r.mapped).toEqual({ family: 'IPv4', address: '5.6.7.8', port: 9 });
    expect(r.sends).toBe(1);
    expect(unmatched).toHaveLength(1);
    expect(decodeMessage(unmatched[0]!).get(Attr.XorMappedAddress)!.address).toBe('1.2.3.4');
    expect(c.dropped).toBe(1);
  });

  it('hands datagrams that are not responses to its transactions (DTLS, ZRTP: RFC 7983; requests, indications) to onUnmatched without decoding them', async () => {
    const sock = dgram.createSocket('udp4');
    // A DTLS 1.2 application-data record header, then a ZRTP-like packet: both first bytes
    // below 64, as STUN's are, but no magic cookie. A socket shared with ICE carries them
    // at the data rate, so they must not go through the decoder (which throws on them).
    const dtls = Buffer.concat([Buffer.from([0x17, 0xfe, 0xfd, 0, 1, 0, 0, 0, 0, 0, 7, 0, 24]), Buffer.alloc(24, 0xaa)]);
    const zrtp = Buffer.concat([Buffer.from([0x10, 0, 0, 1]), Buffer.from('ZRTP'), Buffer.alloc(24, 0xbb)]);
    // A request and an indication with the very transaction id under way, each with an
    // attribute that overruns the message (the decoder throws): not responses, so the
    // owner's to decode (a peer's ICE check, a TURN Data indication), never counted here.
    const overrun = (cls: MessageClass, tid: Buffer) => {
      const b = new MessageBuilder(Method.Binding, cls, tid).add(Attr.Software, 'abcd').encode();
      b.writeUInt16BE(64, 22); // SOFTWARE's length: 64 bytes, 4 are there
      return b;
    };
    let others: Buffer[] = [];
    sock.on('message', (buf, rinfo) => {
      const m = decodeMessage(buf);
      const right = new MessageBuilder(Method.Binding, MessageClass.SuccessResponse, m.transactionId)
        .add(Attr.XorMappedAddress, { family: 'IPv4', address: '5.6.7.8', port: 9 })
        .encode({ fingerprint: true });
      others = [dtls, zrtp, overrun(MessageClass.Request, m.transactionId), overrun(MessageClass.Indication, m.transactionId)];
      for (const d of others) sock.send(d, rinfo.port, rinfo.address);
      sock.send(right, rinfo.port, rinfo.address);
    });
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
    defer(() => new Promise<void>((r) => sock.close(() => r())));
    const unmatched: Buffer[] = [];
    const c = track(new StunClient({ onUnmatched: (d) => unmatched.push(d) }));
    await c.binding({ address: '127.0.0.1', port: sock.address().port });
    expect(() => decodeMessage(others[2]!)).toThrow();
    expect(unmatched).toEqual(others);
    expect(c.dropped).toBe(0);
  });

  it('can be aborted with an AbortSignal', async () => {
    expect.assertions(2);
    const srv = await fakeServer(() => undefined);
    const c = track(new StunClient());
    const ac = new AbortController();
    const p = c.request({ address: '127.0.0.1', port: srv.port }, { signal: ac.signal });
    await srv.arrived(1);
    ac.abort();
    try {
      await p;
    } catch (e) {
      expect(e).toBeInstanceOf(StunTransactionError);
      expect((e as StunTransactionError).code).toBe('ABORTED');
    }
  });

  it('rejects pending transactions with CLOSED when closed', async () => {
    const srv = await fakeServer(() => undefined);
    const c = new StunClient();
    const p = c.request({ address: '127.0.0.1', port: srv.port }).catch((e) => e);
    await srv.arrived(1);
    await c.close();
    expect((await p).code).toBe('CLOSED');
  });

  it('turns an error response into ERROR_RESPONSE with the code and reason', async () => {
    expect.assertions(3);
    const srv = await fakeServer((m) => new MessageBuilder(m.method, MessageClass.ErrorResponse, m.transactionId).add(Attr.ErrorCode, { code: 403, reason: 'Forbidden' }).encode());
    const c = track(new StunClient());
    try {
      await c.binding({ address: '127.0.0.1', port: srv.port });
    } catch (e) {
      expect((e as StunTransactionError).code).toBe('ERROR_RESPONSE');
      expect((e as StunTransactionError).errorCode).toBe(403);
      expect((e as StunTransactionError).reason).toBe('Forbidden');
    }
  });
});

describe('StunClient long-term credentials (RFC 8489 section 9.2)', () => {
  const username = 'alice';
  const password = 's3cret';
  const realm = 'natkit.test';

  /**
   * A server that challenges with 401, answers the first authenticated request with 438
   * (stale nonce) and the second with success, checking integrity with the key for the
   * algorithm the client chose.
   */
  async function authServer(opts: { algorithms?: boolean; anonymity?: boolean }) {
    let nonceN = 0;
    const features = (opts.algorithms ? SecurityFeature.PasswordAlgorithms : 0) | (opts.anonymity ? SecurityFeature.UsernameAnonymity : 0);
    const nonce = () => (features ? makeNonceCookie(features, `n${++nonceN}`) : `n${++nonceN}`);
    let current = nonce();
    const log: string[] = [];
    const srv = await fakeServer((m) => {
      const err = (code: number, reason: string, extra?: (b: MessageBuilder) => void) => {
        const b = new MessageBuilder(m.method, MessageClass.ErrorResponse, m.transactionId).add(Attr.ErrorCode, { code, reason });
        extra?.(b);
        return b.encode();
      };
      const challenge = (b: MessageBuilder) => {
        b.add(Attr.Realm, realm).add(Attr.Nonce, current);
        if (opts.algorithms) b.add(Attr.PasswordAlgorithms, offeredAlgorithms());
      };
      if (!m.has(AttrType.MESSAGE_INTEGRITY) && !m.has(AttrType.MESSAGE_INTEGRITY_SHA256)) {
        log.push('401');
        return err(401, 'Unauthorized', challenge);
      }
      const alg = m.get(Attr.PasswordAlgorithm)?.algorithm ?? PasswordAlgorithm.MD5;
      if (opts.algorithms) {
        // RFC 8489 section 9.2.4: the echoed PASSWORD-ALGORITHMS must match what was sent.
        expect(sameAlgorithms(m.get(Attr.PasswordAlgorithms)!, offeredAlgorithms())).toBe(true);
      }
      if (opts.anonymity) {
        expect(m.has(AttrType.USERNAME)).toBe(false);
        expect(m.get(Attr.Userhash)!.equals(userhash(username, realm))).toBe(true);
      } else {
        expect(m.get(Attr.Username)).toBe(username);
      }
      const key = longTermKey(username, realm, password, alg);
      const integ = checkIntegrity(m, key);
      if (integ === 'mismatch') {
        log.push('bad integrity');
        return err(401, 'Unauthorized', challenge);
      }
      if (m.get(Attr.Nonce) !== current || log.filter((x) => x === '438').length === 0) {
        log.push('438');
        current = nonce();
        return err(438, 'Stale Nonce', challenge);
      }
      log.push(`ok ${integ} alg=${alg}`);
      return new MessageBuilder(m.method, MessageClass.SuccessResponse, m.transactionId)
        .add(Attr.XorMappedAddress, { family: 'IPv4', address: '192.0.2.1', port: 1 })
        .encode({ integrity: { key, algorithm: integ === 'sha256' ? 'sha256' : 'sha1' } });
    });
    return { ...srv, log };
  }

  it('answers 401 with MD5 long-term credentials and 438 with the new nonce (RFC 5389 style server)', async () => {
    const srv = await authServer({});
    const c = track(new StunClient({ credentials: { username, password } }));
    const r = await c.binding({ address: '127.0.0.1', port: srv.port });
    expect(r.mapped.address).toBe('192.0.2.1');
    expect(srv.log).toEqual(['401', '438', 'ok sha1 alg=1']);
    // The realm and nonce are remembered: the next request is authenticated at once.
    await c.binding({ address: '127.0.0.1', port: srv.port });
    expect(srv.log.slice(3)).toEqual(['ok sha1 alg=1']);
  });

  it('negotiates SHA-256 from PASSWORD-ALGORITHMS and uses MESSAGE-INTEGRITY-SHA256', async () => {
    const srv = await authServer({ algorithms: true });
    const c = track(new StunClient({ credentials: { username, password } }));
    await c.binding({ address: '127.0.0.1', port: srv.port });
    expect(srv.log).toEqual(['401', '438', 'ok sha256 alg=2']);
  });

  it('sends USERHASH instead of USERNAME when the nonce cookie asks for anonymity', async () => {
    const srv = await authServer({ algorithms: true, anonymity: true });
    const c = track(new StunClient({ credentials: { username, password } }));
    await c.binding({ address: '127.0.0.1', port: srv.port });
    expect(srv.log.at(-1)).toBe('ok sha256 alg=2');
  });

  it('gives up with AUTH_FAILED on a wrong password instead of looping', async () => {
    const srv = await authServer({});
    const c = track(new StunClient({ credentials: { username, password: 'wrong' } }));
    await expect(c.binding({ address: '127.0.0.1', port: srv.port })).rejects.toMatchObject({ code: 'AUTH_FAILED', errorCode: 401 });
    expect(srv.log).toEqual(['401', 'bad integrity']);
  });

  it('gives up with the 438 after three fresh nonces in a row instead of looping', async () => {
    let n = 0;
    const srv = await fakeServer((m) => {
      const b = new MessageBuilder(m.method, MessageClass.ErrorResponse, m.transactionId);
      if (!m.has(AttrType.MESSAGE_INTEGRITY) && !m.has(AttrType.MESSAGE_INTEGRITY_SHA256)) b.add(Attr.ErrorCode, { code: 401, reason: 'Unauthorized' });
      else b.add(Attr.ErrorCode, { code: 438, reason: 'Stale Nonce' });
      return b.add(Attr.Realm, realm).add(Attr.Nonce, `n${++n}`).encode();
    });
    const c = track(new StunClient({ credentials: { username, password } }));
    await expect(c.binding({ address: '127.0.0.1', port: srv.port })).rejects.toMatchObject({ code: 'ERROR_RESPONSE', errorCode: 438 });
    // The unauthenticated request, the first authenticated one, then three retries.
    expect(srv.seen.map((m) => m.get(Attr.Nonce))).toEqual([undefined, 'n1', 'n2', 'n3', 'n4']);
  });

  it('ignores a success response whose integrity does not match (RFC 8489 section 9.2.5)', async () => {
    const clock = new ManualClock();
    const srv = await fakeServer((m) => {
      if (!m.has(AttrType.MESSAGE_INTEGRITY)) {
        return new MessageBuilder(m.method, MessageClass.ErrorResponse, m.transactionId)
          .add(Attr.ErrorCode, { code: 401, reason: 'Unauthorized' })
          .add(Attr.Realm, realm)
          .add(Attr.Nonce, 'abc')
          .encode();
      }
      // A forged success: signed with the wrong key.
      return new MessageBuilder(m.method, MessageClass.SuccessResponse, m.transactionId)
        .add(Attr.XorMappedAddress, { family: 'IPv4', address: '6.6.6.6', port: 6 })
        .encode({ integrity: { key: Buffer.from('not the key') } });
    });
    const c = track(new StunClient({ clock, credentials: { username, password } }));
    const p = c.binding({ address: '127.0.0.1', port: srv.port }).catch((e) => e);
    await srv.arrived(2);
    await waitUntil(() => c.dropped >= 1);
    clock.advance(39_500);
    const e = await p;
    expect(e.code).toBe('TIMEOUT');
  });
});

describe('StunClient redirects and several servers', () => {
  it('follows 300 ALTERNATE-SERVER and detects loops', async () => {
    const real = track(await StunServer.start({ address: '127.0.0.1', port: 0, tcp: false }));
    const redirect = await fakeServer((m) =>
      new MessageBuilder(m.method, MessageClass.ErrorResponse, m.transactionId)
        .add(Attr.ErrorCode, { code: 300, reason: 'Try Alternate' })
        .add(Attr.AlternateServer, { family: 'IPv4', address: '127.0.0.1', port: real.listening[0]!.port })
        .encode(),
    );
    const c = track(new StunClient());
    const r = await c.binding({ address: '127.0.0.1', port: redirect.port });
    expect(r.server.port).toBe(real.listening[0]!.port);
    expect(r.mapped.address).toBe('127.0.0.1');

    const loop = await fakeServer((m) =>
      new MessageBuilder(m.method, MessageClass.ErrorResponse, m.transactionId)
        .add(Attr.ErrorCode, { code: 300, reason: 'Try Alternate' })
        .add(Attr.AlternateServer, { family: 'IPv4', address: '127.0.0.1', port: loopPort() })
        .encode(),
    );
    function loopPort() {
      return loop.port;
    }
    await expect(c.binding({ address: '127.0.0.1', port: loop.port })).rejects.toMatchObject({ code: 'REDIRECT_LOOP' });
  });

  it('queries several servers at once and reports each', async () => {
    const a = track(await StunServer.start({ address: '127.0.0.1', port: 0 }));
    const silent = await fakeServer(() => undefined);
    // The silent server costs the whole schedule (1.2 s); the live ones get that long too.
    const c = track(new StunClient({ retransmit: { rto: 200, rc: 2, rm: 5 } }));
    const [ra, rtcp, rs] = await c.bindingAll([
      { address: '127.0.0.1', port: a.listening[0]!.port },
      { address: '127.0.0.1', port: a.listening[0]!.port, transport: 'tcp' },
      { address: '127.0.0.1', port: silent.port },
    ]);
    expect(ra!.status).toBe('fulfilled');
    expect(rtcp!.status).toBe('fulfilled');
    expect(rs!.status).toBe('rejected');
    expect((rs as PromiseRejectedResult).reason.code).toBe('TIMEOUT');
  });
});
