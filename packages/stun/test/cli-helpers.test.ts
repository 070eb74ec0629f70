import { afterEach, describe, expect, it, vi } from 'vitest';
import * as cli from '../src/cli/index.js';

// The start every natkit binary shares (@natkit/stun/cli); the binaries' own CLI tests run
// them end to end.
describe("the binaries' shared start", () => {
  afterEach(() => {
    vi.restoreAllMocks();
  });

  const specs: cli.OptionSpec[] = [{ name: 'port', type: 'number', value: 'PORT', help: 'the port' }, ...cli.HELP_AND_VERSION];

  it('usage lists --help and --version once, last, whether the specs have them or not', () => {
    const text = cli.usage('x [options]', 'Does x.', specs, 'Exit status: 0.');
    expect(text).toBe(cli.usage('x [options]', 'Does x.', specs.slice(0, 1), 'Exit status: 0.'));
    expect(text.match(/--help/g)).toHaveLength(1);
    expect(text.match(/--version/g)).toHaveLength(1);
    expect(text).toMatch(/--port PORT\s+the port\n\s+--help\s+show this help\n\s+--version\s+print the version\n\nExit status: 0\.\n$/);
  });

  it('helpOrVersion prints the help or the version line and says so; otherwise nothing', () => {
    const out: string[] = [];
    vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
      out.push(String(chunk));
      return true;
    });
    expect(cli.helpOrVersion(cli.parseArgs(['--help'], specs, {}).values, 'HELP TEXT\n', 'x 1.2.3')).toBe(true);
    expect(cli.helpOrVersion(cli.parseArgs(['--version'], specs, {}).values, 'HELP TEXT\n', 'x 1.2.3')).toBe(true);
    expect(cli.helpOrVersion(cli.parseArgs(['--port', '1'], specs, {}).values, 'HELP TEXT\n', 'x 1.2.3')).toBe(false);
    expect(out).toEqual(['HELP TEXT\n', 'x 1.2.3\n']);
  });

  it('noArguments refuses the first argument with a usage error', () => {
    expect(() => cli.noArguments([])).not.toThrow();
    expect(() => cli.noArguments(['a', 'b'])).toThrow(new cli.CliError('unexpected argument "a"'));
  });

  it('iceServersFlag takes the list or RTCConfiguration, and names the flag it came from in errors', () => {
    expect(cli.iceServersFlag('{"iceServers":[{"urls":"stun:a"},{"urls":["turn:b"],"username":"u","credential":"p","credentialType":"password"}]}')).toEqual([
      { urls: ['stun:a'] },
      { urls: ['turn:b'], username: 'u', credential: 'p' },
    ]);
    expect(() => cli.iceServersFlag('[{"urls":"stun:a","password":"x"}]', '--servers')).toThrow(new cli.CliError('--servers entry 1: unknown field "password" (urls, username, credential)'));
    expect(() => cli.iceServersFlag('[{"urls":"stun:a","username":1}]')).toThrow(new cli.CliError('--ice-servers entry 1: username must be a string'));
    expect(() => cli.iceServersFlag('{"urls":"stun:a"}')).toThrow(new cli.CliError('--ice-servers must be a JSON array of {urls, username, credential}'));
  });

  it('parseHostPort takes ADDR:PORT and [V6]:PORT, nothing else; hostPort writes them back', () => {
    expect(cli.parseHostPort('127.0.0.1:9640')).toEqual({ address: '127.0.0.1', port: 9640 });
    expect(cli.parseHostPort('[::1]:0')).toEqual({ address: '::1', port: 0 });
    for (const bad of ['127.0.0.1', '::1:9640', 'localhost:80', '127.0.0.1:65536', '[::1]', '1.2.3.4:']) expect(cli.parseHostPort(bad), bad).toBeUndefined();
    expect(cli.hostPort('::1', 9640)).toBe('[::1]:9640');
    expect(cli.hostPort('127.0.0.1', 9640)).toBe('127.0.0.1:9640');
  });
});
