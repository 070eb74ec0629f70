import { isIP } from 'node:net';
import { SignalProtocolError } from '../errors.js';

/**
 * The JSON protocol of signalserver: one JSON object a line (newline-delimited JSON, UTF-8),
 * each with a `type`. Every message has a fixed set of fields; a field that is missing,
 * of the wrong kind, out of range or not in the schema is an error that names it
 * (SignalProtocolError with code INVALID_MESSAGE and `field`). The server re-encodes
 * what it relays from the validated value, so a peer only ever receives the fields below.
 *
 * Client to server: join (first line), credentials, candidate, end-of-candidates, restart,
 * app, bye, ping, pong. Server to client: joined, peer-joined, peer-left, error, ping, pong,
 * and the peer's credentials / candidate / end-of-candidates / restart / app.
 */

export const PROTOCOL_VERSION = 1;

/** Room names: 1-64 characters from the URL-safe set. */
export const ROOM_PATTERN = /^[A-Za-z0-9._~-]{1,64}$/;
/** Session tokens (chosen by the client, kept secret): 16-64 base64url characters. */
export const SESSION_PATTERN = /^[A-Za-z0-9_-]{16,64}$/;
/** RFC 8839 section 5.1: ice-char = ALPHA / DIGIT / "+" / "/". */
const ICE_CHARS = /^[A-Za-z0-9+/]+$/;

export interface JoinMessage {
  type: 'join';
  /** Protocol version; 1 (the default). */
  v?: number;
  room: string;
  /** A secret the client keeps across reconnects: a join with the session of a party still in the room takes its place (the old connection is closed). */
  session?: string;
}

/** RFC 8445 section 5.3 / RFC 8839 section 5.4: the ICE username fragment and password. */
export interface CredentialsMessage {
  type: 'credentials';
  ufrag: string;
  pwd: string;
}

export type CandidateType = 'host' | 'srflx' | 'prflx' | 'relay';

/** One ICE candidate, the fields of RFC 8839 section 5.1's candidate-attribute. */
export interface CandidateMessage {
  type: 'candidate';
  foundation: string;
  component: number;
  transport: 'udp' | 'tcp';
  priority: number;
  address: string;
  port: number;
  candidateType: CandidateType;
  relatedAddress?: string;
  relatedPort?: number;
  /** RFC 6544 section 4.5: only for TCP candidates. */
  tcpType?: 'active' | 'passive' | 'so';
  /** The ufrag of the credentials this candidate belongs to (after a restart). */
  ufrag?: string;
}

/** RFC 8838 section 8.2: no more candidates for this generation. */
export interface EndOfCandidatesMessage {
  type: 'end-of-candidates';
  ufrag?: string;
}

/** RFC 8445 section 9: an ICE restart, with the new credentials. */
export interface RestartMessage {
  type: 'restart';
  ufrag: string;
  pwd: string;
}

/** Anything else the application sends its peer (the demo's NAT report, say): one JSON value. */
export interface AppMessage {
  type: 'app';
  data: unknown;
}

export interface ByeMessage {
  type: 'bye';
}
export interface PingMessage {
  type: 'ping';
}
export interface PongMessage {
  type: 'pong';
}

/** What one peer sends the other through the server. */
export type PeerMessage = CredentialsMessage | CandidateMessage | EndOfCandidatesMessage | RestartMessage | AppMessage;
export type ClientMessage = JoinMessage | PeerMessage | ByeMessage | PingMessage | PongMessage;

export interface JoinedMessage {
  type: 'joined';
  v: number;
  room: string;
  /** True for the party that was first in the room (the ICE controlling agent, as AppRTC's is_initiator). */
  initiator: boolean;
  /** Whether the other party is already there. */
  peer: boolean;
  /** True when this join took over a session that was still in the room. */
  resumed: boolean;
  /** The server pings when it has sent nothing for this long (ms); answer with pong. */
  heartbeat: number;
  /** Longest line the server accepts, in bytes. */
  maxLine: number;
}

export interface PeerJoinedMessage {
  type: 'peer-joined';
  resumed: boolean;
}

export type PeerLeftReason = 'bye' | 'closed' | 'timeout' | 'error' | 'server-lost' | 'shutdown';

