// The session rule (sessions.ts): how two p2pdemo peers agree on one ICE session after
// restarts, by the number in the ufrag. Unit cases, then a property test: two peers (and a
// replacement for one of them) restart at random moments while their messages are in
// flight, in order per direction as TCP keeps them; once the messages are delivered they
// agree, or one more restart (the one a timeout makes) brings them together, and no message
// ever sets off an endless exchange.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decide, MAX_SESSION, sessionOf, sessionParameters } from '../src/sessions.js';

describe('session parameters', () => {
  it('number the ufrag: n+XXXXXXXX (48 random bits), a 24-character password, ice-chars only', () => {
    for (const n of [0, 1, 42, MAX_SESSION]) {
      const p = sessionParameters(n);
      expect(p.ufrag).toMatch(new RegExp(`^${n}\\+[A-Za-z0-9]{8}$`));
      expect(p.pwd).toMatch(/^[A-Za-z0-9]{24}$/);
      expect(sessionOf(p.ufrag)).toBe(n);
    }
    expect(sessionParameters(3).ufrag).not.toBe(sessionParameters(3).ufrag);
  });

  it('refuse a number out of range', () => {
    expect(() => sessionParameters(-1)).toThrow(RangeError);
    expect(() => sessionParameters(1.5)).toThrow(RangeError);
    expect(() => sessionParameters(MAX_SESSION + 1)).toThrow(RangeError);
  });

  it('read no number from another client\'s ufrag', () => {
    for (const u of ['evtj', 'abcd1234', '3+abc', '+abcdefgh', '12+abcdefg/', 'x3+abcdefgh', '1234567890+abcdefgh']) expect(sessionOf(u)).toBeUndefined();
  });

  it('take every character from the whole alphabet (rejection sampling, no modulo bias)', () => {
    let i = 0;
    // bytes 248-255 are rejected; 0 and 61 map to 'A' and '9'
    const bytes = [255, 248, 0, 61, 62, 123, 247, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    const p = sessionParameters(7, (n) => Uint8Array.from({ length: n }, () => bytes[i++ % bytes.length]!));
    expect(p.ufrag.startsWith('7+A9A')).toBe(true);
  });
});

describe('decide', () => {
  const view = (number: number, remoteUfrag: string | undefined, highest = number) => ({ number, remoteUfrag, highest });

  it('the same parameters again: nothing to do', () => {
    expect(decide(view(2, '2+abcdefgh'), '2+abcdefgh')).toEqual({ action: 'same' });
  });
  it('a lower number is stale', () => {
    expect(decide(view(3, undefined), '2+abcdefgh')).toEqual({ action: 'stale' });
    expect(decide(view(3, '3+zzzzzzzz'), '0+abcdefgh')).toEqual({ action: 'stale' });
  });
  it('a higher number: follow the peer there with its parameters', () => {
    expect(decide(view(1, '1+zzzzzzzz'), '4+abcdefgh')).toEqual({ action: 'new-session', number: 4, adopt: true, why: 'peer-restarted' });
    expect(decide(view(1, undefined), '2+abcdefgh')).toEqual({ action: 'new-session', number: 2, adopt: true, why: 'peer-restarted' });
  });
  it('the same number without peer parameters: the answer (or a crossing restart): accept', () => {
    expect(decide(view(5, undefined), '5+abcdefgh')).toEqual({ action: 'accept' });
  });
  it('the same number from another process: lead to the next number, without its parameters', () => {
    expect(decide(view(0, '0+zzzzzzzz', 0), '0+abcdefgh')).toEqual({ action: 'new-session', number: 1, adopt: false, why: 'peer-replaced' });
    expect(decide(view(2, '2+zzzzzzzz', 6), '2+abcdefgh')).toEqual({ action: 'new-session', number: 7, adopt: false, why: 'peer-replaced' });
  });
  it("another client's ufrag: accepted first, followed (with its parameters) when it changes", () => {
    expect(decide(view(0, undefined), 'evtj')).toEqual({ action: 'accept' });
    expect(decide(view(0, 'evtj'), 'h6vY')).toEqual({ action: 'new-session', number: 1, adopt: true, why: 'peer-restarted' });
  });
});

// ---------------------------------------------------------------------------------------
// Two peers on a model of the signalling channel.

interface ModelPeer {
  id: number;
  number: number;
  ufrag: string;
  remote: string | undefined;
  highest: number;
}

class Model {
  peers: ModelPeer[];
  /** FIFO per direction: [0] from peer 0 to peer 1, [1] the other way. */
  wires: string[][] = [[], []];
  messages = 0;
  private seq = 0;

  constructor() {
    this.peers = [this.fresh(0), this.fresh(1)];
    this.send(this.peers[0]!);
    this.send(this.peers[1]!);
  }

  fresh(id: number): ModelPeer {
    return { id, number: 0, ufrag: this.ufrag(0), remote: undefined, highest: 0 };
  }

  ufrag(n: number): string {
    return `${n}+${String(++this.seq).padStart(8, 'a')}`;
  }

  send(p: ModelPeer): void {
    this.wires[p.id]!.push(p.ufrag);
    this.messages++;
  }

  /** A restart of its own (the path broke, a timeout). */
  restart(i: number): void {
    const p = this.peers[i]!;
    p.number = Math.max(p.number, p.highest) + 1;
    p.highest = p.number;
    p.ufrag = this.ufrag(p.number);
    p.remote = undefined;
    this.send(p);
  }

  /** Peer i's process is replaced by a new one (at session 0); what was on the way to the old one is lost. */
  replace(i: number): void {
    this.peers[i] = this.fresh(i);
    this.wires[1 - i] = [];
    this.send(this.peers[i]!);
  }

  /** Delivers the next message to peer i; false if none is waiting. */
  deliver(i: number): boolean {
    const u = this.wires[1 - i]!.shift();
    if (u === undefined) return false;
    const p = this.peers[i]!;
    const d = decide({ number: p.number, remoteUfrag: p.remote, highest: p.highest }, u);
    p.highest = Math.max(p.highest, sessionOf(u) ?? 0);
    if (d.action === 'accept') p.remote = u;
    if (d.action === 'new-session') {
      p.number = d.number;
      p.highest = Math.max(p.highest, d.number);
      p.ufrag = this.ufrag(d.number);
      p.remote = d.adopt ? u : undefined;
      this.send(p);
    }
    return true;
  }

  /** Delivers until nothing is in flight; the number of deliveries (bounded, or the test fails). */
  settle(): number {
    let n = 0;
    while (this.deliver(0) || this.deliver(1)) {
      if (++n > 1000) throw new Error('endless exchange of restarts');
    }
    return n;
  }

  agreed(): boolean {
    const [a, b] = this.peers as [ModelPeer, ModelPeer];
    return a.remote === b.ufrag && b.remote === a.ufrag && a.number === b.number;
  }
}

type Step = { kind: 'restart'; i: number } | { kind: 'deliver'; i: number } | { kind: 'replace'; i: number };
const step: fc.Arbitrary<Step> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('restart' as const), i: fc.integer({ min: 0, max: 1 }) }) },
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('deliver' as const), i: fc.integer({ min: 0, max: 1 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('replace' as const), i: fc.integer({ min: 0, max: 1 }) }) },
);

