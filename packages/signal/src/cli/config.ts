import { isIP } from 'node:net';
import * as cli from '@natkit/stun/cli';
import pkg from '../../package.json' with { type: 'json' };
import { DEFAULT_LIMITS } from '../core/core.js';
import type { Mode } from '../core/types.js';
import type { SignalServerOptions } from '../server/server.js';

/**
 * signalserver's flags and environment variables (flag > environment > default), checked
 * and turned into the server's options. Pure: nothing here opens a socket.
 */

type OptionSpec = cli.OptionSpec;
const { CliError } = cli;

export const PROGRAM = 'signalserver';
export const VERSION: string = pkg.version;

export function envName(name: string): string {
  return `SIGNALSERVER_${name.toUpperCase().replace(/-/g, '_')}`;
}

const sec = (ms: number) => String(ms / 1000);

const TABLE: Array<Omit<OptionSpec, 'env'> & { env?: false }> = [
  { name: 'listen', type: 'string', value: 'ADDR', defaultText: '0.0.0.0', help: 'address to listen on' },
  { name: 'port', type: 'number', value: 'PORT', min: 0, max: 65535, defaultText: '14141 (the tutorial\'s); 0 picks a free port', help: 'TCP port' },
  {
    name: 'mode',
    type: 'string',
    value: 'auto|plain|rooms',
    choices: ['auto', 'plain', 'rooms'],
    defaultText: 'auto',
    help: 'auto: a first byte "{" starts the JSON protocol, any other byte (or --detect-timeout of silence) makes a plain party; plain: every connection is a plain party from the moment it connects (the tutorial\'s server exactly); rooms: JSON only',
  },
  { name: 'max-line', type: 'number', value: 'BYTES', min: 64, max: 16 * 1024 * 1024, defaultText: String(DEFAULT_LIMITS.maxLine), help: 'longest line; a longer one closes that connection' },
  { name: 'max-buffer', type: 'number', value: 'BYTES', min: 1024, max: 1024 ** 3, defaultText: String(DEFAULT_LIMITS.maxBuffer), help: 'bytes held per party for a peer not there yet (or in flight to another instance), and queued to a slow reader' },
  { name: 'max-rooms', type: 'number', value: 'N', min: 1, defaultText: String(DEFAULT_LIMITS.maxRooms), help: 'rooms with a party on this instance' },
  { name: 'max-connections', type: 'number', value: 'N', min: 1, defaultText: String(DEFAULT_LIMITS.maxConnections), help: 'connections at once' },
  { name: 'max-connections-per-ip', type: 'number', value: 'N', min: 1, defaultText: String(DEFAULT_LIMITS.maxConnectionsPerIp), help: 'connections at once from one IP address' },
  { name: 'max-errors', type: 'number', value: 'N', min: 1, defaultText: String(DEFAULT_LIMITS.maxErrors), help: 'invalid messages one connection may send before it is closed' },
  { name: 'detect-timeout', type: 'number', value: 'SECONDS', min: 0, integer: false, defaultText: sec(DEFAULT_LIMITS.detectTimeout), help: 'mode auto: a connection silent this long becomes a plain party' },
  { name: 'join-timeout', type: 'number', value: 'SECONDS', min: 0.1, integer: false, defaultText: sec(DEFAULT_LIMITS.joinTimeout), help: 'a JSON connection must join within this' },
  { name: 'heartbeat', type: 'number', value: 'SECONDS', min: 0.1, integer: false, defaultText: sec(DEFAULT_LIMITS.heartbeatInterval), help: 'ping a JSON connection sent nothing for this long' },
  { name: 'heartbeat-timeout', type: 'number', value: 'SECONDS', min: 0.2, integer: false, defaultText: sec(DEFAULT_LIMITS.heartbeatTimeout), help: 'close a JSON connection that sent nothing (not even pong) for this long' },
  { name: 'idle-timeout', type: 'number', value: 'SECONDS', min: 0, integer: false, defaultText: sec(DEFAULT_LIMITS.idleTimeout), help: 'close a party that sent and got no data for this long (0: never)' },
  { name: 'slow-reader-timeout', type: 'number', value: 'SECONDS', min: 0.1, integer: false, defaultText: sec(DEFAULT_LIMITS.slowReaderTimeout), help: 'close a connection whose socket stays full this long' },
  { name: 'keepalive', type: 'number', value: 'SECONDS', min: 1, integer: false, defaultText: '60', help: 'TCP keepalive: first probe after this much silence (ends half-open plain connections)' },
  { name: 'close-grace', type: 'number', value: 'SECONDS', min: 0, integer: false, defaultText: '5', help: 'time a closing connection gets to take what it was sent' },
  { name: 'redis', type: 'string', value: 'URL', help: 'share rooms with other instances through Redis (redis://host:port[/db]; rediss:// for TLS)' },
  { name: 'redis-prefix', type: 'string', value: 'TEXT', defaultText: 'natkit:signal:', help: 'prefix of the Redis keys and channels' },
  { name: 'redis-ttl', type: 'number', value: 'SECONDS', min: 0.3, integer: false, defaultText: '15', help: 'an instance that has not refreshed its Redis key for this long is gone; its parties have left' },
  { name: 'metrics', type: 'string', value: 'ADDR:PORT', defaultText: 'off', help: 'serve Prometheus metrics on http://ADDR:PORT/metrics' },
  { name: 'log-format', type: 'string', value: 'text|json', choices: ['text', 'json'], defaultText: 'text', help: 'log line format' },
  { name: 'log-level', type: 'string', value: 'debug|info|warn', choices: ['debug', 'info', 'warn'], defaultText: 'info', help: 'least important log level written' },
  { name: 'help', type: 'boolean', env: false, help: 'show this help' },
  { name: 'version', type: 'boolean', env: false, help: 'print the version' },
];

