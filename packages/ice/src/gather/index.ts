export * from './urls.js';
export * from './addresses.js';
export { HostBase, RelayBase, MAX_QUEUED_PER_PEER } from './bases.js';
export * from './gatherer.js';
