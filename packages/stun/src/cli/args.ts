import cluster from 'node:cluster';
import { readFileSync } from 'node:fs';
import { ipFamily } from '../codec/ip.js';

/**
 * A small strict command-line parser shared by natkit's binaries: every flag is declared,
 * unknown flags and bad values are errors that say what is wrong, values can come from
 * environment variables, and `--help` text is generated from the same declarations.
 */

export type OptionType = 'string' | 'number' | 'boolean' | 'list';

export interface OptionSpec {
  name: string;
  type: OptionType;
  help: string;
  /** Environment variable that supplies the value when the flag is absent. */
  env?: string;
  /** Placeholder in the help text, e.g. ADDR. */
  value?: string;
  /** For numbers: bounds and integer-ness. */
  min?: number;
  max?: number;
  integer?: boolean;
  /** For strings: allowed values. */
  choices?: readonly string[];
  /** Shown in help. */
  defaultText?: string;
}

export class CliError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliError';
  }
}

export type ParsedValues = Record<string, string | number | boolean | string[] | undefined>;

/**
 * Converts and checks one raw value for `spec` (numbers, bounds, choices). `from` names
 * where the value came from in error messages: `--port`, `STUNSERVER_PORT`, `file line 3: port`.
 */
export function convertValue(spec: OptionSpec, raw: string, from: string): string | number {
  if (spec.type === 'number') {
    const n = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(n)) throw new CliError(`${from} expects a number, got ${JSON.stringify(raw)}`);
    if ((spec.integer ?? true) && !Number.isInteger(n)) throw new CliError(`${from} expects a whole number, got ${JSON.stringify(raw)}`);
    if (spec.min !== undefined && n < spec.min) throw new CliError(`${from} must be at least ${spec.min}, got ${n}`);
    if (spec.max !== undefined && n > spec.max) throw new CliError(`${from} must be at most ${spec.max}, got ${n}`);
    return n;
  }
  if (spec.choices && !spec.choices.includes(raw)) throw new CliError(`${from} must be one of ${spec.choices.join(', ')}; got ${JSON.stringify(raw)}`);
  return raw;
}

/**
 * Parses `argv` (without node and script). Flags: `--name value`, `--name=value`,
 * `--flag`, `--no-flag` for booleans; list flags repeat. Returns values by flag name and
 * the positional arguments.
 */
export function parseArgs(
  argv: readonly string[],
  specs: readonly OptionSpec[],
  env: NodeJS.ProcessEnv = process.env,
): { values: ParsedValues; positional: string[] } {
  const byName = new Map(specs.map((s) => [s.name, s]));
  const values: ParsedValues = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      positional.push(arg);
      continue;
    }
    if (arg === '-h') {
      values.help = true;
      continue;
    }
    if (!arg.startsWith('--')) throw new CliError(`unknown option ${arg} (options are spelled out, e.g. --help)`);
    const eq = arg.indexOf('=');
    let name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    let inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
    let spec = byName.get(name);
    if (!spec && name.startsWith('no-') && byName.get(name.slice(3))?.type === 'boolean') {
      spec = byName.get(name.slice(3));
      name = name.slice(3);
      if (inline !== undefined) throw new CliError(`--no-${name} takes no value`);
      values[name] = false;
      continue;
    }
    if (!spec) {
      const near = specs.filter((s) => s.name.startsWith(name.slice(0, 3))).map((s) => `--${s.name}`);
      throw new CliError(`unknown option --${name}${near.length ? ` (did you mean ${near.join(' or ')}?)` : ''}`);
    }
    if (spec.type === 'boolean') {
      if (inline === undefined) values[name] = true;
      else if (inline === 'true' || inline === '1') values[name] = true;
      else if (inline === 'false' || inline === '0') values[name] = false;
      else throw new CliError(`--${name} is a switch; use --${name} or --no-${name}`);
      continue;
    }
    if (inline === undefined) {
      const next = argv[i + 1];
      if (next === undefined || (next.startsWith('--') && next.length > 2)) throw new CliError(`--${name} needs a value${spec.value ? ` (${spec.value})` : ''}`);
      inline = next;
      i++;
    }
    const v = convertValue(spec, inline, `--${name}`);
    if (spec.type === 'list') ((values[name] as string[] | undefined) ?? (values[name] = [])).push(String(v));
    else values[name] = v;
  }
  Object.assign(values, envValues(specs.filter((s) => values[s.name] === undefined), env));
  return { values, positional };
}