export interface PeerLeftMessage {
  type: 'peer-left';
  reason: PeerLeftReason;
}

export type ErrorCode =
  | 'invalid-json'
  | 'invalid-message'
  | 'unsupported-version'
  | 'not-joined'
  | 'already-joined'
  | 'room-full'
  | 'too-many-rooms'
  | 'line-too-long'
  | 'buffer-full'
  | 'too-many-errors'
  | 'join-timeout'
  | 'idle-timeout'
  | 'heartbeat-timeout'
  | 'slow-reader'
  | 'replaced'
  | 'unavailable'
  | 'shutdown';

export const ERROR_CODES: readonly ErrorCode[] = [
  'invalid-json',
  'invalid-message',
  'unsupported-version',
  'not-joined',
  'already-joined',
  'room-full',
  'too-many-rooms',
  'line-too-long',
  'buffer-full',
  'too-many-errors',
  'join-timeout',
  'idle-timeout',
  'heartbeat-timeout',
  'slow-reader',
  'replaced',
  'unavailable',
  'shutdown',
];

export interface ErrorMessage {
  type: 'error';
  code: ErrorCode;
  /** For people. */
  reason: string;
  /** True when the server closes the connection after it. */
  fatal: boolean;
}

export type ServerMessage = JoinedMessage | PeerJoinedMessage | PeerLeftMessage | ErrorMessage | PingMessage | PongMessage | PeerMessage;

// ---------------------------------------------------------------------------------------
// Validation

type Obj = Record<string, unknown>;

function bad(field: string, message: string): never {
  throw new SignalProtocolError('INVALID_MESSAGE', `${field}: ${message}`, field);
}

function onlyFields(m: Obj, type: string, allowed: readonly string[]): void {
  for (const k of Object.keys(m)) if (k !== 'type' && !allowed.includes(k)) bad(k, `not a field of a ${type} message`);
}

function str(m: Obj, f: string, opt: { min?: number; max: number; pattern?: RegExp; what?: string }, required = true): string | undefined {
  const v = m[f];
  if (v === undefined) {
    if (required) bad(f, 'missing');
    return undefined;
  }
  if (typeof v !== 'string') bad(f, `must be a string, got ${kind(v)}`);
  if (v.length < (opt.min ?? 1)) bad(f, opt.min && opt.min > 1 ? `must have at least ${opt.min} characters` : 'must not be empty');
  if (v.length > opt.max) bad(f, `must have at most ${opt.max} characters, got ${v.length}`);
  if (opt.pattern && !opt.pattern.test(v)) bad(f, `not ${opt.what ?? `of the form ${opt.pattern}`}: ${JSON.stringify(v.slice(0, 80))}`);
  return v;
}

function int(m: Obj, f: string, min: number, max: number, required = true): number | undefined {
  const v = m[f];
  if (v === undefined) {
    if (required) bad(f, 'missing');
    return undefined;
  }
  if (typeof v !== 'number' || !Number.isInteger(v)) bad(f, `must be a whole number, got ${kind(v)}`);
  if (v < min || v > max) bad(f, `must be between ${min} and ${max}, got ${v}`);
  return v;
}

function bool(m: Obj, f: string): boolean {
  const v = m[f];
  if (typeof v !== 'boolean') bad(f, v === undefined ? 'missing' : `must be true or false, got ${kind(v)}`);
  return v;
}

function oneOf<T extends string>(m: Obj, f: string, values: readonly T[], required = true): T | undefined {
  const v = m[f];
  if (v === undefined) {
    if (required) bad(f, 'missing');
    return undefined;
  }
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) bad(f, `must be one of ${values.join(', ')}, got ${JSON.stringify(v)}`);
  return v as T;
}

