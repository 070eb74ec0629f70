import { scrapedMetrics } from '@natkit/stun/internal';
import { Registry } from 'prom-client';
import { DROP_REASONS, REQUEST_METHODS, type TurnCounters } from './counters.js';

/**
 * The relay's Prometheus metrics through prom-client: every series is read from the
 * relay's plain counters when scraped (collect() callbacks), so counting on the per-packet
 * path is a field increment and a scrape costs what it reads. prom-client's own process,
 * GC and event-loop metrics, and the sum over cluster workers, come with it (see
 * relayserver).
 */

/** What the metrics read from a relay. */
export interface TurnMetricsSource {
  readonly counters: TurnCounters;
  readonly allocationCount: number;
  liveCounts(): { permissions: number; channels: number };
  readonly userCount: number | undefined;
  readonly isDraining: boolean;
}

/** Registers the relay's metrics in `registry` (a new one by default) and returns it. */
export function turnMetrics(source: TurnMetricsSource, registry: Registry = new Registry()): Registry {
  const c = source.counters;
  const m = scrapedMetrics(registry);
  m.counter('natkit_turn_allocations_created_total', 'Allocations created', () => c.allocationsCreated);
  m.labelled('natkit_turn_relayed_packets_total', 'Datagrams relayed, by direction', 'direction', () => [
    ['to_peer', c.toPeerPackets],
    ['to_client', c.toClientPackets],
  ]);
  m.labelled('natkit_turn_relayed_bytes_total', 'Application bytes relayed (without indication or ChannelData headers), by direction', 'direction', () => [
    ['to_peer', c.toPeerBytes],
    ['to_client', c.toClientBytes],
  ]);
  m.counter('natkit_turn_auth_failures_total', 'Requests refused for their credentials (401, 438 with MESSAGE-INTEGRITY, 441)', () => c.authFailures);
  m.labelled('natkit_turn_requests_total', 'Requests received, by method', 'method', () => REQUEST_METHODS.map((r) => [r, c.requests[r]] as const));
  m.labelled('natkit_turn_error_responses_total', 'Error responses sent, by code', 'code', () => [...c.errors].map(([code, n]) => [String(code), n] as const));
  m.labelled('natkit_turn_dropped_total', 'Packets dropped, by reason', 'reason', () => DROP_REASONS.map((r) => [r, c.dropped[r]] as const));
  m.gauge('natkit_turn_allocations', 'Allocations now', () => source.allocationCount);
  m.gauge('natkit_turn_permissions', 'Permissions now', () => source.liveCounts().permissions);
  m.gauge('natkit_turn_channels', 'Channel bindings now', () => source.liveCounts().channels);
  m.gauge('natkit_turn_users', 'Users in the credential store', () => source.userCount ?? 0);
  m.gauge('natkit_turn_draining', '1 while draining for shutdown', () => (source.isDraining ? 1 : 0));
  return registry;
}