/**
 * The values the environment variables of `specs` give (booleans as 1/0/true/false/yes/no,
 * lists comma-separated), checked as flags are.
 */
export function envValues(specs: readonly OptionSpec[], env: NodeJS.ProcessEnv = process.env): ParsedValues {
  const values: ParsedValues = {};
  for (const spec of specs) {
    if (!spec.env) continue;
    const raw = env[spec.env];
    if (raw === undefined || raw === '') continue;
    if (spec.type === 'boolean') {
      if (!['1', '0', 'true', 'false', 'yes', 'no'].includes(raw.toLowerCase())) throw new CliError(`${spec.env} must be true or false, got ${JSON.stringify(raw)}`);
      values[spec.name] = ['1', 'true', 'yes'].includes(raw.toLowerCase());
    } else if (spec.type === 'list') {
      values[spec.name] = raw.split(',').map((x) => String(convertValue(spec, x.trim(), spec.env!)));
    } else {
      values[spec.name] = convertValue(spec, raw, spec.env);
    }
  }
  return values;
}

/**
 * Layers of values, highest precedence first (e.g. flags, environment, config file): each
 * name takes its value from the first layer that has one, except the names in `append`,
 * whose lists are joined across all layers (lowest layer first).
 */
export function mergeValues(layers: readonly ParsedValues[], append: readonly string[] = []): ParsedValues {
  const out: ParsedValues = {};
  for (const layer of layers) {
    for (const [name, v] of Object.entries(layer)) {
      if (v === undefined) continue;
      if (append.includes(name)) out[name] = [...(v as string[]), ...((out[name] as string[] | undefined) ?? [])];
      else if (out[name] === undefined) out[name] = v;
    }
  }
  return out;
}

/** --help and --version, which every natkit binary takes (usage() lists them last, by itself). */
export const HELP_AND_VERSION: readonly OptionSpec[] = [
  { name: 'help', type: 'boolean', help: 'show this help' },
  { name: 'version', type: 'boolean', help: 'print the version' },
];

const isHelpOrVersion = (s: OptionSpec) => s.name === 'help' || s.name === 'version';

/** The help text (--help and --version last, whether `specs` has them or not). */
export function usage(synopsis: string, description: string, specs: readonly OptionSpec[], footer = ''): string {
  const rows = specs.filter((s) => !isHelpOrVersion(s)).map((s) => {
    const flag = `--${s.name}${s.type === 'boolean' ? '' : ` ${s.value ?? 'VALUE'}`}${s.type === 'list' ? ' (repeatable)' : ''}`;
    const extra = [s.defaultText ? `default ${s.defaultText}` : '', s.env ? `env ${s.env}` : ''].filter(Boolean).join('; ');
    return [flag, s.help + (extra ? ` (${extra})` : '')];
  });
  const width = Math.min(34, Math.max(...rows.map(([f]) => f!.length)) + 2);
  const body = rows.map(([f, h]) => `  ${f!.padEnd(width)}${f!.length >= width ? `\n  ${' '.repeat(width)}` : ''}${h}`).join('\n');
  return `Usage: ${synopsis}\n\n${description}\n\nOptions:\n${body}\n  ${'--help'.padEnd(width)}show this help\n  ${'--version'.padEnd(width)}print the version${footer ? `\n\n${footer}` : ''}\n`;
}

