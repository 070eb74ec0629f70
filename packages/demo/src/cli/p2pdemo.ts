import { lookup } from 'node:dns/promises';
import { parseIceServerUrl, validateIceServers } from '@natkit/ice';
import { ROOM_PATTERN } from '@natkit/signal';
import { type TransportAddress, ipFamily } from '@natkit/stun';
import { CliError, HELP_AND_VERSION, type OptionSpec, helpOrVersion, iceServerFlags, noArguments, parseArgs, readFlagFile, runCli, usage } from '@natkit/stun/cli';
import pkg from '../../package.json' with { type: 'json' };
import { formatEvent } from '../format.js';
import { type P2pPeerOptions, P2pPeer } from '../peer.js';

const PROGRAM = 'p2pdemo';

const SPECS: OptionSpec[] = [
  { name: 'signal', type: 'string', value: 'HOST[:PORT]', env: 'P2PDEMO_SIGNAL', help: 'the signalling server (signalserver; port 14141 if not given)' },
  { name: 'room', type: 'string', value: 'NAME', env: 'P2PDEMO_ROOM', defaultText: 'p2pdemo', help: 'the room to meet the peer in (signalserver JSON rooms: two peers a room)' },
  { name: 'plain', type: 'boolean', help: "speak the libjingle tutorial's candidate lines through a plain pipe (its signalling server, or signalserver's plain mode) instead of a room" },
  { name: 'stun', type: 'list', value: 'URL', help: 'a STUN server: stun:host[:port] (RFC 7064)' },
  { name: 'turn', type: 'list', value: 'URL', help: 'a TURN server: turn:host[:port][?transport=udp|tcp] or turns:host[:port] (RFC 7065)' },
  { name: 'user', type: 'string', value: 'NAME', env: 'P2PDEMO_USER', help: 'TURN username for the --turn servers' },
  { name: 'credential', type: 'string', value: 'PASSWORD', env: 'P2PDEMO_CREDENTIAL', help: 'TURN password for the --turn servers' },
  { name: 'ice-servers', type: 'string', value: 'JSON', help: 'servers as RTCConfiguration.iceServers: a JSON array of {urls, username, credential}, or @FILE' },
  { name: 'relay-only', type: 'boolean', help: 'relayed candidates only (iceTransportPolicy "relay"): forces the path through the TURN server' },
  { name: 'natcheck', type: 'boolean', defaultText: 'on', help: 'find out the NAT first (RFC 5780 tests; --no-natcheck to skip)' },
  { name: 'nat-server', type: 'string', value: 'HOST[:PORT]', help: 'the STUN server for the NAT check (default: the first --stun server, else the first turn: server over UDP)' },
  { name: 'nat-timeout', type: 'number', value: 'MS', min: 100, max: 60_000, defaultText: '1500', help: 'how long one NAT-check probe waits for an answer' },
  { name: 'hairpin', type: 'boolean', defaultText: 'on', help: 'test hairpinning in the NAT check (--no-hairpin to skip)' },
  { name: 'interval', type: 'string', value: 'SECONDS|MIN-MAX', env: 'P2PDEMO_INTERVAL', defaultText: '1-15', help: 'time between the random bytes: a fixed time, or random between MIN and MAX (decimals allowed)' },
  { name: 'timeout', type: 'number', value: 'SECONDS', min: 1, max: 3600, defaultText: '30', help: "how long ICE may take once the peer's candidates are there; the first time, no path by then is the verdict" },
  {
    name: 'disconnected-after',
    type: 'number',
    value: 'SECONDS',
    min: 1,
    max: 30,
    integer: false,
    defaultText: '12.5',
    help: 'no answer to consent checks (RFC 7675) for this long means the path broke: restart ICE',
  },
  { name: 'address', type: 'list', value: 'ADDR', help: 'gather on these local addresses only' },
  { name: 'interface', type: 'list', value: 'NAME', help: 'gather on these interfaces only (eth0, wlan0, ...)' },
  { name: 'include-loopback', type: 'boolean', help: 'gather on loopback addresses too (by default only when there is nothing else)' },
  { name: 'family', type: 'string', value: 'FAMILY', choices: ['ipv4', 'ipv6', 'both'], defaultText: 'both', help: 'address families: ipv4, ipv6 or both' },
  { name: 'server-timeout', type: 'number', value: 'MS', min: 100, max: 120_000, defaultText: '5000', help: 'how long each STUN/TURN server gets while gathering' },
  { name: 'ca', type: 'string', value: 'FILE', help: 'CA certificate(s), PEM, for turns: servers (default: the system CAs)' },
  { name: 'insecure', type: 'boolean', help: 'do not verify turns: certificates' },
  { name: 'json', type: 'boolean', help: 'one JSON object a line, one line per event, for machines' },
  ...HELP_AND_VERSION,
];

