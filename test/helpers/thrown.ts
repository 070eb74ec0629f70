import { expect } from 'vitest';

/**
 * Runs `fn`, which must throw an error of class `cls`, and returns that error for more
 * assertions (its `code`, `offset`...). Fails the test if nothing, or something else, is thrown.
 */
export function thrown<E extends Error>(cls: new (...args: any[]) => E, fn: () => unknown): E {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(cls);
  return err as E;
}