/**
 * The start every natkit binary shares: with --help it prints `help`, with --version the
 * `version` line ("NAME 1.2.3"); true when it did (the binary then exits 0).
 */
export function helpOrVersion(values: { help?: unknown; version?: unknown }, help: string, version: string): boolean {
  if (values.help) {
    process.stdout.write(help);
    return true;
  }
  if (values.version) {
    process.stdout.write(`${version}\n`);
    return true;
  }
  return false;
}

/** For a binary that takes no arguments: the first one given is a usage error. */
export function noArguments(positional: readonly string[]): void {
  if (positional.length) throw new CliError(`unexpected argument ${JSON.stringify(positional[0])}`);
}

/** An entry of RTCConfiguration.iceServers, as the flags give it. */
export interface IceServerEntry {
  urls: string[];
  username?: string;
  credential?: string;
}

/**
 * An --ice-servers value: RTCConfiguration.iceServers as JSON text (the list, or an object
 * with `iceServers`), or @FILE to read it from a file; each entry {urls, username,
 * credential} checked for its shape (the URLs themselves are the ICE library's to check).
 */
export function iceServersFlag(text: string, flag = '--ice-servers'): IceServerEntry[] {
  const raw = text.startsWith('@') ? readFlagFile(text.slice(1), flag).toString('utf8') : text;
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw new CliError(`${flag} is not valid JSON: ${(err as Error).message}`);
  }
  if (parsed && typeof parsed === 'object' && !Array.isArray(parsed) && 'iceServers' in parsed) parsed = (parsed as { iceServers: unknown }).iceServers;
  if (!Array.isArray(parsed)) throw new CliError(`${flag} must be a JSON array of {urls, username, credential}`);
  return parsed.map((e, i) => {
    const where = `${flag} entry ${i + 1}`;
    if (!e || typeof e !== 'object' || Array.isArray(e)) throw new CliError(`${where} is not an object`);
    const { urls, username, credential, ...rest } = e as Record<string, unknown>;
    const extra = Object.keys(rest).filter((k) => k !== 'credentialType');
    if (extra.length) throw new CliError(`${where}: unknown field ${JSON.stringify(extra[0])} (urls, username, credential)`);
    const list = typeof urls === 'string' ? [urls] : urls;
    if (!Array.isArray(list) || list.length === 0 || list.some((u) => typeof u !== 'string')) throw new CliError(`${where}: urls must be a string or a non-empty array of strings`);
    if (username !== undefined && typeof username !== 'string') throw new CliError(`${where}: username must be a string`);
    if (credential !== undefined && typeof credential !== 'string') throw new CliError(`${where}: credential must be a string`);
    return { urls: list as string[], ...(username !== undefined ? { username } : {}), ...(credential !== undefined ? { credential } : {}) };
  });
}

/**
 * The ICE servers of a binary's --stun, --turn, --user, --credential and --ice-servers flags
 * (icegather, p2pdemo): --stun takes stun:/stuns: URLs, --turn turn:/turns: ones, which need
 * --user and --credential (flags or `${envPrefix}_USER` and `${envPrefix}_CREDENTIAL`);
 * `stun` and `turn` add URLs given otherwise (arguments); --ice-servers adds its entries as they are; with --relay-only there must be a TURN URL.
 * `parseUrl` (the ICE library's parser: this package has none) throws on a bad URL, and
 * `validate` on a bad configuration; either becomes a usage error.
 */
