import { SignalProtocolError } from '../errors.js';
import { LineMeter, LineSplitter } from '../protocol/lines.js';
import {
  type ErrorCode,
  type PeerLeftReason,
  PROTOCOL_VERSION,
  type ServerMessage,
  encodeMessage,
  parseClientMessage,
} from '../protocol/messages.js';
import {
  type CloseCode,
  type ConnId,
  type CoreAction,
  type CoreEvent,
  type Frame,
  type JoinResult,
  type MemberRef,
  type Mode,
  PLAIN_ROOM,
  type Packet,
  type RoomKey,
  roomKey,
} from './types.js';

/**
 * The signalling server's logic as plain state: `handle(event, now)` returns the actions
 * to perform, `nextTimeout()` says when it next needs a tick. No sockets, timers or Redis
 * here (DESIGN.md, layer 2); tests drive it with a fake clock.
 *
 * Parties. A connection becomes a party of the plain pair (the libjingle tutorial's
 * semantics) or of a named room (AppRTC Collider's), through the Directory. A party sends
 * to its peer; while it has none, what it sends is held (in order, up to maxBuffer bytes)
 * and delivered when a peer arrives. When a party leaves, what it had sent and was still
 * held dies with it (the tutorial's server does `buffer = ""` on every close; Collider
 * drops a leaving client's queue): it was meant for a session that is over.
 *
 * Instances. Parties of one room may sit on different instances (with Redis). Instances
 * talk through links: ordered frames numbered per link, acknowledged cumulatively and sent
 * again until acknowledged, so a bus that loses messages (Redis restarting, pub/sub
 * reconnecting) loses nothing. A party's frames in flight count against its maxBuffer.
 * An instance whose frames stay unacknowledged for linkTimeout is given up: its peers here
 * are told `server-lost`, and the link starts a new epoch (numbering from 1). The other
 * side, seeing a new epoch, knows frames may have been lost and has every party paired
 * over that link ask the directory again. The directory is the authority on who is in a
 * room: a frame that contradicts a pairing makes the party ask it, rather than win.
 * (The random-event property test, test/core-fuzz.test.ts, found each of these cases.)
 */

export interface CoreOptions {
  /** This instance's id (unique for every process start). */
  instance?: string;
  /** How a connection chooses its protocol. Default auto. */
  mode?: Mode;
  /** Longest line, in bytes, without its LF. Default 16384. */
  maxLine?: number;
  /** Bytes held per party: sent before a peer arrived, or in flight to another instance. Also what a slow reader may have queued. Default 262144. */
  maxBuffer?: number;
  /** Rooms with a party on this instance. Default 10000. */
  maxRooms?: number;
  maxConnections?: number;
  maxConnectionsPerIp?: number;
  /** auto mode: a connection silent this long becomes a plain party (ms). Default 2000. */
  detectTimeout?: number;
  /** A JSON connection must have joined within this (ms). Default 10000. */
  joinTimeout?: number;
  /** Ping a JSON connection that was sent nothing for this long (ms). Default 15000. */
  heartbeatInterval?: number;
  /** Close a JSON connection that sent nothing (not even pong) for this long (ms). Default 45000. */
  heartbeatTimeout?: number;
  /** Close a party that sent and received no data for this long (ms); 0: never. Default 600000. */
  idleTimeout?: number;
  /** Close a connection whose socket stayed full this long (ms). Default 10000. */
  slowReaderTimeout?: number;
  /** Send unacknowledged frames again after this (ms). Default 1000. */
  retransmitInterval?: number;
  /** Give another instance up when frames stay unacknowledged this long (ms). Default 30000. */
  linkTimeout?: number;
  /** Invalid messages tolerated on one connection before it is closed. Default 10. */
  maxErrors?: number;
}

export type Limits = Required<Omit<CoreOptions, 'instance'>>;

export const DEFAULT_LIMITS: Limits = {
  mode: 'auto',
  maxLine: 16384,
  maxBuffer: 262144,
  maxRooms: 10000,
  maxConnections: 10000,
  maxConnectionsPerIp: 100,
  detectTimeout: 2000,
  joinTimeout: 10000,
  heartbeatInterval: 15000,
  heartbeatTimeout: 45000,
  idleTimeout: 600000,
  slowReaderTimeout: 10000,
  retransmitInterval: 1000,
  linkTimeout: 30000,
  maxErrors: 10,
};

interface Item {
  /** A JSON line (rooms) or bytes (plain). */
  data: string | Buffer;
  size: number;
}

type ConnState = 'new' | 'joining' | 'joined';

interface Conn {
  id: ConnId;
  ip: string;
  openedAt: number;
  state: ConnState;
  proto: 'plain' | 'json' | undefined;
  closing: boolean;
  lastRecv: number;
  lastSend: number;
  /** Last data sent or received (not heartbeats). */
  activity: number;
  blockedAt: number | undefined;
  blockedBytes: number;
  errors: number;
  splitter: LineSplitter | undefined;
  meter: LineMeter | undefined;
  /** What arrived while the join was under way. */
  early: Item[];
  earlyBytes: number;
  room: RoomKey | undefined;
  roomName: string | undefined;
  session: string | undefined;
  party: Party | undefined;
  /** Join token while joining. */
  token: string | undefined;
}

