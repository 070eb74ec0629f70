// Real programs that nobody here wrote, used as interop peers. The Debian package each
// comes from is installed by the test set-up (test/setup/global.ts) when it can be.
import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

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
export function needProgram(ctx: { skip: (note?: string) => void }, program: string): string {
  const p = which(program);
  if (p) return p;
  const msg = `${program} is not installed (Debian package ${DEBIAN_PACKAGES[program] ?? '?'}); the test set-up installs it when run as root with apt-get`;
  if (inCI) throw new Error(`${msg}; under CI this test may not be skipped`);
  ctx.skip(msg);
  throw new Error('unreachable');
}

/** Root is needed (network namespaces); same CI rule as needProgram. */
export function needRoot(ctx: { skip: (note?: string) => void }, why: string): void {
  if (isRoot()) return;
  const msg = `${why} needs root`;
  if (inCI) throw new Error(`${msg}; under CI this test may not be skipped`);
  ctx.skip(msg);
}

export function missingPrograms(): string[] {
  return Object.keys(DEBIAN_PACKAGES).filter((p) => !which(p));
}

/** Installs the packages behind `programs` with test/setup/apt-install.sh (no service left started or enabled). */
export function installDebianPackages(programs: string[]): void {
  const pkgs = [...new Set(programs.map((p) => DEBIAN_PACKAGES[p]!))];
  execFileSync('sh', [fileURLToPath(new URL('../setup/apt-install.sh', import.meta.url)), ...pkgs], { stdio: 'inherit' });
}
