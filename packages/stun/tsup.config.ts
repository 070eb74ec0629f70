import { defineConfig } from 'tsup';

export default defineConfig({
  entry: {
    index: 'src/index.ts',
    cli: 'src/cli/index.ts',
    internal: 'src/internal/index.ts',
    'cli/stunserver': 'src/cli/stunserver.ts',
    'cli/natcheck': 'src/cli/natcheck.ts',
  },
  format: ['esm'],
  target: 'node20',
  platform: 'node',
  dts: { entry: { index: 'src/index.ts', cli: 'src/cli/index.ts', internal: 'src/internal/index.ts' } },
  sourcemap: true,
  clean: true,
  splitting: true,
});
