// What users get from gathering: the Gatherer and its one-call form, ICE server URLs. The
// bases (HostBase, RelayBase) are seen through the CandidateBase interface (src/base.ts);
// address selection and local preferences (addresses.ts) are the Gatherer's internals.
export * from './urls.js';
export {
  DEFAULT_SERVER_TIMEOUT_MS,
  type GatherReport,
  Gatherer,
  type GathererEvents,
  type GathererOptions,
  type ServerError,
  type ServerErrorCode,
  type ServerOutcome,
  gatherCandidates,
} from './gatherer.js';
