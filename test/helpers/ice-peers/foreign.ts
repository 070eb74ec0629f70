// Starting the foreign ICE agents as child-process peers: libnice (a C harness on its
// public API, compiled here with the system compiler), aioice (a Python script under
// Debian's /usr/bin/python3) and werift (a Node script). Each is bound to loopback only
// and speaks the ice-peers line protocol (README.md).
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { needProgram } from '../programs.js';
import type { Role } from './peer.js';
import { ProcessPeer } from './process.js';

const execFileP = promisify(execFile);
const HERE = fileURLToPath(new URL('.', import.meta.url));
export const LIBNICE_SOURCE = join(HERE, 'libnice-peer.c');
export const AIOICE_SCRIPT = join(HERE, 'aioice-peer.py');
export const WERIFT_SCRIPT = join(HERE, 'werift-peer.mjs');
/** Debian's Python, which has python3-aioice (the python3 first on PATH may be another build). */
export const DEBIAN_PYTHON = '/usr/bin/python3';
export const LIBNICE_HEADER = '/usr/include/nice/agent.h';
export const AIOICE_MODULE = '/usr/lib/python3/dist-packages/aioice/__init__.py';

type SkipCtx = { skip: (note?: string) => void };

export interface ForeignOptions {
  role: Role;
  /** Local addresses to gather on (default ['127.0.0.1']). */
  addresses?: string[];
  /** libnice only: 'regular' (default) or 'aggressive'. */
  nomination?: 'regular' | 'aggressive';
  /** Extra environment, e.g. { G_MESSAGES_DEBUG: 'libnice' } or { DEBUG: 'werift*' }. */
  env?: NodeJS.ProcessEnv;
}

const addressArgs = (o: ForeignOptions) => (o.addresses ?? ['127.0.0.1']).flatMap((a) => ['--address', a]);

let building: Promise<string> | undefined;

/**
 * Compiles the libnice harness (once per source/flags/compiler; cached in the temp dir)
 * and returns the binary's path. Skips (off CI) or fails (CI) when gcc, pkg-config or
 * libnice-dev is missing.
 */
export async function libnicePeerBinary(ctx: SkipCtx): Promise<string> {
  const gcc = needProgram(ctx, 'gcc');
  const pkgConfig = needProgram(ctx, 'pkg-config');
  needProgram(ctx, LIBNICE_HEADER);
  building ??= (async () => {
    const flags = (await execFileP(pkgConfig, ['--cflags', '--libs', 'nice', 'glib-2.0'])).stdout.trim().split(/\s+/);
    const { stdout: version } = await execFileP(gcc, ['--version']);
    const source = await readFile(LIBNICE_SOURCE);
    const key = createHash('sha256').update(source).update(flags.join(' ')).update(version).digest('hex').slice(0, 16);
    const dir = join(tmpdir(), 'natkit-ice-peers');
    const bin = join(dir, `libnice-peer-${key}`);
    try {
      await stat(bin);
      return bin;
    } catch {
      // not built yet
    }
    await mkdir(dir, { recursive: true });
    // Build under a private name, then rename: test files running side by side may build at once.
    const tmp = `${bin}.${process.pid}.tmp`;
    try {
      await execFileP(gcc, ['-O1', '-Wall', '-o', tmp, LIBNICE_SOURCE, ...flags]);
      await rename(tmp, bin);
    } catch (err) {
      await rm(tmp, { force: true });
      const e = err as { stderr?: string; message: string };
      throw new Error(`compiling ${LIBNICE_SOURCE} failed: ${e.stderr ?? e.message}`);
    }
    return bin;
  })();
  try {
    return await building;
  } catch (err) {
    building = undefined;
    throw err;
  }
}

export async function startLibnice(ctx: SkipCtx, o: ForeignOptions): Promise<ProcessPeer> {
  const bin = await libnicePeerBinary(ctx);
  return new ProcessPeer('libnice', o.role, bin, ['--role', o.role, ...addressArgs(o), '--nomination', o.nomination ?? 'regular'], o.env);
}

export function startAioice(ctx: SkipCtx, o: ForeignOptions): ProcessPeer {
  needProgram(ctx, AIOICE_MODULE);
  // unbuffered, so each event line leaves at once
  return new ProcessPeer('aioice', o.role, DEBIAN_PYTHON, ['-u', AIOICE_SCRIPT, '--role', o.role, ...addressArgs(o)], { PYTHONUNBUFFERED: '1', ...o.env });
}

export function startWerift(o: ForeignOptions): ProcessPeer {
  return new ProcessPeer('werift', o.role, process.execPath, [WERIFT_SCRIPT, '--role', o.role, ...addressArgs(o)], o.env);
}

export type ForeignKind = 'libnice' | 'aioice' | 'werift';
export const FOREIGN_KINDS: readonly ForeignKind[] = ['libnice', 'aioice', 'werift'];

/** Starts one of the child-process peers. */
export async function startForeign(ctx: SkipCtx, kind: ForeignKind, o: ForeignOptions): Promise<ProcessPeer> {
  if (kind === 'libnice') return startLibnice(ctx, o);
  if (kind === 'aioice') return startAioice(ctx, o);
  return startWerift(o);
}
