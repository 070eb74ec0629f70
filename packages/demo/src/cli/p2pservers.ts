import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createInterface } from 'node:readline';
import { dirname, join } from 'node:path';
import { ipFamily } from '@natkit/stun';
import { CliError, HELP_AND_VERSION, type OptionSpec, helpOrVersion, noArguments, parseArgs, readFlagFile, runCli, usage } from '@natkit/stun/cli';
import pkg from '../../package.json' with { type: 'json' };
import { ROOM_PATTERN } from '@natkit/signal';
import { type Plan, type ServerPlan, type ServersOptions, hostAddresses, isPrivate, plan, shellQuote, token } from '../servers.js';

const PROGRAM = 'p2pservers';

const SPECS: OptionSpec[] = [
  { name: 'listen', type: 'string', value: 'ADDR', env: 'P2PSERVERS_LISTEN', defaultText: '0.0.0.0', help: 'the address all three servers listen on' },
  {
    name: 'public-ip',
    type: 'string',
    value: 'ADDR',
    env: 'P2PSERVERS_PUBLIC_IP',
    help: "the address the peers reach this host at, put in the p2pdemo line (default: --listen, or this host's first public address); not one of this host's (1:1 NAT, as on cloud VMs): the relay advertises it (relayserver --external-ip)",
  },
  { name: 'alternate', type: 'string', value: 'ADDR', env: 'P2PSERVERS_ALTERNATE', help: "a second address of this host: stunserver then serves RFC 5780 NAT behaviour discovery (p2pdemo's NAT check gets mapping and filtering)" },
  { name: 'stun-port', type: 'number', value: 'PORT', min: 0, max: 65534, defaultText: '3479', help: 'stunserver (and the next port in RFC 5780 mode); 0 picks free ports' },
  { name: 'turn-port', type: 'number', value: 'PORT', min: 0, max: 65535, defaultText: '3478', help: 'relayserver (TURN, and STUN Binding too); 0 picks a free port' },
  { name: 'signal-port', type: 'number', value: 'PORT', min: 0, max: 65535, defaultText: '14141', help: 'signalserver; 0 picks a free port' },
  { name: 'user', type: 'string', value: 'USER:PASSWORD', env: 'P2PSERVERS_USER', help: 'the TURN user the peers get (default: user p2pdemo with a random 24-character password, new at every start)' },
  { name: 'auth-secret-file', type: 'string', value: 'FILE', help: "TURN REST API secrets, one a line (relayserver's); the peers get a credential made from the first, valid --credential-ttl" },
  { name: 'rest-user', type: 'string', value: 'NAME', defaultText: 'p2pdemo', help: 'with --auth-secret-file: the user part of the REST username (expiry:NAME)' },
  { name: 'credential-ttl', type: 'number', value: 'SECONDS', min: 60, max: 31_536_000, defaultText: '86400', help: 'with --auth-secret-file: how long the printed credential stays valid' },
  { name: 'room', type: 'string', value: 'NAME', defaultText: 'random', help: 'the signalling room in the p2pdemo line' },
  { name: 'allow-peer', type: 'list', value: 'CIDR', help: "let the relay reach this range although it is denied by default (private, loopback, ...; relayserver's --allow-peer): for a lab or a LAN, not the internet" },
  { name: 'drain-timeout', type: 'number', value: 'SECONDS', min: 0, max: 3600, defaultText: '5', help: 'on SIGTERM, how long the relay waits for allocations to end' },
  { name: 'json', type: 'boolean', help: "JSON lines on stdout: each server's pid as it starts, then the ready line (URLs, credential, p2pdemo's arguments); the servers' own lines go to stderr" },
  ...HELP_AND_VERSION,
];

const HELP = usage(
  'p2pservers [options]',
  'Everything two p2pdemo peers need, in one command on a public host: natkit\'s stunserver\n' +
    '(port 3479), relayserver (TURN, port 3478) and signalserver (port 14141), each as its own\n' +
    'process, secure by default: TURN authentication is always on (a generated password,\n' +
    'your --user, or TURN REST API secrets), the relay refuses private, loopback and its own\n' +
    'addresses, and every server keeps its limits. When all three are up it prints the\n' +
    'p2pdemo line to give the peers. Their logs follow, one prefix per server. Ctrl-C (or\n' +
    'SIGTERM) stops all three cleanly; if one of them dies, the others are stopped too.\n' +
    'SIGHUP makes the relay re-read --auth-secret-file.\n\n' +
    'Open UDP 3478-3480 and 49152-65535 (relayed addresses), TCP 3478, 3479 and 14141.\n\n' +
    'Examples:\n' +
    '  p2pservers                                    # on a host with a public address\n' +
    '  p2pservers --public-ip 203.0.113.7            # a cloud VM behind 1:1 NAT\n' +
    '  p2pservers --alternate 203.0.113.8            # two addresses: full RFC 5780 NAT checks\n' +
    '  p2pservers --auth-secret-file /etc/natkit/rest-secrets --credential-ttl 3600',
  SPECS,
  'Exit status: 0 stopped by a signal, 1 a server failed to start or died, 2 bad usage.',
);

