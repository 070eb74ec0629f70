// Random sequences of what clients and the bus can do, against one to three instances:
// the core never fails, never holds more than its limits, and once the bus delivers, every
// pairing is mutual and matches the directory. FUZZ_RUNS=N runs more; a counterexample
// replays with FUZZ_REPLAY='[instances, ops]' (the bus traffic is printed).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type FakeConn, Cluster } from './harness.js';

type Op =
  | { k: 'open'; inst: number }
  | { k: 'join'; conn: number; room: number; session: number | undefined }
  | { k: 'send'; conn: number; data: Uint8Array }
  | { k: 'line'; conn: number; line: string }
  | { k: 'hang'; conn: number }
  | { k: 'block'; conn: number; on: boolean }
  | { k: 'advance'; ms: number }
  | { k: 'drop'; on: boolean }
  | { k: 'dirUp'; inst: number };

const lines = [
  '{"type":"app","data":1}',
  '{"type":"candidate","foundation":"1","component":1,"transport":"udp","priority":1,"address":"192.0.2.1","port":1,"candidateType":"host"}',
  '{"type":"end-of-candidates"}',
  '{"type":"bye"}',
  '{"type":"ping"}',
  '{"type":"join","room":"r0"}',
  '{"type":"app"',
  'garbage',
  '192.0.2.1 5000 udp 1.000000 local u p',
];

const op: fc.Arbitrary<Op> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ k: fc.constant('open' as const), inst: fc.nat(2) }) },
  { weight: 4, arbitrary: fc.record({ k: fc.constant('join' as const), conn: fc.nat(15), room: fc.nat(2), session: fc.option(fc.nat(2), { nil: undefined }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('send' as const), conn: fc.nat(15), data: fc.uint8Array({ maxLength: 300 }) }) },
  { weight: 5, arbitrary: fc.record({ k: fc.constant('line' as const), conn: fc.nat(15), line: fc.constantFrom(...lines) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('hang' as const), conn: fc.nat(15) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('block' as const), conn: fc.nat(15), on: fc.boolean() }) },
  { weight: 2, arbitrary: fc.record({ k: fc.constant('advance' as const), ms: fc.integer({ min: 1, max: 20_000 }) }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('drop' as const), on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ k: fc.constant('dirUp' as const), inst: fc.nat(2) }) },
);

let exercised = 0;

function run(instances: number, ops: Op[]): void {
        const maxBuffer = 600;
        const cl = new Cluster(instances, { maxBuffer, maxLine: 200, maxErrors: 3, detectTimeout: 500, joinTimeout: 3000, heartbeatInterval: 4000, heartbeatTimeout: 12000, idleTimeout: 30000, slowReaderTimeout: 5000, linkTimeout: 15000 });
        const conns: FakeConn[] = [];
        try {
          for (const o of ops) {
            const c = 'conn' in o ? conns[o.conn % Math.max(1, conns.length)] : undefined;
            switch (o.k) {
              case 'open':
                conns.push(cl.open(o.inst % instances, `10.0.0.${conns.length % 3}`));
                break;
              case 'join':
                if (c && !c.closed) cl.json(c, { type: 'join', room: `r${o.room}`, ...(o.session !== undefined ? { session: `session-${o.session}-0123456789` } : {}) });
                break;
              case 'send':
                if (c && !c.closed) cl.send(c, Buffer.from(o.data));
                break;
              case 'line':
                if (c && !c.closed) cl.send(c, `${o.line}\n`);
                break;
              case 'hang':
                if (c && !c.closed) cl.hangUp(c);
                break;
              case 'block':
                if (c && !c.closed) cl.drivers[c.instance]!.feed({ type: o.on ? 'blocked' : 'drained', conn: c.id });
                break;
              case 'advance':
                cl.advance(o.ms);
                break;
              case 'drop':
                cl.dropAll = o.on;
                break;
              case 'dirUp':
                cl.drivers[o.inst % instances]!.feed({ type: 'directory-up' });
                break;
            }
            for (let i = 0; i < instances; i++) {
              const core = cl.core(i);
              // Per party: held + in flight never past maxBuffer.
              for (const p of (core as unknown as { parties: Map<string, { pendingBytes: number; inflightBytes: number }> }).parties.values()) {
                expect(p.pendingBytes + p.inflightBytes).toBeLessThanOrEqual(maxBuffer);
              }
            }
          }
          expect(cl.logs.filter((l) => l.includes("internal error"))).toEqual([]);
          for (let i = 0; i < instances; i++) exercised += cl.core(i).stats.pairs + cl.core(i).stats.retransmits;
          // Let the bus work: deliver, retransmit, until quiet.
          cl.dropAll = false;
          for (let i = 0; i < 5; i++) cl.advance(1000);
          type P = { member: string; room: string; peer: { member: string } | undefined; conn: { closing: boolean } };
          const all = new Map<string, P>();
          for (let i = 0; i < instances; i++) {
            for (const [m, p] of (cl.core(i) as unknown as { parties: Map<string, P> }).parties) all.set(m, p);
          }
          for (const [m, p] of all) {
            if (!p.peer) continue;
            const q = all.get(p.peer.member);
            // A peer that is gone is only possible if its going was not told yet; the bus is quiet now.
            expect(q, `${m}'s peer ${p.peer.member} is gone`).toBeDefined();
            expect(q!.peer?.member, `${p.peer.member} is not paired back with ${m}`).toBe(m);
            expect(q!.room).toBe(p.room);
          }
          // Every party is in the directory's room, and no room holds more than two.
          for (const [m, p] of all) expect(cl.directory.members(p.room)).toContain(m);
          for (const room of ['plain', 'room:r0', 'room:r1', 'room:r2']) expect(cl.directory.members(room).length).toBeLessThanOrEqual(2);
        } catch (err) {
          if (process.env.FUZZ_REPLAY) console.log(cl.logs.join('\n'));
          throw err;
        } finally {
          cl.stop();
        }
}

