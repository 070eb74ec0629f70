// @natkit/stun/internal: building blocks natkit's own servers share (socket helpers, the
// TCP/TLS listener, Prometheus metrics read at scrape time). Not part of the public API:
// they may change in any release.
export * from '../net/udp.js';
export * from '../server/streams.js';
export * from '../server/scraped-metrics.js';