interface Party {
  conn: Conn;
  room: RoomKey;
  member: string;
  peer: MemberRef | undefined;
  /** Held until a peer arrives. */
  pending: Item[];
  pendingBytes: number;
  /** In flight to a peer on another instance. */
  inflightBytes: number;
  /** Its session was taken over: it leaves without telling the peer. */
  replaced: boolean;
}

interface Sent {
  seq: number;
  frame: Frame;
  party: Party | undefined;
  size: number;
}

interface Link {
  instance: string;
  nextSeq: number;
  unacked: Sent[];
  /** When the oldest unacknowledged frame was first sent / last sent. */
  firstSent: number;
  lastSent: number;
  /** This side's sending epoch: a new one whenever the link is given up and made again. */
  epoch: string;
  /** The other side's sending epoch, as last seen; undefined: nothing received yet. */
  recvEpoch: string | undefined;
  /** Next sequence number expected from it. */
  expect: number;
  /** When a packet last came from it. */
  heard: number;
  ackDue: boolean;
  /** Frames to send at the end of this handle() call. */
  out: Sent[];
}

/** Counters; prom-client reads them when scraped. */
export interface CoreStats {
  connections: number;
  refused: Record<'max-connections' | 'max-connections-per-ip' | 'shutdown', number>;
  joins: number;
  /** Two parties found each other. */
  pairs: number;
  /** Third parties refused (room full). */
  full: number;
  /** Messages (rooms) and chunks (plain) delivered to a party. */
  delivered: number;
  deliveredBytes: number;
  /** Connections closed, by why. */
  closed: Record<string, number>;
  /** Error messages sent, by code. */
  errors: Record<string, number>;
  packetsIn: number;
  packetsOut: number;
  retransmits: number;
}

const CLOSE_TO_LEFT: Partial<Record<CloseCode, PeerLeftReason>> = {
  bye: 'bye',
  closed: 'closed',
  'heartbeat-timeout': 'timeout',
  'idle-timeout': 'timeout',
  'join-timeout': 'timeout',
  'slow-reader': 'timeout',
  shutdown: 'shutdown',
};

const REASONS: Record<ErrorCode, string> = {
  'invalid-json': 'not a JSON message',
  'invalid-message': 'not a valid message',
  'unsupported-version': 'unsupported protocol version',
  'not-joined': 'the first message must be a join',
  'already-joined': 'this connection has joined a room already',
  'room-full': 'the room already has two parties',
  'too-many-rooms': 'the server has as many rooms as it may',
  'line-too-long': 'a line is longer than the server accepts',
  'buffer-full': 'more is held for the peer than the server keeps',
  'too-many-errors': 'too many invalid messages',
  'join-timeout': 'no join in time',
  'idle-timeout': 'no messages for too long',
  'heartbeat-timeout': 'nothing received for too long (answer ping with pong)',
  'slow-reader': 'the connection does not read what it is sent',
  replaced: 'another connection took over this session',
  unavailable: 'the room directory is unavailable; try again',
  shutdown: 'the server is shutting down',
};

const utf8 = new TextDecoder('utf-8', { fatal: true });

let instanceCounter = 0;
function newInstanceId(): string {
  // Unique per process start (and per core in one process): time, randomness, a counter.
  return `${Date.now().toString(36)}${Math.floor(Math.random() * 2 ** 32).toString(36)}${(++instanceCounter).toString(36)}`;
}

export class SignalCore {
  readonly instance: string;
  readonly limits: Limits;
  readonly stats: CoreStats = {
    connections: 0,
    refused: { 'max-connections': 0, 'max-connections-per-ip': 0, shutdown: 0 },
    joins: 0,
    pairs: 0,
    full: 0,
    delivered: 0,
    deliveredBytes: 0,
    closed: {},
    errors: {},
    packetsIn: 0,
    packetsOut: 0,
    retransmits: 0,
  };

  private readonly conns = new Map<ConnId, Conn>();
  private readonly perIp = new Map<string, number>();
  private readonly parties = new Map<string, Party>();
  private readonly joining = new Map<string, Conn>();
  /** Parties asking the directory for their place again; `trustEmpty`: no peer in the answer means the peer is gone. */
  private readonly reasserting = new Map<string, { room: RoomKey; trustEmpty: boolean }>();
  private epochSeq = 0;
  /** Parties per room on this instance. */
  private readonly rooms = new Map<RoomKey, number>();
  private readonly links = new Map<string, Link>();
  private memberSeq = 0;
  private now = 0;
  private out: CoreAction[] = [];
  private dirtyLinks = new Set<Link>();
  private next = Number.POSITIVE_INFINITY;
  private shuttingDown = false;

  constructor(options: CoreOptions = {}) {
    this.instance = options.instance ?? newInstanceId();
    // Only the limits: a caller may pass a wider object (the server's options).
    this.limits = { ...DEFAULT_LIMITS, ...Object.fromEntries(Object.entries(options).filter(([k, v]) => k in DEFAULT_LIMITS && v !== undefined)) };
  }

