import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const packages = fileURLToPath(new URL('./packages/', import.meta.url));

export default defineConfig({
  resolve: {
    // Packages import each other by name. Inside the test run the name resolves to the
    // package's TypeScript sources, so one copy of each class is loaded and no build is
    // needed for unit tests. Binaries spawned by tests run the built dist/ files.
    alias: [
      { find: /^@natkit\/([a-z]+)$/, replacement: `${packages}$1/src/index.ts` },
      // Subpaths ('@natkit/stun/cli') resolve to the folder's index.
      { find: /^@natkit\/([a-z]+)\/([a-z]+)$/, replacement: `${packages}$1/src/$2/index.ts` },
    ],
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'test/**/*.test.ts'],
    globalSetup: ['test/setup/global.ts'],
    setupFiles: ['test/setup/each.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
