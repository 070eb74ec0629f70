// The pieces of the two-peer lab test that need neither root nor p2pdemo: reading the demo's
// JSON lines, and the script that rewrites the README's table from a run's results.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, test } from 'vitest';
import { type CellResult, type DemoPath, type ResultsFile, parseDemoLine, writeResults } from './p2p-harness.js';
import { predictCell } from './p2p-predict.js';

const SCRIPT = fileURLToPath(new URL('./p2p-table.mjs', import.meta.url));
const TYPES = ['none', 'full-cone', 'restricted-cone', 'port-restricted-cone', 'symmetric'] as const;

describe("p2pdemo's JSON lines (the harness's side of the contract)", () => {
  test('events the harness reads', () => {
    expect(parseDemoLine('{"event":"nat","classic":"Symmetric","mapping":"address-and-port-dependent"}')).toEqual({
      event: 'nat',
      classic: 'Symmetric',
      mapping: 'address-and-port-dependent',
      filtering: undefined,
    });
    const path = { local: { type: 'srflx', address: '203.0.113.101', port: 40000 }, remote: { type: 'prflx' }, kind: 'direct' };
    expect(parseDemoLine(JSON.stringify({ event: 'connected', path, rttMs: 1.5 }))).toEqual({ event: 'connected', path, rttMs: 1.5 });
    expect(parseDemoLine(JSON.stringify({ event: 'recovered', path, recoveryMs: 31_000 }))).toEqual({ event: 'recovered', path, recoveryMs: 31_000, rttMs: undefined });
    // p2pdemo's own figures: ICE's part of the connect time, the outage since the last consent answer
    expect(parseDemoLine(JSON.stringify({ event: 'connected', path, rttMs: 1.5, iceMs: 640, t: 6.2 }))).toEqual({ event: 'connected', path, rttMs: 1.5, iceMs: 640 });
    expect(parseDemoLine(JSON.stringify({ event: 'recovered', path, recoveryMs: 500, outageMs: 13_000, rttMs: 2 }))).toEqual({ event: 'recovered', path, recoveryMs: 500, outageMs: 13_000, rttMs: 2 });
    expect(parseDemoLine('{"type":"disconnected","reason":"consent"}')).toEqual({ event: 'disconnected', reason: 'consent' });
    expect(parseDemoLine('{"event":"data","received":3}')).toEqual({ event: 'data', received: 3 });
    expect(parseDemoLine('{"event":"restart"}')).toEqual({ event: 'restart' });
    expect(parseDemoLine('{"event":"gathered","candidates":4}')).toEqual({ event: 'other', raw: { event: 'gathered', candidates: 4 } });
  });

  test('a path without "kind" is relayed when either end is a relayed candidate', () => {
    const e = parseDemoLine('{"event":"connected","path":{"local":{"type":"relay"},"remote":{"type":"srflx"}}}');
    expect(e).toMatchObject({ path: { kind: 'relayed' } });
    expect(parseDemoLine('{"event":"connected","path":{"local":{"type":"host"},"remote":{"type":"host"}}}')).toMatchObject({ path: { kind: 'direct' } });
  });

  test('text lines are not events; JSON that breaks the contract is an error, not a guess', () => {
    expect(parseDemoLine('NAT type: Port Restricted Cone')).toBeUndefined();
    expect(parseDemoLine('')).toBeUndefined();
    expect(parseDemoLine('{"event":')).toBeInstanceOf(Error);
    const noPath = parseDemoLine('{"event":"connected","rttMs":3}');
    expect(noPath).toBeInstanceOf(Error);
    expect((noPath as Error).message).toMatch(/'connected' without a path/);
    expect(parseDemoLine('{"event":"connected","path":{"local":{"type":"stun"},"remote":{"type":"host"}}}')).toBeInstanceOf(Error);
  });
});