  /** Connections open. */
  get connectionCount(): number {
    return this.conns.size;
  }
  /** Parties (joined connections) on this instance. */
  get partyCount(): number {
    return this.parties.size;
  }
  /** Rooms with a party here (the plain pair included). */
  get roomCount(): number {
    return this.rooms.size;
  }
  /** Parties that have a peer. */
  get pairedCount(): number {
    let n = 0;
    for (const p of this.parties.values()) if (p.peer) n++;
    return n;
  }
  /** Bytes held for peers (pending and in flight). */
  get bufferedBytes(): number {
    let n = 0;
    for (const p of this.parties.values()) n += p.pendingBytes + p.inflightBytes;
    return n;
  }
  /** Connections whose socket is full (the reader is slow). */
  get blockedCount(): number {
    let n = 0;
    for (const c of this.conns.values()) if (c.blockedAt !== undefined) n++;
    return n;
  }
  /** Connections by protocol (undecided ones under "pending"). */
  get connectionsByProtocol(): { plain: number; json: number; pending: number } {
    const r = { plain: 0, json: 0, pending: 0 };
    for (const c of this.conns.values()) r[c.proto ?? 'pending']++;
    return r;
  }
  /** Rooms with a party here. */
  localRooms(): RoomKey[] {
    return [...this.rooms.keys()];
  }
  /** Other instances this one has parties paired with or frames for (to watch their liveness). */
  remoteInstances(): string[] {
    const s = new Set<string>();
    for (const p of this.parties.values()) if (p.peer && p.peer.instance !== this.instance) s.add(p.peer.instance);
    for (const l of this.links.values()) if (l.unacked.length) s.add(l.instance);
    return [...s];
  }

  /** When the core next needs a tick (absolute time), or Infinity. */
  nextTimeout(): number {
    return this.next;
  }

  handle(event: CoreEvent, now: number): CoreAction[] {
    this.now = now;
    this.out = [];
    switch (event.type) {
      case 'open':
        this.onOpen(event.conn, event.ip);
        break;
      case 'data':
        this.onData(event.conn, event.data);
        break;
      case 'closed': {
        const c = this.conns.get(event.conn);
        if (c) this.finish(c, 'closed', false, true);
        break;
      }
      case 'blocked': {
        const c = this.conns.get(event.conn);
        if (c && c.blockedAt === undefined) {
          c.blockedAt = now;
          c.blockedBytes = 0;
          this.due(now + this.limits.slowReaderTimeout);
        }
        break;
      }
      case 'drained': {
        const c = this.conns.get(event.conn);
        if (c) c.blockedAt = undefined;
        break;
      }
      case 'tick':
        this.onTick();
        break;
      case 'join-result':
        this.onJoinResult(event.token, event.result);
        break;
      case 'packet':
        this.onPacket(event.packet);
        break;
      case 'instance-down':
        this.onInstanceDown(event.instance);
        break;
      case 'directory-up':
        this.onDirectoryUp();
        break;
      case 'shutdown':
        this.onShutdown();
        break;
    }
    this.flushLinks();
    const out = this.out;
    this.out = [];
    return out;
  }

  // -------------------------------------------------------------------------------------
  // Connections

  private due(at: number): void {
    if (at < this.next) this.next = at;
  }

  private onOpen(id: ConnId, ip: string): void {
    if (this.shuttingDown) {
      this.stats.refused.shutdown++;
      this.out.push({ type: 'close', conn: id, graceful: false, code: 'refused' });
      return;
    }
    const L = this.limits;
    const fromIp = this.perIp.get(ip) ?? 0;
    // Refused before anything is read: the protocol is not known yet, so no error line
    // (a plain client would take it for its peer's data); the log and metrics say why.
    const limit = this.conns.size >= L.maxConnections ? 'max-connections' : fromIp >= L.maxConnectionsPerIp ? 'max-connections-per-ip' : undefined;
    if (limit) {
      this.stats.refused[limit]++;
      this.out.push({ type: 'close', conn: id, graceful: false, code: 'limit' });
      this.log('debug', 'connection refused', { conn: id, ip, limit });
      return;
    }
    this.perIp.set(ip, fromIp + 1);
    this.stats.connections++;
    const c: Conn = {
      id,
      ip,
      openedAt: this.now,
      state: 'new',
      proto: undefined,
      closing: false,
      lastRecv: this.now,
      lastSend: this.now,
      activity: this.now,
      blockedAt: undefined,
      blockedBytes: 0,
      errors: 0,
      splitter: undefined,
      meter: undefined,
      early: [],
      earlyBytes: 0,
      room: undefined,
      roomName: undefined,
      session: undefined,
      party: undefined,
      token: undefined,
    };
    this.conns.set(id, c);
    if (L.mode === 'plain') {
      // The tutorial's server: a party from the moment it connects.
      this.becomePlain(c);
    } else if (L.mode === 'rooms') {
      this.becomeJson(c);
    } else {
      this.due(this.now + L.detectTimeout);
    }
  }

  private becomePlain(c: Conn): void {
    c.proto = 'plain';
    c.meter = new LineMeter(this.limits.maxLine);
    this.startJoin(c, PLAIN_ROOM, undefined);
  }

