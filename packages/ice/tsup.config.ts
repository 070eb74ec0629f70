import { defineConfig } from 'tsup';
import { natkitBuild } from '../../tsup.base.js';

export default defineConfig(natkitBuild({ entry: ['src/index.ts', 'src/cli/icegather.ts'], dts: 'src/index.ts' }));
