import { StunEncodeError } from '../errors.js';

export type Family = 'IPv4' | 'IPv6';

/** A transport address: what `dgram`'s rinfo carries, and what address attributes hold. */
export interface TransportAddress {
  family: Family;
  address: string;
  port: number;
}

/** Parses a dotted-quad IPv4 address into `out` at `offset`; returns false if it is not one. */
export function parseIPv4Into(s: string, out: Uint8Array, offset: number): boolean {
  let part = 0;
  let digits = 0;
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 46 /* . */) {
      if (digits === 0 || n === 3) return false;
      out[offset + n++] = part;
      part = 0;
      digits = 0;
    } else if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return false; // no leading zeros (octal ambiguity)
      part = part * 10 + (c - 48);
      if (part > 255 || ++digits > 3) return false;
    } else {
      return false;
    }
  }
  if (digits === 0 || n !== 3) return false;
  out[offset + 3] = part;
  return true;
}

/** Parses an IPv6 address (RFC 4291 section 2.2 text forms, optional %zone) into 16 bytes. */
export function parseIPv6Into(input: string, out: Uint8Array, offset: number): boolean {
  const pct = input.indexOf('%');
  const s = pct >= 0 ? input.slice(0, pct) : input;
  if (s.length < 2) return false;
  const groups: number[] = [];
  let gap = -1;
  let i = 0;
  if (s.startsWith('::')) {
    gap = 0;
    i = 2;
    if (s.length === 2) {
      out.fill(0, offset, offset + 16);
      return true;
    }
  } else if (s[0] === ':') {
    return false;
  }
  while (i < s.length) {
    // Embedded IPv4 in the last 32 bits.
    const nextColon = s.indexOf(':', i);
    const token = nextColon < 0 ? s.slice(i) : s.slice(i, nextColon);
    if (nextColon < 0 && token.includes('.')) {
      const v4 = new Uint8Array(4);
      if (!parseIPv4Into(token, v4, 0)) return false;
      groups.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      i = s.length;
      break;
    }
    if (token.length === 0 || token.length > 4) return false;
    let v = 0;
    for (let k = 0; k < token.length; k++) {
      const c = token.charCodeAt(k);
      let d: number;
      if (c >= 48 && c <= 57) d = c - 48;
      else if (c >= 97 && c <= 102) d = c - 87;
      else if (c >= 65 && c <= 70) d = c - 55;
      else return false;
      v = (v << 4) | d;
    }
    groups.push(v);
    if (nextColon < 0) {
      i = s.length;
      break;
    }
    i = nextColon + 1;
    if (s[i] === ':') {
      if (gap >= 0) return false; // only one "::"
      gap = groups.length;
      i++;
      if (i === s.length) break;
    } else if (i === s.length) {
      return false; // trailing single colon
    }
  }
  if (gap < 0 ? groups.length !== 8 : groups.length > 7) return false;
  const fill = 8 - groups.length;
  let g = 0;
  for (let k = 0; k < 8; k++) {
    let v: number;
    if (gap >= 0 && k >= gap && k < gap + fill) v = 0;
    else v = groups[g++]!;
    out[offset + 2 * k] = v >> 8;
    out[offset + 2 * k + 1] = v & 0xff;
  }
  return true;
}

/** Formats 4 bytes as dotted-quad. */
export function formatIPv4(b: Uint8Array, o = 0): string {
  return `${b[o]}.${b[o + 1]}.${b[o + 2]}.${b[o + 3]}`;
}