  private becomeJson(c: Conn): void {
    c.proto = 'json';
    c.splitter = new LineSplitter(this.limits.maxLine);
    this.due(c.openedAt + this.limits.joinTimeout);
  }

  private onData(id: ConnId, data: Buffer): void {
    const c = this.conns.get(id);
    if (!c || c.closing || data.length === 0) return;
    c.lastRecv = this.now;
    if (c.proto === undefined) {
      // auto mode: the first byte decides. "{" starts the JSON protocol; anything else (a
      // tutorial candidate line starts with an address) is a plain party.
      if (data[0] === 0x7b) this.becomeJson(c);
      else this.becomePlain(c);
      if (c.closing) return;
    }
    if (c.proto === 'plain') this.onPlainData(c, data);
    else this.onJsonData(c, data);
  }

  private onPlainData(c: Conn, data: Buffer): void {
    if (!c.meter!.push(data)) {
      this.finish(c, 'line-too-long', true);
      return;
    }
    c.activity = this.now;
    const item: Item = { data, size: data.length };
    if (c.state === 'joining') this.hold(c, item);
    else if (c.party) this.send(c.party, item);
  }

  private onJsonData(c: Conn, data: Buffer): void {
    const ok = c.splitter!.push(data, (line) => {
      this.onLine(c, line);
      return !c.closing;
    });
    if (!ok && !c.closing) this.finish(c, 'line-too-long', true, false, `a line is longer than ${this.limits.maxLine} bytes`);
  }

  private onLine(c: Conn, bytes: Buffer): void {
    let text: string;
    try {
      text = utf8.decode(bytes);
    } catch {
      this.invalid(c, 'invalid-json', 'not UTF-8 text');
      return;
    }
    if (text.trim() === '') return;
    let msg;
    try {
      msg = parseClientMessage(text);
    } catch (err) {
      if (!(err instanceof SignalProtocolError)) throw err;
      const code: ErrorCode = err.code === 'INVALID_JSON' ? 'invalid-json' : err.code === 'UNSUPPORTED_VERSION' ? 'unsupported-version' : 'invalid-message';
      if (c.state === 'new' || code === 'unsupported-version') this.finish(c, code, true, false, err.message);
      else this.invalid(c, code, err.message);
      return;
    }
    if (c.state === 'new') {
      if (msg.type !== 'join') {
        this.finish(c, 'not-joined', true, false, `the first message must be a join, got ${msg.type}`);
        return;
      }
      c.roomName = msg.room;
      const key = roomKey(msg.room);
      if (!this.rooms.has(key) && this.rooms.size >= this.limits.maxRooms) {
        this.finish(c, 'too-many-rooms', true, false, `this server holds ${this.limits.maxRooms} rooms, its limit`);
        return;
      }
      this.startJoin(c, key, msg.session);
      return;
    }
    switch (msg.type) {
      case 'join':
        this.invalid(c, 'already-joined', `this connection is in room ${c.roomName} already`);
        return;
      case 'ping':
        this.write(c, encodeMessage({ type: 'pong' }));
        return;
      case 'pong':
        return;
      case 'bye':
        this.finish(c, 'bye', true);
        return;
      default: {
        c.activity = this.now;
        const line = encodeMessage(msg);
        const item: Item = { data: line, size: Buffer.byteLength(line) };
        if (c.state === 'joining') this.hold(c, item);
        else if (c.party) this.send(c.party, item);
      }
    }
  }

  /** A non-fatal error: reported, the message dropped; too many close the connection. */
  private invalid(c: Conn, code: ErrorCode, reason: string): void {
    if (++c.errors >= this.limits.maxErrors) {
      this.finish(c, 'too-many-errors', true, false, `${c.errors} invalid messages; the last: ${reason}`);
      return;
    }
    this.stats.errors[code] = (this.stats.errors[code] ?? 0) + 1;
    this.write(c, encodeMessage({ type: 'error', code, reason, fatal: false }));
  }

  /** What arrives while the join is under way waits for it, within maxBuffer. */
  private hold(c: Conn, item: Item): void {
    if (c.earlyBytes + item.size > this.limits.maxBuffer) {
      this.finish(c, 'buffer-full', true, false, `more than ${this.limits.maxBuffer} bytes arrived before the join completed`);
      return;
    }
    c.early.push(item);
    c.earlyBytes += item.size;
  }

  private write(c: Conn, data: string | Buffer): void {
    if (c.closing) return;
    this.out.push({ type: 'write', conn: c.id, data });
    c.lastSend = this.now;
    if (c.blockedAt !== undefined) {
      c.blockedBytes += typeof data === 'string' ? Buffer.byteLength(data) : data.length;
      // A reader that lets more than maxBuffer pile up behind a full socket is cut off.
      if (c.blockedBytes > this.limits.maxBuffer) this.finish(c, 'slow-reader', false);
    }
  }

  private writeMessage(c: Conn, m: ServerMessage): void {
    this.write(c, encodeMessage(m));
  }

