import type { ErrorCode, PeerLeftReason } from '../protocol/messages.js';

/**
 * The sans-I/O core's inputs and outputs. The core never touches a socket, a timer or
 * Redis: an adapter feeds it events with the time, and performs the actions it returns.
 */

export type ConnId = number;

/** How connections choose their protocol (see README, "signalserver"). */
export type Mode = 'auto' | 'plain' | 'rooms';

/** Where a party sits: the plain pair, or a named room. */
export type RoomKey = string;
export const PLAIN_ROOM: RoomKey = 'plain';
export function roomKey(name: string): RoomKey {
  return `room:${name}`;
}

/** A party anywhere: its member id (unique for every join) and the instance that holds it. */
export interface MemberRef {
  member: string;
  instance: string;
}

export interface JoinRequest {
  room: RoomKey;
  member: string;
  instance: string;
  session?: string;
  /** A party asserting the place it has (after a directory restart or a link reset): its session is recorded but takes nobody's place. */
  reassert?: boolean;
}

export type JoinResult =
  | {
      ok: true;
      /** The other party already in the room. */
      peer?: MemberRef;
      /** The party of the same session that this join took the place of. */
      replaced?: MemberRef;
    }
  /** full: two others are in the room; replaced (reassert only): its session is held by another party now. */
  | { ok: false; reason: 'full' | 'unavailable' | 'replaced' };

/**
 * Who is in which room, shared by every instance: in memory (LocalDirectory) for one
 * instance, in Redis for several. `join` is atomic: of concurrent joins to a room with one
 * free place, exactly one gets it. Entries of instances that are gone do not count.
 */
export interface Directory {
  join(req: JoinRequest): JoinResult | Promise<JoinResult>;
  leave(room: RoomKey, member: string): void | Promise<void>;
}

/** A frame between instances (about one member), carried in order by the core's links. */
export type Frame =
  | { k: 'j'; to: string; from: string; i: string; r: boolean } // `from` (on instance i) joined as `to`'s peer; r: it resumed a session
  | { k: 'l'; to: string; from: string; why: PeerLeftReason } // `from` left
  | { k: 'd'; to: string; from: string; d: string; b?: boolean } // data; b: base64 bytes (plain mode)
  | { k: 'x'; to: string } // `to`'s session was taken over: close it
  | { k: 's' }; // nothing: opens a new epoch, so the other side checks its pairings

/** What goes through the bus from one instance to another. */
export interface Packet {
  /** Sender instance. */
  i: string;
  /** Sequenced frames, `s` numbering the first, of the sender's link epoch `e`. */
  s?: number;
  f?: Frame[];
  e?: string;
  /** Cumulative acknowledgement: every frame of the receiver's epoch `ae` up to `a` arrived. */
  a?: number;
  ae?: string;
}

export type CoreEvent =
  | { type: 'open'; conn: ConnId; ip: string }
  | { type: 'data'; conn: ConnId; data: Buffer }
  /** The socket ended or failed (the client went away). */
  | { type: 'closed'; conn: ConnId }
  /** A write did not fit in the socket's buffer / the buffer emptied. */
  | { type: 'blocked'; conn: ConnId }
  | { type: 'drained'; conn: ConnId }
  | { type: 'tick' }
  | { type: 'join-result'; token: string; result: JoinResult }
  | { type: 'packet'; packet: Packet }
  /** Another instance stopped refreshing its liveness key. */
  | { type: 'instance-down'; instance: string }
  /** The directory (Redis) is reachable again: memberships are asserted again. */
  | { type: 'directory-up' }
  | { type: 'shutdown' };

export type CloseCode = ErrorCode | 'bye' | 'closed' | 'refused' | 'limit';

export type CoreAction =
  | { type: 'write'; conn: ConnId; data: Buffer | string }
  /** graceful: end after what was written is flushed; otherwise destroy at once. */
  | { type: 'close'; conn: ConnId; graceful: boolean; code: CloseCode }
  | { type: 'join'; token: string; request: JoinRequest }
  | { type: 'leave'; room: RoomKey; member: string }
  | { type: 'publish'; instance: string; packet: Packet }
  | { type: 'log'; level: 'debug' | 'info' | 'warn'; msg: string; fields?: Record<string, unknown> };
