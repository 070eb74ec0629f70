#!/usr/bin/env node
// Memory held by idle allocations: the relay's resident set (VmRSS from /proc/PID/status)
// before and after N idle allocations, each with one permission and one channel, reported
// per 1,000 allocations; natkit's relay and coturn's (`turnserver -m 1`, for context).
//
//   node bench/memory.mjs [--quick] [--counts 1000,5000] [--concurrency 64] [--only id,id] [--json FILE]
//
// The allocations come from this process with natkit's TurnClient (@natkit/turn, built),
// each from its own UDP socket so each has its own 5-tuple: Allocate (answering the 401
// challenge), CreatePermission for 127.0.0.1, ChannelBind to 127.0.0.1:PEER (a port with
// no one on it: idle allocations send nothing). Each relay is started afresh for every N
// with quotas above N and a relay port range of 10,000 ports. The baseline is read after
// the relay has served one allocation and it is deleted (so code paths and caches that
// any first allocation warms are not counted); the loaded figure 2 s after the last
// allocation was made, then the allocations are deleted again.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { TurnClient } from '@natkit/turn';
import {
  PASS, TURNSERVER, USER, argsOf, freeTcpPort, freeUdpPort, median, natkitEntry, scrapeMetrics, shown, sleep, startRelay, stop, tableRow, vmRssKb,
} from './lib.mjs';

const { opt, quick: QUICK, json: JSON_OUT, only } = argsOf();
const COUNTS = opt('--counts', QUICK ? '500' : '1000,5000').split(',').map(Number);
const CONCURRENCY = Number(opt('--concurrency', 64));
const MIN_PORT = 50000;
const MAX_PORT = 59999;

const CONFIGS = only([
  { id: 'natkit', label: 'natkit relayserver', relay: 'natkit' },
  { id: 'coturn-1thread', label: 'coturn turnserver -m 1', relay: 'coturn', threads: 1, missing: TURNSERVER ? undefined : 'turnserver not installed' },
]);

const tmp = mkdtempSync(join(os.tmpdir(), 'natkit-turn-mem-'));
const t0 = Date.now();
const results = [];
const commands = {};

async function makeAllocations(port, peerPort, n) {
  const clients = [];
  const failures = [];
  let next = 0;
  const server = { address: '127.0.0.1', port, transport: 'udp' };
  const peer = { family: 'IPv4', address: '127.0.0.1', port: peerPort };
  async function worker() {
    while (next < n) {
      next++;
      try {
        const c = await TurnClient.allocate({ server, username: USER, password: PASS, lifetime: 3600, retransmit: { rto: 250, rc: 5 } });
        clients.push(c);
        await c.createPermission(peer);
        await c.bindChannel(peer);
      } catch (e) {
        failures.push(e.message);
      }
    }
  }
  await Promise.all(Array.from({ length: CONCURRENCY }, worker));
  return { clients, failures };
}

async function closeAll(clients) {
  for (let i = 0; i < clients.length; i += 256) await Promise.all(clients.slice(i, i + 256).map((c) => c.close().catch(() => {})));
}