export const OPTIONS: readonly OptionSpec[] = TABLE.map(({ env, ...s }) => (env === false ? s : { ...s, env: envName(s.name) }));

export const HELP = cli.usage(
  'signalserver [options]',
  'The TCP signalling server of the libjingle tutorial, rebuilt. Plain mode: the first two\n' +
    'parties are paired and what one sends goes to the other, as it is; what comes before the\n' +
    'second party is held and delivered, in order, when it joins; a third party is closed at\n' +
    'once. Rooms: a connection whose first line is {"type":"join","room":"NAME"} joins a room of\n' +
    'two and speaks newline-delimited JSON (credentials, candidate, end-of-candidates,\n' +
    'restart, app, bye, ping/pong), with error messages that say why before a close.',
  OPTIONS,
  [
    'Every option can also come from its environment variable (SIGNALSERVER_<NAME>).',
    'SIGTERM or SIGINT closes cleanly: every party is told (JSON: an error "shutdown"),',
    'connections get --close-grace to flush, peers on other instances are told.',
    '',
    'Examples:',
    '  signalserver                                   # the tutorial\'s server on port 14141',
    '  signalserver --listen 127.0.0.1 --metrics 127.0.0.1:9642',
    '  signalserver --redis redis://10.0.0.5:6379      # one of several instances',
  ].join('\n'),
);

export interface Settings {
  server: SignalServerOptions;
  metrics: { address: string; port: number } | undefined;
  logFormat: 'text' | 'json';
  logLevel: 'debug' | 'info' | 'warn';
}

/** Flags and environment, checked together; errors are CliErrors naming the flag. */
export function resolveSettings(argv: readonly string[], env: NodeJS.ProcessEnv): { settings?: Settings; help?: boolean; version?: boolean } {
  const { values: flags, positional } = cli.parseArgs(argv, OPTIONS, {});
  if (flags.help) return { help: true };
  if (flags.version) return { version: true };
  cli.noArguments(positional);
  const v = cli.mergeValues([flags, cli.envValues(OPTIONS, env)]);
  const from = (name: string) => (flags[name] !== undefined ? `--${name}` : envName(name));
  const ms = (name: string) => (v[name] === undefined ? undefined : Math.round((v[name] as number) * 1000));

  const host = (v.listen as string | undefined) ?? '0.0.0.0';
  if (!isIP(host)) throw new CliError(`${from('listen')}: ${JSON.stringify(host)} is not an IP address`);
  let metrics: Settings['metrics'];
  if (v.metrics !== undefined) {
    metrics = cli.parseHostPort(v.metrics as string);
    if (!metrics) throw new CliError(`${from('metrics')}: expected ADDR:PORT (e.g. 127.0.0.1:9642 or [::1]:9642), got ${JSON.stringify(v.metrics)}`);
  }
  const redis = v.redis as string | undefined;
  if (redis !== undefined) {
    let u: URL | undefined;
    try {
      u = new URL(redis);
    } catch {
      u = undefined;
    }
    if (!u || (u.protocol !== 'redis:' && u.protocol !== 'rediss:') || !u.hostname) {
      throw new CliError(`${from('redis')}: expected a URL like redis://127.0.0.1:6379, got ${JSON.stringify(redis)}`);
    }
  } else {
    for (const n of ['redis-prefix', 'redis-ttl']) if (v[n] !== undefined) throw new CliError(`${from(n)} needs --redis`);
  }
  if (v['redis-prefix'] === '') throw new CliError(`${from('redis-prefix')}: empty prefix`);
  const heartbeat = ms('heartbeat') ?? DEFAULT_LIMITS.heartbeatInterval;
  const heartbeatTimeout = ms('heartbeat-timeout') ?? Math.max(DEFAULT_LIMITS.heartbeatTimeout, heartbeat * 3);
  if (heartbeatTimeout <= heartbeat) throw new CliError(`--heartbeat-timeout (${heartbeatTimeout / 1000} s) must be longer than --heartbeat (${heartbeat / 1000} s)`);
  const mode = v.mode as Mode | undefined;
  if (mode === 'plain' && v['detect-timeout'] !== undefined) throw new CliError('--detect-timeout is for --mode auto; in --mode plain every connection is a plain party at once');

  const server: SignalServerOptions = {
    host,
    port: (v.port as number | undefined) ?? 14141,
    mode,
    maxLine: v['max-line'] as number | undefined,
    maxBuffer: v['max-buffer'] as number | undefined,
    maxRooms: v['max-rooms'] as number | undefined,
    maxConnections: v['max-connections'] as number | undefined,
    maxConnectionsPerIp: v['max-connections-per-ip'] as number | undefined,
    maxErrors: v['max-errors'] as number | undefined,
    detectTimeout: ms('detect-timeout'),
    joinTimeout: ms('join-timeout'),
    heartbeatInterval: heartbeat,
    heartbeatTimeout,
    idleTimeout: ms('idle-timeout'),
    slowReaderTimeout: ms('slow-reader-timeout'),
    keepAlive: ms('keepalive'),
    closeGrace: ms('close-grace'),
    ...(redis !== undefined ? { redis: { url: redis, prefix: v['redis-prefix'] as string | undefined, ttl: ms('redis-ttl') } } : {}),
  };
  for (const k of Object.keys(server) as Array<keyof SignalServerOptions>) if (server[k] === undefined) delete server[k];
  return {
    settings: {
      server,
      metrics,
      logFormat: ((v['log-format'] as string | undefined) ?? 'text') as 'text' | 'json',
      logLevel: ((v['log-level'] as string | undefined) ?? 'info') as 'debug' | 'info' | 'warn',
    },
  };
}
