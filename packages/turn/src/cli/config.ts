import { readFileSync } from 'node:fs';
import { type Family, canonicalIp, ipFamily, nodeNetwork } from '@natkit/stun';
import * as cli from '@natkit/stun/cli';
import pkg from '../../package.json' with { type: 'json' };
import { type UserEntry, UsersFileError, readUsersFile } from '../server/auth.js';
import { TURN_DEFAULTS as D } from '../server/options.js';
import { parseCidr } from '../server/policy.js';
import { defaultRelayAddresses } from '../server/server.js';

/**
 * relayserver's settings: the flag table, the config file, and how flags, environment
 * variables and the config file combine (flag > environment > config file > default).
 * Everything here is pure or reads files; nothing opens a socket.
 */

type OptionSpec = cli.OptionSpec;
type ParsedValues = cli.ParsedValues;
const { CliError } = cli;

export const PROGRAM = 'relayserver';
export const VERSION: string = pkg.version;

/** Environment variable of a flag: RELAYSERVER_ + the name in capitals, dashes as underscores. */
export function envName(name: string): string {
  return `RELAYSERVER_${name.toUpperCase().replace(/-/g, '_')}`;
}

type Spec = Omit<OptionSpec, 'env'> & { env?: false };

const TABLE: Spec[] = [
  { name: 'config', type: 'string', value: 'FILE', help: 'read settings from FILE (format below)' },
  { name: 'listen', type: 'list', value: 'ADDR', defaultText: D.listen.join(', '), help: 'address to listen on for clients (UDP, TCP, TLS)' },
  { name: 'port', type: 'number', value: 'PORT', min: 0, max: 65535, defaultText: `${D.port}; 0 picks a free port`, help: 'UDP and TCP port' },
  { name: 'no-udp', type: 'boolean', help: 'do not listen on UDP' },
  { name: 'no-tcp', type: 'boolean', help: 'do not listen on TCP' },
  { name: 'tls-cert', type: 'string', value: 'FILE', help: 'PEM certificate (chain): listen on TLS too' },
  { name: 'tls-key', type: 'string', value: 'FILE', help: 'PEM private key for --tls-cert' },
  { name: 'tls-port', type: 'number', value: 'PORT', min: 0, max: 65535, defaultText: String(D.tlsPort), help: 'TLS port' },
  {
    name: 'relay-ip',
    type: 'list',
    value: 'ADDR',
    defaultText: "the first specific --listen address of each family; listening on 0.0.0.0 only, the host's first non-loopback address",
    help: 'address relayed sockets bind to; at most one IPv4 and one IPv6',
  },
  {
    name: 'external-ip',
    type: 'list',
    value: 'PUBLIC[/RELAY]',
    help: 'public address advertised in XOR-RELAYED-ADDRESS when the relay sits behind 1:1 NAT; one per family; /RELAY names the local relay address it maps to (as coturn)',
  },
  { name: 'min-port', type: 'number', value: 'PORT', min: 1, max: 65535, defaultText: String(D.relayPortMin), help: 'lowest relay port' },
  { name: 'max-port', type: 'number', value: 'PORT', min: 1, max: 65535, defaultText: String(D.relayPortMax), help: 'highest relay port' },
  { name: 'realm', type: 'string', value: 'REALM', defaultText: D.realm, help: 'authentication realm' },
  { name: 'user', type: 'list', value: 'USER:PASSWORD', help: 'a long-term credential user; PASSWORD may be 0xKEY, the hex MD5 key (coturn style)' },
  { name: 'users-file', type: 'string', value: 'FILE', help: 'users, one user:password or user:0xKEY a line (coturn format); re-read on SIGHUP' },
  { name: 'auth-secret', type: 'list', value: 'SECRET', help: 'TURN REST API shared secret (username expiry:user, password base64 HMAC-SHA1); several are all valid (rotation)' },
  { name: 'auth-secret-file', type: 'string', value: 'FILE', help: 'REST API secrets, one a line, so they stay out of argv; re-read on SIGHUP' },
  { name: 'rest-separator', type: 'string', value: 'CHAR', defaultText: `'${D.restSeparator}'`, help: 'separator between expiry and user in REST usernames' },
  { name: 'userhash', type: 'boolean', help: 'require USERHASH (RFC 8489 username anonymity)' },
  { name: 'no-auth', type: 'boolean', help: 'turn authentication OFF: anyone who reaches the server may relay; only for closed networks' },
  { name: 'allow-peer', type: 'list', value: 'CIDR', help: 'relay to this range although it is denied by default (private, loopback, link-local, ...)' },
  { name: 'deny-peer', type: 'list', value: 'CIDR', help: 'never relay to this range (beats --allow-peer)' },
  { name: 'user-quota', type: 'number', value: 'N', min: 1, defaultText: String(D.userQuota), help: 'allocations per user (486 past it), counted over all workers' },
  { name: 'total-quota', type: 'number', value: 'N', min: 1, defaultText: String(D.totalQuota), help: 'allocations in all (508 past it), counted over all workers' },
  { name: 'max-permissions', type: 'number', value: 'N', min: 1, defaultText: String(D.maxPermissions), help: 'permissions per allocation' },
  { name: 'max-channels', type: 'number', value: 'N', min: 1, max: 4096, defaultText: String(D.maxChannels), help: 'channel bindings per allocation' },
  { name: 'legacy-channels', type: 'boolean', help: 'accept RFC 5766 channel numbers 0x4000-0x7FFF; RFC 8656 allows 0x4000-0x4FFF, but coturn\'s turnutils_uclient picks up to 0x7FFF and gets 400 without this' },
  { name: 'max-connections-per-ip', type: 'number', value: 'N', min: 1, defaultText: String(D.maxConnectionsPerIp), help: 'TCP/TLS connections from one IP address at once' },
  { name: 'default-lifetime', type: 'number', value: 'SECONDS', min: 1, defaultText: String(D.defaultLifetime), help: 'allocation lifetime when the client asks for none (and the least granted)' },
  { name: 'max-lifetime', type: 'number', value: 'SECONDS', min: 1, defaultText: String(D.maxLifetime), help: 'longest allocation lifetime granted' },
  { name: 'error-rate', type: 'number', value: 'N', min: 0, defaultText: String(D.errorRate), help: 'unauthenticated error answers per second to one source IP over UDP, burst twice that (0: no limit)' },
  { name: 'metrics', type: 'string', value: 'ADDR:PORT', defaultText: 'off', help: 'serve Prometheus metrics on http://ADDR:PORT/metrics (summed over workers)' },
  { name: 'workers', type: 'number', value: 'N', min: 1, max: 1024, defaultText: 'every core (one on Node < 22.12)', help: 'processes serving the same ports (SO_REUSEPORT: each client stays on one)' },
  { name: 'auth-log-rate', type: 'number', value: 'N', min: 0, integer: false, defaultText: String(D.authFailureLogRate), help: 'failed authentications logged per second (warn level); the rest are counted' },
  { name: 'drain-timeout', type: 'number', value: 'SECONDS', min: 0, integer: false, defaultText: '30', help: 'on SIGTERM, how long to wait for allocations to end' },
  { name: 'log-format', type: 'string', value: 'text|json', choices: ['text', 'json'], defaultText: 'text', help: 'log line format' },
  { name: 'log-level', type: 'string', value: 'debug|info|warn', choices: ['debug', 'info', 'warn'], defaultText: 'info', help: 'least important log level written' },
  { name: 'software', type: 'string', value: 'TEXT', defaultText: D.software, help: 'SOFTWARE attribute in answers' },
  { name: 'no-software', type: 'boolean', help: 'send no SOFTWARE attribute' },
  { name: 'help', type: 'boolean', env: false, help: 'show this help' },
  { name: 'version', type: 'boolean', env: false, help: 'print the version' },
];

