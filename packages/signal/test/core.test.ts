// The sans-I/O core on a fake clock: the tutorial's plain pipe, rooms, every limit and
// timeout, and several instances over a bus that can lose packets.
import { afterEach, describe, expect, it } from 'vitest';
import { DEFAULT_LIMITS, PLAIN_ROOM, roomKey } from '../src/index.js';
import { Cluster } from './harness.js';

let cl: Cluster;
afterEach(() => cl?.stop());

const cand = (n: number) => ({
  type: 'candidate',
  foundation: `f${n}`,
  component: 1,
  transport: 'udp',
  priority: 2130706431 - n,
  address: '192.0.2.7',
  port: 50000 + n,
  candidateType: 'host',
});

describe('plain mode (the libjingle tutorial)', () => {
  for (const mode of ['auto', 'plain'] as const) {
    describe(`--mode ${mode}`, () => {
      it('pairs the first two parties and forwards bytes both ways, as they are', () => {
        cl = new Cluster(1, { mode });
        const a = cl.open();
        const b = cl.open();
        cl.send(a, '192.0.2.1 5000 udp 1.000000 local user pass\n');
        cl.send(b, Buffer.from([0x31, 0x00, 0xff, 0x0a]));
        expect(cl.text(b)).toBe('192.0.2.1 5000 udp 1.000000 local user pass\n');
        expect(Buffer.concat(a.out)).toEqual(Buffer.from([0x31, 0x00, 0xff, 0x0a]));
        expect(a.closed).toBeUndefined();
        expect(cl.core().pairedCount).toBe(2);
      });

      it('buffers what arrives before the second party and delivers it, in order, when it joins', () => {
        cl = new Cluster(1, { mode });
        const a = cl.open();
        cl.send(a, 'one\n');
        cl.send(a, 'tw');
        cl.send(a, 'o\nthree\n');
        const b = cl.open();
        if (mode === 'auto') cl.send(b, 'x\n');
        expect(cl.text(b)).toBe('one\ntwo\nthree\n');
        cl.send(a, 'four\n');
        expect(cl.text(b)).toBe('one\ntwo\nthree\nfour\n');
        if (mode === 'auto') expect(cl.text(a)).toBe('x\n');
      });

      it('closes a third party at once, writing nothing to it, and the pair goes on', () => {
        cl = new Cluster(1, { mode });
        const a = cl.open();
        const b = cl.open();
        if (mode === 'auto') {
          cl.send(a, 'a\n');
          cl.send(b, 'b\n');
        }
        const c = cl.open();
        if (mode === 'auto') cl.send(c, 'c\n');
        expect(c.closed).toEqual({ graceful: true, code: 'room-full' });
        expect(c.out).toEqual([]);
        expect(cl.core().stats.full).toBe(1);
        cl.send(a, 'still here\n');
        expect(cl.text(b)).toContain('still here\n');
      });

      it('a party leaving frees its place; the one that stays buffers for the next', () => {
        cl = new Cluster(1, { mode });
        const a = cl.open();
        const b = cl.open();
        if (mode === 'auto') {
          cl.send(a, 'hi\n');
          cl.send(b, 'hi\n');
        }
        cl.hangUp(b);
        cl.send(a, 'for whoever comes\n');
        const c = cl.open();
        if (mode === 'auto') cl.send(c, 'c\n');
        expect(c.closed).toBeUndefined();
        expect(cl.text(c)).toBe('for whoever comes\n');
      });

      it("drops what a party had buffered when it leaves (the reference's buffer = \"\")", () => {
        cl = new Cluster(1, { mode });
        const a = cl.open();
        cl.send(a, 'stale candidate\n');
        cl.hangUp(a);
        const b = cl.open();
        const c = cl.open();
        if (mode === 'auto') {
          cl.send(b, 'b\n');
          cl.send(c, 'c\n');
        }
        expect(cl.text(b)).toBe(mode === 'auto' ? 'c\n' : '');
        expect(cl.core().bufferedBytes).toBe(0);
      });
    });
  }

  it('--mode plain: a party from the moment it connects, a silent third closed at once', () => {
    cl = new Cluster(1, { mode: 'plain' });
    cl.open();
    cl.open();
    const c = cl.open();
    expect(c.closed?.code).toBe('room-full');
  });

  it('--mode auto: a connection silent for detectTimeout becomes a plain party and receives', () => {
    cl = new Cluster(1, { mode: 'auto', detectTimeout: 2000 });
    const a = cl.open();
    cl.send(a, 'cand\n');
    const listener = cl.open();
    cl.advance(1999);
    expect(cl.text(listener)).toBe('');
    cl.advance(1);
    expect(cl.text(listener)).toBe('cand\n');
    expect(cl.core().connectionsByProtocol).toEqual({ plain: 2, json: 0, pending: 0 });
  });

  it('an over-long line closes that connection only, without writing to it', () => {
    cl = new Cluster(1, { maxLine: 100 });
    const a = cl.open();
    const b = cl.open();
    cl.send(a, 'ok\n');
    cl.send(b, 'ok\n');
    cl.send(a, `${'x'.repeat(100)}\r\n`); // 100 bytes and CR LF: allowed
    expect(a.closed).toBeUndefined();
    cl.send(a, 'y'.repeat(60));
    cl.send(a, 'y'.repeat(60)); // no newline yet: noticed as it passes the limit
    expect(a.closed).toEqual({ graceful: true, code: 'line-too-long' });
    expect(cl.text(a)).toBe('ok\n');
    expect(b.closed).toBeUndefined();
    expect(cl.text(b)).toBe(`ok\n${'x'.repeat(100)}\r\n${'y'.repeat(60)}`);
  });

  it('buffer-full: a party may hold maxBuffer bytes for a peer that has not come', () => {
    cl = new Cluster(1, { maxBuffer: 1000 });
    const a = cl.open();
    cl.send(a, `${'a'.repeat(499)}\n`);
    cl.send(a, `${'b'.repeat(499)}\n`);
    expect(a.closed).toBeUndefined();
    cl.send(a, 'c\n');
    expect(a.closed?.code).toBe('buffer-full');
  });
});

