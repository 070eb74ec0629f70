import { Counter, Gauge, Registry } from 'prom-client';
import type { BindingStats } from './binding.js';

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
  const registers = [registry];
  new Counter({
    name: 'natkit_stun_requests_total',
    help: 'Messages received (over every transport)',
    registers,
    collect() {
      this.reset();
      this.inc(source.stats.received);
    },
  });
  new Counter({
    name: 'natkit_stun_responses_total',
    help: 'Binding success responses sent',
    registers,
    collect() {
      this.reset();
      this.inc(source.stats.responses);
    },
  });
  new Counter({
    name: 'natkit_stun_error_responses_total',
    help: 'Error responses sent, by code',
    labelNames: ['code'],
    registers,
    collect() {
      this.reset();
      for (const [code, n] of Object.entries(source.stats.errors)) this.inc({ code }, n);
    },
  });
  new Counter({
    name: 'natkit_stun_dropped_total',
    help: 'Messages and connections dropped, by reason',
    labelNames: ['reason'],
    registers,
    collect() {
      this.reset();
      for (const [reason, read] of DROPPED) this.inc({ reason }, read(source));
    },
  });
  new Gauge({
    name: 'natkit_stun_connections',
    help: 'TCP/TLS connections open now',
    registers,
    collect() {
      this.set(source.connections);
    },
  });
  return registry;
}
