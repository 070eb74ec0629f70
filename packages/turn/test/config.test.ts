// relayserver's settings as a unit: the config file parser (errors with file and line),
// flag > environment > config file > default, the checks across values, and credentials.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nodeNetwork } from '@natkit/stun';
import * as cli from '@natkit/stun/cli';
import { defaultRelayAddresses } from '../src/index.js';
import {
  type ConfigFile,
  OPTIONS,
  envName,
  loadCredentials,
  mergeLayers,
  parseConfig,
  parseHostPort,
  parseSecrets,
  readLayers,
  resolveSettings,
} from '../src/cli/config.js';

const dir = mkdtempSync(join(tmpdir(), 'relayserver-config-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
function file(name: string, text: string): string {
  const p = join(dir, name);
  writeFileSync(p, text);
  return p;
}

function parseError(text: string, path = 'relay.conf'): string {
  try {
    parseConfig(text, path);
  } catch (err) {
    expect(err).toBeInstanceOf(cli.CliError);
    return (err as Error).message;
  }
  throw new Error('expected a parse error');
}

describe('config file parser', () => {
  it('reads name = value and name value, comments, quotes, lists and switches', () => {
    const c = parseConfig(
      [
        '# relayserver.conf',
        '',
        '  realm = example.org   # trailing comment',
        'port 3479',
        'listen = 192.0.2.1',
        'listen 2001:db8::1',
        'no-tcp',
        'no-udp = false',
        'userhash yes',
        "software 'natkit #1'",
        'user = "alice:pa ss#word"',
        'auth-secret=s3cret',
        'drain-timeout = 2.5',
        '\t# indented comment',
      ].join('\r\n'),
      'relay.conf',
    );
    expect(c.values).toEqual({
      realm: 'example.org',
      port: 3479,
      listen: ['192.0.2.1', '2001:db8::1'],
      'no-tcp': true,
      'no-udp': false,
      userhash: true,
      software: 'natkit #1',
      user: ['alice:pa ss#word'],
      'auth-secret': ['s3cret'],
      'drain-timeout': 2.5,
    });
    expect(c.lines.get('listen')).toEqual([5, 6]);
    expect(c.lines.get('no-tcp')).toEqual([7]);
  });

  it('accepts a password with a # when no space comes before it', () => {
    expect(parseConfig('user = bob:pa#ss # comment\n', 'f').values.user).toEqual(['bob:pa#ss']);
  });

  it('names the file and line of every error', () => {
    expect(parseError('realm = x\n\nlisen 127.0.0.1\n')).toBe('relay.conf line 3: unknown setting "lisen" (did you mean listen?)');
    expect(parseError('port = 3478\nmin-port = abc\n')).toBe('relay.conf line 2: min-port expects a number, got "abc"');
    expect(parseError('# x\nport = 70000\n')).toBe('relay.conf line 2: port must be at most 65535, got 70000');
    expect(parseError('port = 1\nport = 2\n')).toBe('relay.conf line 2: port is already set on line 1');
    expect(parseError('no-auth = maybe\n')).toBe('relay.conf line 1: no-auth is a switch: write "no-auth" or "no-auth = false", not "maybe"');
    expect(parseError('realm\n')).toBe('relay.conf line 1: realm needs a value (REALM)');
    expect(parseError('realm = # just a comment\n')).toBe('relay.conf line 1: realm needs a value (REALM)');
    expect(parseError('config = other.conf\n')).toBe('relay.conf line 1: config cannot be set in a config file');
    expect(parseError('help\n')).toBe('relay.conf line 1: help cannot be set in a config file');
    expect(parseError('allow-peer 10.0.0.0/8\n\n\nallow-peer 10.0.0.0/99\n')).toBe('relay.conf line 4: allow-peer: bad prefix length in "10.0.0.0/99"');
    expect(parseError('user = alice\n')).toBe('relay.conf line 1: user: expected USER:PASSWORD');
    expect(parseError('relay-ip = 192.0.2.1.5\n')).toBe('relay.conf line 1: relay-ip: "192.0.2.1.5" is not an IP address');
    expect(parseError('log-format = xml\n')).toBe('relay.conf line 1: log-format must be one of text, json; got "xml"');
    expect(parseError('software = "unclosed\n')).toBe('relay.conf line 1: software: unclosed "');
    expect(parseError('software = "a" b\n')).toBe('relay.conf line 1: software: unexpected "b" after the quoted value');
    expect(parseError('= 5\n')).toBe('relay.conf line 1: expected "name = value", got "= 5"');
    expect(parseError('--port 5\n')).toBe('relay.conf line 1: expected "name = value", got "--port 5"');
    expect(parseError('min_port = 5\n')).toBe('relay.conf line 1: unknown setting "min_port" (did you mean min-port?)');
  });

  it('never echoes a password in an error', () => {
    expect(parseError('user = alice:\n')).toBe('relay.conf line 1: user: empty password for alice');
    expect(parseError('user = :hunter2\n')).not.toContain('hunter2');
  });
});

describe('flag > environment > config file > default', () => {
  const conf = (values: Record<string, unknown>): ((path: string) => ConfigFile) => (path) => ({ path, values: values as ConfigFile['values'], lines: new Map() });
  function merged(argv: string[], env: NodeJS.ProcessEnv, fileValues: Record<string, unknown> = {}) {
    const { layers } = readLayers(argv, env, conf(fileValues));
    return { layers, values: mergeLayers(layers) };
  }

  it('takes each value from the highest source that has it', () => {
    const file = { realm: 'file', port: 1001, 'min-port': 50000, 'no-tcp': true, 'log-format': 'json' };
    const both = merged(['--config', 'x.conf', '--realm', 'flag'], { RELAYSERVER_REALM: 'env', RELAYSERVER_PORT: '2002', RELAYSERVER_NO_TCP: '0' }, file);
    expect(both.values.realm).toBe('flag');
    expect(both.values.port).toBe(2002);
    expect(both.values['min-port']).toBe(50000);
    expect(both.values['no-tcp']).toBe(false);
    expect(both.values['log-format']).toBe('json');
    const s = resolveSettings({ ...both.values, listen: ['127.0.0.1'] });
    expect(s).toMatchObject({ realm: 'flag', port: 2002, minPort: 50000, maxPort: 65535, tcp: true, logFormat: 'json' });
    // Without the config file, the defaults.
    const none = resolveSettings(merged(['--listen', '127.0.0.1'], {}).values);
    expect(none).toMatchObject({
      listen: ['127.0.0.1'],
      port: 3478,
      udp: true,
      tcp: true,
      tls: undefined,
      relayAddresses: { IPv4: '127.0.0.1' },
      minPort: 49152,
      maxPort: 65535,
      realm: 'natkit',
      auth: true,
      restSeparator: ':',
      userhash: false,
      userQuota: 10,
      totalQuota: 1000,
      maxPermissions: 64,
      maxChannels: 64,
      defaultLifetime: 600,
      maxLifetime: 3600,
      errorRate: 50,
      metrics: undefined,
      drainTimeout: 30,
      logFormat: 'text',
      logLevel: 'info',
      software: 'natkit',
    });
  });

  it('finds the config file through RELAYSERVER_CONFIG, and a --config flag over it', () => {
    const seen: string[] = [];
    const read = (path: string): ConfigFile => {
      seen.push(path);
      return { path, values: {}, lines: new Map() };
    };
    readLayers([], { RELAYSERVER_CONFIG: 'env.conf' }, read);
    readLayers(['--config', 'flag.conf'], { RELAYSERVER_CONFIG: 'env.conf' }, read);
    expect(seen).toEqual(['env.conf', 'flag.conf']);
  });

  it('replaces a list from a lower source, but adds up users and REST secrets', () => {
    const m = merged(
      ['--config', 'x', '--listen', '127.0.0.1', '--user', 'erin:e', '--auth-secret', 'flag'],
      { RELAYSERVER_USER: 'dave:d,carol:from-env', RELAYSERVER_ALLOW_PEER: '10.1.0.0/16' },
      { listen: ['127.0.0.2', '127.0.0.3'], user: ['carol:c'], 'auth-secret': ['file'], 'allow-peer': ['10.0.0.0/8', '10.2.0.0/16'] },
    );
    expect(m.values.listen).toEqual(['127.0.0.1']);
    expect(m.values['allow-peer']).toEqual(['10.1.0.0/16']);
    expect(m.values.user).toEqual(['carol:c', 'dave:d', 'carol:from-env', 'erin:e']);
    const creds = loadCredentials(m.layers, undefined, undefined);
    expect([...creds.users.keys()].sort()).toEqual(['carol', 'dave', 'erin']);
    // The environment is above the file: its carol wins.
    expect(creds.users.get('carol')).toEqual({ password: 'from-env' });
    expect(creds.secrets).toEqual(['file', 'flag']);
  });

  it('checks every source and names it in errors', () => {
    expect(() => merged(['--deny-peer', 'x'], {})).toThrow('--deny-peer: not a CIDR range: "x"');
    expect(() => merged([], { RELAYSERVER_MIN_PORT: '0' })).toThrow('RELAYSERVER_MIN_PORT must be at least 1, got 0');
    expect(() => merged([], { RELAYSERVER_NO_AUTH: 'perhaps' })).toThrow('RELAYSERVER_NO_AUTH must be true or false, got "perhaps"');
    expect(() => merged([], { RELAYSERVER_RELAY_IP: '::' })).toThrow('RELAYSERVER_RELAY_IP: :: is not a specific address');
    expect(() => merged(['--user', 'nopassword'], {})).toThrow(cli.CliError);
    expect(envName('auth-secret-file')).toBe('RELAYSERVER_AUTH_SECRET_FILE');
    expect(OPTIONS.find((o) => o.name === 'no-auth')!.env).toBe('RELAYSERVER_NO_AUTH');
    expect(OPTIONS.find((o) => o.name === 'help')!.env).toBeUndefined();
  });

  it('reads a real config file with readLayers and reports its line', () => {
    const p = file('bad.conf', 'realm = ok\nport = nope\n');
    expect(() => readLayers(['--config', p], {})).toThrow(`${p} line 2: port expects a number, got "nope"`);
    const good = file('good.conf', 'realm = from-file\nuser = a:b\n');
    const { layers } = readLayers(['--config', good], {});
    expect(mergeLayers(layers)).toEqual({ config: good, realm: 'from-file', user: ['a:b'] });
  });
});

describe('settings checked together', () => {
  const base = { listen: ['127.0.0.1'] };
  it('refuses what does not go together, naming the flags', () => {
    const bad: Array<[Record<string, unknown>, string]> = [
      [{ ...base, 'min-port': 6000, 'max-port': 5000 }, '--min-port 6000 is above --max-port 5000'],
      [{ ...base, 'relay-ip': ['127.0.0.1', '127.0.0.2'] }, '--relay-ip: IPv4 is given twice (127.0.0.1 and 127.0.0.2)'],
      [{ ...base, 'relay-ip': ['::1', '0:0::1'] }, '--relay-ip: IPv6 is given twice (::1 and ::1)'],
      [{ ...base, 'tls-key': 'k.pem' }, '--tls-cert and --tls-key go together'],
      [{ ...base, 'tls-port': 5350 }, '--tls-port needs --tls-cert and --tls-key'],
      [{ ...base, 'no-udp': true, 'no-tcp': true }, 'nothing to serve'],
      [{ listen: ['::1', '0::1'] }, '--listen ::1 is given twice'],
      [{ ...base, 'external-ip': ['2001:db8::1'] }, '--external-ip 2001:db8::1 is IPv6, but there is no IPv6 relay address'],
      [{ ...base, 'external-ip': ['203.0.113.1', '203.0.113.2'] }, '--external-ip: IPv4 is given twice'],
      [{ ...base, 'relay-ip': ['127.0.0.1'], 'external-ip': ['203.0.113.1/127.0.0.2'] }, 'the relay address 127.0.0.2 is not the --relay-ip for IPv4 (127.0.0.1)'],
      [{ ...base, 'no-auth': true, 'users-file': 'u' }, '--no-auth turns authentication off, but credentials are given (--users-file)'],
      [{ ...base, 'no-auth': true, userhash: true }, '--userhash needs authentication'],
      [{ ...base, 'default-lifetime': 700, 'max-lifetime': 600 }, '--default-lifetime 700 is above --max-lifetime 600'],
      [{ ...base, software: 'x', 'no-software': true }, '--software and --no-software exclude each other'],
    ];
    expect.assertions(bad.length);
    for (const [values, message] of bad) expect(() => resolveSettings(values as cli.ParsedValues), JSON.stringify(values)).toThrow(message);
  });

  it("listening on a wildcard only, relays on the host's first non-loopback address (as coturn), by the library's rule", () => {
    const first = nodeNetwork.interfaces().find((i) => i.family === 'IPv4' && !i.internal)?.address;
    expect(resolveSettings({ listen: ['0.0.0.0'] }).relayAddresses).toEqual(first ? { IPv4: first } : {});
    const lo = { name: 'lo', family: 'IPv4' as const, internal: true, prefix: 8 };
    const fake = (addresses: Array<{ name: string; address: string; family: 'IPv4' | 'IPv6'; internal: boolean; prefix: number }>) => ({ ...nodeNetwork, interfaces: () => addresses });
    const host = fake([{ ...lo, address: '127.0.0.1' }, { name: 'eth0', address: 'fe80::1', family: 'IPv6', internal: false, prefix: 64 }, { name: 'eth0', address: '192.0.2.9', family: 'IPv4', internal: false, prefix: 24 }, { name: 'eth0', address: '2001:db8::9', family: 'IPv6', internal: false, prefix: 64 }]);
    expect(defaultRelayAddresses(['0.0.0.0'], {}, host)).toEqual({ IPv4: '192.0.2.9' });
    expect(defaultRelayAddresses(['0.0.0.0', '::'], {}, host)).toEqual({ IPv4: '192.0.2.9', IPv6: '2001:db8::9' });
    // A specific listen address, or a given relay address, comes first.
    expect(defaultRelayAddresses(['0.0.0.0', '::1'], {}, host)).toEqual({ IPv6: '::1' });
    expect(defaultRelayAddresses(['0.0.0.0'], { IPv4: '192.0.2.77' }, host)).toEqual({ IPv4: '192.0.2.77' });
    // Loopback and link-local only: nothing to relay on (relayserver then asks for --relay-ip).
    expect(defaultRelayAddresses(['0.0.0.0', '::'], {}, fake([{ ...lo, address: '127.0.0.1' }, { name: 'eth0', address: 'fe80::1', family: 'IPv6', internal: false, prefix: 64 }]))).toEqual({});
  });

  it('works out relay and advertised addresses', () => {
    expect(resolveSettings({ listen: ['0.0.0.0', '::1'], 'relay-ip': ['192.0.2.5'] }).relayAddresses).toEqual({ IPv4: '192.0.2.5', IPv6: '::1' });
    expect(resolveSettings({ listen: ['127.0.0.1', '127.0.0.2'] }).relayAddresses).toEqual({ IPv4: '127.0.0.1' });
    // coturn's PUBLIC/PRIVATE form sets the relay address too.
    const nat = resolveSettings({ listen: ['0.0.0.0'], 'external-ip': ['203.0.113.7/10.0.0.7'] });
    expect(nat.relayAddresses).toEqual({ IPv4: '10.0.0.7' });
    expect(nat.externalAddresses).toEqual({ IPv4: '203.0.113.7' });
    const plain = resolveSettings({ ...base, 'external-ip': ['203.0.113.7'], metrics: '[::1]:9641', 'no-software': true, 'drain-timeout': 0.5 });
    expect(plain).toMatchObject({ relayAddresses: { IPv4: '127.0.0.1' }, externalAddresses: { IPv4: '203.0.113.7' }, metrics: { address: '::1', port: 9641 }, software: false, drainTimeout: 0.5 });
  });

  it('parses ADDR:PORT', () => {
    expect(parseHostPort('127.0.0.1:9641')).toEqual({ address: '127.0.0.1', port: 9641 });
    expect(parseHostPort('[::1]:0')).toEqual({ address: '::1', port: 0 });
    for (const bad of ['127.0.0.1', '::1:9641', 'localhost:80', '127.0.0.1:65536', '[::1]', '1.2.3.4:']) expect(parseHostPort(bad), bad).toBeUndefined();
  });
});

describe('credentials', () => {
  const noLayers = { flags: {}, env: {}, file: undefined };
  it('reads coturn users files and secret files; flags win for the same user', () => {
    const users = file('users', '# coturn format\nalice:wonder:land\nbob:0x0123456789abcdef0123456789ABCDEF\n');
    const secrets = file('secrets', '# one a line\n  first  \n\nsecond\n#third\n');
    const c = loadCredentials({ ...noLayers, flags: { user: ['alice:from-flag'], 'auth-secret': ['second', 'third'] } }, users, secrets);
    expect(c.users.get('alice')).toEqual({ password: 'from-flag' });
    expect(c.users.get('bob')).toEqual({ md5Key: Buffer.from('0123456789abcdef0123456789abcdef', 'hex') });
    expect(c.secrets).toEqual(['first', 'second', 'third']);
    expect(loadCredentials(noLayers, users, undefined).users.get('alice')).toEqual({ password: 'wonder:land' });
    expect(parseSecrets('a\r\n\r\n # x\n b \n')).toEqual(['a', 'b']);
  });

  it('reports unreadable and malformed files naming the flag, file and line', () => {
    const broken = file('broken-users', 'alice:pw\n\nbob\n');
    expect(() => loadCredentials(noLayers, broken, undefined)).toThrow(`--users-file: ${broken} line 3: expected user:password`);
    expect(() => loadCredentials(noLayers, join(dir, 'none'), undefined)).toThrow(/--users-file: cannot read users file .*none/);
    expect(() => loadCredentials(noLayers, undefined, join(dir, 'none'))).toThrow(/--auth-secret-file: cannot read .*none/);
  });
});

describe('the shared flag helpers', () => {
  it('mergeValues takes the first layer that has a name and joins the additive ones', () => {
    expect(cli.mergeValues([{ a: 1, l: ['f'] }, { a: 2, b: 'e', l: ['e1', 'e2'] }, { c: true, l: ['c'] }], ['l'])).toEqual({ a: 1, b: 'e', c: true, l: ['c', 'e1', 'e2', 'f'] });
  });

  it('envValues reads only the environment, and parseArgs still falls back to it only for absent flags', () => {
    const specs: cli.OptionSpec[] = [
      { name: 'port', type: 'number', help: '', env: 'X_PORT' },
      { name: 'on', type: 'boolean', help: '', env: 'X_ON' },
    ];
    expect(cli.envValues(specs, { X_PORT: '5', X_ON: 'yes' })).toEqual({ port: 5, on: true });
    expect(cli.parseArgs(['--port', '7'], specs, { X_PORT: 'not-read', X_ON: '0' }).values).toEqual({ port: 7, on: false });
  });
});
