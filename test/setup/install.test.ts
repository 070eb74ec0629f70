// The test set-up's apt-get install (test/helpers/programs.ts) must leave the machine's
// services as it found them: it says what it installs first, keeps the packages' daemons
// from starting while they install (policy-rc.d), and stops and disables coturn's and
// stund's services afterwards. Checked on the plan of commands, with a runner that records
// them instead of running them (and a policy-rc.d path of the test's own).
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { installDebianPackages } from '../helpers/programs.js';

const dir = mkdtempSync(join(tmpdir(), 'natkit-install-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('the test set-up installing Debian packages', () => {
  it('says what it installs before it does, starts no daemon, and leaves coturn and stund disabled', () => {
    const policyRc = join(dir, 'policy-rc.d');
    const said: string[] = [];
    const ran: Array<[string, string[], boolean]> = [];
    installDebianPackages(['turnserver', 'turnutils_uclient', 'stund', 'ip'], {
      policyRc,
      hasSystemctl: true,
      say: (l) => said.push(l),
      run: (cmd, args) => {
        // While apt-get runs, policy-rc.d exists and refuses every start (exit 101).
        const blocked = existsSync(policyRc) && /exit 101/.test(readFileSync(policyRc, 'utf8')) && (statSync(policyRc).mode & 0o111) !== 0;
        ran.push([cmd, args, blocked]);
      },
    });
    // Said first: every package and what it is for.
    expect(said[0]).toMatch(/installing Debian packages with apt-get/);
    expect(said.slice(1, 4)).toEqual([
      expect.stringMatching(/coturn: coturn's turnserver/),
      expect.stringMatching(/stun-server: Debian's stund/),
      expect.stringMatching(/iproute2: ip/),
    ]);
    expect(ran.slice(0, 2)).toEqual([
      ['apt-get', ['update'], true],
      ['apt-get', ['install', '-y', '--no-install-recommends', 'coturn', 'stun-server', 'iproute2'], true],
    ]);
    // Afterwards: the services stopped and disabled, and policy-rc.d gone again.
    expect(ran.slice(2).map(([c, a]) => [c, a])).toEqual([
      ['systemctl', ['disable', '--now', 'coturn.service']],
      ['update-rc.d', ['coturn', 'disable']],
      ['systemctl', ['disable', '--now', 'stun.service']],
      ['update-rc.d', ['stun', 'disable']],
    ]);
    expect(existsSync(policyRc)).toBe(false);
    expect(said).toContain('[natkit tests]   coturn service: stopped and disabled');
  });

  it('disables the services even when apt-get fails, and leaves an existing policy-rc.d alone', () => {
    const policyRc = join(dir, 'existing-policy-rc.d');
    writeFileSync(policyRc, '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const ran: string[] = [];
    expect(() =>
      installDebianPackages(['turnserver'], {
        policyRc,
        hasSystemctl: false,
        say: () => {},
        run: (cmd, args) => {
          ran.push(`${cmd} ${args.join(' ')}`);
          if (args[0] === 'install') throw new Error('apt-get failed');
        },
      }),
    ).toThrow('apt-get failed');
    expect(ran).toEqual(['apt-get update', 'apt-get install -y --no-install-recommends coturn', 'update-rc.d coturn disable']);
    expect(readFileSync(policyRc, 'utf8')).toBe('#!/bin/sh\nexit 0\n');
  });
});