function kind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.slice(0, 40))}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/** An IPv4 or IPv6 literal, or a host name (RFC 8839 allows an FQDN; browsers send mDNS `<uuid>.local` names). */
function address(m: Obj, f: string, required = true): string | undefined {
  const v = str(m, f, { max: 253 }, required);
  if (v === undefined) return undefined;
  if (isIP(v)) return v;
  // RFC 1123 host name: labels of letters, digits and hyphens, 1-63 characters each.
  if (!/^(?=.{1,253}$)([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?$/.test(v)) {
    bad(f, `not an IP address or host name: ${JSON.stringify(v.slice(0, 80))}`);
  }
  return v;
}

const UFRAG = { min: 4, max: 256, pattern: ICE_CHARS, what: 'ice-chars (letters, digits, + and /; RFC 8839 section 5.4)' };
const PWD = { min: 22, max: 256, pattern: ICE_CHARS, what: 'ice-chars (letters, digits, + and /; RFC 8839 section 5.4)' };

function credentials(m: Obj, type: 'credentials' | 'restart'): CredentialsMessage | RestartMessage {
  onlyFields(m, type, ['ufrag', 'pwd']);
  // RFC 8445 section 5.3: at least 24 bits of randomness in the ufrag and 128 in the
  // password; RFC 8839 section 5.4 gives their lengths (4-256 and 22-256 ice-chars).
  return { type, ufrag: str(m, 'ufrag', UFRAG)!, pwd: str(m, 'pwd', PWD)! } as CredentialsMessage | RestartMessage;
}

function candidate(m: Obj): CandidateMessage {
  onlyFields(m, 'candidate', ['foundation', 'component', 'transport', 'priority', 'address', 'port', 'candidateType', 'relatedAddress', 'relatedPort', 'tcpType', 'ufrag']);
  // RFC 8839 section 5.1: foundation = 1*32ice-char; component-id = 1*3DIGIT (1-256 in
  // RFC 8445 section 5.1.1.1's terms); priority: RFC 8445 section 5.1.2.1, 1 to 2^31 - 1.
  const c: CandidateMessage = {
    type: 'candidate',
    foundation: str(m, 'foundation', { max: 32, pattern: ICE_CHARS, what: 'ice-chars (RFC 8839 section 5.1)' })!,
    component: int(m, 'component', 1, 256)!,
    transport: oneOf(m, 'transport', ['udp', 'tcp'] as const)!,
    priority: int(m, 'priority', 1, 2 ** 31 - 1)!,
    address: address(m, 'address')!,
    port: int(m, 'port', 0, 65535)!,
    candidateType: oneOf(m, 'candidateType', ['host', 'srflx', 'prflx', 'relay'] as const)!,
  };
  const raddr = address(m, 'relatedAddress', false);
  const rport = int(m, 'relatedPort', 0, 65535, false);
  if ((raddr === undefined) !== (rport === undefined)) bad(raddr === undefined ? 'relatedAddress' : 'relatedPort', 'relatedAddress and relatedPort go together');
  if (raddr !== undefined) {
    // RFC 8839 section 5.1: rel-addr and rel-port describe reflexive and relayed candidates.
    if (c.candidateType === 'host') bad('relatedAddress', 'a host candidate has no related address');
    c.relatedAddress = raddr;
    c.relatedPort = rport;
  }
  const tcpType = oneOf(m, 'tcpType', ['active', 'passive', 'so'] as const, false);
  if (tcpType !== undefined) {
    if (c.transport !== 'tcp') bad('tcpType', 'only TCP candidates have a tcpType (RFC 6544 section 4.5)');
    c.tcpType = tcpType;
  } else if (c.transport === 'tcp') {
    bad('tcpType', 'missing: a TCP candidate needs one (RFC 6544 section 4.5)');
  }
  const ufrag = str(m, 'ufrag', UFRAG, false);
  if (ufrag !== undefined) c.ufrag = ufrag;
  return c;
}

/** Parses one line (without its newline) into an object; throws INVALID_JSON. */
function object(line: string): Obj {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch (err) {
    throw new SignalProtocolError('INVALID_JSON', `not JSON: ${(err as Error).message}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new SignalProtocolError('INVALID_JSON', `a message is a JSON object, got ${kind(v)}`);
  const o = v as Obj;
  if (typeof o.type !== 'string') bad('type', o.type === undefined ? 'missing' : `must be a string, got ${kind(o.type)}`);
  return o;
}

/** Validates a message a peer sends to the other peer (also what a client receives). */
function peerMessage(m: Obj): PeerMessage | undefined {
  switch (m.type) {
    case 'credentials':
      return credentials(m, 'credentials');
    case 'restart':
      return credentials(m, 'restart');
    case 'candidate':
      return candidate(m);
    case 'end-of-candidates': {
      onlyFields(m, 'end-of-candidates', ['ufrag']);
      const ufrag = str(m, 'ufrag', UFRAG, false);
      return ufrag === undefined ? { type: 'end-of-candidates' } : { type: 'end-of-candidates', ufrag };
    }
    case 'app':
      onlyFields(m, 'app', ['data']);
      if (!('data' in m)) bad('data', 'missing');
      return { type: 'app', data: m.data };
    default:
      return undefined;
  }
}

function empty<T extends string>(m: Obj, type: T): { type: T } {
  onlyFields(m, type, []);
  return { type };
}

/** Parses and validates one line a client sent (without the newline). */
export function parseClientMessage(line: string): ClientMessage {
  const m = object(line);
  switch (m.type) {
    case 'join': {
      onlyFields(m, 'join', ['v', 'room', 'session']);
      const v = int(m, 'v', 1, 1000, false);
      if (v !== undefined && v !== PROTOCOL_VERSION) {
        throw new SignalProtocolError('UNSUPPORTED_VERSION', `protocol version ${v} is not supported; this server speaks ${PROTOCOL_VERSION}`, 'v');
      }
      const room = str(m, 'room', { max: 64, pattern: ROOM_PATTERN, what: '1-64 letters, digits, ".", "_", "~" or "-"' })!;
      const session = str(m, 'session', { min: 16, max: 64, pattern: SESSION_PATTERN, what: '16-64 base64url characters' }, false);
      return session === undefined ? { type: 'join', room } : { type: 'join', room, session };
    }
    case 'bye':
    case 'ping':
    case 'pong':
      return empty(m, m.type);
    default: {
      const p = peerMessage(m);
      if (!p) bad('type', `unknown message type ${JSON.stringify(String(m.type).slice(0, 40))}`);
      return p;
    }
  }
}

/** Parses and validates one line the server sent (the client library's side). */
export function parseServerMessage(line: string): ServerMessage {
  const m = object(line);
  switch (m.type) {
    case 'joined':
      onlyFields(m, 'joined', ['v', 'room', 'initiator', 'peer', 'resumed', 'heartbeat', 'maxLine']);
      return {
        type: 'joined',
        v: int(m, 'v', 1, 1000)!,
        room: str(m, 'room', { max: 64, pattern: ROOM_PATTERN })!,
        initiator: bool(m, 'initiator'),
        peer: bool(m, 'peer'),
        resumed: bool(m, 'resumed'),
        heartbeat: int(m, 'heartbeat', 0, 2 ** 31)!,
        maxLine: int(m, 'maxLine', 1, 2 ** 31)!,
      };
    case 'peer-joined':
      onlyFields(m, 'peer-joined', ['resumed']);
      return { type: 'peer-joined', resumed: bool(m, 'resumed') };
    case 'peer-left':
      onlyFields(m, 'peer-left', ['reason']);
      return { type: 'peer-left', reason: oneOf(m, 'reason', ['bye', 'closed', 'timeout', 'error', 'server-lost', 'shutdown'] as const)! };
    case 'error':
      onlyFields(m, 'error', ['code', 'reason', 'fatal']);
      return { type: 'error', code: oneOf(m, 'code', ERROR_CODES)!, reason: str(m, 'reason', { max: 1000 })!, fatal: bool(m, 'fatal') };
    case 'ping':
    case 'pong':
      return empty(m, m.type);
    default: {
      const p = peerMessage(m);
      if (!p) bad('type', `unknown message type ${JSON.stringify(String(m.type).slice(0, 40))}`);
      return p;
    }
  }
}

/** One message as a line (with its newline). */
export function encodeMessage(m: ClientMessage | ServerMessage): string {
  return `${JSON.stringify(m)}\n`;
}

/** Checks a message before sending it (client library): the same rules the server applies. */
export function validatePeerMessage(m: PeerMessage): PeerMessage {
  const p = peerMessage(JSON.parse(JSON.stringify(m)) as Obj);
  if (!p) bad('type', `not a message for the peer: ${JSON.stringify(String((m as { type?: unknown }).type))}`);
  return p;
}