describe('rooms (JSON protocol)', () => {
  it('pairs two parties of a room, queues for the second, relays validated messages', () => {
    cl = new Cluster();
    const a = cl.join('r1');
    expect(cl.take(a)).toEqual([
      { type: 'joined', v: 1, room: 'r1', initiator: true, peer: false, resumed: false, heartbeat: DEFAULT_LIMITS.heartbeatInterval, maxLine: DEFAULT_LIMITS.maxLine },
    ]);
    cl.json(a, { type: 'credentials', ufrag: 'abcd', pwd: 'abcdefghijklmnopqrstuv' }, cand(1), { type: 'end-of-candidates' });
    const b = cl.join('r1');
    const got = cl.take(b);
    expect(got[0]).toMatchObject({ type: 'joined', initiator: false, peer: true });
    expect(got.slice(1)).toEqual([{ type: 'credentials', ufrag: 'abcd', pwd: 'abcdefghijklmnopqrstuv' }, cand(1), { type: 'end-of-candidates' }]);
    expect(cl.take(a)).toEqual([{ type: 'peer-joined', resumed: false }]);
    cl.json(b, { type: 'app', data: { nat: 'port-restricted', n: [1, 2] } }, { type: 'restart', ufrag: 'wxyz', pwd: 'ABCDEFGHIJKLMNOPQRSTUV+/' });
    expect(cl.take(a)).toEqual([
      { type: 'app', data: { nat: 'port-restricted', n: [1, 2] } },
      { type: 'restart', ufrag: 'wxyz', pwd: 'ABCDEFGHIJKLMNOPQRSTUV+/' },
    ]);
  });

  it('refuses a third party with room-full and a reason, then closes it', () => {
    cl = new Cluster();
    cl.join('r1');
    cl.join('r1');
    const c = cl.join('r1');
    expect(cl.take(c)).toEqual([{ type: 'error', code: 'room-full', reason: 'room r1 already has two parties', fatal: true }]);
    expect(c.closed).toEqual({ graceful: true, code: 'room-full' });
  });

  it('keeps rooms apart, and apart from the plain pair', () => {
    cl = new Cluster();
    const a1 = cl.join('one');
    const a2 = cl.join('two');
    const p = cl.open();
    cl.send(p, 'plain\n');
    const b1 = cl.join('one');
    const b2 = cl.join('two');
    cl.take(a1);
    cl.take(a2);
    cl.json(b1, { type: 'app', data: 1 });
    cl.json(b2, { type: 'app', data: 2 });
    cl.take(b1);
    expect(cl.take(a1)).toEqual([{ type: 'app', data: 1 }]);
    expect(cl.take(a2)).toEqual([{ type: 'app', data: 2 }]);
    expect(cl.text(p)).toBe('');
    expect(cl.core().roomCount).toBe(3);
  });

  it('tells the one that stays why the peer left; the place is free for a new party', () => {
    cl = new Cluster();
    const a = cl.join('r');
    const b = cl.join('r');
    cl.take(a);
    cl.hangUp(b);
    expect(cl.take(a)).toEqual([{ type: 'peer-left', reason: 'closed' }]);
    const c = cl.join('r');
    expect(cl.take(c)[0]).toMatchObject({ type: 'joined', peer: true });
    cl.json(c, { type: 'bye' });
    expect(c.closed).toEqual({ graceful: true, code: 'bye' });
    expect(cl.take(a)).toEqual([{ type: 'peer-joined', resumed: false }, { type: 'peer-left', reason: 'bye' }]);
    expect(cl.directory.members(roomKey('r'))).toHaveLength(1);
  });

  it('a join with the session of a party in the room takes its place (reconnect over a half-open connection)', () => {
    cl = new Cluster();
    const session = 'S'.repeat(22);
    const a = cl.join('r', 0, { session });
    const b = cl.join('r');
    cl.take(a);
    cl.take(b);
    const a2 = cl.join('r', 0, { session });
    expect(cl.take(a)).toEqual([{ type: 'error', code: 'replaced', reason: 'another connection took over this session', fatal: true }]);
    expect(a.closed?.code).toBe('replaced');
    expect(cl.take(a2)[0]).toMatchObject({ type: 'joined', peer: true, resumed: true });
    expect(cl.take(b)).toEqual([{ type: 'peer-joined', resumed: true }]);
    cl.json(b, { type: 'app', data: 'hi' });
    expect(cl.take(a2)).toEqual([{ type: 'app', data: 'hi' }]);
  });

  it('answers bad messages with non-fatal errors naming the field, and closes after maxErrors', () => {
    cl = new Cluster(1, { maxErrors: 3 });
    const a = cl.join('r');
    cl.take(a);
    cl.send(a, 'not json\n');
    cl.json(a, { ...cand(1), port: 70000 });
    expect(cl.take(a)).toEqual([
      { type: 'error', code: 'invalid-json', reason: expect.stringMatching(/^not JSON/), fatal: false },
      { type: 'error', code: 'invalid-message', reason: 'port: must be between 0 and 65535, got 70000', fatal: false },
    ]);
    cl.json(a, { type: 'credentials', ufrag: 'ab', pwd: 'x'.repeat(22) });
    expect(cl.take(a)).toEqual([{ type: 'error', code: 'too-many-errors', reason: '3 invalid messages; the last: ufrag: must have at least 4 characters', fatal: true }]);
    expect(a.closed?.code).toBe('too-many-errors');
  });

  it('the first line must be a valid join', () => {
    cl = new Cluster();
    const a = cl.open();
    cl.json(a, { type: 'app', data: 1 });
    expect(cl.take(a)).toEqual([{ type: 'error', code: 'not-joined', reason: 'the first message must be a join, got app', fatal: true }]);
    const b = cl.open();
    cl.json(b, { type: 'join', room: 'bad room!' });
    expect(cl.take(b)[0]).toMatchObject({ code: 'invalid-message', reason: expect.stringMatching(/^room: not 1-64 letters/) });
    const c = cl.open();
    cl.json(c, { type: 'join', v: 2, room: 'r' });
    expect(cl.take(c)[0]).toMatchObject({ code: 'unsupported-version' });
    expect([a, b, c].map((x) => x.closed?.code)).toEqual(['not-joined', 'invalid-message', 'unsupported-version']);
  });

  it('invalid UTF-8 and binary garbage are errors, never a crash', () => {
    cl = new Cluster(1, { maxErrors: 5 });
    const a = cl.join('r');
    cl.take(a);
    cl.send(a, Buffer.from([0x7b, 0xff, 0xfe, 0x7d, 0x0a]));
    expect(cl.take(a)).toEqual([{ type: 'error', code: 'invalid-json', reason: 'not UTF-8 text', fatal: false }]);
    const junk = Buffer.alloc(4096);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 7919) % 256;
    cl.send(a, junk);
    expect(a.closed?.code).toBe('too-many-errors');
  });

  it('line-too-long: an error with the limit, then the close', () => {
    cl = new Cluster(1, { maxLine: 200 });
    const a = cl.join('r');
    cl.take(a);
    cl.send(a, `{"type":"app","data":"${'x'.repeat(300)}`);
    expect(cl.take(a)).toEqual([{ type: 'error', code: 'line-too-long', reason: 'a line is longer than 200 bytes', fatal: true }]);
    expect(a.closed?.code).toBe('line-too-long');
  });

  it('buffer-full in the JSON protocol', () => {
    cl = new Cluster(1, { maxBuffer: 300 });
    const a = cl.join('r');
    cl.take(a);
    cl.json(a, { type: 'app', data: 'x'.repeat(200) });
    cl.json(a, { type: 'app', data: 'x'.repeat(200) });
    expect(cl.take(a)).toEqual([{ type: 'error', code: 'buffer-full', reason: 'more than 300 bytes are held for a peer that has not joined', fatal: true }]);
  });

  it('what arrives in the same chunk as the join waits for it', () => {
    cl = new Cluster();
    const a = cl.join('r');
    const b = cl.open();
    cl.json(b, { type: 'join', room: 'r' }, { type: 'app', data: 'early' });
    expect(cl.take(a)).toEqual([expect.objectContaining({ type: 'joined' }), { type: 'peer-joined', resumed: false }, { type: 'app', data: 'early' }]);
  });
});

