// The harness's reading of p2pdemo's --json lines (DemoPeer in p2p-harness.ts), on a stand-in
// process: pure, runs anywhere, in milliseconds.
import { EventEmitter } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, expect, test } from 'vitest';
import type { ExitInfo, LabProcess } from '../helpers/natlab.js';
import { DemoPeer, isConnected, isData, parseDemoLine } from './p2p-harness.js';

/** A LabProcess whose stdout the test writes and whose exit the test decides. */
function standIn(): { proc: LabProcess; out: PassThrough; exit: () => void } {
  const out = new PassThrough();
  let exit!: (e: ExitInfo) => void;
  const exited = new Promise<ExitInfo>((r) => (exit = r));
  const child = Object.assign(new EventEmitter(), { stdout: out });
  const proc = {
    child,
    pid: 0,
    description: 'stand-in',
    exited,
    stdout: () => '',
    stderr: () => '',
    waitFor: () => Promise.reject(new Error('not here')),
    stop: () => exited,
  } as unknown as LabProcess;
  return { proc, out, exit: () => exit({ code: 1, signal: null } as ExitInfo) };
}

const CONNECTED = '{"event":"connected","path":{"local":{"type":"srflx"},"remote":{"type":"prflx"},"kind":"direct"},"rttMs":1.5,"iceMs":600}\n';

describe('DemoPeer', () => {
  test('resolves with the first matching event, also one split across chunks', async () => {
    const { proc, out, exit } = standIn();
    const peer = new DemoPeer(proc, 0);
    const waiting = peer.next(isConnected, { timeoutMs: 5000 });
    out.write('natkit p2pdemo 0.1 (text, not JSON)\n{"event":"nat","classic":"Full Cone"}\n');
    out.write(CONNECTED.slice(0, 30));
    out.write(CONNECTED.slice(30));
    const { seen, index } = await waiting;
    expect(index).toBe(1);
    expect(seen.e).toEqual({ event: 'connected', path: { local: { type: 'srflx' }, remote: { type: 'prflx' }, kind: 'direct' }, rttMs: 1.5, iceMs: 600 });
    expect(peer.events.map((s) => s.e.event)).toEqual(['nat', 'connected']);
    expect(peer.broken).toEqual([]);
    exit();
  });

  test('rejects as soon as the demo exits without the event, not at the timeout', async () => {
    const { proc, out, exit } = standIn();
    const peer = new DemoPeer(proc, 0);
    out.write(CONNECTED);
    const waiting = peer.next(isData, { timeoutMs: 60_000 });
    const t0 = Date.now();
    exit();
    await expect(waiting).rejects.toThrow(/p2pdemo exited before the event/);
    expect(Date.now() - t0).toBeLessThan(1000);
  }, 10_000);

  test('rejects at once when asked after the demo has exited', async () => {
    const { proc, exit } = standIn();
    const peer = new DemoPeer(proc, 0);
    exit();
    await proc.exited;
    await expect(peer.next(isData, { timeoutMs: 60_000 })).rejects.toThrow(/p2pdemo exited before the event/);
  }, 10_000);

  test('keeps a line that breaks the contract as broken, not as an event', () => {
    expect(parseDemoLine('{"event":"connected","path":{"local":{"type":"bogus"}}}')).toBeInstanceOf(Error);
    expect(parseDemoLine('{"event":"recovered"')).toBeInstanceOf(Error);
    expect(parseDemoLine('plain text')).toBeUndefined();
    expect(parseDemoLine('{"event":"data","received":3}')).toEqual({ event: 'data', received: 3 });
  });
});
