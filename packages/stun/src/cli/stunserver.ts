import cluster from 'node:cluster';
import pkg from '../../package.json' with { type: 'json' };
import { ipFamily } from '../codec/ip.js';
import { ServerError } from '../errors.js';
import { StunServer } from '../server/server.js';
import { CliError, HELP_AND_VERSION, type OptionSpec, helpOrVersion, noArguments, parseArgs, parseHostPort, readFlagFile, runCli, usage } from './args.js';
import { type LogFormat, type Logger, createLogger } from './log.js';
import { closeMetrics, clusterMetricsText, metricsEndpoint, metricsText, processMetrics, reportToPrimary } from './metrics.js';
import { Primary, checkUdpPortsFree, firstWorkerPorts, planWorkers, tellListening, workerId } from './workers.js';

/** The ports workers after the first listen on (the first one's, which the kernel may have picked). */

const SPECS: OptionSpec[] = [
  { name: 'listen', type: 'string', value: 'ADDR', env: 'STUNSERVER_LISTEN', defaultText: '0.0.0.0', help: 'primary address (A)' },
  { name: 'port', type: 'number', value: 'PORT', env: 'STUNSERVER_PORT', min: 0, max: 65535, defaultText: '3478; 0 picks free ports', help: 'primary port (P), UDP and TCP' },
  { name: 'alternate', type: 'string', value: 'ADDR', env: 'STUNSERVER_ALTERNATE', help: 'second address (A2): serves RFC 5780 NAT behaviour discovery on four sockets' },
  { name: 'alt-port', type: 'number', value: 'PORT', env: 'STUNSERVER_ALT_PORT', min: 0, max: 65535, defaultText: 'port + 1', help: 'second port (P2)' },
  { name: 'udp', type: 'boolean', env: 'STUNSERVER_UDP', defaultText: 'on', help: 'serve UDP (--no-udp to turn off)' },
  { name: 'tcp', type: 'boolean', env: 'STUNSERVER_TCP', defaultText: 'on', help: 'serve TCP (--no-tcp to turn off)' },
  { name: 'tls-cert', type: 'string', value: 'FILE', env: 'STUNSERVER_TLS_CERT', help: 'PEM certificate: serve TLS too' },
  { name: 'tls-key', type: 'string', value: 'FILE', env: 'STUNSERVER_TLS_KEY', help: 'PEM private key for --tls-cert' },
  { name: 'tls-port', type: 'number', value: 'PORT', env: 'STUNSERVER_TLS_PORT', min: 0, max: 65535, defaultText: '5349', help: 'TLS port' },
  { name: 'software', type: 'string', value: 'TEXT', env: 'STUNSERVER_SOFTWARE', defaultText: `natkit ${pkg.version}`, help: 'SOFTWARE attribute in answers' },
  { name: 'no-software', type: 'boolean', env: 'STUNSERVER_NO_SOFTWARE', help: 'send no SOFTWARE attribute' },
  { name: 'error-rate', type: 'number', value: 'N', env: 'STUNSERVER_ERROR_RATE', min: 0, defaultText: '10', help: 'error answers per second to one source IP (0: no limit)' },
  { name: 'max-connections', type: 'number', value: 'N', env: 'STUNSERVER_MAX_CONNECTIONS', min: 1, defaultText: '1024', help: 'TCP/TLS connections at once' },
  { name: 'stats-interval', type: 'number', value: 'SECONDS', env: 'STUNSERVER_STATS_INTERVAL', min: 0, defaultText: '0 (off)', help: 'log counters every SECONDS' },
  { name: 'log-format', type: 'string', value: 'text|json', env: 'STUNSERVER_LOG_FORMAT', choices: ['text', 'json'], defaultText: 'text', help: 'log line format' },
  { name: 'metrics', type: 'string', value: 'ADDR:PORT', env: 'STUNSERVER_METRICS', defaultText: 'off', help: 'serve Prometheus metrics on http://ADDR:PORT/metrics (summed over workers)' },
  { name: 'workers', type: 'number', value: 'N', env: 'STUNSERVER_WORKERS', min: 1, max: 1024, defaultText: 'every core (one on Node < 22.12)', help: 'processes serving the same ports (SO_REUSEPORT: each client stays on one)' },
  ...HELP_AND_VERSION,
];

