import { ipFamily } from '@natkit/stun';
import * as cli from '@natkit/stun/cli';
import pkg from '../../package.json' with { type: 'json' };
import { Gatherer, type GathererOptions } from '../gather/gatherer.js';
import { type IceServer, IceUrlError, parseIceServerUrl, validateIceServers } from '../gather/urls.js';
import { candidateRow, reportJson, serverLine, summary, tableHeader } from './report.js';

const { CliError, HELP_AND_VERSION, helpOrVersion, iceServersFlag, parseArgs, readFlagFile, runCli, usage } = cli;

const SPECS: cli.OptionSpec[] = [
  { name: 'stun', type: 'list', value: 'URL', help: 'a STUN server: stun:host[:port] (RFC 7064)' },
  { name: 'turn', type: 'list', value: 'URL', help: 'a TURN server: turn:host[:port][?transport=udp|tcp] or turns:host[:port] (RFC 7065)' },
  { name: 'user', type: 'string', value: 'NAME', env: 'ICEGATHER_USER', help: 'TURN username for the --turn servers' },
  { name: 'credential', type: 'string', value: 'PASSWORD', env: 'ICEGATHER_CREDENTIAL', help: 'TURN password for the --turn servers' },
  {
    name: 'ice-servers',
    type: 'string',
    value: 'JSON',
    help: 'servers as RTCConfiguration.iceServers: a JSON array of {urls, username, credential}, or @FILE to read it from a file',
  },
  { name: 'timeout', type: 'number', value: 'MS', env: 'ICEGATHER_TIMEOUT', min: 100, max: 120_000, defaultText: '5000', help: 'how long each server gets' },
  { name: 'json', type: 'boolean', help: 'print the report as JSON instead of the table' },
  { name: 'relay-only', type: 'boolean', help: "gather relayed candidates only (iceTransportPolicy 'relay'); STUN servers are not contacted" },
  { name: 'include-loopback', type: 'boolean', help: 'gather on loopback addresses too (by default only when there is nothing else)' },
  { name: 'include-link-local', type: 'boolean', help: 'gather on link-local addresses (169.254/16, fe80::/10) too' },
  { name: 'interface', type: 'list', value: 'NAME', help: 'only these interfaces (eth0, wlan0, ...)' },
  { name: 'address', type: 'list', value: 'ADDR', help: 'only these local addresses (overrides the interface list)' },
  { name: 'family', type: 'string', value: 'FAMILY', choices: ['ipv4', 'ipv6', 'both'], defaultText: 'both', help: 'address families: ipv4, ipv6 or both' },
  { name: 'ca', type: 'string', value: 'FILE', help: 'CA certificate(s), PEM, to verify turns:/stuns: servers with (default: the system CAs)' },
  { name: 'insecure', type: 'boolean', help: 'do not verify turns:/stuns: certificates' },
  ...HELP_AND_VERSION,
];

const HELP = usage(
  'icegather [options] [URL...]',
  'Gathers ICE candidates (RFC 8445) from every local address and every STUN and TURN\n' +
    'server given, and prints them as they arrive, like the "Trickle ICE" test page: host,\n' +
    'server-reflexive and relayed candidates (TURN over UDP, TCP and TLS), each with its\n' +
    'time, foundation, priority, related address and the server it came from; then one\n' +
    'line per server, with the reason for each that failed (TIMEOUT, AUTH_FAILED 401,\n' +
    'FORBIDDEN 403, DNS, UNREACHABLE, TLS, ...). URLs may also be given as arguments.\n\n' +
    'Examples:\n' +
    '  icegather --stun stun:127.0.0.1:3478\n' +
    "  icegather --stun stun:stun.example.org --turn 'turn:turn.example.org?transport=tcp' --user U --credential P\n" +
    '  icegather --ice-servers \'[{"urls":["turns:turn.example.org"],"username":"U","credential":"P"}]\' --json',
  SPECS,
  'Exit status: 0 every server answered (or none was given), 1 one or more servers failed,\n' +
    '2 bad usage (flags, URLs, JSON), 3 no candidate at all (no usable local address).',
);

