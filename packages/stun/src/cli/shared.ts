// Building blocks for natkit's binaries (and yours): the strict flag parser and logs.
export * from './args.js';
export * from './log.js';