function cell(a: string, b: string, over: Partial<CellResult> = {}): CellResult {
  const predicted = predictCell(a as (typeof TYPES)[number], b as (typeof TYPES)[number]);
  const kind = predicted.path;
  const p: DemoPath = kind === 'direct' ? { local: { type: predicted.a!.local }, remote: { type: predicted.a!.remote }, kind } : { local: { type: 'relay' }, remote: { type: 'prflx' }, kind };
  return {
    a,
    b,
    scenario: 'connect',
    loss: 0,
    mappingTimeoutSec: undefined,
    predicted,
    connected: true,
    path: kind,
    peers: [
      { connectMs: 800, path: p, events: ['nat', 'connected', 'data'], broken: [] },
      { connectMs: 1200, path: p, events: ['nat', 'connected', 'data'], broken: [] },
    ],
    durationMs: 3000,
    ...over,
  };
}

describe('p2p-table.mjs rewrites the README table from a results file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'natkit-p2p-table-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const run = (args: string[]) =>
    new Promise<{ code: number; stdout: string; stderr: string }>((resolve) =>
      execFile(process.execPath, [SCRIPT, ...args], (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr })),
    );

  const cells = TYPES.flatMap((a) => TYPES.map((b) => cell(a, b)));
  // two cells that went otherwise than predicted, to see them marked
  cells[3 * 5 + 4] = cell('port-restricted-cone', 'symmetric', { path: 'direct', peers: [cell('none', 'none').peers[0], cell('none', 'none').peers[1]] });
  cells[4 * 5 + 4] = cell('symmetric', 'symmetric', { connected: false, path: undefined, error: 'no such event within 60000 ms' });
  const results: ResultsFile = {
    made: '2026-05-01',
    node: 'v20.19.5',
    command: 'CI=true npx vitest run test/natlab/p2p.test.ts',
    concurrency: 5,
    wallMs: 95_000,
    cells: [
      ...cells,
      cell('port-restricted-cone', 'port-restricted-cone', { loss: 10 }),
      cell('full-cone', 'symmetric', { scenario: 'idle', mappingTimeoutSec: 30, idleSec: 120, heldIdle: true }),
      cell('port-restricted-cone', 'restricted-cone', {
        scenario: 'flush',
        recovered: true,
        peers: [
          { ...cell('none', 'none').peers[0], recoveryMs: 31_200 },
          { ...cell('none', 'none').peers[1], recoveryMs: 33_900 },
        ],
      }),
      cell('symmetric', 'none', { scenario: 'renumber', recovered: false, error: 'no such event' }),
    ],
  };
  const file = join(dir, 'results.json');
  writeResults(file, results);

  test('--print: the 5x5, mismatches in bold, the scenarios, how it was made', async () => {
    const r = await run([file, '--print']);
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.split('\n');
    expect(lines[0]).toBe('<!-- natlab:p2p-table -->');
    expect(lines.at(-2)).toBe('<!-- /natlab:p2p-table -->');
    expect(r.stdout).toContain('| A \\ B | no NAT | full cone | restricted cone | port-restricted cone | symmetric |');
    expect(r.stdout).toContain('| **no NAT** | direct (host-host), 1.2 s | direct (host-srflx), 1.2 s |');
    expect(r.stdout).toContain('**direct (host-host), 1.2 s; expected relayed**');
    expect(r.stdout).toContain('**not connected** (expected relayed)');
    expect(r.stdout).toContain('**2 cell(s) not as predicted**');
    expect(r.stdout).toContain('- port-restricted cone x port-restricted cone, 10 % loss on both NATs: connected, direct, 1.2 s');
    expect(r.stdout).toContain('- full cone x symmetric, UDP mappings expire after 30 s idle, no application data for 120 s: still connected');
    expect(r.stdout).toContain("- port-restricted cone x restricted cone, A's NAT drops every mapping (conntrack -F): recovered in 33.9 s (A 31.2 s, B 33.9 s)");
    expect(r.stdout).toContain("- symmetric x no NAT, A's NAT gets a new public address: **did not recover**");
    expect(r.stdout).toContain('Made by `CI=true npx vitest run test/natlab/p2p.test.ts` on 2026-05-01 (Node v20.19.5; 5 cells at a time, 95.0 s in all)');
  });

  test("ICE's own time in brackets; a kept path, a recovery with the demo's figure, a loss cell that settled for the relay", async () => {
    const withIce = (c: CellResult, ms: [number, number]) => ({ ...c, peers: [{ ...c.peers[0], iceMs: ms[0] }, { ...c.peers[1], iceMs: ms[1] }] as CellResult['peers'] });
    const file2 = join(dir, 'results2.json');
    writeResults(file2, {
      ...results,
      cells: [
        ...TYPES.flatMap((a) =>
          TYPES.map((b) => {
            const c = withIce(cell(a, b), [400, 650]);
            if (a !== 'port-restricted-cone' || b !== 'port-restricted-cone') return c;
            // a pair that was relayed first and then moved to the direct one
            const relayed: DemoPath = { local: { type: 'relay' }, remote: { type: 'srflx' }, kind: 'relayed' };
            return { ...c, peers: c.peers.map((x) => ({ ...x, pathChanges: [x.path!], path: relayed })) as CellResult['peers'] };
          }),
        ),
        cell('restricted-cone', 'symmetric', { loss: 10, path: 'relayed' }),
        cell('port-restricted-cone', 'restricted-cone', { scenario: 'flush', expectBreak: false, outcome: 'kept', breaks: 0 }),
        cell('port-restricted-cone', 'restricted-cone', {
          a: 'endpoint-independent/address-and-port-dependent',
          scenario: 'flush',
          expectBreak: true,
          outcome: 'recovered',
          recovered: true,
          peers: [
            { ...cell('none', 'none').peers[0], recoveryMs: 12_100, reportedRecoveryMs: 500 },
            { ...cell('none', 'none').peers[1], recoveryMs: 12_000, reportedRecoveryMs: 650 },
          ],
        }),
      ],
    });
    const r = await run([file2, '--print']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('| **no NAT** | direct (host-host), 1.2 s (ICE 0.65 s) |');
    expect(r.stdout).toContain('every cell as predicted');
    expect(r.stdout).toContain('| **port-restricted cone** | direct (srflx-host), 1.2 s (ICE 0.65 s) | direct (srflx-srflx), 1.2 s (ICE 0.65 s) | direct (srflx-srflx), 1.2 s (ICE 0.65 s) | direct (srflx-srflx; relayed relay-srflx first), 1.2 s (ICE 0.65 s) |');
    expect(r.stdout).toContain('- restricted cone x symmetric, 10 % loss on both NATs: connected, relayed (a direct path exists: checks lost, the agent settled for the relay), 1.2 s');
    expect(r.stdout).toContain("- port-restricted cone x restricted cone, A's NAT drops every mapping (conntrack -F), ports preserved: no break: the NAT handed out the same mappings again, and bytes kept flowing");
    expect(r.stdout).toContain(
      "- endpoint-independent/address-and-port-dependent NAT x restricted cone, A's NAT drops every mapping (conntrack -F), new ports: recovered in 12.1 s (A 12.1 s, B 12.0 s; 0.65 s after the demo noticed)",
    );
  });

  test('rewrites only the block between the markers, and twice is once', async () => {
    const readme = join(dir, 'README.md');
    writeFileSync(readme, '# natkit\n\nbefore\n\n<!-- natlab:p2p-table -->\nold table\n<!-- /natlab:p2p-table -->\n\nafter\n');
    const r = await run([file, '--readme', readme]);
    expect(r.code, r.stderr).toBe(0);
    const once = readFileSync(readme, 'utf8');
    expect(once.startsWith('# natkit\n\nbefore\n\n<!-- natlab:p2p-table -->\nTwo `p2pdemo` peers')).toBe(true);
    expect(once.endsWith('<!-- /natlab:p2p-table -->\n\nafter\n')).toBe(true);
    expect(once).not.toContain('old table');
    await run([file, '--readme', readme]);
    expect(readFileSync(readme, 'utf8')).toBe(once);
  });

  test('says what is wrong: no markers, no results file', async () => {
    const readme = join(dir, 'plain.md');
    writeFileSync(readme, '# no table here\n');
    const r = await run([file, '--readme', readme]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/no <!-- natlab:p2p-table --> \.\.\. <!-- \/natlab:p2p-table --> block to replace/);
    expect(readFileSync(readme, 'utf8')).toBe('# no table here\n');
    const none = await run([]);
    expect(none.code).toBe(2);
    expect(none.stderr).toMatch(/usage: node test\/natlab\/p2p-table\.mjs RESULTS\.json/);
  });
});
