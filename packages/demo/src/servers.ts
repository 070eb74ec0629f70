import { randomBytes } from 'node:crypto';
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { restPassword } from '@natkit/turn';

/**
 * What p2pservers starts: natkit's stunserver, relayserver and signalserver on one host,
 * each as its own binary with its own flags (so each keeps its workers, limits, logs and
 * signals), and the p2pdemo line that sends two peers to them. Pure: the plan is made here,
 * the processes run in cli/p2pservers.ts.
 *
 * Ports: the TURN relay takes 3478, TURN's and STUN's well-known port (RFC 8656 section 4;
 * it answers Binding requests there too), so firewalls and clients that assume it work;
 * stunserver takes 3479 (and 3480 in RFC 5780 mode, its "other port"); the signalling server
 * the tutorial's 14141.
 */

export interface ServersOptions {
  /** Where the three listen (default 0.0.0.0). */
  listen: string;
  /** The address peers reach this host at (printed in the p2pdemo line). */
  publicIp: string;
  /** Whether `publicIp` is an address of this host (else: 1:1 NAT in front, e.g. a cloud VM). */
  publicIsLocal: boolean;
  /** A second address of this host: stunserver serves RFC 5780 NAT behaviour discovery. */
  alternate?: string;
  stunPort: number;
  turnPort: number;
  signalPort: number;
  /** TURN credentials: a user (given or generated), or TURN REST API secrets from a file. */
  auth: { user: string; password: string; generated: boolean } | { secretFile: string; secret: string; restUser: string; ttlSec: number };
  room: string;
  allowPeer: string[];
  /** relayserver's --drain-timeout on SIGTERM, seconds. */
  drainTimeoutSec: number;
  /** Unix time, seconds (for a REST credential's expiry). */
  now: number;
}

export interface ServerPlan {
  name: 'stunserver' | 'relayserver' | 'signalserver';
  pkg: '@natkit/stun' | '@natkit/turn' | '@natkit/signal';
  args: string[];
  /** Secrets go in the environment, not argv (which every user of the host can read). */
  env: Record<string, string>;
  /** The start-up line that says it is ready. */
  ready: RegExp;
}

export interface Plan {
  servers: ServerPlan[];
  stunUrl: string;
  turnUrl: string;
  signal: string;
  room: string;
  user: string;
  credential: string;
  /** A REST credential's expiry (Unix seconds). */
  expires?: number;
  /** p2pdemo's arguments for a peer. */
  p2pdemo: string[];
}

const hostPort = (a: string, p: number) => (isIP(a) === 6 ? `[${a}]:${p}` : `${a}:${p}`);
const urlHost = (a: string) => (isIP(a) === 6 ? `[${a}]` : a);

/** A random token of `n` letters and digits (about 5.95 bits each): safe on any command line. */
export function token(n: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  let s = '';
  while (s.length < n) {
    // 248 = 4 * 62: rejection keeps every character equally likely
    for (const b of randomBytes(n)) if (b < 248 && s.length < n) s += alphabet[b % 62];
  }
  return s;
}

/** The TURN REST API credential (draft-uberti-behave-turn-rest): `expiry:user` and base64(HMAC-SHA1(secret, username)). */
export function restCredential(secret: string, user: string, ttlSec: number, now: number): { username: string; password: string; expires: number } {
  const expires = Math.floor(now) + ttlSec;
  const username = `${expires}:${user}`;
  return { username, password: restPassword(secret, username), expires };
}

export function plan(o: ServersOptions): Plan {
  const { listen } = o;
  const stun: ServerPlan = {
    name: 'stunserver',
    pkg: '@natkit/stun',
    args: ['--listen', listen, '--port', String(o.stunPort), ...(o.alternate ? ['--alternate', o.alternate, '--alt-port', String(o.stunPort + 1)] : [])],
    env: {},
    ready: /stunserver \S+ listening on /,
  };
  let user: string;
  let credential: string;
  let expires: number | undefined;
  const relayEnv: Record<string, string> = {};
  const relayArgs = ['--listen', listen, '--port', String(o.turnPort), '--drain-timeout', String(o.drainTimeoutSec)];
  if ('secretFile' in o.auth) {
    relayArgs.push('--auth-secret-file', o.auth.secretFile);
    const c = restCredential(o.auth.secret, o.auth.restUser, o.auth.ttlSec, o.now);
    user = c.username;
    credential = c.password;
    expires = c.expires;
  } else {
    relayEnv.RELAYSERVER_USER = `${o.auth.user}:${o.auth.password}`;
    user = o.auth.user;
    credential = o.auth.password;
  }
  // Behind 1:1 NAT the relay must advertise the public address in XOR-RELAYED-ADDRESS.
  if (!o.publicIsLocal) relayArgs.push('--external-ip', o.publicIp);
  for (const c of o.allowPeer) relayArgs.push('--allow-peer', c);
  const relay: ServerPlan = { name: 'relayserver', pkg: '@natkit/turn', args: relayArgs, env: relayEnv, ready: /relayserver \S+ listening on / };
  const signal: ServerPlan = { name: 'signalserver', pkg: '@natkit/signal', args: ['--listen', listen, '--port', String(o.signalPort)], env: {}, ready: /signalserver \S+ listening on / };
  const stunUrl = `stun:${urlHost(o.publicIp)}:${o.stunPort}`;
  const turnUrl = `turn:${urlHost(o.publicIp)}:${o.turnPort}`;
  const signalAt = hostPort(o.publicIp, o.signalPort);
  return {
    servers: [stun, relay, signal],
    stunUrl,
    turnUrl,
    signal: signalAt,
    room: o.room,
    user,
    credential,
    ...(expires !== undefined ? { expires } : {}),
    p2pdemo: ['--signal', signalAt, '--room', o.room, '--stun', stunUrl, '--turn', turnUrl, '--user', user, '--credential', credential],
  };
}

/** Quotes an argument for a POSIX shell if it needs it. */
export function shellQuote(a: string): string {
  return /^[A-Za-z0-9_@%+=:,./[\]-]+$/.test(a) ? a : `'${a.replace(/'/g, "'\\''")}'`;
}

export function isPrivate(ip: string): boolean {
  if (isIP(ip) === 4) {
    const [a, b] = ip.split('.').map(Number) as [number, number];
    return a === 10 || a === 127 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127) || (a === 169 && b === 254);
  }
  const l = ip.toLowerCase();
  return l === '::1' || l.startsWith('fc') || l.startsWith('fd') || l.startsWith('fe80');
}

/** This host's addresses, non-internal first (IPv4 before IPv6). */
export function hostAddresses(): { address: string; internal: boolean }[] {
  const out: { address: string; internal: boolean; v6: boolean }[] = [];
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) {
      if (a.family === 'IPv6' && a.address.toLowerCase().startsWith('fe80')) continue;
      out.push({ address: a.address, internal: a.internal, v6: a.family === 'IPv6' });
    }
  }
  out.sort((x, y) => Number(x.internal) - Number(y.internal) || Number(x.v6) - Number(y.v6) || Number(isPrivate(x.address)) - Number(isPrivate(y.address)));
  return out;
}