const HELP = usage(
  'p2pdemo --signal HOST[:PORT] [--room NAME | --plain] [--stun URL] [--turn URL --user U --credential P] [options]',
  "The libjingle tutorial's P2P client, rebuilt on natkit: it finds out which NAT it is\n" +
    'behind (RFC 5780, against the STUN server), meets its peer through the signalling\n' +
    'server, gathers candidates from the STUN and TURN servers given, trickles them, and\n' +
    'connects with ICE (RFC 8445). It says which path works (each end\'s candidate and type,\n' +
    'direct or relayed, the RTT) and what that means, then sends a random byte at random\n' +
    'intervals and prints what arrives. When the path breaks (no answer to consent checks)\n' +
    'it exchanges candidates again (an ICE restart) and says when it recovered and how long\n' +
    'it took. Run it on two machines with the same --signal and --room.\n\n' +
    'Examples:\n' +
    '  p2pdemo --signal 203.0.113.7 --room r42 --stun stun:203.0.113.7:3479 \\\n' +
    '          --turn turn:203.0.113.7 --user demo --credential s3cret\n' +
    '  p2pdemo --signal 127.0.0.1 --plain --stun stun:127.0.0.1 --json',
  SPECS,
  'Roles: in a room the peer that joined first is the controlling ICE agent; on the plain\n' +
    "pipe both start controlling and RFC 8445's tie-breaker settles it.\n" +
    'Exit status: 0 stopped (SIGINT/SIGTERM), 1 no path (the verdict says why) or another\n' +
    'failure, 2 bad usage, 3 the signalling server cannot be reached.',
);

function splitHostPort(text: string, flag: string, defaultPort: number): { host: string; port: number } {
  let host = text;
  let port = defaultPort;
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (m) {
    host = m[1]!;
    if (m[2]) port = Number(m[2]);
  } else if (text.includes(':') && text.indexOf(':') === text.lastIndexOf(':')) {
    const i = text.lastIndexOf(':');
    host = text.slice(0, i);
    const p = text.slice(i + 1);
    if (!/^\d{1,5}$/.test(p)) throw new CliError(`${flag}: bad port ${JSON.stringify(p)} in ${JSON.stringify(text)}`);
    port = Number(p);
  }
  if (!host || /\s/.test(host)) throw new CliError(`${flag}: no host in ${JSON.stringify(text)} (HOST[:PORT])`);
  if (port < 1 || port > 65535) throw new CliError(`${flag}: port ${port} is out of range`);
  return { host, port };
}

/** --interval: "2.5" (fixed) or "1-15" (random between); seconds. */
export function parseInterval(text: string): { min: number; max: number } {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(?:-\s*(\d+(?:\.\d+)?)\s*)?$/.exec(text);
  if (!m) throw new CliError(`--interval: expected SECONDS or MIN-MAX (e.g. 2, 0.5 or 1-15), got ${JSON.stringify(text)}`);
  const min = Number(m[1]);
  const max = m[2] !== undefined ? Number(m[2]) : min;
  if (min < 0.01) throw new CliError(`--interval: at least 0.01 s, got ${min}`);
  if (max < min) throw new CliError(`--interval: ${min}-${max} goes backwards`);
  if (max > 86_400) throw new CliError(`--interval: at most 86400 s, got ${max}`);
  return { min: Math.round(min * 1000), max: Math.round(max * 1000) };
}

async function resolve(host: string, flag: string): Promise<string> {
  if (ipFamily(host)) return host;
  try {
    return (await lookup(host)).address;
  } catch (err) {
    throw new Error(`${flag}: cannot resolve ${host}: ${(err as Error).message}`);
  }
}

