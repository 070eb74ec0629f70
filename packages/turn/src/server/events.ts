import type { TransportAddress } from '@natkit/stun';
import type { Allocation, ClientPath } from './allocation.js';

/**
 * What happens to allocations, for a user who embeds the relay to observe (billing,
 * audit, dashboards), as TurnServer events named by `type`:
 *
 *   server.on('allocation-created', (e) => console.log(e.allocation.username));
 *
 * The relay's own log lines are made from the same events.
 */
export type TurnEvent =
  | { type: 'allocation-created'; allocation: Allocation; lifetime: number }
  | { type: 'allocation-refreshed'; allocation: Allocation; lifetime: number }
  | { type: 'allocation-deleted'; allocation: Allocation; reason: string }
  /** A CreatePermission installed or refreshed permissions for these peer IPs (RFC 8656 section 9). */
  | { type: 'permission'; allocation: Allocation; peers: string[] }
  /** A ChannelBind bound or refreshed a channel (RFC 8656 section 12). */
  | { type: 'channel'; allocation: Allocation; channel: number; peer: TransportAddress }
  /** The peer policy refused a peer (403). */
  | { type: 'peer-refused'; allocation: Allocation; peer: TransportAddress; reason: string }
  /** The first datagram relayed for an allocation. */
  | { type: 'relaying'; allocation: Allocation; peer: TransportAddress }
  /** A request refused for its credentials: wrong password, unknown user, stale nonce with MESSAGE-INTEGRITY, another user's allocation (441). */
  | { type: 'auth-failure'; client: ClientPath; username: string | undefined; code: number; reason: string };

export type TurnEventType = TurnEvent['type'];
export type TurnEventOf<T extends TurnEventType> = Extract<TurnEvent, { type: T }>;
