// @natkit/stun/internal: building blocks natkit's own servers share (socket helpers, the
// TCP/TLS listener). Not part of the public API: they may change in any release.
export * from '../net/udp.js';
export * from '../server/streams.js';
