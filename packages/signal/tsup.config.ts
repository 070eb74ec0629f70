import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts', 'src/cli/signalserver.ts'],
  format: ['esm'],
  target: 'node20',
  platform: 'node',
  dts: { entry: 'src/index.ts' },
  sourcemap: true,
  clean: true,
  splitting: true,
  // Dependencies are imported by name, never bundled in; ioredis is loaded lazily, only
  // with --redis.
  external: ['@natkit/stun', '@natkit/stun/cli', '@natkit/stun/internal', 'ioredis', 'prom-client'],
});