const require = createRequire(import.meta.url);
/** The path of a natkit binary, from the package that ships it. */
function binPath(p: ServerPlan): string {
  const manifest = require.resolve(`${p.pkg}/package.json`);
  const bin = (JSON.parse(readFileSync(manifest, 'utf8')) as { bin: Record<string, string> }).bin[p.name];
  if (!bin) throw new Error(`${p.pkg} has no ${p.name} binary`);
  return join(dirname(manifest), bin);
}

interface Running {
  plan: ServerPlan;
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Its start-up line, once seen (`started` settles then). */
  startup?: string;
  started: Promise<void>;
}

runCli(PROGRAM, async () => {
  const { values: v, positional } = parseArgs(process.argv.slice(2), SPECS);
  if (helpOrVersion(v, HELP, `${PROGRAM} ${pkg.version}`)) return 0;
  noArguments(positional);
  const listen = (v.listen as string | undefined) ?? '0.0.0.0';
  if (!ipFamily(listen)) throw new CliError(`--listen: ${JSON.stringify(listen)} is not an IP address`);
  const wildcard = listen === '0.0.0.0' || listen === '::';
  const local = hostAddresses();
  let publicIp = v['public-ip'] as string | undefined;
  if (publicIp !== undefined && !ipFamily(publicIp)) throw new CliError(`--public-ip: ${JSON.stringify(publicIp)} is not an IP address`);
  const warnings: string[] = [];
  if (publicIp === undefined) {
    if (!wildcard) publicIp = listen;
    else {
      const first = local.find((a) => !a.internal && ipFamily(a.address) === ipFamily(listen));
      if (!first) throw new CliError('this host has no address besides loopback: give --public-ip (or --listen 127.0.0.1 to try it on this machine)');
      publicIp = first.address;
    }
    if (isPrivate(publicIp) && !publicIp.startsWith('127.')) {
      warnings.push(`${publicIp} is a private address: peers on the internet cannot reach it. Behind 1:1 NAT (a cloud VM), give the public one with --public-ip`);
    }
  }
  const publicIsLocal = local.some((a) => a.address === publicIp) || (publicIp.startsWith('127.') && listen.startsWith('127.'));
  if (!wildcard && publicIsLocal && publicIp !== listen) throw new CliError(`--public-ip ${publicIp} is an address of this host, but the servers listen on ${listen} only`);
  const alternate = v.alternate as string | undefined;
  if (alternate !== undefined) {
    if (!ipFamily(alternate)) throw new CliError(`--alternate: ${JSON.stringify(alternate)} is not an IP address`);
    if (alternate === publicIp || alternate === listen) throw new CliError('--alternate must be a second address, not the first');
    if (ipFamily(alternate) !== ipFamily(listen)) throw new CliError('--alternate must be of the same family as --listen');
  }
  const stunPort = (v['stun-port'] as number | undefined) ?? 3479;
  const turnPort = (v['turn-port'] as number | undefined) ?? 3478;
  const signalPort = (v['signal-port'] as number | undefined) ?? 14141;
  const fixed = [stunPort, ...(alternate ? [stunPort + 1] : []), turnPort].filter((p) => p !== 0);
  if (new Set(fixed).size !== fixed.length) throw new CliError(`--stun-port ${stunPort}${alternate ? ` (and ${stunPort + 1})` : ''} and --turn-port ${turnPort} must differ: both are UDP`);

  let auth: ServersOptions['auth'];
  const userFlag = v.user as string | undefined;
  const secretFile = v['auth-secret-file'] as string | undefined;
  if (userFlag !== undefined && secretFile !== undefined) throw new CliError('give --user or --auth-secret-file, not both');
  if (secretFile === undefined && (v['rest-user'] !== undefined || v['credential-ttl'] !== undefined)) throw new CliError('--rest-user and --credential-ttl go with --auth-secret-file');
  if (secretFile !== undefined) {
    const secrets = readFlagFile(secretFile, '--auth-secret-file')
      .toString('utf8')
      .split(/\r?\n/)
      .map((l) => l.trim())
      .filter((l) => l !== '' && !l.startsWith('#'));
    if (!secrets.length) throw new CliError(`--auth-secret-file: ${secretFile} holds no secret (one a line)`);
    const restUser = (v['rest-user'] as string | undefined) ?? 'p2pdemo';
    if (!/^[\x21-\x7e]+$/.test(restUser) || restUser.includes(':')) throw new CliError(`--rest-user: ${JSON.stringify(restUser)} must be visible ASCII without ":"`);
    auth = { secretFile, secret: secrets[0]!, restUser, ttlSec: (v['credential-ttl'] as number | undefined) ?? 86_400 };
  } else if (userFlag !== undefined) {
    const i = userFlag.indexOf(':');
    if (i <= 0 || i === userFlag.length - 1) throw new CliError('--user: expected USER:PASSWORD');
    const user = userFlag.slice(0, i);
    const password = userFlag.slice(i + 1);
    if (!/^[\x21-\x7e]+$/.test(user) || !/^[\x21-\x7e]+$/.test(password)) throw new CliError('--user: the user and the password must be visible ASCII (they go on a command line)');
    if (password.length < 8) throw new CliError('--user: a password of at least 8 characters, please (the relay is on the internet)');
    auth = { user, password, generated: false };
  } else {
    auth = { user: 'p2pdemo', password: token(24), generated: true };
  }
  const room = (v.room as string | undefined) ?? `p2p-${token(8)}`;
  if (!ROOM_PATTERN.test(room)) throw new CliError(`--room: ${JSON.stringify(room)} is not 1-64 letters, digits, ".", "_", "~" or "-"`);
  const options: ServersOptions = {
    listen,
    publicIp,
    publicIsLocal,
    ...(alternate ? { alternate } : {}),
    stunPort,
    turnPort,
    signalPort,
    auth,
    room,
    allowPeer: (v['allow-peer'] as string[] | undefined) ?? [],
    drainTimeoutSec: (v['drain-timeout'] as number | undefined) ?? 5,
    now: Date.now() / 1000,
  };
  let p = plan(options);
  // Port 0 lets a server pick: the alternate port then too.
  if (stunPort === 0) p.servers[0]!.args = p.servers[0]!.args.filter((a, i, all) => a !== '--alt-port' && all[i - 1] !== '--alt-port');

  const json = v.json === true;
  const say = (text: string) => (json ? process.stderr : process.stdout).write(`${text}\n`);
  say(`${PROGRAM} ${pkg.version}: starting stunserver, relayserver and signalserver on ${listen} for peers that reach it at ${publicIp}`);
  for (const w of warnings) process.stderr.write(`${PROGRAM}: warning: ${w}\n`);

  // --- start them
  const running: Running[] = [];
  const width = Math.max(...p.servers.map((s) => s.name.length)) + 2;
  for (const s of p.servers) {
    // Each in a process group of its own: a Ctrl-C at the terminal reaches p2pservers only,
    // which then stops them one way (else each would see SIGINT and then SIGTERM).
    const child = spawn(process.execPath, [binPath(s), ...s.args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...s.env }, detached: true });
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
    let started!: () => void;
    const r: Running = { plan: s, child, exited, started: new Promise<void>((resolve) => (started = resolve)) };
    if (json) process.stdout.write(`${JSON.stringify({ event: 'spawned', server: s.name, pid: child.pid })}\n`);
    const prefix = `[${s.name}]`.padEnd(width + 1);
    for (const [stream, to] of [[child.stdout!, json ? process.stderr : process.stdout], [child.stderr!, process.stderr]] as const) {
      createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
        if (stream === child.stdout && r.startup === undefined && s.ready.test(line)) {
          r.startup = line;
          started();
        }
        to.write(`${prefix}${line}\n`);
      });
    }
    running.push(r);
  }

  // However p2pservers ends (short of SIGKILL), the servers do not outlive it.
  process.on('exit', () => {
    for (const r of running) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
  });

  const stopAll = async (sig: NodeJS.Signals) => {
    for (const r of running) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill(sig);
    const kill = setTimeout(() => {
      for (const r of running) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGKILL');
    }, (options.drainTimeoutSec + 5) * 1000);
    const results = await Promise.all(running.map((r) => r.exited));
    clearTimeout(kill);
    return results;
  };

  // Signal handlers before anything can be waited on, so a signal at start-up is caught.
  let stopping: NodeJS.Signals | undefined;
  const stopped = new Promise<NodeJS.Signals>((resolve) => {
    const on = (sig: NodeJS.Signals) => {
      if (stopping) {
        // a second signal: stop at once (relayserver skips its drain on SIGINT)
        for (const r of running) if (r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGINT');
        return;
      }
      stopping = sig;
      resolve(sig);
    };
    process.on('SIGINT', on);
    process.on('SIGTERM', on);
  });
  // SIGHUP: the relay re-reads its users and secrets files (the others have nothing to re-read).
  process.on('SIGHUP', () => {
    for (const r of running) if (r.plan.name === 'relayserver' && r.child.exitCode === null && r.child.signalCode === null) r.child.kill('SIGHUP');
  });

  // Each is ready at its start-up line; exiting before it, or no line in 20 s, is a failure.
  const ready = Promise.all(
    running.map((r) => {
      let limit: NodeJS.Timeout | undefined;
      return Promise.race([
        r.started,
        r.exited.then(({ code, signal }) => {
          throw new Error(`${r.plan.name} exited (${signal ?? code}) before it was ready: see its lines above`);
        }),
        new Promise<never>((_, reject) => {
          limit = setTimeout(() => reject(new Error(`${r.plan.name} did not start within 20 s`)), 20_000);
        }),
      ]).finally(() => clearTimeout(limit));
    }),
  );
  const firstExit = Promise.race(running.map((r) => r.exited.then((x) => ({ r, ...x }))));

  const outcome = await Promise.race([ready.then(() => 'ready' as const, (e: Error) => e), stopped.then(() => 'signal' as const)]);
  if (outcome !== 'ready') {
    await stopAll('SIGTERM');
    if (outcome === 'signal') return 0;
    throw outcome;
  }

  // The ports servers picked themselves (port 0), from their start-up lines.
  const portOf = (r: Running, proto: 'udp' | 'tcp') => Number(new RegExp(`${proto} (?:\\[[^\\]]+\\]|[^\\s,]+):(\\d+)`).exec(r.startup ?? '')?.[1]);
  if (stunPort === 0 || turnPort === 0 || signalPort === 0) {
    p = plan({
      ...options,
      stunPort: stunPort || portOf(running[0]!, 'udp'),
      turnPort: turnPort || portOf(running[1]!, 'udp'),
      signalPort: signalPort || portOf(running[2]!, 'tcp'),
    });
  }
  printReady(p, options, json);

  const end = await Promise.race([stopped.then((sig) => ({ sig })), firstExit.then((x) => ({ died: x }))]);
  if ('died' in end) {
    const { r, code, signal } = end.died;
    process.stderr.write(`${PROGRAM}: ${r.plan.name} exited (${signal ?? code}); stopping the others\n`);
    await stopAll('SIGTERM');
    return 1;
  }
  say(`${PROGRAM}: ${end.sig}: stopping the servers`);
  const results = await stopAll('SIGTERM');
  const bad = results.map((x, i) => ({ x, name: running[i]!.plan.name })).filter(({ x }) => x.code !== 0);
  if (bad.length) {
    process.stderr.write(`${PROGRAM}: ${bad.map(({ name, x }) => `${name} exited (${x.signal ?? x.code})`).join(', ')}\n`);
    return 1;
  }
  say(`${PROGRAM}: all three stopped`);
  return 0;
});

