import { defineConfig } from 'tsup';
import { natkitBuild } from '../../tsup.base.js';

// ioredis (a dependency, so never bundled in) is loaded lazily, only with --redis.
export default defineConfig(natkitBuild({ entry: ['src/index.ts', 'src/cli/signalserver.ts'], dts: 'src/index.ts' }));