  /**
   * Closes a connection: an error message first (JSON protocol, if `code` is an error),
   * the party leaves (its peer is told why), the socket is ended (graceful) or destroyed.
   * `byClient`: the socket is already gone.
   */
  private finish(c: Conn, code: CloseCode, graceful: boolean, byClient = false, reason?: string): void {
    if (c.closing) return;
    if (c.proto === 'json' && !byClient && code in REASONS) {
      const ec = code as ErrorCode;
      this.stats.errors[ec] = (this.stats.errors[ec] ?? 0) + 1;
      if (graceful) this.writeMessage(c, { type: 'error', code: ec, reason: reason ?? REASONS[ec], fatal: true });
    }
    c.closing = true;
    this.stats.closed[code] = (this.stats.closed[code] ?? 0) + 1;
    if (code !== 'closed' && code !== 'bye') this.log('info', 'connection closed', { conn: c.id, ip: c.ip, why: code, ...(reason ? { reason } : {}) });
    if (c.party) this.leave(c.party, CLOSE_TO_LEFT[code] ?? 'error');
    // A join under way stays in `joining` (closing): its answer gives the place back.
    this.conns.delete(c.id);
    const n = (this.perIp.get(c.ip) ?? 1) - 1;
    if (n > 0) this.perIp.set(c.ip, n);
    else this.perIp.delete(c.ip);
    if (!byClient) this.out.push({ type: 'close', conn: c.id, graceful, code });
  }

  // -------------------------------------------------------------------------------------
  // Joining and leaving

  private startJoin(c: Conn, room: RoomKey, session: string | undefined): void {
    c.state = 'joining';
    c.room = room;
    c.session = session;
    const member = `${this.instance}.${(++this.memberSeq).toString(36)}`;
    c.token = member;
    this.joining.set(member, c);
    this.due(c.openedAt + this.limits.joinTimeout);
    this.out.push({ type: 'join', token: member, request: { room, member, instance: this.instance, ...(session ? { session } : {}) } });
  }

  private onJoinResult(token: string, result: JoinResult): void {
    const reasserted = this.reasserting.get(token);
    if (reasserted !== undefined) {
      this.reasserting.delete(token);
      this.onReassertResult(token, reasserted.room, reasserted.trustEmpty, result);
      return;
    }
    const c = this.joining.get(token);
    this.joining.delete(token);
    if (!c) return;
    if (c.closing) {
      // Closed while joining: give the place back; a peer it was given learns it left.
      if (result.ok) {
        this.out.push({ type: 'leave', room: c.room!, member: token });
        if (result.replaced) this.takeOver(result.replaced);
        if (result.peer) this.frame(result.peer.instance, { k: 'l', to: result.peer.member, from: token, why: 'closed' }, undefined, 0);
      }
      return;
    }
    c.token = undefined;
    if (!result.ok) {
      if (result.reason === 'full') {
        this.stats.full++;
        // Plain mode: closed at once and without a word, as the tutorial's server does.
        this.finish(c, 'room-full', true, false, c.roomName !== undefined ? `room ${c.roomName} already has two parties` : undefined);
      } else {
        this.finish(c, 'unavailable', true);
      }
      return;
    }
    this.stats.joins++;
    const p: Party = {
      conn: c,
      room: c.room!,
      member: token,
      peer: result.peer,
      pending: [],
      pendingBytes: 0,
      inflightBytes: 0,
      replaced: false,
    };
    c.party = p;
    c.state = 'joined';
    c.activity = this.now;
    this.parties.set(token, p);
    this.rooms.set(p.room, (this.rooms.get(p.room) ?? 0) + 1);
    if (result.replaced) this.takeOver(result.replaced);
    if (c.proto === 'json') {
      this.writeMessage(c, {
        type: 'joined',
        v: PROTOCOL_VERSION,
        room: c.roomName!,
        initiator: !result.peer,
        peer: !!result.peer,
        resumed: !!result.replaced,
        heartbeat: this.limits.heartbeatInterval,
        maxLine: this.limits.maxLine,
      });
      this.due(this.now + this.limits.heartbeatInterval);
    }
    if (this.limits.idleTimeout > 0) this.due(this.now + this.limits.idleTimeout);
    if (result.peer) {
      this.stats.pairs++;
      this.frame(result.peer.instance, { k: 'j', to: result.peer.member, from: token, i: this.instance, r: !!result.replaced }, undefined, 0);
    }
    const early = c.early;
    c.early = [];
    c.earlyBytes = 0;
    for (const item of early) {
      if (c.closing) break;
      this.send(p, item);
    }
  }

  /** The party of the same session elsewhere loses its place to the new connection. */
  private takeOver(old: MemberRef): void {
    if (old.instance === this.instance) {
      const p = this.parties.get(old.member);
      if (p) {
        p.replaced = true;
        this.finish(p.conn, 'replaced', true);
      }
    } else {
      this.frame(old.instance, { k: 'x', to: old.member }, undefined, 0);
    }
  }