describe('the core under random events', () => {
  it('never fails, stays within its limits, and pairs mutually once the bus delivers', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 3 }), fc.array(op, { minLength: 20, maxLength: 150 }), (instances, ops) => run(instances, ops)),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 400) },
    );
    // The sequences do reach pairs across instances and retransmissions (not only no-ops).
    expect(exercised).toBeGreaterThan(100);
  });
});

// FUZZ_REPLAY='[instances, ops]' replays one counterexample (with the cluster's log printed).
if (process.env.FUZZ_REPLAY) {
  it('replay', () => {
    const [n, ops] = JSON.parse(process.env.FUZZ_REPLAY!.replace(/Uint8Array\.from\((\[[^\]]*\])\)/g, '$1')) as [number, Op[]];
    for (const o of ops) if (o.k === 'send') o.data = Uint8Array.from(o.data as unknown as number[]);
    run(n, ops);
  });
}

describe('plain mode against a model of the tutorial\'s server', () => {
  // The model: at most two parties; bytes go to the other one, or are held for the next
  // one while a party is alone (up to maxBuffer: past it the sender is closed); a third is
  // closed at once; a party that leaves takes what it had held with it.
  type PlainOp = { k: 'open' } | { k: 'send'; conn: number; data: Uint8Array } | { k: 'hang'; conn: number };
  const plainOp: fc.Arbitrary<PlainOp> = fc.oneof(
    { weight: 2, arbitrary: fc.constant({ k: 'open' as const }) },
    { weight: 5, arbitrary: fc.record({ k: fc.constant('send' as const), conn: fc.nat(12), data: fc.uint8Array({ minLength: 1, maxLength: 40 }) }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('hang' as const), conn: fc.nat(12) }) },
  );

  it('every connection receives exactly the bytes the model says, and is closed when the model says', () => {
    fc.assert(
      fc.property(fc.array(plainOp, { maxLength: 60 }), (ops) => {
        const maxBuffer = 100;
        const cl = new Cluster(1, { mode: 'plain', maxBuffer, maxLine: 1 << 20 });
        const conns: Array<{ fake: ReturnType<Cluster['open']>; got: Buffer[]; open: boolean }> = [];
        let parties: number[] = [];
        let held: Buffer[] = [];
        let heldBytes = 0;
        const leave = (i: number) => {
          conns[i]!.open = false;
          if (parties.length === 1) {
            held = [];
            heldBytes = 0;
          }
          parties = parties.filter((x) => x !== i);
        };
        try {
          for (const o of ops) {
            if (o.k === 'open') {
              const fake = cl.open();
              const i = conns.push({ fake, got: [], open: true }) - 1;
              if (parties.length < 2) {
                parties.push(i);
                if (parties.length === 2) {
                  conns[i]!.got.push(...held);
                  held = [];
                  heldBytes = 0;
                }
              } else {
                conns[i]!.open = false;
              }
              continue;
            }
            if (conns.length === 0) continue;
            const i = o.conn % conns.length;
            const c = conns[i]!;
            if (!c.open) continue;
            if (o.k === 'hang') {
              cl.hangUp(c.fake);
              leave(i);
              continue;
            }
            const data = Buffer.from(o.data);
            cl.send(c.fake, data);
            if (parties.length === 2) {
              conns[parties.find((x) => x !== i)!]!.got.push(data);
            } else if (heldBytes + data.length > maxBuffer) {
              leave(i);
            } else {
              held.push(data);
              heldBytes += data.length;
            }
          }
          for (const c of conns) {
            expect(Buffer.concat(c.fake.out).equals(Buffer.concat(c.got))).toBe(true);
            expect(c.fake.closed === undefined).toBe(c.open);
          }
        } finally {
          cl.stop();
        }
      }),
      { numRuns: Number(process.env.FUZZ_RUNS ?? 500) },
    );
  });
});
