import { defineConfig } from 'tsup';
import { natkitBuild } from '../../tsup.base.js';

const PUBLIC = { index: 'src/index.ts', cli: 'src/cli/index.ts', internal: 'src/internal/index.ts' };

export default defineConfig(
  natkitBuild({
    entry: { ...PUBLIC, 'cli/stunserver': 'src/cli/stunserver.ts', 'cli/natcheck': 'src/cli/natcheck.ts' },
    dts: PUBLIC,
  }),
);