  private leave(p: Party, why: PeerLeftReason): void {
    this.parties.delete(p.member);
    const n = (this.rooms.get(p.room) ?? 1) - 1;
    if (n > 0) this.rooms.set(p.room, n);
    else this.rooms.delete(p.room);
    this.out.push({ type: 'leave', room: p.room, member: p.member });
    if (p.peer && !p.replaced) this.frame(p.peer.instance, { k: 'l', to: p.peer.member, from: p.member, why }, undefined, 0);
    // What it sent that is still held dies with it (see the class comment).
    p.pending = [];
    p.pendingBytes = 0;
  }

  // -------------------------------------------------------------------------------------
  // Data between parties

  private send(p: Party, item: Item): void {
    if (!p.peer) {
      if (p.pendingBytes + p.inflightBytes + item.size > this.limits.maxBuffer) {
        this.finish(p.conn, 'buffer-full', true, false, `more than ${this.limits.maxBuffer} bytes are held for a peer that has not joined`);
        return;
      }
      p.pending.push(item);
      p.pendingBytes += item.size;
      return;
    }
    this.deliverTo(p, p.peer, item);
  }

  private deliverTo(p: Party, peer: MemberRef, item: Item): void {
    if (peer.instance === this.instance) {
      const q = this.parties.get(peer.member);
      if (q) this.deliverLocal(q, item);
      return;
    }
    if (p.inflightBytes + item.size > this.limits.maxBuffer) {
      this.finish(p.conn, 'buffer-full', true, false, `more than ${this.limits.maxBuffer} bytes are in flight to the peer's server`);
      return;
    }
    const d = typeof item.data === 'string' ? { d: item.data } : { d: item.data.toString('base64'), b: true };
    this.frame(peer.instance, { k: 'd', to: peer.member, from: p.member, ...d }, p, item.size);
    p.inflightBytes += item.size;
  }

  private deliverLocal(q: Party, item: Item): void {
    this.stats.delivered++;
    this.stats.deliveredBytes += item.size;
    q.conn.activity = this.now;
    this.write(q.conn, item.data);
  }

  // Frames about members, to this instance (handled at once) or another (through a link).
  private frame(instance: string, f: Frame, party: Party | undefined, size: number): void {
    if (instance === this.instance) {
      this.onFrame(f);
      return;
    }
    const l = this.link(instance);
    const s: Sent = { seq: l.nextSeq++, frame: f, party, size };
    if (l.unacked.length === 0) {
      l.firstSent = this.now;
      l.lastSent = this.now;
      this.due(this.now + this.limits.retransmitInterval);
    }
    l.unacked.push(s);
    l.out.push(s);
    this.dirtyLinks.add(l);
  }

  private onFrame(f: Frame): void {
    const p = f.k === 's' ? undefined : this.parties.get(f.to);
    switch (f.k) {
      case 'j': {
        if (!p) {
          // It joined a party that is gone: tell it so.
          this.frame(f.i, { k: 'l', to: f.from, from: f.to, why: 'closed' }, undefined, 0);
          return;
        }
        if (p.peer?.member === f.from) return;
        if (p.peer && !f.r) {
          // p has a peer already: this frame or that pairing is stale (frames from
          // different instances can arrive in any order). The directory decides.
          this.reassert(p, true);
          return;
        }
        // `from` joined p's room (or took over the session of p's peer: r).
        p.peer = { member: f.from, instance: f.i };
        if (p.conn.proto === 'json') this.writeMessage(p.conn, { type: 'peer-joined', resumed: f.r });
        const pending = p.pending;
        p.pending = [];
        p.pendingBytes = 0;
        for (const item of pending) {
          if (p.conn.closing) break;
          this.deliverTo(p, p.peer, item);
        }
        return;
      }
      case 'l':
        if (!p || p.peer?.member !== f.from) return;
        p.peer = undefined;
        if (p.conn.proto === 'json') this.writeMessage(p.conn, { type: 'peer-left', reason: f.why });
        return;
      case 'd':
        if (!p || p.peer?.member !== f.from) return;
        this.deliverLocal(p, { data: f.b ? Buffer.from(f.d, 'base64') : f.d, size: f.b ? (f.d.length * 3) >> 2 : Buffer.byteLength(f.d) });
        return;
      case 's':
        return;
      case 'x':
        if (!p) return;
        p.replaced = true;
        this.finish(p.conn, 'replaced', true);
        return;
    }
  }

  // -------------------------------------------------------------------------------------
  // Links between instances

  private link(instance: string): Link {
    let l = this.links.get(instance);
    if (!l) {
      l = { instance, nextSeq: 1, unacked: [], firstSent: 0, lastSent: 0, epoch: `${this.instance}/${++this.epochSeq}`, recvEpoch: undefined, expect: 1, heard: this.now, ackDue: false, out: [] };
      this.links.set(instance, l);
    }
    return l;
  }

  private flushLinks(): void {
    if (this.dirtyLinks.size === 0) return;
    for (const l of this.dirtyLinks) {
      const packet: Packet = { i: this.instance };
      if (l.out.length) {
        packet.s = l.out[0]!.seq;
        packet.f = l.out.map((s) => s.frame);
        packet.e = l.epoch;
        l.out = [];
      }
      if (l.ackDue && l.recvEpoch !== undefined) {
        packet.a = l.expect - 1;
        packet.ae = l.recvEpoch;
        l.ackDue = false;
      }
      if (packet.f || packet.a !== undefined) {
        this.stats.packetsOut++;
        this.out.push({ type: 'publish', instance: l.instance, packet });
      }
    }
    this.dirtyLinks.clear();
  }

