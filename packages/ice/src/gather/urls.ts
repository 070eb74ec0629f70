import { NatkitError, ipFamily } from '@natkit/stun';

/**
 * ICE servers as RTCConfiguration.iceServers has them, and their URIs: `stun:` and `stuns:`
 * (RFC 7064), `turn:` and `turns:` (RFC 7065).
 */

/** One ICE server, as in RTCIceServer: one or more URLs of the same server, and its credentials. */
export interface IceServer {
  urls: string | string[];
  /** TURN long-term credential username. */
  username?: string;
  /** TURN long-term credential password. */
  credential?: string;
}

export type IceUrlScheme = 'stun' | 'stuns' | 'turn' | 'turns';

/** A parsed ICE server URI. */
export interface IceServerUrl {
  scheme: IceUrlScheme;
  /** Host name, or IP address (an IPv6 literal without its brackets). */
  host: string;
  /** Whether `host` is an IP literal (no DNS needed). */
  literal: boolean;
  /** The port given, or the default: 3478 for stun/turn, 5349 for stuns/turns (RFC 7064 3.2, RFC 7065 3.2). */
  port: number;
  /**
   * How to reach the server: stun -> udp; stuns -> tls; turn -> udp unless
   * `?transport=tcp`; turns -> tls (TLS over TCP; RFC 7065 section 3.2).
   */
  transport: 'udp' | 'tcp' | 'tls';
  /** The URI as given. */
  url: string;
}

export type IceUrlErrorCode =
  | 'BAD_SCHEME' // not stun, stuns, turn or turns
  | 'BAD_HOST' // empty, bad characters, unbalanced brackets, not an IPv6 literal inside them
  | 'BAD_PORT' // not digits, or out of 1-65535
  | 'BAD_QUERY' // a query a stun/stuns URI may not have, or anything but transport=
  | 'UNSUPPORTED_TRANSPORT' // transport-ext natkit does not speak (sctp, ...), or turns over udp (DTLS)
  | 'MISSING_CREDENTIALS' // a turn/turns server without username and credential
  | 'NO_URLS';

/** An ICE server URI or entry that cannot be used; `url` is the URI at fault. */
export class IceUrlError extends NatkitError {
  declare readonly code: IceUrlErrorCode;
  readonly url: string;
  constructor(code: IceUrlErrorCode, url: string, message: string) {
    super(code, `${JSON.stringify(url)}: ${message}`);
    this.url = url;
  }
}

// RFC 3986 section 3.2.2 reg-name: unreserved / pct-encoded / sub-delims. Host names in
// practice: letters, digits, '-', '.', '_' (and percent-encoding, decoded here).
const REG_NAME = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+$/;

/**
 * Parses an ICE server URI (RFC 7064 section 3.1, RFC 7065 section 3.1):
 *
 *     stunURI = scheme ":" host [ ":" port ]                        scheme = "stun" / "stuns"
 *     turnURI = scheme ":" host [ ":" port ] [ "?transport=" transport ]   scheme = "turn" / "turns"
 *     transport = "udp" / "tcp" / transport-ext
 *
 * host and port as in RFC 3986 (IPv6 literals in brackets). Scheme and transport are
 * case-insensitive (RFC 3986 section 3.1; ABNF strings). Throws IceUrlError with the reason.
 */
