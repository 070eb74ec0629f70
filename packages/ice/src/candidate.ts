import { type TransportAddress, canonicalIp, crc32 } from '@natkit/stun';

/**
 * ICE candidates as plain data (RFC 8445 section 5.1, RFC 8839 section 5.1), their
 * priorities and the pair priority. Shared by the agent core, the gatherer and the
 * candidate line formats.
 */

/** RFC 8445 section 5.1.1: host, server-reflexive, peer-reflexive, relayed. */
export type CandidateType = 'host' | 'srflx' | 'prflx' | 'relay';

/** RFC 6544 tcptype of a TCP candidate. */
export type TcpType = 'active' | 'passive' | 'so';

/** A candidate as exchanged between agents: what a candidate line carries. */
export interface Candidate {
  /** Up to 32 ice-chars (RFC 8839 section 5.1). */
  foundation: string;
  /** Component ID, 1-256 (1 for a single data stream). */
  component: number;
  /** 'udp' or 'tcp' (compared case-insensitively on the wire; lower case here). */
  transport: string;
  /** Unsigned 32-bit priority. */
  priority: number;
  /** An IP address, or an FQDN such as a browser's `<uuid>.local` mDNS name. */
  address: string;
  port: number;
  type: CandidateType;
  /** raddr / rport: the base of a reflexive candidate, the mapped address of a relayed one. */
  relatedAddress?: string;
  relatedPort?: number;
  /** RFC 6544 tcptype, for TCP candidates. */
  tcpType?: TcpType;
  /**
   * Extension attributes in the order they came (generation, ufrag, network-id,
   * network-cost, ...): kept so a line is written back as it was read.
   */
  extensions?: Array<[name: string, value: string]>;
}

/** A candidate this agent gathered, with what only the local side knows. */
export interface LocalCandidate extends Candidate {
  /** RFC 8445 section 5.1.1.1: the address checks are sent from (for relayed: the relayed address). */
  base: TransportAddress;
  /** The CandidateBase (socket or TURN allocation) that sends and receives for it. */
  baseId: number;
  /** The ICE server URL it came from (srflx, relay). */
  server?: string;
  /** Milliseconds from the start of gathering to this candidate. */
  elapsedMs?: number;
}

/** RFC 8445 section 5.1.2.2: recommended type preferences. */
export const TYPE_PREFERENCE: Readonly<Record<CandidateType, number>> = {
  host: 126,
  prflx: 110,
  srflx: 100,
  relay: 0,
};

/**
 * RFC 8445 section 5.1.2.1:
 * priority = (2^24)*(type preference) + (2^8)*(local preference) + (2^0)*(256 - component ID).
 * Unsigned 32 bits: the top type preference (126) already sets bit 30; `>>> 0` keeps it
 * unsigned should a caller pass 128 or more.
 */
export function candidatePriority(typePreference: number, localPreference: number, component = 1): number {
  if (!Number.isInteger(typePreference) || typePreference < 0 || typePreference > 126) throw new RangeError(`type preference ${typePreference} is not 0-126`);
  if (!Number.isInteger(localPreference) || localPreference < 0 || localPreference > 65535) throw new RangeError(`local preference ${localPreference} is not 0-65535`);
  if (!Number.isInteger(component) || component < 1 || component > 256) throw new RangeError(`component ${component} is not 1-256`);
  return (typePreference * 0x1000000 + localPreference * 0x100 + (256 - component)) >>> 0;
}

/**
 * RFC 8445 section 6.1.2.3: pair priority = 2^32*MIN(G,D) + 2*MAX(G,D) + (G>D?1:0), with G the
 * controlling agent's candidate priority and D the controlled agent's. It needs up to 65
 * bits, so it is a bigint: in JavaScript `1 << 32` is 1, and a double loses the low bits.
 */
export function pairPriority(controlling: number, controlled: number): bigint {
  const g = BigInt(controlling >>> 0);
  const d = BigInt(controlled >>> 0);
  const [min, max] = g < d ? [g, d] : [d, g];
  return (min << 32n) + 2n * max + (g > d ? 1n : 0n);
}

/**
 * RFC 8445 section 5.1.1.3: candidates share a foundation when they have the same type, base
 * IP address, STUN/TURN server IP address and transport. The foundation is an opaque string
 * of ice-chars; here the decimal CRC-32 of those four, so that every gatherer and agent in
 * a process (and after a restart) gives the same candidates the same foundation.
 */
export function candidateFoundation(type: CandidateType, baseIp: string, serverIp: string | undefined, transport = 'udp'): string {
  const key = `${type}|${canonicalIp(baseIp)}|${serverIp === undefined ? '' : canonicalIp(serverIp)}|${transport.toLowerCase()}`;
  return String(crc32(Buffer.from(key, 'utf8')) >>> 0);
}