for (const n of COUNTS) {
  for (const cfg of CONFIGS) {
    if (cfg.missing) {
      results.push({ id: cfg.id, n, unavailable: cfg.missing });
      continue;
    }
    const port = await freeUdpPort();
    const peerPort = await freeUdpPort();
    const metricsPort = cfg.relay === 'natkit' ? await freeTcpPort() : undefined;
    const quota = Math.max(2 * n, 1000);
    // coturn: no quota by default; log lines per allocation stay (-v off for this one).
    const relay = await startRelay(cfg.relay, { port, minPort: MIN_PORT, maxPort: MAX_PORT, metricsPort, tmp, threads: cfg.threads, quota, verbose: false });
    const r = { id: cfg.id, n };
    try {
      if (!relay.ready.ok) throw new Error(`${relay.ready.reason}: ${relay.output().slice(-300)}`);
      commands[cfg.id] ??= { relay: shown(relay.command), entry: relay.entry };
      const warm = await makeAllocations(port, peerPort, 1);
      if (warm.failures.length) throw new Error(`first allocation failed: ${warm.failures[0]}`);
      await closeAll(warm.clients);
      await sleep(1500);
      r.rssBeforeKb = vmRssKb(relay.pid);
      const ta = performance.now();
      const { clients, failures } = await makeAllocations(port, peerPort, n);
      r.seconds = (performance.now() - ta) / 1000;
      r.made = clients.length;
      r.failures = failures.length;
      r.firstFailure = failures[0];
      await sleep(2000);
      r.rssAfterKb = vmRssKb(relay.pid);
      r.perThousandMiB = ((r.rssAfterKb - r.rssBeforeKb) / 1024 / r.made) * 1000;
      if (metricsPort) {
        const m = await scrapeMetrics(metricsPort);
        r.relaySays = { allocations: m.allocations, permissions: m.permissions, channels: m.channels };
      }
      await closeAll(clients);
      await sleep(1000);
      r.rssAfterCloseKb = vmRssKb(relay.pid);
      if (metricsPort) r.allocationsAfterClose = (await scrapeMetrics(metricsPort)).allocations;
    } catch (e) {
      r.error = e.message;
    }
    await stop(relay, cfg.relay === 'natkit' ? 'SIGINT' : 'SIGTERM');
    results.push(r);
    console.error(
      `  ${cfg.id.padEnd(15)} N=${n}: ` +
        (r.error
          ? `ERROR ${r.error}`
          : `${r.made} allocations in ${r.seconds.toFixed(1)} s (${r.failures} failed${r.firstFailure ? `: ${r.firstFailure}` : ''}); RSS ${(r.rssBeforeKb / 1024).toFixed(1)} -> ${(r.rssAfterKb / 1024).toFixed(1)} MiB ` +
            `= ${r.perThousandMiB.toFixed(2)} MiB per 1,000; after deleting them ${(r.rssAfterCloseKb / 1024).toFixed(1)} MiB` +
            (r.relaySays ? `; relay gauges: ${r.relaySays.allocations} allocations, ${r.relaySays.permissions} permissions, ${r.relaySays.channels} channels` : '')),
    );
  }
}
rmSync(tmp, { recursive: true, force: true });

const lines = [];
lines.push(`memory benchmark: relay VmRSS before and 2 s after N idle allocations (one permission + one channel each, one UDP socket each, made ${CONCURRENCY} at a time)`);
lines.push('');
const W = [16, 6, 6, 12, 11, 10, 10, 14, 9];
lines.push(tableRow(W, ['relay', 'N', 'made', 'RSS before', 'RSS after', 'MiB/1000', 'KiB/alloc', 'after delete', 'alloc/s']));
const mib = (kb) => `${(kb / 1024).toFixed(1)} MiB`;
for (const r of results) {
  if (r.unavailable || r.error) {
    lines.push(`${tableRow(W, [r.id, r.n])}  ${r.unavailable ? `NOT AVAILABLE: ${r.unavailable}` : `ERROR: ${r.error}`}`);
    continue;
  }
  lines.push(
    tableRow(W, [
      r.id, r.n, r.made, mib(r.rssBeforeKb), mib(r.rssAfterKb), r.perThousandMiB.toFixed(2), ((r.rssAfterKb - r.rssBeforeKb) / r.made).toFixed(1),
      mib(r.rssAfterCloseKb), (r.made / r.seconds).toFixed(0),
    ]),
  );
}
for (const r of results) {
  if (r.relaySays && (r.relaySays.allocations !== r.made || r.relaySays.channels !== r.made || r.relaySays.permissions !== r.made)) {
    lines.push(`note: ${r.id} N=${r.n}: the relay's gauges say ${JSON.stringify(r.relaySays)} for ${r.made} allocations made`);
  }
  if (r.failures) lines.push(`note: ${r.id} N=${r.n}: ${r.failures} allocations failed (${r.firstFailure})`);
}
const per = (id) => median(results.filter((r) => r.id === id && Number.isFinite(r.perThousandMiB)).map((r) => r.perThousandMiB));
const ratio = per('natkit') / per('coturn-1thread');
if (Number.isFinite(ratio)) lines.push(`natkit/coturn: memory per 1,000 idle allocations ${ratio.toFixed(2)}x (median over N; < 1 favours natkit)`);
lines.push(`(took ${((Date.now() - t0) / 1000).toFixed(0)} s)`);
console.log(lines.join('\n'));
if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify({ counts: COUNTS, concurrency: CONCURRENCY, results, commands, ratio, natkitEntry: natkitEntry().kind }, null, 2));
