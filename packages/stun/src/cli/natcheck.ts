import { lookup } from 'node:dns/promises';
import pkg from '../../package.json' with { type: 'json' };
import { ipFamily } from '../codec/ip.js';
import { formatReport } from '../nat/discovery.js';
import { formatLifetime } from '../nat/lifetime.js';
import { checkBindingLifetime } from '../nat/lifetime-prober.js';
import { checkNat } from '../nat/prober.js';
import { CliError, HELP_AND_VERSION, type OptionSpec, helpOrVersion, parseArgs, runCli, usage } from './args.js';

const SPECS: OptionSpec[] = [
  { name: 'json', type: 'boolean', help: 'print the report as JSON' },
  { name: 'local', type: 'string', value: 'ADDR', env: 'NATCHECK_LOCAL', help: 'local address to send from (default: any)' },
  {
    name: 'timeout',
    type: 'number',
    value: 'MS',
    env: 'NATCHECK_TIMEOUT',
    min: 100,
    max: 60_000,
    defaultText: '2750',
    help: 'how long one probe waits for an answer (4 sends, doubling intervals)',
  },
  { name: 'hairpin', type: 'boolean', defaultText: 'on', help: 'test hairpinning (--no-hairpin to skip)' },
  // --lifetime (natlab's): RFC 5780 section 4.6, opt-in because it takes minutes
  {
    name: 'lifetime',
    type: 'boolean',
    help: 'also measure how long the NAT keeps an idle UDP mapping (RFC 5780 section 4.6; takes minutes; the server must honour RESPONSE-PORT) and advise a keepalive interval',
  },
  { name: 'lifetime-min', type: 'number', value: 'SECONDS', min: 1, max: 3600, defaultText: '2', help: 'with --lifetime: the shortest idle time to test' },
  { name: 'lifetime-max', type: 'number', value: 'SECONDS', min: 2, max: 7200, defaultText: '300', help: 'with --lifetime: the longest idle time to test (a mapping alive then is "at least" that)' },
  ...HELP_AND_VERSION,
];

const HELP = usage(
  'natcheck [options] SERVER[:PORT]',
  'Finds out what NAT you are behind, with the RFC 5780 tests against a STUN server that\n' +
    'has two addresses (natkit stunserver --alternate, coturn with two -L, stund):\n' +
    'mapping and filtering behaviour (RFC 4787), hairpinning, port preservation, and the\n' +
    'classic RFC 3489 name (Open Internet, Full Cone, Restricted Cone, Port Restricted\n' +
    'Cone, Symmetric, Symmetric UDP Firewall, UDP Blocked). SERVER is an address or a\n' +
    'host name; PORT defaults to 3478.',
  SPECS,
  [
    'Reading the report:',
    '  NAT type (RFC 3489)  Unknown   the behaviour tests could not all be made: the server',
    '      gave no OTHER-ADDRESS (it has one address, so "behaviour tests not run": use a',
    '      server with two, e.g. stunserver --alternate), or its alternate address never',
    '      answered (mapping or filtering "unknown").',
    '  hairpinning  not tested         no NAT was found (hairpinning is what a NAT does with',
    '      packets to its own public address), or --no-hairpin was given.',
    '',
    'Exit status: 0 report printed, 3 no answer from the server (UDP blocked or server',
    'down), 2 bad usage, 1 other errors.',
  ].join('\n'),
);

function splitHostPort(text: string): { host: string; port: number } {
  let host = text;
  let port = 3478;
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text);
  if (m) {
    host = m[1]!;
    if (m[2]) port = Number(m[2]);
  } else if (text.indexOf(':') === text.lastIndexOf(':') && text.includes(':')) {
    const i = text.lastIndexOf(':');
    host = text.slice(0, i);
    const p = text.slice(i + 1);
    if (!/^\d{1,5}$/.test(p)) throw new CliError(`bad port ${JSON.stringify(p)} in ${JSON.stringify(text)}`);
    port = Number(p);
  }
  if (!host) throw new CliError(`no host in ${JSON.stringify(text)}`);
  if (port < 1 || port > 65535) throw new CliError(`port ${port} is out of range`);
  return { host, port };
}

runCli('natcheck', async () => {
  const { values: v, positional } = parseArgs(process.argv.slice(2), SPECS);
  if (helpOrVersion(v, HELP, `natcheck ${pkg.version}`)) return 0;
  if (positional.length === 0) throw new CliError('which STUN server? give SERVER[:PORT]');
  if (positional.length > 1) throw new CliError(`one server only; unexpected ${JSON.stringify(positional[1])}`);
  const { host, port } = splitHostPort(positional[0]!);
  let address = host;
  if (!ipFamily(host)) {
    try {
      address = (await lookup(host)).address;
    } catch (err) {
      throw new Error(`cannot resolve ${host}: ${(err as Error).message}`);
    }
  }
  const local = v.local as string | undefined;
  if (local !== undefined && !ipFamily(local)) throw new CliError(`--local: ${JSON.stringify(local)} is not an IP address`);
  const timeout = (v.timeout as number | undefined) ?? 2750;
  // --lifetime (natlab's)
  const lifetimeMin = (v['lifetime-min'] as number | undefined) ?? 2;
  const lifetimeMax = (v['lifetime-max'] as number | undefined) ?? 300;
  if (!v.lifetime && (v['lifetime-min'] !== undefined || v['lifetime-max'] !== undefined)) throw new CliError('--lifetime-min and --lifetime-max go with --lifetime');
  if (lifetimeMin >= lifetimeMax) throw new CliError(`--lifetime-min (${lifetimeMin}) must be less than --lifetime-max (${lifetimeMax})`);
  // Sends at 0, rto, 3 rto, 7 rto; gives up 4 rto after the last: 11 rto in all.
  const rto = Math.max(10, Math.round(timeout / 11));
  const report = await checkNat(
    { family: ipFamily(address)!, address, port },
    { bindAddress: local, retransmit: { rto, rc: 4, rm: 4 }, hairpin: v.hairpin as boolean | undefined, software: `natkit natcheck ${pkg.version}` },
  );
  const lifetime =
    v.lifetime && !report.udpBlocked
      ? await checkBindingLifetime(
          { family: ipFamily(address)!, address, port },
          {
            bindAddress: local,
            retransmit: { rto, rc: 4, rm: 4 },
            software: `natkit natcheck ${pkg.version}`,
            minMs: lifetimeMin * 1000,
            maxMs: lifetimeMax * 1000,
            onProgress: (e) => {
              if (e.kind === 'round') process.stderr.write(`natcheck: lifetime round ${e.round}: idle ${e.idleMs.map((ms) => (ms / 1000).toFixed(1)).join(', ')} s\n`);
            },
          },
        )
      : undefined;
  if (v.json) process.stdout.write(`${JSON.stringify(lifetime ? { ...report, lifetime } : report, null, 2)}\n`);
  else process.stdout.write(`${formatReport(report)}\n${lifetime ? `${formatLifetime(lifetime)}\n` : ''}`);
  return report.udpBlocked ? 3 : 0;
});