const HELP = usage(
  'stunserver [options]',
  'A STUN Binding server (RFC 8489) over UDP, TCP and TLS. Given --alternate it serves\n' +
    'RFC 5780 NAT behaviour discovery: four UDP sockets A:P, A:P2, A2:P, A2:P2, answering\n' +
    'CHANGE-REQUEST from the right one with OTHER-ADDRESS and RESPONSE-ORIGIN. Classic\n' +
    'RFC 3489 clients get MAPPED-ADDRESS, SOURCE-ADDRESS and CHANGED-ADDRESS.',
  SPECS,
  'Example: stunserver --listen 127.0.0.1 --alternate 127.0.0.2\nSIGINT or SIGTERM stops it cleanly.',
);

runCli('stunserver', async () => {
  const { values: v, positional } = parseArgs(process.argv.slice(2), SPECS);
  if (helpOrVersion(v, HELP, `stunserver ${pkg.version}`)) return 0;
  noArguments(positional);
  if (v['no-software'] && v.software !== undefined) throw new CliError('--software and --no-software contradict each other');
  const listen = (v.listen as string | undefined) ?? '0.0.0.0';
  if (!ipFamily(listen)) throw new CliError(`--listen: ${JSON.stringify(listen)} is not an IP address`);
  const alternate = v.alternate as string | undefined;
  if (alternate !== undefined && !ipFamily(alternate)) throw new CliError(`--alternate: ${JSON.stringify(alternate)} is not an IP address`);
  if ((v['tls-cert'] === undefined) !== (v['tls-key'] === undefined)) throw new CliError('--tls-cert and --tls-key go together');
  if (v.udp === false && v.tcp === false && v['tls-cert'] === undefined) throw new CliError('nothing to serve: UDP and TCP are off and no TLS certificate is given');
  const metricsAt = v.metrics === undefined ? undefined : parseHostPort(v.metrics as string);
  if (v.metrics !== undefined && !metricsAt) throw new CliError(`--metrics: expected ADDR:PORT (e.g. 127.0.0.1:9640 or [::1]:9640), got ${JSON.stringify(v.metrics)}`);
  const format = (v['log-format'] as LogFormat | undefined) ?? 'text';
  const tls =
    v['tls-cert'] !== undefined
      ? { cert: readFlagFile(v['tls-cert'] as string, '--tls-cert'), key: readFlagFile(v['tls-key'] as string, '--tls-key'), port: v['tls-port'] as number | undefined }
      : undefined;
  const options: Options = {
    address: listen,
    port: v.port as number | undefined,
    alternateAddress: alternate,
    alternatePort: v['alt-port'] as number | undefined,
    udp: v.udp as boolean | undefined,
    tcp: v.tcp as boolean | undefined,
    tls,
    software: v['no-software'] === true ? false : ((v.software as string | undefined) ?? `natkit ${pkg.version}`),
    errorRate: v['error-rate'] as number | undefined,
    maxConnections: v['max-connections'] as number | undefined,
  };
  const statsEvery = (v['stats-interval'] as number | undefined) ?? 0;
  if (cluster.isWorker) return serve(options, format, statsEvery, undefined, true);
  const log = createLogger('stunserver', format);
  const plan = planWorkers(v.workers as number | undefined);
  if (plan.note) log[plan.asked ? 'warn' : 'info'](plan.note);
  if (plan.count === 1) return serve(options, format, statsEvery, metricsAt, false);
  if (options.udp !== false) {
    const P = options.port ?? 3478;
    const P2 = options.alternatePort ?? (P === 0 ? 0 : P + 1);
    const endpoints = [{ address: listen, port: P }];
    if (alternate !== undefined) endpoints.push({ address: listen, port: P2 }, { address: alternate, port: P }, { address: alternate, port: P2 });
    await checkUdpPortsFree(endpoints).catch((err: Error) => {
      throw new Error(`${err.message} (another server is using the port; pick one with --port)`);
    });
  }
  return primary(plan.count, metricsAt, log);
});

type Options = Parameters<typeof StunServer.start>[0] & object;