/** Every option, with its environment variable. */
export const OPTIONS: readonly OptionSpec[] = TABLE.map(({ env, ...s }) => (env === false ? s : { ...s, env: envName(s.name) }));

/** Options whose lists add up across flags, environment and config file instead of replacing. */
export const ADDITIVE = ['user', 'auth-secret'] as const;

/** Options a config file may not set. */
const NOT_IN_FILE = new Set(['config', 'help', 'version']);

export const HELP = cli.usage(
  'relayserver [options]',
  'A TURN relay (RFC 8656) over UDP, TCP and TLS, relaying UDP, secure by default:\n' +
    'long-term credentials or TURN REST API secrets are required, peers in private,\n' +
    'loopback and other special ranges are refused unless allowed, and quotas apply.',
  OPTIONS,
  [
    'Every option can also come from its environment variable (lists comma-separated,',
    'switches 1/0/true/false) or from the config file, which holds one setting a line:',
    '  name = value      or   name value      (names as the flags, without the dashes)',
    '  # comment         a repeated name adds to a list; a switch is `name` or `name = false`',
    'Values may be quoted ("a b" or \'a#b\'); otherwise " #" starts a comment.',
    'Precedence: flag > environment > config file > default. A list from a higher source',
    'replaces the lower one, except --user and --auth-secret, which add up.',
    '',
    'Signals: SIGHUP re-reads the users file, the secret file and the config file\'s user',
    'and auth-secret lines (allocations stay); SIGTERM drains (new Allocates get 508) for up',
    'to --drain-timeout, then stops; a second SIGTERM, or SIGINT, stops at once.',
    '',
    'With --workers (Node 22.12 or newer) each worker serves the same ports; quotas and',
    'metrics are kept over all of them, and signals reach every worker.',
    '',
    'Examples: relayserver --user alice:s3cret',
    '          relayserver --listen 192.0.2.10 --users-file /etc/natkit/turnusers',
    "coturn's client against it (RFC 5766 channel numbers need --legacy-channels):",
    '          turnutils_uclient -u alice -w s3cret -y 127.0.0.1   (with --legacy-channels)',
  ].join('\n'),
);

