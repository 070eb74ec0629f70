import cluster from 'node:cluster';
import { createSecureContext } from 'node:tls';
import { type Family, ServerError } from '@natkit/stun';
import * as cli from '@natkit/stun/cli';
import { TurnServer } from '../server/server.js';
import { ClusterQuotas, ClusterRelayPorts, QuotaBroker, ReservationBroker } from './cluster.js';
import {
  type Credentials,
  HELP,
  type Layers,
  PROGRAM,
  type Settings,
  VERSION,
  loadCredentials,
  mergeLayers,
  plural,
  readConfig,
  readLayers,
  resolveSettings,
} from './config.js';

const { CliError } = cli;

/** The ports a worker after the first listens on (the first one's, which the kernel may have picked). */

/** Reads the TLS files and checks they make a usable certificate and key (exit 2 if not). */
function loadTls(s: NonNullable<Settings['tls']>): { cert: Buffer; key: Buffer; port: number } {
  const cert = cli.readFlagFile(s.certFile, '--tls-cert');
  const key = cli.readFlagFile(s.keyFile, '--tls-key');
  try {
    createSecureContext({ cert, key });
  } catch (err) {
    throw new CliError(`--tls-cert/--tls-key: ${s.certFile} and ${s.keyFile} are not a usable certificate and key: ${(err as Error).message}`);
  }
  return { cert, key, port: s.port };
}

cli.runCli(PROGRAM, async () => {
  const { layers, positional } = readLayers(process.argv.slice(2), process.env);
  if (cli.helpOrVersion(layers.flags, HELP, `${PROGRAM} ${VERSION}`)) return 0;
  cli.noArguments(positional);
  const s = resolveSettings(mergeLayers(layers));
  const creds = loadCredentials(layers, s.usersFile, s.secretFile);
  if (s.auth && creds.users.size === 0 && creds.secrets.length === 0) {
    throw new CliError(
      'no credentials: authentication is on, but there are no users and no REST secrets. Give users with --user USER:PASSWORD ' +
        'or --users-file FILE, or TURN REST API secrets with --auth-secret SECRET or --auth-secret-file FILE ' +
        '(or, only on a closed network, --no-auth)',
    );
  }
  const tls = s.tls ? loadTls(s.tls) : undefined;
  if (cluster.isWorker) return serve(s, layers, creds, tls, true);
  const plan = cli.planWorkers(s.workers);
  const log = cli.createLogger(PROGRAM, s.logFormat, s.logLevel);
  if (plan.note) log[plan.asked ? 'warn' : 'info'](plan.note);
  if (plan.count === 1) return serve(s, layers, creds, tls, false);
  return primary(s, plan.count, log);
});

/**
 * One relay in this process: alone, or as one worker of several (then the primary prints
 * the start-up line, keeps the quotas and serves the metrics).
 */
