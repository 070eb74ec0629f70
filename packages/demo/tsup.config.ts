import { defineConfig } from 'tsup';
import { natkitBuild } from '../../tsup.base.js';

export default defineConfig(natkitBuild({ entry: ['src/index.ts', 'src/cli/p2pdemo.ts', 'src/cli/p2pservers.ts'], dts: 'src/index.ts' }));