describe('two peers on the model', () => {
  it('start: each takes the other\'s first session', () => {
    const m = new Model();
    m.settle();
    expect(m.agreed()).toBe(true);
    expect(m.peers.map((p) => p.number)).toEqual([0, 0]);
  });

  it('both restart at once: they meet at 1 with no extra message', () => {
    const m = new Model();
    m.settle();
    m.restart(0);
    m.restart(1);
    const sent = m.messages;
    m.settle();
    expect(m.agreed()).toBe(true);
    expect(m.peers.map((p) => p.number)).toEqual([1, 1]);
    expect(m.messages).toBe(sent);
  });

  it('one restarts twice before the answer: they meet at 2 (no ping-pong)', () => {
    const m = new Model();
    m.settle();
    m.restart(0);
    m.restart(0);
    m.settle();
    expect(m.agreed()).toBe(true);
    expect(m.peers.map((p) => p.number)).toEqual([2, 2]);
    expect(m.messages).toBe(2 + 2 + 2);
  });

  it('a replaced peer (a new process at 0) is led to a new session', () => {
    const m = new Model();
    m.settle();
    m.restart(0);
    m.settle();
    m.replace(1);
    m.settle();
    // peer 0 (at 1) drops the newcomer's 0 as stale: the restart its timeout makes brings them together
    expect(m.agreed()).toBe(false);
    m.restart(0);
    m.settle();
    expect(m.agreed()).toBe(true);
  });

  it('property: after any restarts, replacements and deliveries, the timeouts of the peers not agreed bring them together', () => {
    fc.assert(
      fc.property(fc.array(step, { maxLength: 40 }), fc.integer({ min: 0, max: 1 }), (steps, first) => {
        const m = new Model();
        for (const s of steps) {
          if (s.kind === 'restart') m.restart(s.i);
          else if (s.kind === 'replace') m.replace(s.i);
          else m.deliver(s.i);
        }
        m.settle();
        // A peer not in agreement has a timer running (p2pdemo's --timeout, with or without the
        // peer's parameters); the earlier one fires first, then the other if still needed.
        let who = first;
        let rounds = 0;
        while (!m.agreed()) {
          expect(++rounds).toBeLessThanOrEqual(2);
          m.restart(who);
          m.settle();
          who = 1 - who;
        }
        expect(m.peers[0]!.number).toBe(m.peers[1]!.number);
      }),
      { numRuns: 3000 },
    );
  });
});
