// Two IceAgents in one process over real UDP sockets on 127.0.0.1 (host candidates, loopback
// allowed), on the real clock. Tests wait for the events themselves with generous deadlines;
// nothing sleeps and no assertion depends on how fast the machine is.
import * as dgram from 'node:dgram';
import { once } from 'node:events';
import { Attr, MessageBuilder, MessageClass, Method, decodeMessage, shortTermKey } from '@natkit/stun';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../../../test/helpers/cleanup.js';
import { IceAgent, type IceAgentOptions, type IceState, formatCandidateLine } from '../src/index.js';

const cleanup = useCleanup();
const DEADLINE = 20_000;

/** Resolves when `pred` holds for an event of `agent`, or fails after the deadline. */
function waitFor<T extends unknown[]>(agent: IceAgent, event: string, pred: (...args: T) => boolean = () => true, ms = DEADLINE): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => {
      agent.off(event as never, on as never);
      reject(new Error(`no '${event}' within ${ms} ms`));
    }, ms);
    const on = (...args: T) => {
      if (!pred(...args)) return;
      clearTimeout(t);
      agent.off(event as never, on as never);
      resolve(args);
    };
    agent.on(event as never, on as never);
  });
}

function loopbackAgent(opts: IceAgentOptions = {}): IceAgent {
  // The Gatherer of src/gather, with host candidates on loopback only.
  const agent = new IceAgent({ addresses: ['127.0.0.1'], includeLoopback: true, families: ['IPv4'], ...opts });
  cleanup.track(agent);
  return agent;
}

/** Wires two agents through an in-process signalling channel (candidate lines as text). */
function pairUp(a: IceAgent, b: IceAgent): { states: Record<'a' | 'b', IceState[]> } {
  const states = { a: [] as IceState[], b: [] as IceState[] };
  a.on('state', (s) => states.a.push(s));
  b.on('state', (s) => states.b.push(s));
  for (const [me, peer] of [
    [a, b],
    [b, a],
  ] as const) {
    me.on('candidate', (c) => peer.addRemoteCandidate(formatCandidateLine(c)));
    me.on('gathering-complete', () => peer.addRemoteCandidate('a=end-of-candidates'));
    me.on('restart', (p) => peer.setRemoteParameters(p));
  }
  a.setRemoteParameters(b.localParameters);
  b.setRemoteParameters(a.localParameters);
  return { states };
}