  private onPacket(packet: Packet): void {
    this.stats.packetsIn++;
    const from = packet.i;
    if (typeof from !== 'string' || from === this.instance) return;
    const l = this.link(from);
    l.heard = this.now;
    if (typeof packet.a === 'number' && packet.ae === l.epoch) {
      let n = 0;
      while (n < l.unacked.length && l.unacked[n]!.seq <= packet.a) {
        const s = l.unacked[n]!;
        if (s.party) s.party.inflightBytes = Math.max(0, s.party.inflightBytes - s.size);
        n++;
      }
      if (n) {
        l.unacked.splice(0, n);
        l.firstSent = l.lastSent = this.now;
      }
    }
    if (Array.isArray(packet.f) && typeof packet.s === 'number' && typeof packet.e === 'string') {
      if (packet.e !== l.recvEpoch) {
        // Every epoch starts at sequence 1 (the sender sends again from its oldest
        // unacknowledged frame until it is acknowledged).
        l.expect = 1;
        l.recvEpoch = packet.e;
      }
      for (let k = 0; k < packet.f.length; k++) {
        const seq = packet.s + k;
        if (seq < l.expect) continue; // seen already
        if (seq > l.expect) break; // a gap: wait for the sender to send again from it
        l.expect++;
        try {
          const f = packet.f[k]!;
          // An epoch that a sender opened after giving an earlier one up: frames of that
          // one that never got here (a party leaving, say) are lost. Parties here paired
          // with one there ask the directory whether they still are.
          if (f.k === 's') this.revalidate(from);
          else this.onFrame(f);
        } catch (err) {
          this.log('warn', 'bad frame from another instance', { from, error: (err as Error).message });
        }
      }
      l.ackDue = true;
      this.dirtyLinks.add(l);
    }
  }

  /** Parties here paired with a party on `instance` check their pairing with the directory. */
  private revalidate(instance: string): void {
    for (const p of this.parties.values()) if (p.peer?.instance === instance) this.reassert(p, true);
  }

  /**
   * Another instance is gone (its liveness key expired) or does not answer (frames
   * unacknowledged for linkTimeout): the parties here that had a peer there are told it
   * left, and ask the directory for their place again. The directory drops the entries of
   * an instance that is really gone; if the instance was only cut off, the answer names
   * the same peer and the pair forms again once the bus carries frames.
   */
  private onInstanceDown(instance: string, silent = false): void {
    if (instance === this.instance) return;
    const l = this.links.get(instance);
    if (l && !silent) {
      // Gone for good (its liveness key expired).
      for (const s of l.unacked) if (s.party) s.party.inflightBytes = Math.max(0, s.party.inflightBytes - s.size);
      this.links.delete(instance);
    } else if (l) {
      // The sending half starts again in a new epoch (what was not acknowledged is given
      // up; the other side, seeing the new epoch, checks its pairings). The receiving half
      // stays: if the other instance was only cut off, its frames go on in order.
      for (const s of l.unacked) if (s.party) s.party.inflightBytes = Math.max(0, s.party.inflightBytes - s.size);
      l.unacked = [];
      l.out = [];
      l.nextSeq = 1;
      l.epoch = `${this.instance}/${++this.epochSeq}`;
      // Open the new epoch at once: when frames pass again, the other side sees it and
      // checks its pairings (it may hold a party paired with one that left here).
      this.frame(instance, { k: 's' }, undefined, 0);
    }
    for (const p of [...this.parties.values()]) {
      if (p.peer?.instance !== instance) continue;
      p.peer = undefined;
      if (p.conn.proto === 'json') this.writeMessage(p.conn, { type: 'peer-left', reason: 'server-lost' });
      this.reassert(p, false);
    }
    this.log('warn', 'another instance is gone or does not answer; its parties have left', { instance });
  }

  /**
   * The directory is back (Redis restarted or reconnected): every party here asserts its
   * place again through a join with its own member id, so that a directory that lost its
   * data learns it again, and frames not yet acknowledged go out again at once.
   */
  private onDirectoryUp(): void {
    for (const p of this.parties.values()) this.reassert(p, false);
    for (const l of this.links.values()) this.retransmit(l);
  }

  private reassert(p: Party, trustEmpty: boolean): void {
    this.reasserting.set(p.member, { room: p.room, trustEmpty });
    this.out.push({ type: 'join', token: p.member, request: { room: p.room, member: p.member, instance: this.instance, reassert: true, ...(p.conn.session ? { session: p.conn.session } : {}) } });
  }

