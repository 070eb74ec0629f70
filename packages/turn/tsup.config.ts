import { defineConfig } from 'tsup';
import { natkitBuild } from '../../tsup.base.js';

export default defineConfig(natkitBuild({ entry: ['src/index.ts', 'src/cli/relayserver.ts'], dts: 'src/index.ts' }));