describe('limits', () => {
  it('connections in all and per IP', () => {
    cl = new Cluster(1, { maxConnections: 3, maxConnectionsPerIp: 2 });
    const a = cl.open(0, '10.0.0.1');
    cl.open(0, '10.0.0.1');
    const c = cl.open(0, '10.0.0.1');
    expect(c.closed).toEqual({ graceful: false, code: 'limit' });
    cl.open(0, '10.0.0.2');
    const e = cl.open(0, '10.0.0.3');
    expect(e.closed?.code).toBe('limit');
    expect(cl.core().stats.refused).toMatchObject({ 'max-connections': 1, 'max-connections-per-ip': 1 });
    cl.hangUp(a);
    expect(cl.open(0, '10.0.0.1').closed).toBeUndefined();
  });

  it('rooms', () => {
    cl = new Cluster(1, { maxRooms: 2 });
    cl.join('a');
    cl.join('b');
    cl.join('b');
    const c = cl.join('c');
    expect(cl.take(c)).toEqual([{ type: 'error', code: 'too-many-rooms', reason: 'this server holds 2 rooms, its limit', fatal: true }]);
    const a2 = cl.join('a');
    expect(a2.closed).toBeUndefined();
  });

  it('a slow reader is cut off past maxBuffer bytes queued, or after slowReaderTimeout', () => {
    cl = new Cluster(1, { maxBuffer: 1000, slowReaderTimeout: 5000 });
    const a = cl.open();
    const b = cl.open();
    cl.send(a, 'hello\n');
    cl.send(b, 'hello\n');
    cl.drivers[0]!.feed({ type: 'blocked', conn: a.id });
    cl.send(b, `${'x'.repeat(600)}\n`);
    expect(a.closed).toBeUndefined();
    cl.send(b, `${'x'.repeat(600)}\n`);
    expect(a.closed).toEqual({ graceful: false, code: 'slow-reader' });
    expect(b.closed).toBeUndefined();

    const c = cl.open();
    cl.send(c, 'c\n');
    cl.drivers[0]!.feed({ type: 'blocked', conn: c.id });
    cl.advance(4999);
    expect(c.closed).toBeUndefined();
    cl.drivers[0]!.feed({ type: 'drained', conn: c.id });
    cl.advance(10_000);
    expect(c.closed).toBeUndefined();
    cl.drivers[0]!.feed({ type: 'blocked', conn: c.id });
    cl.advance(5000);
    expect(c.closed?.code).toBe('slow-reader');
  });

  it('heartbeats: a ping after heartbeatInterval of silence, closed after heartbeatTimeout without an answer', () => {
    cl = new Cluster(1, { heartbeatInterval: 1000, heartbeatTimeout: 3000, idleTimeout: 0 });
    const a = cl.join('r');
    const b = cl.join('r');
    cl.take(a);
    cl.take(b);
    cl.advance(1000);
    expect(cl.take(a)).toEqual([{ type: 'ping' }]);
    expect(cl.take(b)).toEqual([{ type: 'ping' }]);
    for (let t = 0; t < 5; t++) {
      cl.json(b, { type: 'pong' });
      cl.advance(1000);
    }
    expect(b.closed).toBeUndefined();
    expect(a.closed?.code).toBe('heartbeat-timeout');
    expect(cl.take(b)).toContainEqual({ type: 'peer-left', reason: 'timeout' });
  });

  it('idle parties are closed after idleTimeout without data either way (pings do not count)', () => {
    cl = new Cluster(1, { idleTimeout: 60_000, heartbeatInterval: 10_000, heartbeatTimeout: 30_000 });
    const a = cl.join('r');
    const p = cl.open();
    cl.send(p, 'x\n');
    for (let t = 0; t < 5; t++) {
      cl.advance(10_000);
      cl.json(a, { type: 'pong' });
    }
    expect(a.closed).toBeUndefined();
    cl.advance(10_000);
    expect(a.closed?.code).toBe('idle-timeout');
    expect(p.closed?.code).toBe('idle-timeout');
  });

  it('join-timeout for a JSON connection that never joins; detect then join for a silent one', () => {
    cl = new Cluster(1, { joinTimeout: 5000, detectTimeout: 1000 });
    const a = cl.open();
    cl.send(a, '{"type":"jo');
    cl.advance(5000);
    expect(cl.take(a)).toEqual([{ type: 'error', code: 'join-timeout', reason: 'no join within 5000 ms', fatal: true }]);
    const silent = cl.open();
    cl.advance(60_000);
    expect(silent.closed).toBeUndefined();
  });
});