runCli(PROGRAM, async () => {
  const { values: v, positional } = parseArgs(process.argv.slice(2), SPECS);
  if (helpOrVersion(v, HELP, `${PROGRAM} ${pkg.version}`)) return 0;
  noArguments(positional);
  if (v.signal === undefined) throw new CliError('which signalling server? give --signal HOST[:PORT] (signalserver, or the tutorial\'s on port 14141)');
  const signal = splitHostPort(v.signal as string, '--signal', 14141);
  const plain = v.plain === true;
  if (plain && process.argv.slice(2).some((a) => a === '--room' || a.startsWith('--room='))) throw new CliError('--plain has no rooms: give --room or --plain, not both');
  const room = plain ? undefined : ((v.room as string | undefined) ?? 'p2pdemo');
  if (room !== undefined && !ROOM_PATTERN.test(room)) throw new CliError(`--room: ${JSON.stringify(room)} is not 1-64 letters, digits, ".", "_", "~" or "-"`);

  // ICE servers, as icegather takes them.
  const iceServers = iceServerFlags(v, { envPrefix: 'P2PDEMO', parseUrl: parseIceServerUrl, validate: validateIceServers });
  const urls = iceServers.flatMap((s) => s.urls);

  const intervalMs = parseInterval((v.interval as string | undefined) ?? '1-15');
  const addresses = v.address as string[] | undefined;
  for (const a of addresses ?? []) if (!ipFamily(a)) throw new CliError(`--address: ${JSON.stringify(a)} is not an IP address`);
  const interfaces = v.interface as string[] | undefined;
  const family = (v.family as string | undefined) ?? 'both';

  // The NAT check's server: --nat-server, else the first stun: URL, else the first turn: over UDP.
  let natCheck: P2pPeerOptions['natCheck'];
  let natSkipped: string | undefined;
  if (v.natcheck === false) {
    if (v['nat-server'] !== undefined) throw new CliError('--nat-server goes with the NAT check; drop --no-natcheck');
    natSkipped = '--no-natcheck';
  } else {
    let target: { host: string; port: number } | undefined;
    if (v['nat-server'] !== undefined) target = splitHostPort(v['nat-server'] as string, '--nat-server', 3478);
    else {
      const parsed = urls.map((u) => parseIceServerUrl(u));
      const pickUrl = parsed.find((u) => u.scheme === 'stun') ?? parsed.find((u) => u.scheme === 'turn' && u.transport === 'udp');
      if (pickUrl) target = { host: pickUrl.host, port: pickUrl.port };
    }
    if (target) {
      const address = await resolve(target.host, '--nat-server');
      const server: TransportAddress = { family: ipFamily(address)!, address, port: target.port };
      natCheck = { server, timeoutMs: (v['nat-timeout'] as number | undefined) ?? 1500, hairpin: v.hairpin !== false };
    } else {
      natSkipped = 'no STUN server given (--stun)';
    }
  }

  const options: P2pPeerOptions = {
    signal: { host: signal.host, port: signal.port, ...(room !== undefined ? { room } : {}) },
    iceServers,
    policy: v['relay-only'] ? 'relay' : 'all',
    ...(addresses ? { addresses } : {}),
    ...(interfaces ? { interfaceFilter: (a: { name: string }) => interfaces.includes(a.name) } : {}),
    ...(v['include-loopback'] !== undefined ? { includeLoopback: v['include-loopback'] as boolean } : {}),
    families: family === 'ipv4' ? ['IPv4'] : family === 'ipv6' ? ['IPv6'] : ['IPv4', 'IPv6'],
    serverTimeoutMs: (v['server-timeout'] as number | undefined) ?? 5000,
    ...(natCheck ? { natCheck } : { natSkipped }),
    intervalMs,
    connectTimeoutMs: ((v.timeout as number | undefined) ?? 30) * 1000,
    disconnectedAfterMs: Math.round(((v['disconnected-after'] as number | undefined) ?? 12.5) * 1000),
    software: `natkit p2pdemo ${pkg.version}`,
    version: pkg.version,
  };
  if (v.ca !== undefined || v.insecure) {
    options.tls = { ...(v.ca !== undefined ? { ca: readFlagFile(v.ca as string, '--ca') } : {}), ...(v.insecure ? { rejectUnauthorized: false } : {}) };
  }

  const json = v.json === true;
  const peer = new P2pPeer(options);
  peer.on('event', (e) => {
    if (json) process.stdout.write(`${JSON.stringify(e)}\n`);
    else {
      const text = formatEvent(e);
      if (text !== undefined) process.stdout.write(`${text}\n`);
    }
  });
  // Ctrl-C / SIGTERM: close the agents (TURN allocations deleted) and leave the room; a
  // second signal, or a close that takes longer than 5 s, ends it at once.
  const onSignal = (sig: NodeJS.Signals) => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    process.once('SIGINT', () => process.exit(130));
    process.once('SIGTERM', () => process.exit(143));
    setTimeout(() => process.exit(1), 5000).unref();
    void peer.stop(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  const code = await peer.run();
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  return code;
});
