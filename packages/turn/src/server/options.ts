import type { Clock, Family, Network } from '@natkit/stun';
import type { Authenticator, UserEntry } from './auth.js';
import type { PeerPolicyHandler } from './policy.js';
import type { Quotas } from './quotas.js';
import type { RelayAllocator } from './relayports.js';

/**
 * The relay's options, and their defaults in one place (TURN_DEFAULTS): the library reads
 * them through resolveTurnOptions() and relayserver's --help and settings through the same
 * table, so a default is written once.
 */

export const TURN_DEFAULTS = {
  listen: ['0.0.0.0'] as readonly string[],
  port: 3478,
  tlsPort: 5349,
  realm: 'natkit',
  restSeparator: ':',
  relayPortMin: 49152,
  relayPortMax: 65535,
  /** Allocations per user (486 past it) and in all (508). */
  userQuota: 10,
  totalQuota: 1000,
  /** Permissions and channels per allocation (508 past them). */
  maxPermissions: 64,
  maxChannels: 64,
  /** RFC 8656 section 7.2: 600 s by default, at most 3600 s. */
  defaultLifetime: 600,
  maxLifetime: 3600,
  /** Unauthenticated error answers per second to one source over UDP (burst twice that, at least 20). */
  errorRate: 50,
  software: 'natkit',
  nonceLifetimeMs: 10 * 60_000,
  maxConnections: 4096,
  maxConnectionsPerIp: 64,
  idleTimeoutMs: 60_000,
  /** How long an EVEN-PORT reservation is held for its token (RFC 8656 section 7.2 suggests about 30 s). */
  reservationMs: 30_000,
  /** Failed authentications logged per second (all clients together); the rest are only counted. */
  authFailureLogRate: 1,
} as const;

export interface TurnServerOptions {
  /** Addresses to listen on (default 0.0.0.0). */
  listen?: string[];
  /** UDP and TCP port (default 3478; 0 picks a free one). */
  port?: number;
  udp?: boolean;
  tcp?: boolean;
  /** TLS with this certificate and key (PEM); default port 5349. */
  tls?: { cert: string | Buffer; key: string | Buffer; port?: number };
  /**
   * Where relay sockets bind, per family (default: the first specific listen address;
   * listening on a wildcard only, the host's first public or private non-loopback address).
   */
  relayAddresses?: Partial<Record<Family, string>>;
  /** The address to advertise in XOR-RELAYED-ADDRESS when the relay sits behind 1:1 NAT. */
  externalAddresses?: Partial<Record<Family, string>>;
  relayPortMin?: number;
  relayPortMax?: number;
  realm?: string;
  /** Long-term credential users (users file and flags). */
  users?: Map<string, UserEntry>;
  /** TURN REST API shared secrets. */
  secrets?: string[];
  restSeparator?: string;
  /** Set the nonce's username-anonymity bit: clients must send USERHASH. */
  requireUserhash?: boolean;
  /**
   * Authentication (default on). `false` is the same as `authenticator: new NoAuthenticator()`:
   * only for closed test networks.
   */
  auth?: boolean;
  /** Your own authentication (default: LongTermAuthenticator over users, secrets, realm). */
  authenticator?: Authenticator;
  /** Peer ranges to allow despite the default denials, and more to deny. */
  allowPeers?: string[];
  denyPeers?: string[];
  /** Your own peer policy (default: PeerPolicy over allowPeers, denyPeers and the server's own addresses). */
  peerPolicy?: PeerPolicyHandler;
  /** Allocations per user (486 past it) and in all (508); permissions and channels per allocation (508). */
  userQuota?: number;
  totalQuota?: number;
  maxPermissions?: number;
  maxChannels?: number;
  /** Your own quotas (default: LocalQuotas over userQuota and totalQuota). */
  quotas?: Quotas;
  /** Your own relay-address allocator (default: RelayPorts over relayAddresses and the port range). */
  relayAllocator?: RelayAllocator;
  /**
   * Accept channel numbers 0x4000-0x7FFF as RFC 5766 did (coturn's own client still picks
   * them). Off by default: RFC 8656 section 12 narrowed the range to 0x4000-0x4FFF.
   */
  legacyChannels?: boolean;
  /** RFC 8656 section 7.2: default 600 s, and at most 3600 s. */
  defaultLifetime?: number;
  maxLifetime?: number;
  /** Error answers per second to one source for unauthenticated requests over UDP (default 50, burst twice that). */
  errorRate?: number;
  software?: string | false;
  nonceLifetimeMs?: number;
  maxConnections?: number;
  /** TCP/TLS connections from one IP address at once (default 64); more are closed. */
  maxConnectionsPerIp?: number;
  idleTimeoutMs?: number;
  clock?: Clock;
  /**
   * The network UDP sockets are opened on, listening and relayed (default: the operating
   * system's); also where the host's interface addresses come from, which the peer policy
   * refuses. TCP and TLS listeners always use node:net and node:tls.
   */
  network?: Network;
  /**
   * SO_REUSEPORT on the listening UDP sockets (Node >= 22.12 on Linux), so several
   * processes (relayserver --workers) share a port and the kernel keeps each client's
   * 5-tuple on one of them.
   */
  reusePort?: boolean;
  /** Unix time in ms for REST credential expiry (default Date.now). */
  wallClock?: () => number;
  /** Failed authentications logged per second (default 1); the rest are only counted. */
  authFailureLogRate?: number;
  /** Structured log events. */
  log?: (level: 'debug' | 'info' | 'warn', msg: string, fields?: Record<string, unknown>) => void;
}

/** The numbers the request core and the data path read, every default filled in. */
export interface ResolvedLimits {
  maxPermissions: number;
  maxChannels: number;
  /** Highest channel number accepted: 0x4FFF (RFC 8656), or 0x7FFF with legacyChannels (RFC 5766). */
  maxChannel: number;
  defaultLifetimeMs: number;
  maxLifetimeMs: number;
  errorRate: number;
  errorBurst: number;
  software: string | false;
}

/** Fills in the defaults the request core needs (see TURN_DEFAULTS). */
export function resolveLimits(o: TurnServerOptions): ResolvedLimits {
  const errorRate = o.errorRate ?? TURN_DEFAULTS.errorRate;
  return {
    maxPermissions: o.maxPermissions ?? TURN_DEFAULTS.maxPermissions,
    maxChannels: o.maxChannels ?? TURN_DEFAULTS.maxChannels,
    maxChannel: o.legacyChannels ? 0x7fff : 0x4fff,
    defaultLifetimeMs: (o.defaultLifetime ?? TURN_DEFAULTS.defaultLifetime) * 1000,
    maxLifetimeMs: (o.maxLifetime ?? TURN_DEFAULTS.maxLifetime) * 1000,
    // Every client starts with an unauthenticated Allocate that gets a 401, and many clients
    // can share one NAT's address: the default allows 50 per second (burst 100) per source,
    // which still bounds what the server reflects at a spoofed victim to a few kB/s.
    errorRate,
    errorBurst: Math.max(20, errorRate * 2),
    software: o.software ?? TURN_DEFAULTS.software,
  };
}
