import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts', 'src/cli/p2pdemo.ts', 'src/cli/p2pservers.ts'],
  format: ['esm'],
  target: 'node20',
  platform: 'node',
  dts: { entry: 'src/index.ts' },
  sourcemap: true,
  clean: true,
  splitting: true,
  // Sibling packages are dependencies, imported by name, never bundled in.
  external: [/^@natkit\//],
});
