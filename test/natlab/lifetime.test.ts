// natcheck --lifetime (RFC 5780 section 4.6) against real NATs whose UDP mappings expire after
// a known idle time (test/helpers/natlab.ts: mappingTimeoutSec sets both the lab's mapping
// tables and conntrack's UDP timeouts; nat-ops.test.ts shows them expire). Run once, not per
// NAT type: a port-restricted NAT with 10 s and a symmetric one with 20 s, side by side in one
// lab, natkit's stunserver answering (it honours RESPONSE-PORT).
//
// Speed: the search range 5-23 s keeps it to two or three rounds of four trials each (~40 s
// for the 20 s NAT; the rounds are printed). How close the answer can be: an answer on X
// proves the mapping lived for the idle time natcheck measured (it measures from the moment
// it read the Binding answer, a little after the NAT saw it, so the true idle time was if
// anything longer); a missing answer means it had expired, but natcheck may have read the
// Binding answer late on a loaded machine, so the measured idle time can fall short of the
// true one by that delay. Hence: alive below the timeout (plus the kernel timers' slack),
// dead above it less a second.
import { fileURLToPath } from 'node:url';
import { expect, test } from 'vitest';
import { type LabProcess, type NatLab, needNatLab, withNatLab } from '../helpers/natlab.js';

const NATCHECK = fileURLToPath(new URL('../../packages/stun/bin/natcheck.js', import.meta.url));
const STUNSERVER = fileURLToPath(new URL('../../packages/stun/bin/stunserver.js', import.meta.url));

async function startStunserver(lab: NatLab): Promise<LabProcess> {
  const [a, a2] = lab.server.addresses;
  const p = lab.spawn(lab.server.ns, process.execPath, [STUNSERVER, '--listen', a, '--alternate', a2, '--port', '3478']);
  await p.waitFor(/listening on .*\(RFC 5780 full mode\)/, { timeoutMs: 10_000 });
  return p;
}

interface LifetimeJson {
  aliveMs: number;
  deadMs?: number;
  minMs: number;
  maxMs: number;
  rounds: number;
  keepaliveSec: number;
  trials: { idleMs: number; alive: boolean; round: number }[];
}

test('natcheck --lifetime measures NATs whose mappings expire after 10 s and 20 s idle', async (ctx) => {
  await needNatLab(ctx);
  const NATS = [
    { nat: 'port-restricted-cone' as const, mappingTimeoutSec: 10, classic: 'Port Restricted Cone' },
    { nat: 'symmetric' as const, mappingTimeoutSec: 20, classic: 'Symmetric' },
  ];
  await withNatLab({ clients: NATS.map(({ nat, mappingTimeoutSec }) => ({ nat, mappingTimeoutSec })) }, async (lab) => {
    const server = await startStunserver(lab);
    try {
      const t0 = performance.now();
      const runs = await Promise.all(
        lab.clients.map((c) =>
          lab.run(c.ns, process.execPath, [NATCHECK, '--json', '--timeout', '1000', '--no-hairpin', '--lifetime', '--lifetime-min', '5', '--lifetime-max', '23', `${lab.server.addresses[0]}:3478`], {
            timeoutMs: 180_000,
          }),
        ),
      );
      const seconds = Math.round((performance.now() - t0) / 1000);
      for (const [i, r] of runs.entries()) {
        const { mappingTimeoutSec, classic } = NATS[i]!;
        const why = `client ${i} (${classic}, ${mappingTimeoutSec} s): exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
        expect(r.code, why).toBe(0);
        const report = JSON.parse(r.stdout) as { classic: string; lifetime: LifetimeJson };
        expect(report.classic, why).toBe(classic);
        const l = report.lifetime;
        const L = mappingTimeoutSec * 1000;
        console.log(
          `natcheck --lifetime, ${classic} NAT with ${mappingTimeoutSec} s: alive at ${l.aliveMs} ms, expired at ${l.deadMs} ms, ` +
            `${l.trials.length} trials in ${l.rounds} rounds (${r.stderr.trim().split('\n').length} progress lines); both runs ${seconds} s`,
        );
        expect(l.deadMs, why).toBeDefined();
        expect(l.aliveMs, why).toBeLessThan(L + 300);
        expect(l.deadMs!, why).toBeGreaterThan(L - 1000);
        // as narrow as natcheck's default resolution (1 s, or 5 %)
        expect(l.deadMs! - l.aliveMs, why).toBeLessThanOrEqual(Math.max(1000, 0.05 * l.aliveMs));
        expect(l.keepaliveSec, why).toBe(Math.floor(l.aliveMs / 2000));
        for (const t of l.trials) {
          if (t.alive) expect(t.idleMs, why).toBeLessThan(L + 300);
          else expect(t.idleMs, why).toBeGreaterThan(L - 1000);
        }
        expect(r.stderr, why).toMatch(/^natcheck: lifetime round 1: idle 5\.0, 9\.5, 14\.0, 18\.5 s$/m);
      }
    } finally {
      await server.stop();
    }
  });
}, 240_000);