describe('several instances', () => {
  it('parties on two instances pair and talk; what was buffered on one arrives on the other', () => {
    cl = new Cluster(2);
    const a = cl.join('r', 0);
    cl.json(a, cand(1), cand(2));
    const b = cl.join('r', 1);
    expect(cl.take(b).slice(1)).toEqual([cand(1), cand(2)]);
    expect(cl.take(a).slice(1)).toEqual([{ type: 'peer-joined', resumed: false }]);
    cl.json(b, cand(3));
    expect(cl.take(a)).toEqual([cand(3)]);
    const c = cl.join('r', 0);
    expect(cl.take(c)[0]).toMatchObject({ code: 'room-full' });
    // Plain parties too.
    const p = cl.open(0);
    cl.send(p, Buffer.from([1, 2, 255, 10]));
    const q = cl.open(1);
    cl.send(q, 'q\n');
    expect(Buffer.concat(q.out)).toEqual(Buffer.from([1, 2, 255, 10]));
    expect(cl.text(p)).toBe('q\n');
  });

  it('loses nothing when the bus drops packets: frames go again until acknowledged, in order, once', () => {
    cl = new Cluster(2, { retransmitInterval: 1000 });
    const a = cl.join('r', 0);
    const b = cl.join('r', 1);
    cl.take(a);
    cl.take(b);
    cl.dropAll = true;
    for (let n = 1; n <= 5; n++) cl.json(a, cand(n));
    expect(cl.take(b)).toEqual([]);
    expect(cl.core(0).bufferedBytes).toBeGreaterThan(0);
    cl.dropAll = false;
    cl.advance(1000);
    expect(cl.take(b)).toEqual([1, 2, 3, 4, 5].map(cand));
    cl.advance(5000);
    expect(cl.take(b)).toEqual([]);
    expect(cl.core(0).bufferedBytes).toBe(0);
    expect(cl.core(0).stats.retransmits).toBeGreaterThan(0);
  });

  it('a lost packet in the middle holds back the later ones until it comes again', () => {
    cl = new Cluster(2, { retransmitInterval: 500 });
    const a = cl.join('r', 0);
    const b = cl.join('r', 1);
    cl.take(b);
    cl.autoDeliver = false;
    cl.json(a, cand(1));
    cl.json(a, cand(2));
    cl.json(a, cand(3));
    cl.bus.splice(1, 1); // the packet with cand(2) is lost
    cl.deliver();
    expect(cl.take(b)).toEqual([cand(1)]);
    cl.autoDeliver = true;
    cl.advance(500);
    expect(cl.take(b)).toEqual([cand(2), cand(3)]);
  });

  it('an instance that dies loses only its own parties: the peer is told, the place is free', () => {
    cl = new Cluster(3);
    const a = cl.join('r', 0);
    const b = cl.join('r', 1);
    const x = cl.join('other', 2);
    const y = cl.join('other', 0);
    cl.take(a);
    cl.take(x);
    cl.directory.dead.add(cl.core(1).instance);
    cl.drivers[0]!.feed({ type: 'instance-down', instance: cl.core(1).instance });
    expect(cl.take(a)).toEqual([{ type: 'peer-left', reason: 'server-lost' }]);
    const c = cl.join('r', 2);
    expect(cl.take(c)[0]).toMatchObject({ type: 'joined', peer: true });
    expect(cl.take(a)).toEqual([{ type: 'peer-joined', resumed: false }]);
    cl.json(y, { type: 'app', data: 'unaffected' });
    expect(cl.take(x)).toEqual([{ type: 'app', data: 'unaffected' }]);
    expect(b.closed).toBeUndefined(); // its instance is gone with it; nothing was sent to it
  });

  it('an instance whose frames go unacknowledged for linkTimeout is given up', () => {
    cl = new Cluster(2, { linkTimeout: 10_000, retransmitInterval: 1000 });
    const a = cl.join('r', 0);
    cl.join('r', 1);
    cl.take(a);
    cl.dropAll = true;
    cl.json(a, cand(1));
    cl.advance(10_000);
    expect(cl.take(a)).toContainEqual({ type: 'peer-left', reason: 'server-lost' });
    expect(cl.core(0).bufferedBytes).toBe(0);
  });

  it('after the directory lost everything (a Redis restart), parties assert their places again', () => {
    cl = new Cluster(2);
    const a = cl.join('r', 0);
    const b = cl.join('r', 1);
    const lone = cl.join('wait', 1);
    cl.take(a);
    cl.take(b);
    cl.take(lone);
    cl.directory.clear();
    cl.drivers[0]!.feed({ type: 'directory-up' });
    cl.drivers[1]!.feed({ type: 'directory-up' });
    expect(cl.directory.members(roomKey('r'))).toHaveLength(2);
    expect(cl.directory.members(roomKey('wait'))).toHaveLength(1);
    const c = cl.join('r', 0);
    expect(cl.take(c)[0]).toMatchObject({ code: 'room-full' });
    cl.json(a, { type: 'app', data: 'after' });
    expect(cl.take(b)).toEqual([{ type: 'app', data: 'after' }]);
    expect(cl.take(a)).toEqual([]); // no spurious peer-joined
    const d = cl.join('wait', 0);
    expect(cl.take(d)[0]).toMatchObject({ type: 'joined', peer: true });
    expect(cl.take(lone)).toEqual([{ type: 'peer-joined', resumed: false }]);
  });

  it('a party that joined while another instance was cut off is paired when the directory comes back', () => {
    cl = new Cluster(2);
    const a = cl.join('r', 0);
    cl.take(a);
    cl.directory.clear(); // restarted empty; instance 0 has not asserted yet
    const b = cl.join('r', 1);
    expect(cl.take(b)[0]).toMatchObject({ type: 'joined', peer: false });
    cl.drivers[0]!.feed({ type: 'directory-up' });
    expect(cl.take(a)).toEqual([{ type: 'peer-joined', resumed: false }]);
    expect(cl.take(b)).toEqual([{ type: 'peer-joined', resumed: false }]);
    cl.json(b, { type: 'app', data: 1 });
    expect(cl.take(a)).toEqual([{ type: 'app', data: 1 }]);
  });
});

