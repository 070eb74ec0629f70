import { parseIPv4Into, parseIPv6Into } from '@natkit/stun';
import type { Candidate, CandidateType, TcpType } from '../candidate.js';
import { CandidateLineError } from './errors.js';

/**
 * ICE candidate lines, RFC 8839 section 5.1:
 *
 *   candidate-attribute = "candidate" ":" foundation SP component-id SP transport SP
 *                         priority SP connection-address SP port SP cand-type
 *                         [SP rel-addr] [SP rel-port] *(SP cand-extension)
 *
 * as SDP carries them (`a=candidate:...`), as browsers hand them to JavaScript
 * (`candidate:...`, RTCIceCandidate.candidate) and bare (`1 1 udp ...`). Parsing is strict:
 * every field is checked against its grammar and range, and anything else is a
 * CandidateLineError that names the field and its column. Extensions (generation, ufrag,
 * network-id, network-cost, ...) are kept in the order they came, so a parsed line is
 * written back as it was read.
 */

/** Longer lines are refused before they are looked at (real ones are under 300 characters). */
export const MAX_LINE_LENGTH = 2048;

/** RFC 8839 section 5.1: priority is an integer from 1 to 2^31 - 1. */
export const MAX_CANDIDATE_PRIORITY = 0x7fffffff;

const CANDIDATE_TYPES: readonly CandidateType[] = ['host', 'srflx', 'prflx', 'relay'];
const TCP_TYPES: readonly TcpType[] = ['active', 'passive', 'so'];