runCli('icegather', async () => {
  const { values: v, positional } = parseArgs(process.argv.slice(2), SPECS);
  if (helpOrVersion(v, HELP, `icegather ${pkg.version}`)) return 0;
  const stun = [...((v.stun as string[] | undefined) ?? [])];
  const turn = [...((v.turn as string[] | undefined) ?? [])];
  for (const url of positional) {
    let scheme: string;
    try {
      scheme = parseIceServerUrl(url).scheme;
    } catch (err) {
      throw new CliError((err as Error).message);
    }
    if (scheme.startsWith('turn')) turn.push(url);
    else stun.push(url);
  }
  for (const url of stun) {
    try {
      if (parseIceServerUrl(url).scheme.startsWith('turn')) throw new CliError(`--stun ${url}: a TURN URL; give it with --turn`);
    } catch (err) {
      if (err instanceof IceUrlError) throw new CliError(`--stun: ${err.message}`);
      throw err;
    }
  }
  for (const url of turn) {
    try {
      if (!parseIceServerUrl(url).scheme.startsWith('turn')) throw new CliError(`--turn ${url}: not a turn: or turns: URL; give STUN servers with --stun`);
    } catch (err) {
      if (err instanceof IceUrlError) throw new CliError(`--turn: ${err.message}`);
      throw err;
    }
  }
  const user = v.user as string | undefined;
  const credential = v.credential as string | undefined;
  if (turn.length && (user === undefined || credential === undefined)) throw new CliError('TURN servers need --user and --credential (or ICEGATHER_USER and ICEGATHER_CREDENTIAL)');
  if (!turn.length && (user !== undefined || credential !== undefined) && v['ice-servers'] === undefined) {
    throw new CliError('--user and --credential are for --turn servers; none was given');
  }
  const iceServers: IceServer[] = [];
  if (stun.length) iceServers.push({ urls: stun });
  if (turn.length) iceServers.push({ urls: turn, username: user!, credential: credential! });
  if (v['ice-servers'] !== undefined) iceServers.push(...iceServersFlag(v['ice-servers'] as string));
  let urls;
  try {
    urls = validateIceServers(iceServers);
  } catch (err) {
    if (err instanceof IceUrlError) throw new CliError(err.message);
    throw err;
  }
  if (v['relay-only'] && !urls.some((u) => u.scheme === 'turn' || u.scheme === 'turns')) {
    throw new CliError('--relay-only needs a TURN server (--turn or --ice-servers)');
  }
  const addresses = v.address as string[] | undefined;
  for (const a of addresses ?? []) if (!ipFamily(a)) throw new CliError(`--address: ${JSON.stringify(a)} is not an IP address`);
  const family = (v.family as string | undefined) ?? 'both';
  const interfaces = v.interface as string[] | undefined;
  const options: GathererOptions = {
    iceServers,
    serverTimeoutMs: (v.timeout as number | undefined) ?? 5000,
    policy: v['relay-only'] ? 'relay' : 'all',
    families: family === 'ipv4' ? ['IPv4'] : family === 'ipv6' ? ['IPv6'] : ['IPv4', 'IPv6'],
    software: `natkit icegather ${pkg.version}`,
    ...(v['include-loopback'] !== undefined ? { includeLoopback: v['include-loopback'] as boolean } : {}),
    ...(v['include-link-local'] ? { includeLinkLocal: true } : {}),
    ...(interfaces ? { interfaceFilter: (a) => interfaces.includes(a.name) } : {}),
    ...(addresses ? { addresses } : {}),
  };
  if (v.ca !== undefined || v.insecure) {
    options.tls = {
      ...(v.ca !== undefined ? { ca: readFlagFile(v.ca as string, '--ca') } : {}),
      ...(v.insecure ? { rejectUnauthorized: false } : {}),
    };
  }
  const json = v.json === true;
  const g = new Gatherer(options);
  if (!json) {
    process.stdout.write(`${tableHeader()}\n`);
    g.on('candidate', (c) => process.stdout.write(`${candidateRow(c)}\n`));
  }
  // Ctrl-C: give the allocations back before leaving.
  const onSignal = () => {
    void g.close().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  let report;
  try {
    report = await g.gather();
  } finally {
    await g.close();
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  if (json) process.stdout.write(`${JSON.stringify(reportJson(report), null, 2)}\n`);
  else {
    if (report.servers.length) process.stdout.write(`\n${report.servers.map(serverLine).join('\n')}\n`);
    for (const h of report.hostErrors) process.stdout.write(`host address ${h.address} not used: ${h.message}\n`);
    process.stdout.write(`${summary(report)}\n`);
  }
  if (options.policy === 'all' && !report.candidates.some((c) => c.type === 'host')) {
    process.stderr.write('icegather: no usable local address, so no candidate at all (try --include-loopback, or check --interface/--address)\n');
    return 3;
  }
  return report.servers.some((o) => !o.ok && o.error?.code !== 'SKIPPED') ? 1 : 0;
});