export function parseIceServerUrl(url: string): IceServerUrl {
  if (typeof url !== 'string' || url.trim() === '') throw new IceUrlError('BAD_SCHEME', String(url), 'empty URI; expected stun:, stuns:, turn: or turns:');
  const text = url.trim();
  const colon = text.indexOf(':');
  const scheme = (colon > 0 ? text.slice(0, colon) : '').toLowerCase();
  if (scheme !== 'stun' && scheme !== 'stuns' && scheme !== 'turn' && scheme !== 'turns') {
    throw new IceUrlError('BAD_SCHEME', url, `scheme ${JSON.stringify(colon > 0 ? text.slice(0, colon) : text)} is not stun, stuns, turn or turns (RFC 7064, RFC 7065)`);
  }
  let rest = text.slice(colon + 1);
  // RFC 7064/7065 URIs have no authority part: "stun://host" is a common slip.
  if (rest.startsWith('//')) throw new IceUrlError('BAD_HOST', url, `no "//" after "${scheme}:" (RFC 7064/7065 form: ${scheme}:host[:port])`);
  let query: string | undefined;
  const q = rest.indexOf('?');
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  if (rest.includes('#') || rest.includes('/') || rest.includes('@')) {
    throw new IceUrlError('BAD_HOST', url, `unexpected ${JSON.stringify(rest.match(/[#/@]/)![0])}: a ${scheme} URI is ${scheme}:host[:port]${scheme.startsWith('turn') ? '[?transport=udp|tcp]' : ''} (no user info, path or fragment)`);
  }
  let host: string;
  let portText: string | undefined;
  let literal = false;
  if (rest.startsWith('[')) {
    const close = rest.indexOf(']');
    if (close < 0) throw new IceUrlError('BAD_HOST', url, 'unbalanced "[": an IPv6 literal is written [address]');
    host = rest.slice(1, close);
    if (ipFamily(host) !== 'IPv6') throw new IceUrlError('BAD_HOST', url, `${JSON.stringify(host)} in brackets is not an IPv6 address`);
    literal = true;
    const after = rest.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) throw new IceUrlError('BAD_HOST', url, `unexpected ${JSON.stringify(after)} after the IPv6 literal`);
      portText = after.slice(1);
    }
  } else {
    const c = rest.indexOf(':');
    if (c >= 0) {
      if (rest.indexOf(':', c + 1) >= 0) throw new IceUrlError('BAD_HOST', url, 'an IPv6 address must be in brackets: [2001:db8::1]');
      host = rest.slice(0, c);
      portText = rest.slice(c + 1);
    } else {
      host = rest;
    }
    if (host === '') throw new IceUrlError('BAD_HOST', url, 'no host');
    if (rest.includes(']')) throw new IceUrlError('BAD_HOST', url, 'unbalanced "]"');
    if (!REG_NAME.test(host)) throw new IceUrlError('BAD_HOST', url, `${JSON.stringify(host)} is not a host name or IPv4 address`);
    try {
      host = decodeURIComponent(host);
    } catch {
      throw new IceUrlError('BAD_HOST', url, `${JSON.stringify(host)} has a bad percent-encoding`);
    }
    literal = ipFamily(host) === 'IPv4';
    // Dotted digits that are not a valid IPv4 address (999.1.1.1, 1.2.3) are a typo, not a name.
    if (!literal && /^[0-9.]+$/.test(host)) throw new IceUrlError('BAD_HOST', url, `${JSON.stringify(host)} is not a valid IPv4 address`);
  }
  const secure = scheme === 'stuns' || scheme === 'turns';
  let port = secure ? 5349 : 3478;
  // RFC 3986: port = *DIGIT, so "host:" is the default port.
  if (portText !== undefined && portText !== '') {
    if (!/^\d{1,5}$/.test(portText)) throw new IceUrlError('BAD_PORT', url, `port ${JSON.stringify(portText)} is not a number`);
    port = Number(portText);
    if (port < 1 || port > 65535) throw new IceUrlError('BAD_PORT', url, `port ${port} is out of range 1-65535`);
  }
  let transport: 'udp' | 'tcp' | 'tls' = secure ? 'tls' : 'udp';
  if (query !== undefined) {
    // RFC 7064: stun and stuns URIs have no query; RFC 7065: turn URIs only "transport=".
    if (scheme === 'stun' || scheme === 'stuns') throw new IceUrlError('BAD_QUERY', url, `a ${scheme} URI takes no query (RFC 7064); only turn: and turns: have ?transport=`);
    const m = /^transport=([A-Za-z0-9\-._~]+)$/i.exec(query);
    if (!m) throw new IceUrlError('BAD_QUERY', url, `query ${JSON.stringify(query)} is not transport=udp or transport=tcp (RFC 7065)`);
    const t = m[1]!.toLowerCase();
    if (t === 'tcp') transport = secure ? 'tls' : 'tcp';
    else if (t === 'udp') {
      // turns with transport=udp is TURN over DTLS (RFC 7350), which natkit does not speak.
      if (secure) throw new IceUrlError('UNSUPPORTED_TRANSPORT', url, 'turns with transport=udp is TURN over DTLS, which natkit does not support; use turns: (TLS) or turn:?transport=udp');
      transport = 'udp';
    } else throw new IceUrlError('UNSUPPORTED_TRANSPORT', url, `transport ${JSON.stringify(m[1])} is not supported (udp or tcp)`);
  }
  return { scheme, host, literal, port, transport, url };
}

/** The URLs of an IceServer entry, as a list. */
export function iceServerUrls(server: IceServer): string[] {
  return Array.isArray(server.urls) ? server.urls : [server.urls];
}

/**
 * Checks a whole configuration up front, as RTCPeerConnection's constructor does: every URL
 * parses, and every turn/turns server has a username and credential. Throws the first
 * IceUrlError; returns the parsed URLs otherwise.
 */
export function validateIceServers(servers: readonly IceServer[]): IceServerUrl[] {
  const out: IceServerUrl[] = [];
  for (const s of servers) {
    const urls = iceServerUrls(s);
    if (urls.length === 0) throw new IceUrlError('NO_URLS', '', 'an ICE server entry has no urls');
    for (const u of urls) {
      const p = parseIceServerUrl(u);
      if ((p.scheme === 'turn' || p.scheme === 'turns') && (s.username === undefined || s.credential === undefined)) {
        throw new IceUrlError('MISSING_CREDENTIALS', u, 'a TURN server needs username and credential');
      }
      out.push(p);
    }
  }
  return out;
}
