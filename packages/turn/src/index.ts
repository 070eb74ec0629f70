// @natkit/turn: the TURN (RFC 8656) relay server and client. Named exports, on purpose:
// what a user embeds (the server, its policy interfaces and their defaults, the sans-I/O
// request core, events, metrics, the codec, the client); the data path, option
// resolution and the relayserver binary's helpers stay inside.
export * from './codec/attributes.js';
export * from './codec/channeldata.js';
export { TurnServer, TurnServerError, type TurnListening, defaultRelayAddresses } from './server/server.js';
export { TURN_DEFAULTS, type TurnServerOptions } from './server/options.js';
export {
  type AuthOptions,
  type AuthResult,
  type Authenticator,
  LongTermAuthenticator,
  NoAuthenticator,
  type UserEntry,
  UsersFileError,
  parseUsers,
  readUsersFile,
  restExpiry,
  restPassword,
} from './server/auth.js';
export {
  type Cidr,
  DEFAULT_DENIED_V4,
  DEFAULT_DENIED_V6,
  type PeerContext,
  PeerPolicy,
  type PeerPolicyHandler,
  type PolicyDecision,
  embeddedIPv4,
  parseCidr,
} from './server/policy.js';
export { LocalQuotas, type QuotaRefusal, type QuotaRequest, type Quotas } from './server/quotas.js';
export { type RelayAllocator, RelayPorts, type Reservation } from './server/relayports.js';
export {
  Allocation,
  type AllocationCounters,
  CHANNEL_LIFETIME_MS,
  type Channel,
  type ClientPath,
  PERMISSION_LIFETIME_MS,
  type RelaySocket,
} from './server/allocation.js';
export { type AllocateOutcome, type AllocateTicket, type CoreAction, RequestCore, type RequestCoreOptions } from './server/core.js';
export { AllocationTable } from './server/table.js';
export { DROP_REASONS, type DropReason, REQUEST_METHODS, type RequestMethod, TurnCounters } from './server/counters.js';
export type { TurnEvent, TurnEventOf, TurnEventType } from './server/events.js';
export { type TurnMetricsSource, turnMetrics } from './server/metrics.js';
export { type ResolvedLimits, resolveLimits } from './server/options.js';
export * from './client/schedule.js';
export * from './client/client.js';