function printReady(p: Plan, o: ServersOptions, json: boolean): void {
  if (json) {
    process.stdout.write(
      `${JSON.stringify({
        event: 'ready',
        stun: p.stunUrl,
        turn: p.turnUrl,
        signal: p.signal,
        room: p.room,
        user: p.user,
        credential: p.credential,
        ...(p.expires !== undefined ? { expires: new Date(p.expires * 1000).toISOString() } : {}),
        rfc5780: o.alternate !== undefined,
        p2pdemo: p.p2pdemo,
      })}\n`,
    );
    return;
  }
  const line = `p2pdemo ${p.p2pdemo.map(shellQuote).join(' ')}`;
  const notes = [
    'auth' in o && 'generated' in o.auth && o.auth.generated ? 'The TURN password was generated for this run: it changes when p2pservers restarts.' : '',
    p.expires !== undefined ? `The TURN credential is a REST credential valid until ${new Date(p.expires * 1000).toISOString()}.` : '',
    o.alternate ? '' : "stunserver has one address: p2pdemo's NAT check reports the mapping only (give --alternate ADDR for the RFC 5780 tests).",
  ].filter(Boolean);
  process.stdout.write(
    `\nReady. Run this on each of the two peers (each behind its own NAT; from a natkit checkout: pnpm exec p2pdemo ...):\n\n  ${line}\n\n` +
      `${notes.map((n) => `${n}\n`).join('')}Ctrl-C stops all three servers.\n\n`,
  );
}