describe('IceAgent over loopback sockets', () => {
  it('connects and carries data both ways; every state event in order', async () => {
    const a = loopbackAgent({ controlling: true });
    const b = loopbackAgent({ controlling: false });
    const { states } = pairUp(a, b);
    const doneA = waitFor(a, 'state', (s: IceState) => s === 'completed');
    const doneB = waitFor(b, 'state', (s: IceState) => s === 'completed');
    await Promise.all([a.gather(), b.gather()]);
    const [pa, pb] = await Promise.all([a.connect(), b.connect()]);
    await Promise.all([doneA, doneB]);
    expect(pa.local.address).toBe('127.0.0.1');
    expect(pa.remote.port).toBe(pb.local.port);
    expect(pb.remote.port).toBe(pa.local.port);
    const gotB = waitFor(b, 'data', (d: Buffer) => d.toString() === 'hello from a');
    const gotA = waitFor(a, 'data', (d: Buffer) => d.toString() === 'hello from b');
    expect(a.send(Buffer.from('hello from a'))).toBe(true);
    expect(b.send(Buffer.from('hello from b'))).toBe(true);
    await Promise.all([gotA, gotB]);
    expect(states.a).toEqual(['checking', 'connected', 'completed']);
    expect(states.b).toEqual(['checking', 'connected', 'completed']);
    const closed = waitFor(a, 'state', (s: IceState) => s === 'closed');
    await a.close();
    await closed;
    expect(states.a.at(-1)).toBe('closed');
  });

  it('restarts with data flowing: nothing lost, a new selected pair', async () => {
    const a = loopbackAgent({ controlling: true });
    const b = loopbackAgent({ controlling: false });
    pairUp(a, b);
    await Promise.all([a.gather(), b.gather(), a.connect(), b.connect()]);
    const received: string[] = [];
    b.on('data', (d) => received.push(d.toString()));
    const reselected = waitFor(a, 'selected-pair');
    const oldUfrag = a.localParameters.ufrag;
    const params = a.restart();
    b.setRemoteParameters(params);
    expect(params.ufrag).not.toBe(oldUfrag);
    // Send while the new session checks: every datagram goes over the old pair.
    let n = 0;
    const sending = setInterval(() => {
      if (a.send(Buffer.from(`m${n}`))) n++;
    }, 5);
    await reselected;
    clearInterval(sending);
    const last = `m${n}`;
    expect(a.send(Buffer.from(last))).toBe(true);
    await waitFor(b, 'data', (d: Buffer) => d.toString() === last);
    expect(received).toEqual(Array.from({ length: n + 1 }, (_, i) => `m${i}`));
    expect(a.remoteParameters!.ufrag).toBe(b.localParameters.ufrag);
  });

  it('repairs a role conflict (both controlling)', async () => {
    const a = loopbackAgent({ controlling: true });
    const b = loopbackAgent({ controlling: true });
    pairUp(a, b);
    const roles: Array<[string, boolean]> = [];
    a.on('role', (c) => roles.push(['a', c]));
    b.on('role', (c) => roles.push(['b', c]));
    await Promise.all([a.gather(), b.gather(), a.connect(), b.connect()]);
    // Exactly one of them gave up control, once (RFC 8445 7.3.1.1 / 7.2.5.1).
    expect(a.controlling).not.toBe(b.controlling);
    expect(roles).toEqual([[a.controlling ? 'b' : 'a', false]]);
    expect(a.stats.roleConflicts + b.stats.roleConflicts).toBe(1);
  });

  it('answers a check with wrong credentials with 401, and the pair keeps working', async () => {
    const a = loopbackAgent({ controlling: true });
    const b = loopbackAgent({ controlling: false });
    pairUp(a, b);
    await Promise.all([a.gather(), b.gather(), a.connect(), b.connect()]);
    const target = b.selectedPair!.local;
    const sock = dgram.createSocket('udp4');
    cleanup.defer(() => new Promise<void>((r) => sock.close(() => r())));
    await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
    const check = new MessageBuilder(Method.Binding, MessageClass.Request)
      .add(Attr.Username, `${b.localParameters.ufrag}:${a.localParameters.ufrag}`)
      .add(Attr.Priority, 1)
      .add(Attr.IceControlling, 1n)
      .encode({ integrity: { key: shortTermKey('not-the-password-at-all') }, fingerprint: true });
    const answer = once(sock, 'message');
    sock.send(check, target.port, target.address);
    const [msg] = (await answer) as [Buffer];
    const m = decodeMessage(msg);
    expect(m.isError()).toBe(true);
    expect(m.get(Attr.ErrorCode)?.code).toBe(401);
    expect(b.stats.errorsSent[401]).toBe(1);
    const got = waitFor(b, 'data', (d: Buffer) => d.toString() === 'still here');
    a.send(Buffer.from('still here'));
    await got;
    expect(b.state).toBe('completed');
  });

  it('the peer goes silent: disconnected, then failed', async () => {
    const consent = { core: { consent: { intervalMs: 200, expiryMs: 3000 }, disconnectedAfterMs: 1000 } };
    const a = loopbackAgent({ controlling: true, ...consent });
    const b = loopbackAgent({ controlling: false, ...consent });
    const { states } = pairUp(a, b);
    await Promise.all([a.gather(), b.gather(), a.connect(), b.connect()]);
    const disconnected = waitFor(a, 'state', (s: IceState) => s === 'disconnected');
    const failed = waitFor(a, 'state', (s: IceState) => s === 'failed');
    // B vanishes: its socket closes, nothing answers A's consent checks any more.
    await b.close();
    await disconnected;
    await failed;
    expect(states.a.slice(-2)).toEqual(['disconnected', 'failed']);
    expect(a.send(Buffer.from('x'))).toBe(false);
  });
});