const byName = new Map(OPTIONS.map((s) => [s.name, s]));

// ---------------------------------------------------------------------------------------
// Per-value checks: the same for a flag, an environment variable and a config file line.
// Each returns what is wrong, or undefined.

function notIp(v: string): string | undefined {
  return ipFamily(v) ? undefined : `${JSON.stringify(v)} is not an IP address`;
}

function unspecified(v: string): boolean {
  return canonicalIp(v) === '0.0.0.0' || canonicalIp(v) === '::';
}

/** Parses ADDR:PORT or [V6]:PORT (@natkit/stun/cli's parseHostPort), the address in canonical form. */
export function parseHostPort(text: string): { address: string; port: number } | undefined {
  const r = cli.parseHostPort(text);
  return r && { address: canonicalIp(r.address), port: r.port };
}

/** Parses `USER:PASSWORD` (or `USER:0xKEY`). Never echoes the password. */
export function parseUserValue(v: string): [string, UserEntry] {
  const colon = v.indexOf(':');
  if (colon <= 0) throw new Error('expected USER:PASSWORD');
  const user = v.slice(0, colon);
  const secret = v.slice(colon + 1);
  if (secret === '') throw new Error(`empty password for ${user}`);
  if (/^0x[0-9a-fA-F]{32}$/.test(secret)) return [user, { md5Key: Buffer.from(secret.slice(2), 'hex') }];
  return [user, { password: secret }];
}

