import type { Directory, JoinRequest, JoinResult, MemberRef, RoomKey } from './types.js';

/**
 * The room directory in memory: one instance, or several instances in one process
 * (tests). A room holds two parties. An entry whose instance is not `alive` does not
 * count and is removed when the room is next joined (as Redis's entries of an instance
 * whose liveness key expired).
 */
export class LocalDirectory implements Directory {
  private readonly rooms = new Map<RoomKey, Map<string, { instance: string; session?: string }>>();
  /** Instances considered gone (tests mark them). */
  readonly dead = new Set<string>();

  join(req: JoinRequest): JoinResult {
    let room = this.rooms.get(req.room);
    if (!room) this.rooms.set(req.room, (room = new Map()));
    let replaced: MemberRef | undefined;
    const others: MemberRef[] = [];
    const gone: string[] = [];
    for (const [member, e] of room) {
      if (member === req.member) continue;
      if (this.dead.has(e.instance)) gone.push(member);
      else if (req.session !== undefined && e.session === req.session && !req.reassert) replaced = { member, instance: e.instance };
      else others.push({ member, instance: e.instance });
    }
    for (const m of gone) room.delete(m);
    // A party asserting its place after its session was taken over has lost it.
    if (req.reassert && req.session !== undefined && [...room.entries()].some(([m, e]) => m !== req.member && e.session === req.session)) {
      room.delete(req.member);
      return { ok: false, reason: 'replaced' };
    }
    if (others.length >= 2) {
      if (room.size === 0) this.rooms.delete(req.room);
      return { ok: false, reason: 'full' };
    }
    if (replaced) room.delete(replaced.member);
    room.set(req.member, { instance: req.instance, ...(req.session !== undefined ? { session: req.session } : {}) });
    return { ok: true, ...(others[0] ? { peer: others[0] } : {}), ...(replaced ? { replaced } : {}) };
  }

  leave(room: RoomKey, member: string): void {
    const r = this.rooms.get(room);
    if (!r) return;
    r.delete(member);
    if (r.size === 0) this.rooms.delete(room);
  }

  /** Members of a room (tests). */
  members(room: RoomKey): string[] {
    return [...(this.rooms.get(room)?.keys() ?? [])];
  }

  /** Forgets everything (a Redis restart, in tests). */
  clear(): void {
    this.rooms.clear();
  }
}
