import type * as http from 'node:http';
import * as cli from '@natkit/stun/cli';
import { signalMetrics } from '../server/metrics.js';
import { SignalServer } from '../server/server.js';
import { HELP, PROGRAM, VERSION, resolveSettings } from './config.js';

function redact(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString().replace(/\/$/, '');
  } catch {
    return url;
  }
}

cli.runCli(PROGRAM, async () => {
  const r = resolveSettings(process.argv.slice(2), process.env);
  if (cli.helpOrVersion(r, HELP, `${PROGRAM} ${VERSION}`)) return 0;
  const s = r.settings!;
  const log = cli.createLogger(PROGRAM, s.logFormat, s.logLevel);
  const server = await SignalServer.start({
    ...s.server,
    log: (level, msg, fields) => log[level](msg, fields),
  }).catch((err: NodeJS.ErrnoException) => {
    const hint = err.code === 'EADDRINUSE' ? ' (another server is using the port; pick one with --port)' : err.code === 'EADDRNOTAVAIL' ? ' (not an address of this host; check --listen)' : '';
    throw new Error(err.code ? `cannot listen: ${err.message}${hint}` : err.message);
  });

  let metrics: { server: http.Server; url: string } | undefined;
  try {
    const registries = s.metrics ? [await signalMetrics(server), cli.processMetrics()] : [];
    metrics = await cli.metricsEndpoint(s.metrics, () => cli.metricsText(registries));
  } catch (err) {
    await server.close();
    throw err;
  }
  const metricsServer = metrics?.server;
  const metricsUrl = metrics?.url ?? '';

  // Signal handlers go in before the start-up line, so a signal sent on seeing it is caught.
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });

  const a = server.address;
  const redis = server.redis;
  const redisUrl = typeof s.server.redis === 'object' ? s.server.redis.url : undefined;
  log.out(
    `${PROGRAM} ${VERSION} listening on tcp ${cli.hostPort(a.address, a.port)}; mode ${server.core.limits.mode}` +
      `${redis && redisUrl ? `; sharing rooms through ${redact(redisUrl)} as instance ${redis.instance}` : ''}` +
      `${metricsUrl ? `; metrics on ${metricsUrl}` : ''}`,
  );

  const signal = await stopped;
  const n = server.core.connectionCount;
  log.info(`${signal}: shutting down; telling ${n} connection${n === 1 ? '' : 's'}`);
  // A second signal while closing stops at once.
  const hard = () => process.exit(1);
  process.once('SIGTERM', hard);
  process.once('SIGINT', hard);
  await server.close();
  if (metricsServer) {
    await new Promise<void>((resolve) => {
      metricsServer!.close(() => resolve());
      metricsServer!.closeAllConnections();
    });
  }
  log.info('stopped', { connections: server.core.stats.connections, pairs: server.core.stats.pairs });
  return 0;
});
