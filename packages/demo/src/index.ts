// @natkit/demo: p2pdemo (the libjingle tutorial's two-peer client, rebuilt on @natkit/ice and
// @natkit/signal) as a library, and what its binaries share.
export { P2pPeer, type P2pPeerOptions, type P2pPeerEvents, type NatCheckOptions } from './peer.js';
export type { DemoEvent, TimedEvent, DemoPath, PathEnd, NatSummary } from './events.js';
export { formatEvent } from './format.js';
export { natMeaning, pathMeaning, failureVerdict, type FailureFacts } from './meaning.js';
export { sessionParameters, sessionOf, decide, type SessionView, type SessionDecision } from './sessions.js';
export { Signalling, type SignallingOptions, type SignallingEvents, type RemoteCandidate } from './signalling.js';