const CHECKS: Record<string, (v: string) => string | undefined> = {
  listen: notIp,
  'relay-ip': (v) => notIp(v) ?? (unspecified(v) ? `${v} is not a specific address (relayed sockets need one)` : undefined),
  'external-ip': (v) => {
    const [pub, priv, ...rest] = v.split('/');
    if (rest.length) return `expected PUBLIC or PUBLIC/RELAY, got ${JSON.stringify(v)}`;
    const bad = notIp(pub!) ?? (priv !== undefined ? notIp(priv) : undefined);
    if (bad) return bad;
    if (unspecified(pub!) || (priv !== undefined && unspecified(priv))) return `${v}: addresses must be specific`;
    if (priv !== undefined && ipFamily(pub!) !== ipFamily(priv)) return `${v}: the public and relay addresses are of different families`;
    return undefined;
  },
  user: (v) => {
    try {
      parseUserValue(v);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  },
  'auth-secret': (v) => (v === '' ? 'the secret is empty' : undefined),
  'allow-peer': (v) => {
    try {
      parseCidr(v);
      return undefined;
    } catch (err) {
      return (err as Error).message;
    }
  },
  metrics: (v) => (parseHostPort(v) ? undefined : `expected ADDR:PORT (e.g. 127.0.0.1:9641 or [::1]:9641), got ${JSON.stringify(v)}`),
  realm: (v) => (v === '' ? 'the realm is empty' : [...v].length >= 128 ? 'the realm must be shorter than 128 characters (RFC 8489)' : undefined),
  software: (v) => ([...v].length >= 128 ? 'SOFTWARE must be shorter than 128 characters (RFC 8489)' : undefined),
  'rest-separator': (v) => ([...v].length !== 1 || /\d/.test(v) ? `expected one character that is not a digit, got ${JSON.stringify(v)}` : undefined),
  'users-file': (v) => (v === '' ? 'empty file name' : undefined),
  'auth-secret-file': (v) => (v === '' ? 'empty file name' : undefined),
  config: (v) => (v === '' ? 'empty file name' : undefined),
};
CHECKS['deny-peer'] = CHECKS['allow-peer']!;

/** Checks every value of one source; `where(name)` is how errors name the source. */
export function checkValues(values: ParsedValues, where: (name: string) => string): void {
  for (const [name, v] of Object.entries(values)) {
    const check = CHECKS[name];
    if (!check || v === undefined) continue;
    for (const item of Array.isArray(v) ? v : [v]) {
      if (typeof item !== 'string') continue;
      const bad = check(item);
      if (bad) throw new CliError(`${where(name)}: ${bad}`);
    }
  }
}

// ---------------------------------------------------------------------------------------
// The config file

export interface ConfigFile {
  path: string;
  values: ParsedValues;
  /** Line numbers where each name was set. */
  lines: Map<string, number[]>;
}

const TRUE = ['true', 'yes', 'on', '1'];
const FALSE = ['false', 'no', 'off', '0'];

/** Splits a value into its text, handling quotes and trailing comments. */
function valueText(rest: string, where: string): string {
  const q = rest[0];
  if (q === '"' || q === "'") {
    const end = rest.indexOf(q, 1);
    if (end < 0) throw new CliError(`${where}: unclosed ${q}`);
    const after = rest.slice(end + 1).trim();
    if (after !== '' && !after.startsWith('#')) throw new CliError(`${where}: unexpected ${JSON.stringify(after)} after the quoted value`);
    return rest.slice(1, end);
  }
  const hash = rest.search(/\s#/);
  return (hash >= 0 ? rest.slice(0, hash) : rest).trim();
}

/**
 * Parses a config file: one `name = value` or `name value` a line, names as the flags
 * without the dashes, `#` comments, repeated names for lists, switches as `name`,
 * `name = true` or `name = false`. Unknown names and bad values are errors naming the file
 * and line.
 */
export function parseConfig(text: string, path: string, specs: readonly OptionSpec[] = OPTIONS): ConfigFile {
  const specsByName = specs === OPTIONS ? byName : new Map(specs.map((s) => [s.name, s]));
  const values: ParsedValues = {};
  const lines = new Map<string, number[]>();
  const all = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  for (let i = 0; i < all.length; i++) {
    const n = i + 1;
    const line = all[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([A-Za-z0-9][A-Za-z0-9_-]*)(?:\s*=\s*|\s+|$)(.*)$/.exec(line);
    if (!m) throw new CliError(`${path} line ${n}: expected "name = value", got ${JSON.stringify(line.slice(0, 60))}`);
    const name = m[1]!;
    const where = `${path} line ${n}: ${name}`;
    const spec = specsByName.get(name);
    if (!spec || NOT_IN_FILE.has(name)) {
      if (NOT_IN_FILE.has(name)) throw new CliError(`${path} line ${n}: ${name} cannot be set in a config file`);
      const near = specs.filter((s) => !NOT_IN_FILE.has(s.name) && (s.name.startsWith(name.slice(0, 3)) || s.name === name.replace(/_/g, '-'))).map((s) => s.name);
      throw new CliError(`${path} line ${n}: unknown setting ${JSON.stringify(name)}${near.length ? ` (did you mean ${near.join(' or ')}?)` : ''}`);
    }
    const hasValue = m[2]!.trim() !== '' && !m[2]!.trim().startsWith('#');
    const raw = hasValue ? valueText(m[2]!.trim(), where) : undefined;
    const seen = lines.get(name);
    if (seen && spec.type !== 'list') throw new CliError(`${where} is already set on line ${seen[0]}`);
    if (seen) seen.push(n);
    else lines.set(name, [n]);
    if (spec.type === 'boolean') {
      if (raw === undefined) values[name] = true;
      else if (TRUE.includes(raw.toLowerCase())) values[name] = true;
      else if (FALSE.includes(raw.toLowerCase())) values[name] = false;
      else throw new CliError(`${where} is a switch: write "${name}" or "${name} = false", not ${JSON.stringify(raw)}`);
      continue;
    }
    if (raw === undefined) throw new CliError(`${where} needs a value${spec.value ? ` (${spec.value})` : ''}`);
    const v = cli.convertValue(spec, raw, where);
    const bad = CHECKS[name]?.(String(v));
    if (bad) throw new CliError(`${where}: ${bad}`);
    if (spec.type === 'list') ((values[name] as string[] | undefined) ?? (values[name] = [])).push(String(v));
    else values[name] = v;
  }
  return { path, values, lines };
}

/** Reads and parses a config file; a missing or unreadable file is an error naming it. */
export function readConfig(path: string): ConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CliError(`--config: cannot read ${path}: ${(err as Error).message}`);
  }
  return parseConfig(text, path);
}

// ---------------------------------------------------------------------------------------
// Putting the sources together

export interface Layers {
  flags: ParsedValues;
  env: ParsedValues;
  file: ConfigFile | undefined;
}

/**
 * Reads the three sources: flags (argv without node and script), environment variables
 * and the config file named by --config or RELAYSERVER_CONFIG. Every value of every source
 * is checked, with errors naming where it came from.
 */
export function readLayers(argv: readonly string[], env: NodeJS.ProcessEnv, readConfigFile: (path: string) => ConfigFile = readConfig): { layers: Layers; positional: string[] } {
  const { values: flags, positional } = cli.parseArgs(argv, OPTIONS, {});
  if (flags.help || flags.version) return { layers: { flags, env: {}, file: undefined }, positional };
  checkValues(flags, (n) => `--${n}`);
  const envLayer = cli.envValues(OPTIONS, env);
  checkValues(envLayer, (n) => envName(n));
  const path = (flags.config ?? envLayer.config) as string | undefined;
  const file = path !== undefined ? readConfigFile(path) : undefined;
  return { layers: { flags, env: envLayer, file }, positional };
}

/** The values in force: flag > environment > config file (lists of ADDITIVE names add up). */
export function mergeLayers(layers: Layers): ParsedValues {
  return cli.mergeValues([layers.flags, layers.env, layers.file?.values ?? {}], ADDITIVE);
}

export type LogLevel = 'debug' | 'info' | 'warn';

/** The settings relayserver runs with (credentials apart: see loadCredentials). */
export interface Settings {
  listen: string[];
  port: number;
  udp: boolean;
  tcp: boolean;
  tls: { certFile: string; keyFile: string; port: number } | undefined;
  relayAddresses: Partial<Record<Family, string>>;
  externalAddresses: Partial<Record<Family, string>>;
  minPort: number;
  maxPort: number;
  realm: string;
  auth: boolean;
  usersFile: string | undefined;
  secretFile: string | undefined;
  restSeparator: string;
  userhash: boolean;
  allowPeers: string[];
  denyPeers: string[];
  userQuota: number;
  totalQuota: number;
  maxPermissions: number;
  maxChannels: number;
  maxConnectionsPerIp: number;
  legacyChannels: boolean;
  defaultLifetime: number;
  maxLifetime: number;
  errorRate: number;
  metrics: { address: string; port: number } | undefined;
  drainTimeout: number;
  logFormat: 'text' | 'json';
  logLevel: LogLevel;
  software: string | false;
  /** Requested workers (undefined: every core). */
  workers: number | undefined;
  authLogRate: number;
}

/** Checks the values together and gives the settings; errors are CliErrors naming flags. */
export function resolveSettings(v: ParsedValues): Settings {
  const listen = ((v.listen as string[] | undefined) ?? ['0.0.0.0']).map(canonicalIp);
  const dup = listen.find((a, i) => listen.indexOf(a) !== i);
  if (dup) throw new CliError(`--listen ${dup} is given twice`);
  const udp = v['no-udp'] !== true;
  const tcp = v['no-tcp'] !== true;
  const certFile = v['tls-cert'] as string | undefined;
  const keyFile = v['tls-key'] as string | undefined;
  if ((certFile === undefined) !== (keyFile === undefined)) throw new CliError('--tls-cert and --tls-key go together');
  if (v['tls-port'] !== undefined && certFile === undefined) throw new CliError('--tls-port needs --tls-cert and --tls-key');
  if (!udp && !tcp && certFile === undefined) throw new CliError('nothing to serve: UDP and TCP are off and no TLS certificate is given');

  const relayAddresses: Partial<Record<Family, string>> = {};
  for (const raw of (v['relay-ip'] as string[] | undefined) ?? []) {
    const a = canonicalIp(raw);
    const f = ipFamily(a)!;
    if (relayAddresses[f] !== undefined) throw new CliError(`--relay-ip: ${f} is given twice (${relayAddresses[f]} and ${a}); give at most one IPv4 and one IPv6 address`);
    relayAddresses[f] = a;
  }
  const externalAddresses: Partial<Record<Family, string>> = {};
  const fromExternal: Partial<Record<Family, string>> = {};
  for (const raw of (v['external-ip'] as string[] | undefined) ?? []) {
    const [pub, priv] = raw.split('/').map(canonicalIp);
    const f = ipFamily(pub!)!;
    if (externalAddresses[f] !== undefined) throw new CliError(`--external-ip: ${f} is given twice (${externalAddresses[f]} and ${pub}); give at most one a family`);
    externalAddresses[f] = pub!;
    if (priv !== undefined) {
      if (relayAddresses[f] !== undefined && relayAddresses[f] !== priv) {
        throw new CliError(`--external-ip ${raw}: the relay address ${priv} is not the --relay-ip for ${f} (${relayAddresses[f]})`);
      }
      relayAddresses[f] = priv;
      fromExternal[f] = priv;
    }
  }
  // As the server does (one rule, the library's): a family without --relay-ip relays on its
  // first specific listen address; listening on a wildcard only, on the host's first
  // non-loopback address (as coturn picks one).
  Object.assign(relayAddresses, defaultRelayAddresses(listen, relayAddresses, nodeNetwork));
  if (!relayAddresses.IPv4 && !relayAddresses.IPv6) {
    throw new CliError(`--relay-ip is needed: listening on ${listen.join(', ')} does not say which address relayed sockets bind to, and this host has no address but loopback`);
  }
  for (const f of Object.keys(externalAddresses) as Family[]) {
    if (!relayAddresses[f]) throw new CliError(`--external-ip ${externalAddresses[f]} is ${f}, but there is no ${f} relay address (--relay-ip)`);
  }

  const minPort = (v['min-port'] as number | undefined) ?? D.relayPortMin;
  const maxPort = (v['max-port'] as number | undefined) ?? D.relayPortMax;
  if (minPort > maxPort) throw new CliError(`--min-port ${minPort} is above --max-port ${maxPort}`);

  const auth = v['no-auth'] !== true;
  if (!auth) {
    const creds = ['user', 'users-file', 'auth-secret', 'auth-secret-file'].filter((n) => v[n] !== undefined);
    if (creds.length) throw new CliError(`--no-auth turns authentication off, but credentials are given (${creds.map((n) => `--${n}`).join(', ')}); drop one or the other`);
    if (v.userhash === true) throw new CliError('--userhash needs authentication, and --no-auth turns it off');
  }

  const defaultLifetime = (v['default-lifetime'] as number | undefined) ?? D.defaultLifetime;
  const maxLifetime = (v['max-lifetime'] as number | undefined) ?? D.maxLifetime;
  if (defaultLifetime > maxLifetime) throw new CliError(`--default-lifetime ${defaultLifetime} is above --max-lifetime ${maxLifetime}`);

  if (v.software !== undefined && v['no-software'] === true) throw new CliError('--software and --no-software exclude each other');
  const metrics = v.metrics !== undefined ? parseHostPort(v.metrics as string) : undefined;

  return {
    listen,
    port: (v.port as number | undefined) ?? D.port,
    udp,
    tcp,
    tls: certFile !== undefined ? { certFile, keyFile: keyFile!, port: (v['tls-port'] as number | undefined) ?? D.tlsPort } : undefined,
    relayAddresses,
    externalAddresses,
    minPort,
    maxPort,
    realm: (v.realm as string | undefined) ?? D.realm,
    auth,
    usersFile: v['users-file'] as string | undefined,
    secretFile: v['auth-secret-file'] as string | undefined,
    restSeparator: (v['rest-separator'] as string | undefined) ?? D.restSeparator,
    userhash: v.userhash === true,
    allowPeers: (v['allow-peer'] as string[] | undefined) ?? [],
    denyPeers: (v['deny-peer'] as string[] | undefined) ?? [],
    userQuota: (v['user-quota'] as number | undefined) ?? D.userQuota,
    totalQuota: (v['total-quota'] as number | undefined) ?? D.totalQuota,
    maxPermissions: (v['max-permissions'] as number | undefined) ?? D.maxPermissions,
    maxChannels: (v['max-channels'] as number | undefined) ?? D.maxChannels,
    maxConnectionsPerIp: (v['max-connections-per-ip'] as number | undefined) ?? D.maxConnectionsPerIp,
    legacyChannels: (v['legacy-channels'] as boolean | undefined) ?? false,
    defaultLifetime,
    maxLifetime,
    errorRate: (v['error-rate'] as number | undefined) ?? D.errorRate,
    metrics,
    drainTimeout: (v['drain-timeout'] as number | undefined) ?? 30,
    logFormat: ((v['log-format'] as string | undefined) ?? 'text') as 'text' | 'json',
    logLevel: ((v['log-level'] as string | undefined) ?? 'info') as LogLevel,
    software: v['no-software'] === true ? false : ((v.software as string | undefined) ?? D.software),
    workers: v.workers as number | undefined,
    authLogRate: (v['auth-log-rate'] as number | undefined) ?? D.authFailureLogRate,
  };
}

// ---------------------------------------------------------------------------------------
// Credentials: read at start and again on SIGHUP.

/** Parses an auth-secret file: one secret a line, blank lines and `#` lines ignored. */
export function parseSecrets(text: string): string[] {
  return text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

export interface Credentials {
  users: Map<string, UserEntry>;
  secrets: string[];
}

/**
 * Users and REST secrets from every source: the users file, then the config file's,
 * environment's and flags' --user (a later source wins for the same user); secrets from
 * all of them and the secret file. Errors (unreadable or malformed files) are CliErrors.
 */
export function loadCredentials(layers: Layers, usersFile: string | undefined, secretFile: string | undefined): Credentials {
  const users = new Map<string, UserEntry>();
  if (usersFile !== undefined) {
    try {
      for (const [u, e] of readUsersFile(usersFile)) users.set(u, e);
    } catch (err) {
      if (err instanceof UsersFileError) throw new CliError(`--users-file: ${err.message}`);
      throw err;
    }
  }
  const secrets: string[] = [];
  if (secretFile !== undefined) {
    let text: string;
    try {
      text = readFileSync(secretFile, 'utf8');
    } catch (err) {
      throw new CliError(`--auth-secret-file: cannot read ${secretFile}: ${(err as Error).message}`);
    }
    secrets.push(...parseSecrets(text));
  }
  for (const layer of [layers.file?.values ?? {}, layers.env, layers.flags]) {
    for (const u of (layer.user as string[] | undefined) ?? []) {
      const [name, entry] = parseUserValue(u);
      users.set(name, entry);
    }
    for (const s of (layer['auth-secret'] as string[] | undefined) ?? []) secrets.push(s);
  }
  return { users, secrets: [...new Set(secrets)] };
}

/** `1 user`, `2 users`. */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
