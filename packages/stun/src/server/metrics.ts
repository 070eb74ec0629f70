import { Registry } from 'prom-client';
import type { BindingStats } from './binding.js';
import { scrapedMetrics } from './scraped-metrics.js';

/**
 * The STUN server's Prometheus metrics through prom-client, read from its plain counters
 * when scraped (collect() callbacks): counting on the per-packet path stays a field
 * increment.
 */

export interface StunMetricsSource {
  readonly stats: BindingStats;
  readonly streamDrops: { refused: number; badFraming: number; idle: number };
  readonly connections: number;
}

const DROPPED: Array<[string, (s: StunMetricsSource) => number]> = [
  ['not_stun', (s) => s.stats.dropped.notStun],
  ['malformed', (s) => s.stats.dropped.malformed],
  ['bad_fingerprint', (s) => s.stats.dropped.badFingerprint],
  ['not_request', (s) => s.stats.dropped.notRequest],
  ['rate_limited', (s) => s.stats.dropped.rateLimited],
  ['internal_error', (s) => s.stats.dropped.internalError],
  ['connection_refused', (s) => s.streamDrops.refused],
  ['bad_framing', (s) => s.streamDrops.badFraming],
  ['idle', (s) => s.streamDrops.idle],
];

/** Registers the STUN server's metrics in `registry` (a new one by default) and returns it. */
export function stunMetrics(source: StunMetricsSource, registry: Registry = new Registry()): Registry {
  const m = scrapedMetrics(registry);
  m.counter('natkit_stun_requests_total', 'Messages received (over every transport)', () => source.stats.received);
  m.counter('natkit_stun_responses_total', 'Binding success responses sent', () => source.stats.responses);
  m.labelled('natkit_stun_error_responses_total', 'Error responses sent, by code', 'code', () => Object.entries(source.stats.errors));
  m.labelled('natkit_stun_dropped_total', 'Messages and connections dropped, by reason', 'reason', () => DROPPED.map(([reason, read]) => [reason, read(source)] as const));
  m.gauge('natkit_stun_connections', 'TCP/TLS connections open now', () => source.connections);
  return registry;
}