  private onReassertResult(member: string, room: RoomKey, trustEmpty: boolean, result: JoinResult): void {
    const p = this.parties.get(member);
    if (!p) {
      // It left while the directory was away: give the place back.
      if (result.ok) this.out.push({ type: 'leave', room, member });
      return;
    }
    if (!result.ok) {
      if (result.reason === 'replaced') {
        // Its session joined again elsewhere (the 'x' telling it so may still be on its way).
        p.replaced = true;
        this.finish(p.conn, 'replaced', true);
      } else if (result.reason === 'full') {
        // Someone else took the place while the directory was away.
        this.stats.full++;
        this.finish(p.conn, 'room-full', true, false, 'the room filled up while the directory was unavailable');
      }
      return;
    }
    if (!result.peer) {
      // Nobody else in the room. After a directory restart that may only mean the peer
      // has not asserted itself yet (it will, and find this party); after a link reset it
      // means the peer left while its leaving could not get through.
      if (trustEmpty && p.peer) {
        p.peer = undefined;
        if (p.conn.proto === 'json') this.writeMessage(p.conn, { type: 'peer-left', reason: 'closed' });
      }
      return;
    }
    if (p.peer?.member !== result.peer.member) {
      p.peer = result.peer;
      this.stats.pairs++;
      if (p.conn.proto === 'json') this.writeMessage(p.conn, { type: 'peer-joined', resumed: false });
      const pending = p.pending;
      p.pending = [];
      p.pendingBytes = 0;
      for (const item of pending) this.deliverTo(p, result.peer, item);
    }
    // Tell the peer again (it may have given this instance up while it was cut off).
    this.frame(result.peer.instance, { k: 'j', to: result.peer.member, from: member, i: this.instance, r: false }, undefined, 0);
  }

  private retransmit(l: Link): void {
    if (l.unacked.length === 0) return;
    this.stats.retransmits++;
    l.lastSent = this.now;
    l.out = l.unacked.slice();
    this.dirtyLinks.add(l);
    this.due(this.now + this.limits.retransmitInterval);
  }

  // -------------------------------------------------------------------------------------
  // Time

  private onTick(): void {
    const L = this.limits;
    const now = this.now;
    // Deadlines set while ticking (due()) count too.
    this.next = Number.POSITIVE_INFINITY;
    let next = Number.POSITIVE_INFINITY;
    const at = (t: number) => {
      if (t < next) next = t;
    };
    for (const c of [...this.conns.values()]) {
      if (c.closing) continue;
      if (c.blockedAt !== undefined) {
        if (now - c.blockedAt >= L.slowReaderTimeout) {
          this.finish(c, 'slow-reader', false, false, `its socket stayed full for ${L.slowReaderTimeout} ms`);
          continue;
        }
        at(c.blockedAt + L.slowReaderTimeout);
      }
      if (c.proto === undefined) {
        if (now - c.openedAt >= L.detectTimeout) {
          // Silent for detectTimeout: a plain party (it may only want to listen).
          this.becomePlain(c);
          at(c.openedAt + L.joinTimeout);
        } else {
          at(c.openedAt + L.detectTimeout);
        }
        continue;
      }
      if (c.state !== 'joined') {
        if (now - c.openedAt >= L.joinTimeout) {
          this.finish(c, c.state === 'joining' ? 'unavailable' : 'join-timeout', true, false, c.state === 'joining' ? 'the room directory did not answer in time' : `no join within ${L.joinTimeout} ms`);
          continue;
        }
        at(c.openedAt + L.joinTimeout);
        continue;
      }
      if (L.idleTimeout > 0) {
        if (now - c.activity >= L.idleTimeout) {
          this.finish(c, 'idle-timeout', true, false, `no messages for ${L.idleTimeout} ms`);
          continue;
        }
        at(c.activity + L.idleTimeout);
      }
      if (c.proto === 'json') {
        if (now - c.lastRecv >= L.heartbeatTimeout) {
          this.finish(c, 'heartbeat-timeout', true, false, `nothing received for ${L.heartbeatTimeout} ms`);
          continue;
        }
        at(c.lastRecv + L.heartbeatTimeout);
        if (L.heartbeatInterval > 0) {
          if (now - c.lastSend >= L.heartbeatInterval) this.writeMessage(c, { type: 'ping' });
          at(c.lastSend + L.heartbeatInterval);
        }
      }
    }
    for (const l of [...this.links.values()]) {
      if (l.unacked.length === 0) continue;
      if (now - l.firstSent >= L.linkTimeout) {
        this.onInstanceDown(l.instance, true);
        continue;
      }
      if (now - l.lastSent >= L.retransmitInterval) this.retransmit(l);
      at(l.lastSent + L.retransmitInterval);
      at(l.firstSent + L.linkTimeout);
    }
    // Links to instances not heard from for an hour, with nothing to send, are dropped.
    for (const [i, l] of this.links) if (l.unacked.length === 0 && now - l.heard > 3_600_000) this.links.delete(i);
    this.next = Math.min(this.next, next);
  }

  // -------------------------------------------------------------------------------------

  /** Every connection gets `shutdown` (JSON) and is closed; peers elsewhere are told. */
  private onShutdown(): void {
    this.shuttingDown = true;
    for (const c of [...this.conns.values()]) this.finish(c, 'shutdown', true);
  }

  private log(level: 'debug' | 'info' | 'warn', msg: string, fields?: Record<string, unknown>): void {
    this.out.push({ type: 'log', level, msg, fields });
  }
}