async function serve(s: Settings, layers: Layers, initial: Credentials, tls: ReturnType<typeof loadTls> | undefined, worker: boolean): Promise<number> {
  const log = cli.createLogger(PROGRAM, s.logFormat, s.logLevel, undefined, cli.workerId());
  let creds = initial;
  if (!s.auth && !worker) {
    log.warn('WARNING: authentication is OFF (--no-auth): anyone who can reach this server can relay through it. Use this only on a closed network.');
  }
  // Workers after the first listen where the first one does.
  const fixed = cli.firstWorkerPorts<{ port?: number; tlsPort?: number }>();
  const server = await TurnServer.start({
    listen: s.listen,
    port: fixed?.port ?? s.port,
    udp: s.udp,
    tcp: s.tcp,
    tls: tls ? { ...tls, port: fixed?.tlsPort ?? tls.port } : undefined,
    relayAddresses: s.relayAddresses,
    externalAddresses: s.externalAddresses,
    relayPortMin: s.minPort,
    relayPortMax: s.maxPort,
    realm: s.realm,
    users: creds.users,
    secrets: creds.secrets,
    restSeparator: s.restSeparator,
    requireUserhash: s.userhash,
    auth: s.auth,
    allowPeers: s.allowPeers,
    denyPeers: s.denyPeers,
    userQuota: s.userQuota,
    totalQuota: s.totalQuota,
    quotas: worker ? new ClusterQuotas() : undefined,
    // EVEN-PORT reservations redeemable on any worker.
    relayAllocator: worker ? new ClusterRelayPorts({ min: s.minPort, max: s.maxPort, addresses: s.relayAddresses }) : undefined,
    reusePort: worker,
    maxPermissions: s.maxPermissions,
    maxChannels: s.maxChannels,
    maxConnectionsPerIp: s.maxConnectionsPerIp,
    legacyChannels: s.legacyChannels,
    defaultLifetime: s.defaultLifetime,
    maxLifetime: s.maxLifetime,
    errorRate: s.errorRate,
    software: s.software,
    authFailureLogRate: s.authLogRate,
    log: (level, msg, fields) => log[level](msg, fields),
  }).catch((err: unknown) => {
    if (err instanceof ServerError) {
      const hint =
        err.code === 'RELAY_ADDRESS'
          ? '; check --relay-ip and --listen'
          : err.errno === 'EADDRINUSE'
            ? ' (another server is using the port; pick one with --port or --tls-port)'
            : err.errno === 'EADDRNOTAVAIL'
              ? ' (not an address of this host; check --listen)'
              : '';
      throw new Error(`${err.message}${hint}`);
    }
    throw err;
  });

  const processRegistry = cli.processMetrics();
  let metrics: Awaited<ReturnType<typeof cli.metricsEndpoint>>;
  if (worker) cli.reportToPrimary([server.metrics, processRegistry]);
  else {
    try {
      metrics = await cli.metricsEndpoint(s.metrics, () => cli.metricsText([server.metrics, processRegistry]));
    } catch (err) {
      await server.close();
      throw err;
    }
  }

  let state: 'running' | 'draining' | 'stopping' = 'running';

  // SIGHUP: credentials again from the files; a bad file keeps the old ones.
  const reload = () => {
    if (state === 'stopping') return;
    log.info('SIGHUP: reloading credentials');
    let file: Layers['file'];
    let next: Credentials;
    try {
      file = layers.file ? readConfig(layers.file.path) : undefined;
      next = loadCredentials({ ...layers, file }, s.usersFile, s.secretFile);
    } catch (err) {
      log.error('SIGHUP: reload failed; keeping the old credentials', { error: (err as Error).message });
      return;
    }
    if (s.auth && next.users.size === 0 && next.secrets.length === 0) log.warn('SIGHUP: no users and no REST secrets are left: no new allocations can be made');
    layers.file = file;
    creds = next;
    if (s.auth) server.reloadCredentials(next.users, next.secrets);
  };

  // SIGTERM drains; SIGINT, or a second SIGTERM, stops at once. Handlers go in before the
  // start-up line, so a signal sent on seeing it is caught.
  const drainMs = Math.round(s.drainTimeout * 1000);
  const stopped = new Promise<void>((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      if (state === 'stopping') return;
      if (state === 'draining') {
        state = 'stopping';
        log.info(`${signal} while draining: stopping now`, { allocations: server.allocationCount });
        resolve();
        return;
      }
      if (signal === 'SIGINT') {
        state = 'stopping';
        log.info('SIGINT: shutting down', { allocations: server.allocationCount });
        resolve();
        return;
      }
      state = 'draining';
      log.info(`SIGTERM: draining: new allocations are refused; waiting up to ${s.drainTimeout} s for ${plural(server.allocationCount, 'allocation')} to end (SIGTERM or SIGINT again stops at once)`);
      server.drain(drainMs).then((left) => {
        if (state !== 'draining') return;
        state = 'stopping';
        if (left === 0) log.info('drained: every allocation has ended');
        else log.warn(`drain timeout: ${plural(left, 'allocation')} still open`);
        resolve();
      });
    };
    process.on('SIGTERM', onSignal);
    process.on('SIGINT', onSignal);
    process.on('SIGHUP', reload);
  });

  const where = server.listening.map((l) => `${l.transport} ${cli.hostPort(l.address, l.port)}`);
  const relayed = (Object.entries(server.relays.addresses) as Array<[Family, string]>).map(([f, a]) =>
    s.externalAddresses[f] ? `${a} (advertised as ${s.externalAddresses[f]})` : a,
  );
  const auth = s.auth
    ? `${plural(creds.users.size, 'user')}, ${plural(creds.secrets.length, 'REST secret')}${s.userhash ? ', USERHASH required' : ''}`
    : 'authentication OFF';
  const line =
    `${PROGRAM} ${VERSION} listening on ${where.join(', ')}; relaying on ${relayed.join(' and ')} ports ${s.minPort}-${s.maxPort}; ` +
    `realm ${s.realm}; ${auth}${metrics ? `; metrics on ${metrics.url}` : ''}`;
  if (worker) {
    const udp = server.listening.find((l) => l.transport === 'udp');
    const tcp = server.listening.find((l) => l.transport === 'tcp');
    const tlsL = server.listening.find((l) => l.transport === 'tls');
    cli.tellListening(line, { port: udp?.port ?? tcp?.port, tlsPort: tlsL?.port });
  } else {
    log.out(line);
  }

  await stopped;
  const cut = server.allocationCount;
  await server.close();
  await cli.closeMetrics(metrics?.server);
  log.info(`stopped; ${plural(cut, 'allocation')} cut`);
  return 0;
}

