// Real programs that nobody here wrote, used as interop peers. The Debian package each
// comes from is installed by the test set-up (test/setup/global.ts) when it can be.
import { execFileSync } from 'node:child_process';
import { accessSync, constants, existsSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';

export const DEBIAN_PACKAGES: Record<string, string> = {
  turnserver: 'coturn',
  turnutils_stunclient: 'coturn',
  turnutils_natdiscovery: 'coturn',
  turnutils_uclient: 'coturn',
  turnutils_peer: 'coturn',
  stun: 'stun-client',
  stund: 'stun-server',
  ip: 'iproute2',
  nft: 'nftables',
  conntrack: 'conntrack',
  chromium: 'chromium',
  // ICE interop (test/helpers/ice-peers): libnice's harness is compiled at run time, so it
  // needs the headers (keyed by a file of libnice-dev), the compiler and pkg-config;
  // aioice is keyed by its module file (it loads under /usr/bin/python3).
  gcc: 'gcc',
  'pkg-config': 'pkg-config',
  '/usr/include/nice/agent.h': 'libnice-dev',
  '/usr/lib/python3/dist-packages/aioice/__init__.py': 'python3-aioice',
  // signalserver interop: Redis for several instances, plain line clients, and the
  // tutorial's Python server run by Debian's python3.
  'redis-server': 'redis-server',
  socat: 'socat',
  nc: 'netcat-openbsd',
  '/usr/bin/python3': 'python3',
};

// The Debian programs live in the system directories. PATH under npx/vitest starts with
// node_modules/.bin, which holds the npm package `stun`'s own `stun` binary: never look there.
const SEARCH = [...(process.env.PATH ?? '').split(delimiter).filter((d) => !d.includes('node_modules')), '/usr/sbin', '/sbin', '/usr/bin', '/bin'];

export function which(program: string): string | undefined {
  // An absolute path names a file that proves a package is installed (headers, a module).
  if (program.startsWith('/')) {
    try {
      accessSync(program, constants.R_OK);
      return program;
    } catch {
      return undefined;
    }
  }
  for (const dir of SEARCH) {
    if (!dir) continue;
    const p = join(dir, program);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

export const inCI = process.env.CI === 'true' || process.env.CI === '1';

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/**
 * The path of a program an interop or lab test needs. Missing: under CI the test fails
 * (a skipped interop test is a failure there); elsewhere it is skipped with the reason.
 */
export function needProgram(ctx: SkipCtx, program: string): string {
  const p = which(program);
  if (p) return p;
  skipOrFail(ctx, `${program} is not installed (Debian package ${DEBIAN_PACKAGES[program] ?? '?'}); the test set-up installs it when run as root with apt-get`);
}

/** Root is needed (network namespaces); same CI rule as needProgram. */
export function needRoot(ctx: SkipCtx, why: string): void {
  if (isRoot()) return;
  skipOrFail(ctx, `${why} needs root`);
}

export type SkipCtx = { skip: (note?: string) => void };

/** The one rule for a test that cannot run here: skipped with the reason, or failed under CI. */
export function skipOrFail(ctx: SkipCtx, msg: string): never {
  if (inCI) throw new Error(`${msg}; under CI this test may not be skipped`);
  ctx.skip(msg);
  throw new Error(msg); // ctx.skip throws; this is for the type checker
}

const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin'];

/**
 * A program from the system's directories only. `which` searches PATH first, and under
 * npx/vitest PATH starts with node_modules/.bin, where the npm package `stun` puts a `stun`
 * of its own: Debian's Vovida client is /usr/bin/stun.
 */
export function systemProgram(program: string): string | undefined {
  for (const dir of SYSTEM_DIRS) {
    const p = join(dir, program);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return undefined;
}

export function missingPrograms(): string[] {
  return Object.keys(DEBIAN_PACKAGES).filter((p) => !which(p));
}

/** What each Debian package is for, said before the set-up installs it. */
export const PACKAGE_USES: Record<string, string> = {
  coturn: "coturn's turnserver and turnutils_* (TURN and STUN interop)",
  'stun-client': "Debian's stun client (NAT classification interop)",
  'stun-server': "Debian's stund (RFC 3489 server interop)",
  iproute2: 'ip (network namespaces for the NAT lab)',
  nftables: 'nft (NAT rules in the NAT lab)',
  chromium: 'headless Chromium (WebRTC interop)',
  gcc: 'the C compiler (builds the libnice ICE harness)',
  'pkg-config': "pkg-config (finds libnice's build flags)",
  'libnice-dev': 'libnice, the reference ICE library (ICE interop)',
  'python3-aioice': 'aioice, an ICE agent in Python (ICE interop)',
};

/** Services the packages start and enable at boot, which the tests never want running. */
export const PACKAGE_SERVICES: Record<string, string[]> = {
  coturn: ['coturn'],
  'stun-server': ['stun'],
  'redis-server': ['redis-server'],
};

/** How the set-up runs a command (a test replaces it to see the plan). */
export type Runner = (cmd: string, args: string[], env: NodeJS.ProcessEnv) => void;

const realRunner: Runner = (cmd, args, env) => void execFileSync(cmd, args, { stdio: 'inherit', env });

const POLICY_RC = '/usr/sbin/policy-rc.d';

/**
 * Installs the packages that hold `programs`, leaving the machine's services as they were:
 * it says what it installs and why first; Debian's policy-rc.d (exit 101) keeps the
 * packages' maintainer scripts from starting their daemons (coturn, stund) during the
 * install; afterwards their services are stopped and disabled (systemd and SysV links), so
 * nothing listens on 3478 or starts at the next boot because the tests ran.
 */
export function installDebianPackages(
  programs: string[],
  io: { run?: Runner; say?: (line: string) => void; policyRc?: string; hasSystemctl?: boolean } = {},
): void {
  const run = io.run ?? realRunner;
  const say = io.say ?? ((l: string) => console.log(l));
  const policyRc = io.policyRc ?? POLICY_RC;
  const pkgs = [...new Set(programs.map((p) => DEBIAN_PACKAGES[p]!))];
  say(`[natkit tests] installing Debian packages with apt-get (services they bring are not started, and are disabled afterwards):`);
  for (const p of pkgs) say(`[natkit tests]   ${p}: ${PACKAGE_USES[p] ?? 'test peer'}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const ours = !existsSync(policyRc);
  if (ours) writeFileSync(policyRc, '#!/bin/sh\n# natkit test set-up: no daemon starts while packages install\nexit 101\n', { mode: 0o755 });
  try {
    run('apt-get', ['update'], env);
    run('apt-get', ['install', '-y', '--no-install-recommends', ...pkgs], env);
  } finally {
    if (ours) unlinkSync(policyRc);
    const systemctl = io.hasSystemctl ?? which('systemctl') !== undefined;
    for (const p of pkgs) {
      for (const svc of PACKAGE_SERVICES[p] ?? []) {
        const quiet = (cmd: string, args: string[]) => {
          try {
            run(cmd, args, env);
          } catch {
            // not installed, or no init system here: nothing to undo
          }
        };
        if (systemctl) quiet('systemctl', ['disable', '--now', `${svc}.service`]);
        quiet('update-rc.d', [svc, 'disable']);
        say(`[natkit tests]   ${svc} service: stopped and disabled`);
      }
    }
  }
}
