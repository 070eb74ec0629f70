import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts', 'src/cli/relayserver.ts'],
  format: ['esm'],
  target: 'node20',
  platform: 'node',
  dts: { entry: 'src/index.ts' },
  sourcemap: true,
  clean: true,
  splitting: true,
  // @natkit/stun is a dependency, imported by name, never bundled in.
  external: ['@natkit/stun', '@natkit/stun/cli', '@natkit/stun/internal', 'prom-client'],
});