describe('an asynchronous directory (Redis)', () => {
  it('a connection that closes while its join is under way gives the place back when the answer comes', async () => {
    cl = new Cluster();
    const held: Array<() => void> = [];
    const local = cl.directory;
    const d = cl.drivers[0]!;
    (d as unknown as { directory: unknown }).directory = {
      join: (req: Parameters<typeof local.join>[0]) => new Promise((resolve) => held.push(() => resolve(local.join(req)))),
      leave: (room: string, member: string) => local.leave(room, member),
    };
    const a = cl.open();
    cl.json(a, { type: 'join', room: 'r' }, { type: 'app', data: 'early' });
    cl.hangUp(a);
    held.shift()!();
    await new Promise((r) => setImmediate(r));
    expect(local.members(roomKey('r'))).toEqual([]);
    // And one that stays gets its place, with what it sent meanwhile.
    const b = cl.open();
    cl.json(b, { type: 'join', room: 'r' }, cand(1));
    const c = cl.open();
    cl.json(c, { type: 'join', room: 'r' });
    held.shift()!();
    await new Promise((r) => setImmediate(r));
    held.shift()!();
    await new Promise((r) => setImmediate(r));
    expect(cl.take(c)).toEqual([expect.objectContaining({ type: 'joined', peer: true }), cand(1)]);
    cl.advance(DEFAULT_LIMITS.joinTimeout * 2);
    expect(local.members(roomKey('r'))).toHaveLength(2);
  });

  it('a join the directory never answers ends in "unavailable" after joinTimeout', () => {
    cl = new Cluster(1, { joinTimeout: 3000 });
    (cl.drivers[0] as unknown as { directory: unknown }).directory = { join: () => new Promise(() => {}), leave: () => {} };
    const a = cl.join('r');
    cl.advance(3000);
    expect(cl.take(a)).toEqual([{ type: 'error', code: 'unavailable', reason: 'the room directory did not answer in time', fatal: true }]);
  });
});

describe('shutdown', () => {
  it('sends shutdown to JSON parties, tells peers elsewhere, refuses new connections', () => {
    cl = new Cluster(2);
    const a = cl.join('r', 0);
    const b = cl.join('r', 1);
    const p = cl.open(0);
    cl.send(p, 'x\n');
    cl.take(a);
    cl.take(b);
    cl.drivers[0]!.feed({ type: 'shutdown' });
    expect(cl.take(a)).toEqual([{ type: 'error', code: 'shutdown', reason: 'the server is shutting down', fatal: true }]);
    expect(a.closed?.code).toBe('shutdown');
    expect(p.closed?.code).toBe('shutdown');
    expect(cl.take(b)).toEqual([{ type: 'peer-left', reason: 'shutdown' }]);
    expect(cl.open(0).closed?.code).toBe('refused');
    expect(cl.directory.members(PLAIN_ROOM)).toEqual([]);
  });
});
