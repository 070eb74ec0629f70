import pkg from '../../package.json' with { type: 'json' };
import { ipFamily } from '../codec/ip.js';
import { StunServer } from '../server/server.js';
import { CliError, type OptionSpec, parseArgs, readFlagFile, runCli, usage } from './args.js';
import { type LogFormat, createLogger } from './log.js';

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
  { name: 'help', type: 'boolean', help: 'show this help' },
  { name: 'version', type: 'boolean', help: 'print the version' },
];

const HELP = usage(
  'stunserver [options]',
  'A STUN Binding server (RFC 8489) over UDP, TCP and TLS. Given --alternate it serves\n' +
    'RFC 5780 NAT behaviour discovery: four UDP sockets A:P, A:P2, A2:P, A2:P2, answering\n' +
    'CHANGE-REQUEST from the right one with OTHER-ADDRESS and RESPONSE-ORIGIN. Classic\n' +
    'RFC 3489 clients get MAPPED-ADDRESS, SOURCE-ADDRESS and CHANGED-ADDRESS.',
  SPECS.filter((s) => s.name !== 'help' && s.name !== 'version'),
  'Example: stunserver --listen 127.0.0.1 --alternate 127.0.0.2\nSIGINT or SIGTERM stops it cleanly.',
);

runCli('stunserver', async () => {
  const { values: v, positional } = parseArgs(process.argv.slice(2), SPECS);
  if (v.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (v.version) {
    process.stdout.write(`stunserver ${pkg.version}\n`);
    return 0;
  }
  if (positional.length) throw new CliError(`unexpected argument ${JSON.stringify(positional[0])}`);
  if (v['no-software'] && v.software !== undefined) throw new CliError('--software and --no-software contradict each other');
  const listen = (v.listen as string | undefined) ?? '0.0.0.0';
  if (!ipFamily(listen)) throw new CliError(`--listen: ${JSON.stringify(listen)} is not an IP address`);
  const alternate = v.alternate as string | undefined;
  if (alternate !== undefined && !ipFamily(alternate)) throw new CliError(`--alternate: ${JSON.stringify(alternate)} is not an IP address`);
  if ((v['tls-cert'] === undefined) !== (v['tls-key'] === undefined)) throw new CliError('--tls-cert and --tls-key go together');
  if (v.udp === false && v.tcp === false && v['tls-cert'] === undefined) throw new CliError('nothing to serve: UDP and TCP are off and no TLS certificate is given');
  const log = createLogger('stunserver', (v['log-format'] as LogFormat | undefined) ?? 'text');
  const tls =
    v['tls-cert'] !== undefined
      ? { cert: readFlagFile(v['tls-cert'] as string, '--tls-cert'), key: readFlagFile(v['tls-key'] as string, '--tls-key'), port: v['tls-port'] as number | undefined }
      : undefined;
  const server = await StunServer.start({
    address: listen,
    port: v.port as number | undefined,
    alternateAddress: alternate,
    alternatePort: v['alt-port'] as number | undefined,
    udp: v.udp as boolean | undefined,
    tcp: v.tcp as boolean | undefined,
    tls,
    software: v['no-software'] ? false : ((v.software as string | undefined) ?? `natkit ${pkg.version}`),
    errorRate: v['error-rate'] as number | undefined,
    maxConnections: v['max-connections'] as number | undefined,
  }).catch((err: NodeJS.ErrnoException) => {
    throw new Error(`cannot listen: ${err.message}${err.code === 'EADDRINUSE' ? ' (another server is using the port; pick one with --port)' : ''}`);
  });
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
  log.out(`stunserver ${pkg.version} listening on ${where.join(', ')}${server.full ? ' (RFC 5780 full mode)' : ''}`, undefined);
  const statsEvery = (v['stats-interval'] as number | undefined) ?? 0;
  const timer = statsEvery > 0 ? setInterval(() => log.info('stats', { ...server.stats, stream: server.streamDrops }), statsEvery * 1000) : undefined;
  await stopped;
  if (timer) clearInterval(timer);
  await server.close();
  log.info('stopped', { ...server.stats, stream: server.streamDrops });
  return 0;
});
