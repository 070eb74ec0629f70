import { ipFamily } from '@natkit/stun';
import { type Candidate, type CandidateType, TYPE_PREFERENCE, candidateFoundation, candidatePriority } from '../candidate.js';
import { CandidateLineError } from './errors.js';
import { type IceParameters, validateIceParameters } from './parameters.js';

/**
 * The candidate line of the libjingle STUN tutorial (../shared/reference, OnCandidatesReady):
 *
 *   asprintf(&line, "%s %d %s %f %s %s %s\n", address, port, protocol, preference, type,
 *            username, password)
 *
 * read back with the same format through sscanf into char[100] buffers. natkit peers write
 * and read it so that they can talk through a pipe made for the tutorial's clients (its
 * signalling server forwards these lines between two parties).
 *
 * Mapping to ICE (RFC 8445), both ways:
 * - type: `local` is host, `stun` is srflx, `relay` is relay. An ICE prflx candidate is
 *   written as `stun` (the tutorial has no peer-reflexive type; agents do not signal them).
 * - preference (a float 0 to 1) carries the candidate's RFC 8445 local preference:
 *   preference = localPreference / 65535, written with six decimals as %f does; read back,
 *   localPreference = round(preference * 65535), which is exact for every 16-bit value
 *   (the six decimals are finer than 1/65535). The type preference is the RFC 8445
 *   recommended one for the type (host 126, srflx 100, relay 0) and the component is 1
 *   (the tutorial's single "rtp" channel), so for candidates whose priority follows RFC
 *   8445 section 5.1.2.1 with those values, priority -> preference -> priority is exact.
 * - username and password are the ICE session's ufrag and pwd (RFC 8445 5.3), repeated on
 *   every line (the tutorial has no session-level fields). A receiver takes them as the
 *   peer's parameters; a line with different ones means the peer restarted.
 * - the foundation, which the line lacks, is derived from type, address and protocol
 *   (RFC 8445 5.1.1.3 inputs as far as the line has them): candidates with different
 *   addresses get different foundations, which only means fewer pairs are frozen together.
 */

export type JingleCandidateType = 'local' | 'stun' | 'relay';

export interface JingleCandidate {
  /** An IP address as libjingle's IPAsString writes it (no brackets for IPv6). */
  address: string;
  port: number;
  /** 'udp', 'tcp' or 'ssltcp' in libjingle; any token here. */
  protocol: string;
  /** 0 to 1; written with six decimals. */
  preference: number;
  type: JingleCandidateType;
  username: string;
  password: string;
}

const JINGLE_TYPES: readonly JingleCandidateType[] = ['local', 'stun', 'relay'];
/** The tutorial reads every %s into char[100]: 99 characters and the terminator. */
export const JINGLE_MAX_FIELD = 99;
const TOKEN = /^[A-Za-z0-9\-.!%*_+`'~]+$/;
const PREFERENCE = /^(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)$/;

/** Parses one tutorial line (the trailing "\n" may be there or not). Throws CandidateLineError. */
export function parseJingleLine(line: string): JingleCandidate {
  if (typeof line !== 'string') throw new CandidateLineError('EMPTY', 'line', 'a candidate line must be a string');
  if (line.length > 7 * (JINGLE_MAX_FIELD + 1) + 2) throw new CandidateLineError('TOO_LONG', 'line', `a tutorial line of ${line.length} characters is too long`);
  let body = line;
  if (body.endsWith('\r\n')) body = body.slice(0, -2);
  else if (body.endsWith('\n')) body = body.slice(0, -1);
  for (let i = 0; i < body.length; i++) {
    const c = body.charCodeAt(i);
    if (c !== 0x20 && (c < 0x21 || c > 0x7e)) {
      throw new CandidateLineError('BAD_CHARACTER', 'line', `character U+${c.toString(16).padStart(4, '0')} is not allowed in a tutorial line`, i);
    }
  }
  if (body.trim() === '') throw new CandidateLineError('EMPTY', 'line', 'the line is empty');
  const fields: Array<{ text: string; column: number }> = [];
  let pos = 0;
  while (pos <= body.length) {
    let next = body.indexOf(' ', pos);
    if (next < 0) next = body.length;
    if (next === pos) throw new CandidateLineError('BAD_SEPARATOR', 'line', 'fields must be separated by exactly one space', pos);
    fields.push({ text: body.slice(pos, next), column: pos });
    pos = next + 1;
  }
  if (fields.length !== 7) {
    throw new CandidateLineError('BAD_FIELD_COUNT', 'line', `a tutorial line has 7 fields (address port protocol preference type username password), this one has ${fields.length}`);
  }
  for (const f of fields) {
    if (f.text.length > JINGLE_MAX_FIELD) throw new CandidateLineError('TOO_LONG', 'field', `a field longer than ${JINGLE_MAX_FIELD} characters overflows the tutorial's buffers`, f.column);
  }
  const [fAddress, fPort, fProtocol, fPref, fType, fUser, fPass] = fields as [typeof fields[0], typeof fields[0], typeof fields[0], typeof fields[0], typeof fields[0], typeof fields[0], typeof fields[0]];
  if (!ipFamily(fAddress.text) || fAddress.text.includes('%')) {
    throw new CandidateLineError('BAD_ADDRESS', 'address', `"${fAddress.text}" is not an IP address`, fAddress.column);
  }
  if (!/^[0-9]{1,5}$/.test(fPort.text) || Number(fPort.text) > 65535) {
    throw new CandidateLineError('BAD_PORT', 'port', `port "${fPort.text}" is not an integer from 0 to 65535`, fPort.column);
  }
  if (!TOKEN.test(fProtocol.text)) throw new CandidateLineError('BAD_TRANSPORT', 'protocol', `protocol "${fProtocol.text}" is not a token`, fProtocol.column);
  const preference = Number(fPref.text);
  if (!PREFERENCE.test(fPref.text) || !(preference >= 0 && preference <= 1)) {
    throw new CandidateLineError('BAD_PREFERENCE', 'preference', `preference "${fPref.text}" is not a decimal number from 0 to 1`, fPref.column);
  }
  const type = fType.text as JingleCandidateType;
  if (!JINGLE_TYPES.includes(type)) throw new CandidateLineError('BAD_TYPE', 'type', `type "${fType.text}" is not local, stun or relay`, fType.column);
  return {
    address: fAddress.text,
    port: Number(fPort.text),
    protocol: fProtocol.text.toLowerCase(),
    preference,
    type,
    username: fUser.text,
    password: fPass.text,
  };
}