/** Formats 16 bytes per RFC 5952 (lower case, longest zero run compressed, IPv4-mapped mixed). */
export function formatIPv6(b: Uint8Array, o = 0): string {
  const g = new Array<number>(8);
  for (let k = 0; k < 8; k++) g[k] = (b[o + 2 * k]! << 8) | b[o + 2 * k + 1]!;
  // RFC 5952 section 5: ::ffff:a.b.c.d for IPv4-mapped addresses.
  if (g[0] === 0 && g[1] === 0 && g[2] === 0 && g[3] === 0 && g[4] === 0 && g[5] === 0xffff) {
    return `::ffff:${formatIPv4(b, o + 12)}`;
  }
  // RFC 5952 section 4.2: compress the longest run of two or more zero groups, first if tied.
  let bestStart = -1;
  let bestLen = 1;
  for (let k = 0; k < 8; ) {
    if (g[k] !== 0) {
      k++;
      continue;
    }
    let e = k;
    while (e < 8 && g[e] === 0) e++;
    if (e - k > bestLen) {
      bestStart = k;
      bestLen = e - k;
    }
    k = e;
  }
  const hex = (k: number) => g[k]!.toString(16);
  if (bestStart < 0) return g.map((_, k) => hex(k)).join(':');
  const head = [];
  for (let k = 0; k < bestStart; k++) head.push(hex(k));
  const tail = [];
  for (let k = bestStart + bestLen; k < 8; k++) tail.push(hex(k));
  return `${head.join(':')}::${tail.join(':')}`;
}

/** The address family of a textual IP address, or undefined if it is not one. */
export function ipFamily(address: string): Family | undefined {
  const scratch = new Uint8Array(16);
  if (parseIPv4Into(address, scratch, 0)) return 'IPv4';
  if (parseIPv6Into(address, scratch, 0)) return 'IPv6';
  return undefined;
}

/** Parses an IP address to its 4 or 16 bytes; throws StunEncodeError if it is not one. */
export function ipToBytes(address: string, family?: Family): Uint8Array {
  if (family !== 'IPv6') {
    const b = new Uint8Array(4);
    if (parseIPv4Into(address, b, 0)) return b;
  }
  if (family !== 'IPv4') {
    const b = new Uint8Array(16);
    if (parseIPv6Into(address, b, 0)) return b;
  }
  throw new StunEncodeError('BAD_ADDRESS', `not an ${family ?? 'IP'} address: ${JSON.stringify(address)}`);
}

/** Canonical text form of an address (RFC 5952 for IPv6), for comparisons and map keys. */
export function canonicalIp(address: string): string {
  const b = ipToBytes(address);
  return b.length === 4 ? formatIPv4(b) : formatIPv6(b);
}

/** Two transport addresses are the same endpoint (family, canonical address and port). */
export function sameAddress(a: TransportAddress, b: TransportAddress): boolean {
  return a.port === b.port && a.family === b.family && canonicalIp(a.address) === canonicalIp(b.address);
}

/** `1.2.3.4:5` or `[::1]:5`. */
export function formatAddress(a: TransportAddress): string {
  return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/**
 * Parses `host:port`, `[v6]:port` or a bare host (with `defaultPort`). Only literal IP
 * addresses; name resolution belongs to the caller.
 */
export function parseAddress(text: string, defaultPort?: number): TransportAddress {
  let host = text;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const end = text.indexOf(']');
    if (end < 0) throw new StunEncodeError('BAD_ADDRESS', `unclosed "[" in ${JSON.stringify(text)}`);
    host = text.slice(1, end);
    const rest = text.slice(end + 1);
    if (rest.startsWith(':')) portText = rest.slice(1);
    else if (rest !== '') throw new StunEncodeError('BAD_ADDRESS', `unexpected ${JSON.stringify(rest)} in ${JSON.stringify(text)}`);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon >= 0 && text.indexOf(':') === colon) {
      host = text.slice(0, colon);
      portText = text.slice(colon + 1);
    }
  }
  const family = ipFamily(host);
  if (!family) throw new StunEncodeError('BAD_ADDRESS', `not an IP address: ${JSON.stringify(host)}`);
  let port = defaultPort;
  if (portText !== undefined) {
    if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535) {
      throw new StunEncodeError('BAD_ADDRESS', `bad port ${JSON.stringify(portText)} in ${JSON.stringify(text)}`);
    }
    port = Number(portText);
  }
  if (port === undefined) throw new StunEncodeError('BAD_ADDRESS', `no port in ${JSON.stringify(text)}`);
  return { family, address: canonicalIp(host), port };
}
