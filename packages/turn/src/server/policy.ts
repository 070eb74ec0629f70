import { type TransportAddress, ipToBytes } from '@natkit/stun';

/**
 * Which peer addresses the relay may send to. A TURN server that relays anywhere is an
 * open door into the network it sits in (SSRF), so by default it refuses private,
 * loopback, link-local, multicast, reserved and broadcast ranges, in every spelling an
 * IPv6 address can carry an IPv4 one (IPv4-mapped, IPv4-compatible, NAT64, 6to4), and the
 * server's own addresses. Operators open ranges with `allow` and close more with `deny`;
 * an explicit deny beats an allow, an allow beats the defaults.
 */

export interface Cidr {
  text: string;
  v6: boolean;
  bytes: Uint8Array;
  prefix: number;
}

export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const addr = slash >= 0 ? text.slice(0, slash) : text;
  let bytes: Uint8Array;
  try {
    bytes = ipToBytes(addr);
  } catch {
    throw new Error(`not a CIDR range: ${JSON.stringify(text)}`);
  }
  const max = bytes.length * 8;
  const prefix = slash >= 0 ? Number(text.slice(slash + 1)) : max;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > max || (slash >= 0 && !/^\d+$/.test(text.slice(slash + 1)))) {
    throw new Error(`bad prefix length in ${JSON.stringify(text)}`);
  }
  return { text, v6: bytes.length === 16, bytes, prefix };
}

function inCidr(c: Cidr, b: Uint8Array): boolean {
  if ((b.length === 16) !== c.v6) return false;
  const full = c.prefix >> 3;
  for (let i = 0; i < full; i++) if (b[i] !== c.bytes[i]) return false;
  const rest = c.prefix & 7;
  if (rest === 0) return true;
  const mask = (0xff << (8 - rest)) & 0xff;
  return (b[full]! & mask) === (c.bytes[full]! & mask);
}

/** RFC 6890 and friends: never relay to these unless the operator says so. */
export const DEFAULT_DENIED_V4 = [
  '0.0.0.0/8', // "this network" (RFC 1122)
  '10.0.0.0/8', // private (RFC 1918)
  '100.64.0.0/10', // carrier-grade NAT shared space (RFC 6598)
  '127.0.0.0/8', // loopback
  '169.254.0.0/16', // link-local
  '172.16.0.0/12', // private
  '192.168.0.0/16', // private
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, including 255.255.255.255 broadcast
];
export const DEFAULT_DENIED_V6 = [
  '::/128', // unspecified
  '::1/128', // loopback
  'fc00::/7', // unique local
  'fe80::/10', // link-local
  'ff00::/8', // multicast
  '64:ff9b:1::/48', // local-use NAT64 (RFC 8215): translates into private networks
  'fec0::/10', // site-local (deprecated by RFC 3879, still routed inside some networks)
];

/**
 * The IPv4 address an IPv6 address stands for, if it is one of the forms that carry one:
 * IPv4-mapped ::ffff:a.b.c.d, IPv4-translated ::ffff:0:a.b.c.d, IPv4-compatible ::a.b.c.d
 * (deprecated), NAT64 well-known
 * prefix 64:ff9b::/96 (RFC 6052), 6to4 2002:AABB:CCDD::/48 (RFC 3056).
 */
export function embeddedIPv4(b: Uint8Array): Uint8Array | undefined {
  if (b.length !== 16) return undefined;
  const zero = (from: number, to: number) => {
    for (let i = from; i < to; i++) if (b[i] !== 0) return false;
    return true;
  };
  if (zero(0, 10) && b[10] === 0xff && b[11] === 0xff) return b.subarray(12, 16);
  // IPv4-translated ::ffff:0:a.b.c.d (RFC 2765 SIIT).
  if (zero(0, 8) && b[8] === 0xff && b[9] === 0xff && b[10] === 0 && b[11] === 0) return b.subarray(12, 16);
  if (zero(0, 12) && !(b[12] === 0 && b[13] === 0 && b[14] === 0 && (b[15] === 0 || b[15] === 1))) return b.subarray(12, 16);
  if (b[0] === 0x00 && b[1] === 0x64 && b[2] === 0xff && b[3] === 0x9b && zero(4, 12)) return b.subarray(12, 16);
  if (b[0] === 0x20 && b[1] === 0x02) return b.subarray(2, 6);
  return undefined;
}

/**
 * An operator's range written in an IPv6 form that carries IPv4 (e.g. ::ffff:10.0.0.0/104)
 * also applies to the plain IPv4 range, as every address is checked in both forms.
 */
function withIPv4Forms(list: Cidr[]): Cidr[] {
  const out = [...list];
  for (const c of list) {
    if (!c.v6 || c.prefix < 96) continue;
    const v4 = embeddedIPv4(c.bytes);
    if (v4) out.push({ text: c.text, v6: false, bytes: new Uint8Array(v4), prefix: c.prefix - 96 });
  }
  return out;
}

export interface PolicyDecision {
  allowed: boolean;
  /** Why: the rule that matched. */
  reason: string;
}

/** Who is asking to reach a peer: the allocation's user and client. */
export interface PeerContext {
  username: string;
  client: TransportAddress;
}

/**
 * Decides which peers an allocation may have a permission or channel for (RFC 8656
 * section 9.2: a server may refuse a peer with 403). PeerPolicy is the default.
 */
export interface PeerPolicyHandler {
  check(peer: TransportAddress, context: PeerContext): PolicyDecision;
}

export class PeerPolicy implements PeerPolicyHandler {
  private readonly allow: Cidr[];
  private readonly deny: Cidr[];
  private readonly defaults: Cidr[];
  private readonly own = new Set<string>();

  constructor(options: { allow?: readonly string[]; deny?: readonly string[]; ownAddresses?: readonly string[]; defaults?: boolean } = {}) {
    this.allow = withIPv4Forms((options.allow ?? []).map(parseCidr));
    this.deny = withIPv4Forms((options.deny ?? []).map(parseCidr));
    this.defaults = options.defaults === false ? [] : [...DEFAULT_DENIED_V4, ...DEFAULT_DENIED_V6].map(parseCidr);
    for (const a of options.ownAddresses ?? []) this.addOwnAddress(a);
  }

  /** The server's own address (listening, relay, interface): relaying to it is refused. */
  addOwnAddress(address: string): void {
    this.own.add(Buffer.from(ipToBytes(address)).toString('hex'));
  }

  /** The decision for a peer (an address, or a transport address: the port does not matter). */
  check(peer: string | TransportAddress): PolicyDecision {
    const address = typeof peer === 'string' ? peer : peer.address;
    let b: Uint8Array;
    try {
      b = ipToBytes(address);
    } catch {
      return { allowed: false, reason: 'not an IP address' };
    }
    const v4 = embeddedIPv4(b);
    // Every spelling is checked: the address itself and the IPv4 address it carries.
    const forms = v4 ? [b, v4] : [b];
    for (const f of forms) for (const c of this.deny) if (inCidr(c, f)) return { allowed: false, reason: `denied by --deny-peer ${c.text}` };
    for (const f of forms) for (const c of this.allow) if (inCidr(c, f)) return { allowed: true, reason: `allowed by --allow-peer ${c.text}` };
    for (const f of forms) {
      if (this.own.has(Buffer.from(f).toString('hex'))) return { allowed: false, reason: "the server's own address" };
      for (const c of this.defaults) if (inCidr(c, f)) return { allowed: false, reason: `${c.text} is denied by default` };
    }
    return { allowed: true, reason: 'public address' };
  }

  allowed(address: string): boolean {
    return this.check(address).allowed;
  }
}