export function iceServerFlags(
  v: ParsedValues,
  o: { envPrefix: string; parseUrl: (url: string) => { scheme: string }; validate: (servers: IceServerEntry[]) => readonly { scheme: string }[]; stun?: readonly string[]; turn?: readonly string[] },
): IceServerEntry[] {
  const stun = [...((v.stun as string[] | undefined) ?? []), ...(o.stun ?? [])];
  const turn = [...((v.turn as string[] | undefined) ?? []), ...(o.turn ?? [])];
  const asUsage = (prefix: string, f: () => unknown) => {
    try {
      f();
    } catch (err) {
      throw err instanceof CliError ? err : new CliError(`${prefix}${(err as Error).message}`);
    }
  };
  for (const url of stun) {
    asUsage('--stun: ', () => {
      if (o.parseUrl(url).scheme.startsWith('turn')) throw new CliError(`--stun ${url}: a TURN URL; give it with --turn`);
    });
  }
  for (const url of turn) {
    asUsage('--turn: ', () => {
      if (!o.parseUrl(url).scheme.startsWith('turn')) throw new CliError(`--turn ${url}: not a turn: or turns: URL; give STUN servers with --stun`);
    });
  }
  const user = v.user as string | undefined;
  const credential = v.credential as string | undefined;
  if (turn.length && (user === undefined || credential === undefined)) {
    throw new CliError(`TURN servers need --user and --credential (or ${o.envPrefix}_USER and ${o.envPrefix}_CREDENTIAL)`);
  }
  if (!turn.length && (user !== undefined || credential !== undefined) && v['ice-servers'] === undefined) {
    throw new CliError('--user and --credential are for --turn servers; none was given');
  }
  const servers: IceServerEntry[] = [];
  if (stun.length) servers.push({ urls: stun });
  if (turn.length) servers.push({ urls: turn, username: user!, credential: credential! });
  if (v['ice-servers'] !== undefined) servers.push(...iceServersFlag(v['ice-servers'] as string));
  let urls: readonly { scheme: string }[] = [];
  asUsage('', () => (urls = o.validate(servers)));
  // The URLs as the ICE library parsed them, not the raw text.
  if (v['relay-only'] && !urls.some((u) => u.scheme === 'turn' || u.scheme === 'turns')) throw new CliError('--relay-only needs a TURN server (--turn or --ice-servers)');
  return servers;
}

/** An ADDR:PORT or [V6]:PORT flag value (an IP address, not a name, and a port 0-65535), or undefined. */
export function parseHostPort(text: string): { address: string; port: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(text);
  if (!m) return undefined;
  const address = m[1] ?? m[2]!;
  const port = Number(m[3]);
  if (!ipFamily(address) || port > 65535) return undefined;
  return { address, port };
}

/** ADDR:PORT, with an IPv6 address in brackets. */
export function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/** Reads a file named by a flag, with an error that names the flag. */
export function readFlagFile(path: string, flag: string): Buffer {
  try {
    return readFileSync(path);
  } catch (err) {
    throw new CliError(`${flag}: cannot read ${path}: ${(err as Error).message}`);
  }
}

/**
 * Runs a CLI main function: a CliError prints "NAME: message" and a pointer to --help and
 * exits 2; any other error prints "NAME: message" and exits 1.
 */
export function runCli(program: string, main: () => Promise<number | void>): void {
  // A --workers worker has an IPC channel to its primary that keeps it alive: let it go
  // once main is done, so the worker exits (and the primary sees it).
  const done = () => {
    if (!cluster.isWorker || !process.connected) return;
    // Tell the primary how this worker ended (a signal that reaches it while it exits must
    // not count as a crash), then let go: worker.disconnect(), not process.disconnect(), so
    // the worker exits with its own status instead of being ended with 0.
    process.send!({ natkit: 'stopped', code: process.exitCode ?? 0 }, undefined, undefined, () => {
      if (process.connected) cluster.worker!.disconnect();
    });
  };
  main().then(
    (code) => {
      if (typeof code === 'number') process.exitCode = code;
      done();
    },
    (err: unknown) => {
      if (err instanceof CliError) {
        process.stderr.write(`${program}: ${err.message}\nTry '${program} --help' for the options.\n`);
        process.exitCode = 2;
      } else {
        process.stderr.write(`${program}: ${(err as Error)?.message ?? String(err)}\n`);
        process.exitCode = 1;
      }
      done();
    },
  );
}
