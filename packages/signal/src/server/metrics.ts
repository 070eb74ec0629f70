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
  const registers = [registry];

  const gauge = (name: string, help: string, read: () => number) =>
    new prom.Gauge({
      name,
      help,
      registers,
      collect() {
        this.set(read());
      },
    });
  const counter = (name: string, help: string, read: () => number) =>
    new prom.Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(read());
      },
    });
  const labelled = (name: string, help: string, label: string, read: () => Record<string, number>) =>
    new prom.Counter({
      name,
      help,
      labelNames: [label],
      registers,
      collect() {
        this.reset();
        for (const [k, v] of Object.entries(read())) if (v > 0) this.inc({ [label]: k }, v);
      },
    });

  new prom.Gauge({
    name: 'natkit_signal_connections',
    help: 'TCP connections open, by protocol (pending: not decided yet)',
    labelNames: ['protocol'],
    registers,
    collect() {
      for (const [k, v] of Object.entries(core.connectionsByProtocol)) this.set({ protocol: k }, v);
    },
  });
  gauge('natkit_signal_parties', 'connections that joined the plain pair or a room', () => core.partyCount);
  gauge('natkit_signal_paired_parties', 'parties that have a peer', () => core.pairedCount);
  gauge('natkit_signal_rooms', 'rooms with a party on this instance (the plain pair included)', () => core.roomCount);
  gauge('natkit_signal_buffered_bytes', 'bytes held for peers (not joined yet, or in flight to another instance)', () => core.bufferedBytes);
  counter('natkit_signal_connections_total', 'connections accepted', () => s.connections);
  labelled('natkit_signal_connections_refused_total', 'connections refused at once, by limit', 'reason', () => s.refused);
  counter('natkit_signal_joins_total', 'parties that joined', () => s.joins);
  counter('natkit_signal_pairs_total', 'times a joining party found its peer', () => s.pairs);
  counter('natkit_signal_room_full_total', 'third parties refused', () => s.full);
  counter('natkit_signal_delivered_messages_total', 'messages (JSON) and chunks (plain) delivered to parties', () => s.delivered);
  counter('natkit_signal_delivered_bytes_total', 'bytes delivered to parties', () => s.deliveredBytes);
  labelled('natkit_signal_closed_total', 'connections closed, by why', 'reason', () => s.closed);
  labelled('natkit_signal_errors_total', 'error messages sent, by code', 'code', () => s.errors);
  new prom.Counter({
    name: 'natkit_signal_bus_packets_total',
    help: 'packets to and from other instances (Redis)',
    labelNames: ['direction'],
    registers,
    collect() {
      this.reset();
      this.inc({ direction: 'in' }, s.packetsIn);
      this.inc({ direction: 'out' }, s.packetsOut);
    },
  });
  counter('natkit_signal_bus_retransmits_total', 'times unacknowledged frames were sent again', () => s.retransmits);
  if (server.redis) gauge('natkit_signal_redis_up', '1 when Redis is reachable', () => (server.redis?.up ? 1 : 0));
  return registry;
}