/** Writes a tutorial line, "\n" included, as the tutorial's "%s %d %s %f %s %s %s\n" does. */
export function formatJingleLine(c: JingleCandidate): string {
  if (typeof c.address !== 'string' || !ipFamily(c.address) || c.address.includes('%')) {
    throw new CandidateLineError('BAD_ADDRESS', 'address', `${JSON.stringify(c.address)} is not an IP address`);
  }
  if (!Number.isInteger(c.port) || c.port < 0 || c.port > 65535) throw new CandidateLineError('BAD_PORT', 'port', `port ${c.port} is not an integer from 0 to 65535`);
  if (typeof c.protocol !== 'string' || !TOKEN.test(c.protocol)) throw new CandidateLineError('BAD_TRANSPORT', 'protocol', `protocol ${JSON.stringify(c.protocol)} is not a token`);
  if (typeof c.preference !== 'number' || !(c.preference >= 0 && c.preference <= 1)) {
    throw new CandidateLineError('BAD_PREFERENCE', 'preference', `preference ${c.preference} is not a number from 0 to 1`);
  }
  if (!JINGLE_TYPES.includes(c.type)) throw new CandidateLineError('BAD_TYPE', 'type', `type ${JSON.stringify(c.type)} is not local, stun or relay`);
  for (const [field, v] of [['username', c.username], ['password', c.password]] as const) {
    // %s reads up to white space: a value must be visible ASCII, and fit char[100].
    if (typeof v !== 'string' || !/^[\x21-\x7e]+$/.test(v)) throw new CandidateLineError('BAD_CREDENTIAL', field, `${field} must be 1 or more visible ASCII characters`);
    if (v.length > JINGLE_MAX_FIELD) throw new CandidateLineError('BAD_CREDENTIAL', field, `${field} of ${v.length} characters overflows the tutorial's ${JINGLE_MAX_FIELD + 1}-byte buffer`);
  }
  // %f: six digits after the point.
  return `${c.address} ${c.port} ${c.protocol.toLowerCase()} ${c.preference.toFixed(6)} ${c.type} ${c.username} ${c.password}\n`;
}

const TO_ICE: Record<JingleCandidateType, CandidateType> = { local: 'host', stun: 'srflx', relay: 'relay' };
const FROM_ICE: Record<CandidateType, JingleCandidateType> = { host: 'local', srflx: 'stun', prflx: 'stun', relay: 'relay' };

/**
 * A tutorial candidate as an ICE candidate (component 1) and the peer's ICE parameters.
 * Throws CandidateLineError (BAD_CREDENTIAL) if username/password are not a valid
 * ice-ufrag / ice-pwd.
 */
export function jingleToIce(j: JingleCandidate): { candidate: Candidate; parameters: IceParameters } {
  const parameters = { ufrag: j.username, pwd: j.password };
  validateIceParameters(parameters);
  const type = TO_ICE[j.type];
  if (!type) throw new CandidateLineError('BAD_TYPE', 'type', `type ${JSON.stringify(j.type)} is not local, stun or relay`);
  if (!(j.preference >= 0 && j.preference <= 1)) throw new CandidateLineError('BAD_PREFERENCE', 'preference', `preference ${j.preference} is not from 0 to 1`);
  const localPreference = Math.round(j.preference * 65535);
  const transport = j.protocol.toLowerCase();
  const candidate: Candidate = {
    foundation: candidateFoundation(type, j.address, undefined, transport),
    component: 1,
    transport,
    priority: candidatePriority(TYPE_PREFERENCE[type], localPreference, 1),
    address: j.address,
    port: j.port,
    type,
  };
  return { candidate, parameters };
}

/** An ICE candidate (with its session's parameters) as a tutorial candidate. */
export function iceToJingle(c: Candidate, parameters: { ufrag: string; pwd: string }): JingleCandidate {
  const type = FROM_ICE[c.type];
  if (!type) throw new CandidateLineError('BAD_TYPE', 'type', `candidate type ${JSON.stringify(c.type)} is not host, srflx, prflx or relay`);
  if (!ipFamily(c.address)) {
    throw new CandidateLineError('BAD_ADDRESS', 'address', `${JSON.stringify(c.address)} is not an IP address (the tutorial's line carries IP addresses only)`);
  }
  const localPreference = (c.priority >>> 8) & 0xffff;
  return {
    address: c.address,
    port: c.port,
    protocol: c.transport.toLowerCase(),
    preference: Math.round((localPreference / 65535) * 1e6) / 1e6,
    type,
    username: parameters.ufrag,
    password: parameters.pwd,
  };
}
