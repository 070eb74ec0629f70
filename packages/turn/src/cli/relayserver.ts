import type * as http from 'node:http';
import { createSecureContext } from 'node:tls';
import { type Family, cli } from '@natkit/stun';
import { serveMetrics } from '../server/metrics.js';
import { TurnServer, TurnServerError } from '../server/server.js';
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

function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function closeHttp(srv: http.Server | undefined): Promise<void> {
  if (!srv) return Promise.resolve();
  return new Promise((resolve) => {
    srv.close(() => resolve());
    srv.closeAllConnections();
  });
}

cli.runCli(PROGRAM, async () => {
  const { layers, positional } = readLayers(process.argv.slice(2), process.env);
  if (layers.flags.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (layers.flags.version) {
    process.stdout.write(`${PROGRAM} ${VERSION}\n`);
    return 0;
  }
  if (positional.length) throw new CliError(`unexpected argument ${JSON.stringify(positional[0])}`);
  const s = resolveSettings(mergeLayers(layers));
  let creds = loadCredentials(layers, s.usersFile, s.secretFile);
  if (s.auth && creds.users.size === 0 && creds.secrets.length === 0) {
    throw new CliError(
      'no credentials: authentication is on, but there are no users and no REST secrets. Give users with --user USER:PASSWORD ' +
        'or --users-file FILE, or TURN REST API secrets with --auth-secret SECRET or --auth-secret-file FILE ' +
        '(or, only on a closed network, --no-auth)',
    );
  }
  const tls = s.tls ? loadTls(s.tls) : undefined;
  const log = cli.createLogger(PROGRAM, s.logFormat, s.logLevel);
  if (!s.auth) {
    log.warn(
      'WARNING: authentication is OFF (--no-auth): anyone who can reach this server can relay through it. ' +
        'Use this only on a closed network.',
    );
  }

  const server = await TurnServer.start({
    listen: s.listen,
    port: s.port,
    udp: s.udp,
    tcp: s.tcp,
    tls,
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
    maxPermissions: s.maxPermissions,
    maxChannels: s.maxChannels,
    maxConnectionsPerIp: s.maxConnectionsPerIp,
    legacyChannels: s.legacyChannels,
    defaultLifetime: s.defaultLifetime,
    maxLifetime: s.maxLifetime,
    errorRate: s.errorRate,
    software: s.software,
    log: (level, msg, fields) => log[level](msg, fields),
  }).catch((err: NodeJS.ErrnoException) => {
    // The server names relay-address problems itself; listening errors get a hint here.
    if (err instanceof TurnServerError) throw new Error(`${err.message}${/relay address/.test(err.message) ? '; check --relay-ip and --listen' : ''}`);
    const hint = err.code === 'EADDRINUSE' ? ' (another server is using the port; pick one with --port or --tls-port)' : err.code === 'EADDRNOTAVAIL' ? ' (not an address of this host; check --listen)' : '';
    throw new Error(`cannot listen: ${err.message}${hint}`);
  });

  let metricsServer: http.Server | undefined;
  let metricsUrl = '';
  if (s.metrics) {
    try {
      metricsServer = await serveMetrics(server.metrics, s.metrics.address, s.metrics.port);
    } catch (err) {
      await server.close();
      const e = err as NodeJS.ErrnoException;
      throw new Error(`cannot serve metrics on ${hostPort(s.metrics.address, s.metrics.port)}: ${e.message}${e.code === 'EADDRINUSE' ? ' (pick another port with --metrics)' : ''}`);
    }
    const a = metricsServer.address() as { address: string; port: number };
    metricsUrl = `http://${hostPort(a.address, a.port)}/metrics`;
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
    server.reloadCredentials(next.users, next.secrets);
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

  const where = server.listening.map((l) => `${l.transport} ${hostPort(l.address, l.port)}`);
  const relayed = (Object.entries(s.relayAddresses) as Array<[Family, string]>).map(([f, a]) =>
    s.externalAddresses[f] ? `${a} (advertised as ${s.externalAddresses[f]})` : a,
  );
  const auth = s.auth
    ? `${plural(creds.users.size, 'user')}, ${plural(creds.secrets.length, 'REST secret')}${s.userhash ? ', USERHASH required' : ''}`
    : 'authentication OFF';
  log.out(
    `${PROGRAM} ${VERSION} listening on ${where.join(', ')}; relaying on ${relayed.join(' and ')} ports ${s.minPort}-${s.maxPort}; ` +
      `realm ${s.realm}; ${auth}${metricsUrl ? `; metrics on ${metricsUrl}` : ''}`,
  );

  await stopped;
  const cut = server.allocationCount;
  await server.close();
  await closeHttp(metricsServer);
  log.info(`stopped; ${plural(cut, 'allocation')} cut`);
  return 0;
});
