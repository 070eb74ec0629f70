#!/usr/bin/env node
// Fallback for the benchmarks when bin/relayserver.js is not usable: starts natkit's relay
// with TurnServer.start from the built package, taking the subset of relayserver's flags
// the benchmarks pass (same names, same meaning). Prints one "listening on" line; SIGTERM
// and SIGINT stop it at once.
//
//   node bench/start-relay.mjs --listen 127.0.0.1 --port P --relay-ip 127.0.0.1 --min-port A --max-port B
//     --user user:pass [--realm R] [--allow-peer CIDR] [--no-tcp] [--user-quota N] [--total-quota N]
//     [--error-rate N] [--metrics ADDR:PORT] [--drain-timeout S] [--log-level L]
import { TurnServer, serveMetrics } from '@natkit/turn';

const argv = process.argv.slice(2);
const o = { users: new Map(), allowPeers: [] };
let metrics;
for (let i = 0; i < argv.length; i++) {
  const a = argv[i];
  const v = () => {
    if (i + 1 >= argv.length) throw new Error(`${a} needs a value`);
    return argv[++i];
  };
  if (a === '--listen') (o.listen ??= []).push(v());
  else if (a === '--port') o.port = Number(v());
  else if (a === '--relay-ip') o.relayAddresses = { IPv4: v() };
  else if (a === '--min-port') o.relayPortMin = Number(v());
  else if (a === '--max-port') o.relayPortMax = Number(v());
  else if (a === '--user') {
    const s = v();
    const k = s.indexOf(':');
    o.users.set(s.slice(0, k), { password: s.slice(k + 1) });
  } else if (a === '--realm') o.realm = v();
  else if (a === '--allow-peer') o.allowPeers.push(v());
  else if (a === '--no-tcp') o.tcp = false;
  else if (a === '--user-quota') o.userQuota = Number(v());
  else if (a === '--total-quota') o.totalQuota = Number(v());
  else if (a === '--error-rate') o.errorRate = Number(v());
  else if (a === '--metrics') metrics = v();
  else if (a === '--drain-timeout' || a === '--log-level') v();
  else {
    console.error(`start-relay: unknown option ${a}`);
    process.exit(2);
  }
}
const server = await TurnServer.start(o);
let http;
if (metrics) {
  const k = metrics.lastIndexOf(':');
  http = await serveMetrics(server.metrics, metrics.slice(0, k), Number(metrics.slice(k + 1)));
}
const l = server.listening.map((x) => `${x.transport} ${x.address}:${x.port}`).join(', ');
console.log(`start-relay (natkit TurnServer) listening on ${l}${metrics ? `; metrics on http://${metrics}/metrics` : ''}`);
for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, async () => {
    http?.close();
    await server.close();
    process.exit(0);
  });
}
