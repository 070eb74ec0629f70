import type { Options } from 'tsup';

type DtsEntry = Exclude<Options['dts'], boolean | string | undefined>['entry'];

/**
 * The build every natkit package shares (each packages/<name>/tsup.config.ts names only its
 * entries): ESM for Node 20 with source maps, type declarations for the public entries
 * only (binaries have none), shared code split into chunks, and the sibling packages
 * imported by name, never bundled in (tsup leaves the other dependencies external itself).
 */
export function natkitBuild(o: { entry: NonNullable<Options['entry']>; dts: NonNullable<DtsEntry> }): Options {
  return {
    entry: o.entry,
    format: ['esm'],
    target: 'node20',
    platform: 'node',
    dts: { entry: o.dts },
    sourcemap: true,
    clean: true,
    splitting: true,
    external: [/^@natkit\//],
  };
}