/**
 * The primary of --workers N: forks the workers (the first one first, so the others get
 * its ports), keeps the quotas for all of them, serves the summed metrics, passes SIGHUP,
 * SIGTERM and SIGINT to every worker, and exits when they all have.
 */
async function primary(s: Settings, count: number, log: cli.Logger): Promise<number> {
  if (s.udp) {
    await cli.checkUdpPortsFree(s.listen.map((address) => ({ address, port: s.port }))).catch((err: Error) => {
      throw new Error(`${err.message} (another server is using the port; pick one with --port)`);
    });
  }
  const broker = new QuotaBroker({ userQuota: s.userQuota, totalQuota: s.totalQuota });
  let reservations: ReservationBroker | undefined;
  const workers = new cli.Primary({
    count,
    onMessage: (w, m) => {
      broker.handle(w, m);
      reservations?.handle(w, m);
    },
    onExit: (w, code, signal) => {
      broker.exited(w);
      reservations?.exited(w);
      if (workers.stoppedWith(w) === undefined && code !== 0) log.warn(`worker ${w.id} exited with ${signal ?? code}`);
      // until every worker is listening, a worker's exit is a failed start (Primary.start says so)
      if (workers.serving) log.error(`worker ${w.id} exited (${signal ?? code}); its clients are not served until relayserver restarts`);
    },
  });
  reservations = new ReservationBroker(() => workers.workers);
  // Signals reach every worker; each drains or stops on its own, as a single relay does.
  let terms = 0;
  const forward = (signal: NodeJS.Signals) => {
    if (signal === 'SIGTERM') terms++;
    log.info(`${signal}: passing it to ${plural(workers.workers.length, 'worker')}${signal === 'SIGTERM' && terms === 1 ? ' (they drain)' : ''}`);
    workers.signal(signal);
  };
  process.on('SIGTERM', forward);
  process.on('SIGINT', forward);
  process.on('SIGHUP', forward);
  const { ready, then: metrics } = await workers.startWith(() => cli.metricsEndpoint(s.metrics, () => cli.clusterMetricsText()));
  if (!s.auth) log.warn('WARNING: authentication is OFF (--no-auth): anyone who can reach this server can relay through it. Use this only on a closed network.');
  log.out(`${ready[0]!.line as string}${metrics ? `; metrics on ${metrics.url}` : ''}; ${count} workers`);
  const codes = await workers.exited();
  await cli.closeMetrics(metrics?.server);
  const bad = codes.filter((c) => c !== 0).length;
  log.info(`stopped; ${plural(count, 'worker')} exited${bad ? `, ${bad} with an error` : ''}`);
  return bad ? 1 : 0;
}