/** RFC 8839 section 5.1: ice-char = ALPHA / DIGIT / "+" / "/". */
const ICE_CHARS = /^[A-Za-z0-9+/]+$/;
/** RFC 3261 token (the transport and extension names). */
const TOKEN = /^[A-Za-z0-9\-.!%*_+`'~]+$/;
const DIGITS = /^[0-9]+$/;

/** True for a non-empty string of ice-chars (RFC 8839 section 5.1) of at most `max` characters. */
export function isIceChars(s: string, max = Infinity): boolean {
  return s.length > 0 && s.length <= max && ICE_CHARS.test(s);
}

/**
 * RFC 4566 connection-address as RFC 8839 uses it: an IPv4 address, an IPv6 address (no
 * brackets, no zone) or a fully qualified domain name (a browser's `<uuid>.local` mDNS
 * name, RFC 8839 section 5.1 and draft-ietf-mmusic-mdns-ice-candidates).
 */
export function addressKind(address: string): 'IPv4' | 'IPv6' | 'fqdn' | undefined {
  const scratch = new Uint8Array(16);
  if (parseIPv4Into(address, scratch, 0)) return 'IPv4';
  if (address.includes(':')) return !address.includes('%') && parseIPv6Into(address, scratch, 0) ? 'IPv6' : undefined;
  // A name: labels of letters, digits and hyphens (RFC 1123 section 2.1), not all digits
  // (that would be a malformed IPv4 address such as 1.2.3.256).
  if (address.length > 253 || /^[0-9.]+$/.test(address)) return undefined;
  const labels = address.endsWith('.') ? address.slice(0, -1).split('.') : address.split('.');
  for (const l of labels) {
    if (l.length === 0 || l.length > 63 || !/^[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?$/.test(l)) return undefined;
  }
  return 'fqdn';
}

/** True if the line is the end-of-candidates indication (RFC 8840 section 4.1, RFC 8838 section 13). */
export function isEndOfCandidates(line: string): boolean {
  const s = stripLineEnd(line).trim();
  return s === 'a=end-of-candidates' || s === 'end-of-candidates';
}

function stripLineEnd(line: string): string {
  if (line.endsWith('\r\n')) return line.slice(0, -2);
  if (line.endsWith('\n') || line.endsWith('\r')) return line.slice(0, -1);
  return line;
}

interface Field {
  text: string;
  column: number;
}

function parseUint(f: Field, maxDigits: number, min: number, max: number): number | undefined {
  if (f.text.length > maxDigits || !DIGITS.test(f.text)) return undefined;
  const n = Number(f.text);
  return n >= min && n <= max ? n : undefined;
}

/**
 * Parses one candidate line: `a=candidate:...`, `candidate:...` or the bare attribute value
 * (`1 1 udp 2130706431 192.0.2.1 5000 typ host`), with or without a trailing CRLF. The
 * transport is returned in lower case; addresses as written. Throws CandidateLineError.
 */
export function parseCandidateLine(line: string): Candidate {
  if (typeof line !== 'string') throw new CandidateLineError('EMPTY', 'line', 'a candidate line must be a string');
  if (line.length > MAX_LINE_LENGTH + 2) {
    throw new CandidateLineError('TOO_LONG', 'line', `a candidate line of ${line.length} characters is longer than ${MAX_LINE_LENGTH}`);
  }
  const body = stripLineEnd(line);
  // Only printable ASCII and spaces: SDP lines are US-ASCII apart from a few free-text
  // fields, and every field of a candidate is built from VCHARs (RFC 5234).
  for (let i = 0; i < body.length; i++) {
    const c = body.charCodeAt(i);
    if (c !== 0x20 && (c < 0x21 || c > 0x7e)) {
      throw new CandidateLineError('BAD_CHARACTER', 'line', `character U+${c.toString(16).padStart(4, '0')} is not allowed in a candidate line`, i);
    }
  }
  let start = 0;
  let end = body.length;
  while (start < end && body.charCodeAt(start) === 0x20) start++;
  while (end > start && body.charCodeAt(end - 1) === 0x20) end--;
  if (start === end) throw new CandidateLineError('EMPTY', 'line', 'the candidate line is empty');

  // Prefixes. SDP attribute names are case-sensitive (RFC 8866 section 5.13); browsers
  // write them in lower case.
  if (body.startsWith('a=', start)) {
    if (!body.startsWith('a=candidate:', start)) {
      throw new CandidateLineError('BAD_PREFIX', 'prefix', `"${body.slice(start, Math.min(end, start + 16))}" is not an a=candidate: line`, start);
    }
    start += 'a=candidate:'.length;
  } else if (body.startsWith('candidate:', start)) {
    start += 'candidate:'.length;
  }
  if (start >= end) throw new CandidateLineError('MISSING_FIELD', 'foundation', 'the line ends before the foundation', start);

  // Fields separated by exactly one space.
  const fields: Field[] = [];
  let pos = start;
  while (pos <= end) {
    let next = body.indexOf(' ', pos);
    if (next < 0 || next > end) next = end;
    if (next === pos) {
      throw new CandidateLineError('BAD_SEPARATOR', 'line', 'fields must be separated by exactly one space', pos);
    }
    fields.push({ text: body.slice(pos, next), column: pos });
    pos = next + 1;
  }

  let i = 0;
  const need = (name: string): Field => {
    const f = fields[i++];
    if (!f) throw new CandidateLineError('MISSING_FIELD', name, `the line ends before the ${name}`, end);
    return f;
  };

  const fFoundation = need('foundation');
  if (!isIceChars(fFoundation.text, 32)) {
    throw new CandidateLineError('BAD_FOUNDATION', 'foundation', `foundation "${clip(fFoundation.text)}" is not 1 to 32 ice-chars (letters, digits, "+", "/")`, fFoundation.column);
  }
  const fComponent = need('component');
  const component = parseUint(fComponent, 3, 1, 256);
  if (component === undefined) {
    throw new CandidateLineError('BAD_COMPONENT', 'component', `component "${clip(fComponent.text)}" is not an integer from 1 to 256`, fComponent.column);
  }
  const fTransport = need('transport');
  if (!TOKEN.test(fTransport.text)) {
    throw new CandidateLineError('BAD_TRANSPORT', 'transport', `transport "${clip(fTransport.text)}" is not a token`, fTransport.column);
  }
  const fPriority = need('priority');
  const priority = parseUint(fPriority, 10, 1, MAX_CANDIDATE_PRIORITY);
  if (priority === undefined) {
    throw new CandidateLineError('BAD_PRIORITY', 'priority', `priority "${clip(fPriority.text)}" is not an integer from 1 to ${MAX_CANDIDATE_PRIORITY}`, fPriority.column);
  }
  const fAddress = need('address');
  if (!addressKind(fAddress.text)) {
    throw new CandidateLineError('BAD_ADDRESS', 'address', `"${clip(fAddress.text)}" is not an IPv4 address, an IPv6 address or a host name`, fAddress.column);
  }
  const fPort = need('port');
  const port = parseUint(fPort, 5, 0, 65535);
  if (port === undefined) throw new CandidateLineError('BAD_PORT', 'port', `port "${clip(fPort.text)}" is not an integer from 0 to 65535`, fPort.column);
  const fTyp = need('"typ"');
  if (fTyp.text.toLowerCase() !== 'typ') {
    throw new CandidateLineError('BAD_TYPE', 'typ', `expected "typ", found "${clip(fTyp.text)}"`, fTyp.column);
  }
  const fType = need('candidate type');
  const type = fType.text.toLowerCase() as CandidateType;
  if (!CANDIDATE_TYPES.includes(type)) {
    throw new CandidateLineError('BAD_TYPE', 'type', `candidate type "${clip(fType.text)}" is not host, srflx, prflx or relay`, fType.column);
  }

  const c: Candidate = {
    foundation: fFoundation.text,
    component,
    transport: fTransport.text.toLowerCase(),
    priority,
    address: fAddress.text,
    port,
    type,
  };

  // [SP rel-addr] [SP rel-port], in that order, before any extension.
  if (fields[i]?.text.toLowerCase() === 'raddr') {
    const name = fields[i++]!;
    const v = fields[i++];
    if (!v || !addressKind(v.text)) {
      throw new CandidateLineError('BAD_RELATED_ADDRESS', 'raddr', v ? `"${clip(v.text)}" is not an address` : 'raddr has no value', v?.column ?? name.column);
    }
    c.relatedAddress = v.text;
  }
  if (fields[i]?.text.toLowerCase() === 'rport') {
    const name = fields[i++]!;
    const v = fields[i++];
    const p = v ? parseUint(v, 5, 0, 65535) : undefined;
    if (p === undefined) {
      throw new CandidateLineError('BAD_RELATED_PORT', 'rport', v ? `"${clip(v.text)}" is not a port from 0 to 65535` : 'rport has no value', v?.column ?? name.column);
    }
    c.relatedPort = p;
  }

  // *(SP cand-extension): name SP value.
  const extensions: Array<[string, string]> = [];
  while (i < fields.length) {
    const name = fields[i++]!;
    const lower = name.text.toLowerCase();
    if (lower === 'raddr' || lower === 'rport' || lower === 'typ') {
      throw new CandidateLineError('MISPLACED_ATTRIBUTE', lower, `"${name.text}" must come right after the candidate type, once`, name.column);
    }
    if (!TOKEN.test(name.text)) {
      throw new CandidateLineError('BAD_EXTENSION', 'extension', `extension name "${clip(name.text)}" is not a token`, name.column);
    }
    const value = fields[i++];
    if (!value) throw new CandidateLineError('BAD_EXTENSION', name.text, `extension "${clip(name.text)}" has no value`, name.column);
    if (lower === 'tcptype') {
      // RFC 6544 section 4.5.
      const t = value.text.toLowerCase() as TcpType;
      if (c.tcpType !== undefined) throw new CandidateLineError('BAD_TCPTYPE', 'tcptype', 'tcptype appears twice', name.column);
      if (!TCP_TYPES.includes(t)) {
        throw new CandidateLineError('BAD_TCPTYPE', 'tcptype', `tcptype "${clip(value.text)}" is not active, passive or so`, value.column);
      }
      c.tcpType = t;
      continue;
    }
    extensions.push([name.text, value.text]);
  }
  if (extensions.length > 0) c.extensions = extensions;
  return c;
}

export interface FormatCandidateOptions {
  /**
   * What goes in front: 'candidate:' (default; what RTCIceCandidate.candidate holds),
   * 'a=candidate:' (an SDP line) or '' (the bare attribute value).
   */
  prefix?: 'candidate:' | 'a=candidate:' | '';
}

/**
 * Writes a candidate as an RFC 8839 line (without a line ending). Every field is checked
 * as the parser checks it, so whatever this writes parses back to the same candidate.
 * Throws CandidateLineError naming the field that cannot be written.
 */
export function formatCandidateLine(c: Candidate, options: FormatCandidateOptions = {}): string {
  const prefix = options.prefix ?? 'candidate:';
  if (!isIceChars(c.foundation, 32)) throw new CandidateLineError('BAD_FOUNDATION', 'foundation', `foundation ${JSON.stringify(c.foundation)} is not 1 to 32 ice-chars`);
  if (!Number.isInteger(c.component) || c.component < 1 || c.component > 256) {
    throw new CandidateLineError('BAD_COMPONENT', 'component', `component ${c.component} is not an integer from 1 to 256`);
  }
  if (typeof c.transport !== 'string' || !TOKEN.test(c.transport)) throw new CandidateLineError('BAD_TRANSPORT', 'transport', `transport ${JSON.stringify(c.transport)} is not a token`);
  if (!Number.isInteger(c.priority) || c.priority < 1 || c.priority > MAX_CANDIDATE_PRIORITY) {
    throw new CandidateLineError('BAD_PRIORITY', 'priority', `priority ${c.priority} is not an integer from 1 to ${MAX_CANDIDATE_PRIORITY}`);
  }
  if (typeof c.address !== 'string' || !addressKind(c.address)) throw new CandidateLineError('BAD_ADDRESS', 'address', `${JSON.stringify(c.address)} is not an address`);
  if (!isPort(c.port)) throw new CandidateLineError('BAD_PORT', 'port', `port ${c.port} is not an integer from 0 to 65535`);
  if (!CANDIDATE_TYPES.includes(c.type)) throw new CandidateLineError('BAD_TYPE', 'type', `candidate type ${JSON.stringify(c.type)} is not host, srflx, prflx or relay`);
  let s = `${prefix}${c.foundation} ${c.component} ${c.transport.toLowerCase()} ${c.priority} ${c.address} ${c.port} typ ${c.type}`;
  if (c.relatedAddress !== undefined) {
    if (typeof c.relatedAddress !== 'string' || !addressKind(c.relatedAddress)) {
      throw new CandidateLineError('BAD_RELATED_ADDRESS', 'raddr', `${JSON.stringify(c.relatedAddress)} is not an address`);
    }
    s += ` raddr ${c.relatedAddress}`;
  }
  if (c.relatedPort !== undefined) {
    if (!isPort(c.relatedPort)) throw new CandidateLineError('BAD_RELATED_PORT', 'rport', `rport ${c.relatedPort} is not an integer from 0 to 65535`);
    s += ` rport ${c.relatedPort}`;
  }
  if (c.tcpType !== undefined) {
    if (!TCP_TYPES.includes(c.tcpType)) throw new CandidateLineError('BAD_TCPTYPE', 'tcptype', `tcptype ${JSON.stringify(c.tcpType)} is not active, passive or so`);
    s += ` tcptype ${c.tcpType}`;
  }
  for (const [name, value] of c.extensions ?? []) {
    const lower = typeof name === 'string' ? name.toLowerCase() : '';
    if (lower === 'raddr' || lower === 'rport' || lower === 'typ' || lower === 'tcptype') {
      throw new CandidateLineError('MISPLACED_ATTRIBUTE', lower, `"${name}" is not an extension; use the candidate's own field`);
    }
    if (!TOKEN.test(name)) throw new CandidateLineError('BAD_EXTENSION', 'extension', `extension name ${JSON.stringify(name)} is not a token`);
    if (typeof value !== 'string' || !/^[\x21-\x7e]+$/.test(value)) {
      throw new CandidateLineError('BAD_EXTENSION', name, `extension ${name} value ${JSON.stringify(value)} is not 1 or more visible ASCII characters`);
    }
    s += ` ${name} ${value}`;
  }
  if (s.length - prefix.length > MAX_LINE_LENGTH) throw new CandidateLineError('TOO_LONG', 'line', `the line would be longer than ${MAX_LINE_LENGTH} characters`);
  return s;
}

/** The value of an extension attribute (the first one with that name), e.g. 'ufrag' or 'generation'. */
export function candidateExtension(c: Candidate, name: string): string | undefined {
  return c.extensions?.find(([n]) => n === name)?.[1];
}

function isPort(p: unknown): p is number {
  return Number.isInteger(p) && (p as number) >= 0 && (p as number) <= 65535;
}

/** Quotes at most 40 characters of hostile input in an error message. */
function clip(s: string): string {
  return s.length > 40 ? `${s.slice(0, 40)}...` : s;
}
