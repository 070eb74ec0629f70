// Running natkit's built binaries (and other programs) from tests: every child is awaited,
// killed if the test ends first, and its output kept for assertions and failure messages.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Path of a natkit binary (the built dist, via its bin/ wrapper). */
export function natkitBin(pkg: string, name: string): string {
  return `${ROOT}packages/${pkg}/bin/${name}.js`;
}

export interface Proc {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  /** Resolves with the exit code (or the signal name) once the process has exited. */
  exited: Promise<number | string>;
  /** Waits until stdout (or stderr) matches, or the process exits, or `ms` passes. */
  waitFor(pattern: RegExp, ms?: number, stream?: 'stdout' | 'stderr'): Promise<RegExpExecArray>;
  /** Sends a signal (default SIGTERM) and waits for the exit. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

const live = new Set<Proc>();

export function start(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): Proc {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env }, cwd: opts.cwd ?? ROOT });
  let out = '';
  let err = '';
  const listeners = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    for (const l of listeners) l();
  });
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    err += d;
    for (const l of listeners) l();
  });
  const exited = new Promise<number | string>((resolve) => {
    child.on('close', (code, signal) => {
      live.delete(proc);
      for (const l of listeners) l();
      resolve(code ?? signal ?? -1);
    });
    child.on('error', (e) => {
      err += String(e);
    });
  });
  const proc: Proc = {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    waitFor(pattern, ms = 10_000, stream = 'stdout') {
      return new Promise((resolve, reject) => {
        const check = () => {
          const m = pattern.exec(stream === 'stdout' ? out : err);
          if (m) {
            done();
            resolve(m);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            done();
            reject(new Error(`${cmd} exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}\nstdout: ${out}\nstderr: ${err}`));
          }
        };
        const timer = setTimeout(() => {
          done();
          reject(new Error(`${cmd} did not print ${pattern} within ${ms} ms\nstdout: ${out}\nstderr: ${err}`));
        }, ms);
        const done = () => {
          clearTimeout(timer);
          listeners.delete(check);
        };
        listeners.add(check);
        check();
      });
    },
    async stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
  live.add(proc);
  return proc;
}

/** Runs to completion. */
export async function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): Promise<{ code: number | string; stdout: string; stderr: string }> {
  const p = start(cmd, args, opts);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  const code = await p.exited;
  clearTimeout(timer);
  return { code, stdout: p.stdout(), stderr: p.stderr() };
}

/** Runs a natkit binary with this Node. */
export function startBin(pkg: string, name: string, args: string[], opts: { env?: NodeJS.ProcessEnv } = {}): Proc {
  return start(process.execPath, [natkitBin(pkg, name), ...args], opts);
}
export function runBin(pkg: string, name: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}) {
  return run(process.execPath, [natkitBin(pkg, name), ...args], opts);
}

/** Kills every process a test started and did not stop (call from afterEach). */
export async function killAll(): Promise<void> {
  await Promise.all([...live].map((p) => p.stop('SIGKILL')));
}
