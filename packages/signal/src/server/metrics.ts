import { scrapedMetrics } from '@natkit/stun/internal';
import type { Registry } from 'prom-client';
import type { SignalServer } from './server.js';

/**
 * Prometheus metrics through prom-client (the team's choice for every server): the core
 * only bumps plain numbers; prom-client reads them when scraped, through collect(). The
 * binary serves them with '@natkit/stun/cli''s endpoint, next to prom-client's process,
 * GC and event-loop-lag metrics (`processMetrics`: also here, for a library user who has
 * no registry of their own for them).
 */
export async function signalMetrics(server: SignalServer, options: { processMetrics?: boolean; registry?: Registry } = {}): Promise<Registry> {
  const prom = await import('prom-client');
  const registry = options.registry ?? new prom.Registry();
  if (options.processMetrics) prom.collectDefaultMetrics({ register: registry });
  const core = server.core;
  const s = core.stats;
  const m = scrapedMetrics(registry);
  // by-reason and by-code counters show only the reasons and codes that happened
  const happened = (r: Record<string, number>) => Object.entries(r).filter(([, v]) => v > 0);

  m.labelledGauge('natkit_signal_connections', 'TCP connections open, by protocol (pending: not decided yet)', 'protocol', () => Object.entries(core.connectionsByProtocol));
  m.gauge('natkit_signal_parties', 'connections that joined the plain pair or a room', () => core.partyCount);
  m.gauge('natkit_signal_paired_parties', 'parties that have a peer', () => core.pairedCount);
  m.gauge('natkit_signal_rooms', 'rooms with a party on this instance (the plain pair included)', () => core.roomCount);
  m.gauge('natkit_signal_buffered_bytes', 'bytes held for peers (not joined yet, or in flight to another instance)', () => core.bufferedBytes);
  m.counter('natkit_signal_connections_total', 'connections accepted', () => s.connections);
  m.labelled('natkit_signal_connections_refused_total', 'connections refused at once, by limit', 'reason', () => happened(s.refused));
  m.counter('natkit_signal_joins_total', 'parties that joined', () => s.joins);
  m.counter('natkit_signal_pairs_total', 'times a joining party found its peer', () => s.pairs);
  m.counter('natkit_signal_room_full_total', 'third parties refused', () => s.full);
  m.counter('natkit_signal_delivered_messages_total', 'messages (JSON) and chunks (plain) delivered to parties', () => s.delivered);
  m.counter('natkit_signal_delivered_bytes_total', 'bytes delivered to parties', () => s.deliveredBytes);
  m.labelled('natkit_signal_closed_total', 'connections closed, by why', 'reason', () => happened(s.closed));
  m.labelled('natkit_signal_errors_total', 'error messages sent, by code', 'code', () => happened(s.errors));
  m.labelled('natkit_signal_bus_packets_total', 'packets to and from other instances (Redis)', 'direction', () => [
    ['in', s.packetsIn],
    ['out', s.packetsOut],
  ]);
  m.counter('natkit_signal_bus_retransmits_total', 'times unacknowledged frames were sent again', () => s.retransmits);
  if (server.redis) m.gauge('natkit_signal_redis_up', '1 when Redis is reachable', () => (server.redis?.up ? 1 : 0));
  return registry;
}
