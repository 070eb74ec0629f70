// What a test opened, closed after it (in reverse order), even when one close fails;
// child processes a test started are killed last. test/setup/each.ts then checks that no
// socket, timer or process is left.
import { afterEach } from 'vitest';
import { killAll } from './spawn.js';

export interface Cleanup {
  /** Runs `fn` after the current test. */
  defer(fn: () => Promise<unknown> | unknown): void;
  /** Closes `x` after the current test; returns it. */
  track<T extends { close(): Promise<unknown> }>(x: T): T;
}

/** Call once at the top of a test file. */
export function useCleanup(): Cleanup {
  const list: Array<() => Promise<unknown> | unknown> = [];
  afterEach(async () => {
    const errors: unknown[] = [];
    while (list.length) {
      try {
        await list.pop()!();
      } catch (err) {
        errors.push(err);
      }
    }
    await killAll();
    if (errors.length) throw errors[0];
  });
  return {
    defer: (fn) => void list.push(fn),
    track: (x) => {
      list.push(() => x.close());
      return x;
    },
  };
}