/** One server in this process: alone, or one worker of several. */
async function serve(options: Options, format: LogFormat, statsEvery: number, metricsAt: { address: string; port: number } | undefined, worker: boolean): Promise<number> {
  const log = createLogger('stunserver', format, 'info', undefined, workerId());
  const fixed = firstWorkerPorts<{ port?: number; altPort?: number; tlsPort?: number }>();
  const server = await StunServer.start({
    ...options,
    port: fixed?.port ?? options.port,
    alternatePort: fixed?.altPort ?? options.alternatePort,
    tls: options.tls ? { ...options.tls, port: fixed?.tlsPort ?? options.tls.port } : undefined,
    reusePort: worker,
  }).catch((err: unknown) => {
    if (err instanceof ServerError) throw new Error(`${err.message}${err.errno === 'EADDRINUSE' ? ' (another server is using the port; pick one with --port)' : ''}`);
    throw err;
  });
  const processRegistry = processMetrics();
  let metrics: Awaited<ReturnType<typeof metricsEndpoint>>;
  if (worker) reportToPrimary([server.metrics, processRegistry]);
  else {
    try {
      metrics = await metricsEndpoint(metricsAt, () => metricsText([server.metrics, processRegistry]));
    } catch (err) {
      await server.close();
      throw err;
    }
  }
  // Signal handlers go in before the start-up line, so a signal sent on seeing it is caught.
  const stopped = new Promise<void>((resolve) => {
    const stop = (signal: string) => {
      log.info(`${signal}: shutting down`);
      resolve();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
  server.on('warning', (err: Error) => log.warn('socket error', { error: err.message }));
  const where = server.listening.map((l) => `${l.transport} ${l.family === 'IPv6' ? `[${l.address}]` : l.address}:${l.port}`);
  const line = `stunserver ${pkg.version} listening on ${where.join(', ')}${server.full ? ' (RFC 5780 full mode)' : ''}${metrics ? `; metrics on ${metrics.url}` : ''}`;
  if (worker) {
    const udp = server.listening.filter((l) => l.transport === 'udp');
    tellListening(line, { port: udp[0]?.port ?? server.listening[0]?.port, altPort: udp[1]?.port, tlsPort: server.listening.find((l) => l.transport === 'tls')?.port });
  } else {
    log.out(line, undefined);
  }
  const timer = statsEvery > 0 ? setInterval(() => log.info('stats', { ...server.stats, stream: server.streamDrops }), statsEvery * 1000) : undefined;
  await stopped;
  if (timer) clearInterval(timer);
  await server.close();
  await closeMetrics(metrics?.server);
  log.info('stopped', { ...server.stats, stream: server.streamDrops });
  // A worker hands its counters to the primary, which says what all of them did.
  if (worker) await new Promise<void>((r) => process.send!({ natkit: 'stats', stats: server.stats, stream: server.streamDrops }, undefined, undefined, () => r()));
  return 0;
}

/** The primary of --workers N: forks them (the first one first, for its ports), sums their metrics, passes signals on. */
async function primary(count: number, metricsAt: { address: string; port: number } | undefined, log: Logger): Promise<number> {
  // The workers' final counters, summed for the primary's own 'stopped' line.
  const total = { received: 0, responses: 0, errors: {} as Record<string, number>, dropped: {} as Record<string, number>, stream: {} as Record<string, number> };
  const add = (into: Record<string, number>, from: Record<string, number>) => {
    for (const [k, n] of Object.entries(from)) into[k] = (into[k] ?? 0) + n;
  };
  const workers = new Primary({
    count,
    onMessage: (_w, m) => {
      if (m.natkit !== 'stats') return;
      const st = m.stats as { received: number; responses: number; errors: Record<string, number>; dropped: Record<string, number> };
      total.received += st.received;
      total.responses += st.responses;
      add(total.errors, st.errors);
      add(total.dropped, st.dropped);
      add(total.stream, m.stream as Record<string, number>);
    },
    onExit: (w, code, signal) => {
      if (workers.stoppedWith(w) === undefined && code !== 0) log.warn(`worker ${w.id} exited with ${signal ?? code}`);
      // until every worker is listening, a worker's exit is a failed start (Primary.start says so)
      if (workers.serving) log.error(`worker ${w.id} exited (${signal ?? code}); its clients are not served until stunserver restarts`);
    },
  });
  const forward = (signal: NodeJS.Signals) => {
    log.info(`${signal}: passing it to ${workers.workers.length} workers`);
    workers.signal(signal);
  };
  process.on('SIGTERM', forward);
  process.on('SIGINT', forward);
  const { ready, then: metrics } = await workers.startWith(() => metricsEndpoint(metricsAt, () => clusterMetricsText()));
  log.out(`${ready[0]!.line as string}${metrics ? `; metrics on ${metrics.url}` : ''}; ${count} workers`);
  const codes = await workers.exited();
  await closeMetrics(metrics?.server);
  const bad = codes.filter((c) => c !== 0).length;
  // The same line a single process writes, over every worker.
  log.info('stopped', { ...total, workers: count, ...(bad ? { failed: bad } : {}) });
  return bad ? 1 : 0;
}
