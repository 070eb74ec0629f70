import { type Family, type InterfaceAddress, ipFamily, ipToBytes } from '@natkit/stun';

/**
 * Which local addresses gathering uses, and in what order of preference: RFC 8445 section
 * 5.1.1.1 (host candidates: every usable interface, loopback and link-local left out by
 * default), RFC 8421 section 4 (multihomed and dual-stack hosts: local preferences that
 * follow RFC 6724's address precedence and intermingle the address families so that a
 * broken family does not delay the other).
 */

/** An address without its IPv6 zone (`fe80::1%eth0` -> `fe80::1`). */
export function stripZone(address: string): string {
  const i = address.indexOf('%');
  return i < 0 ? address : address.slice(0, i);
}

export function isLoopback(address: string): boolean {
  const a = stripZone(address);
  const f = ipFamily(a);
  if (f === 'IPv4') return a.startsWith('127.');
  if (f === 'IPv6') {
    const b = ipToBytes(a, 'IPv6');
    return b.slice(0, 15).every((x) => x === 0) && b[15] === 1;
  }
  return false;
}

/** 169.254.0.0/16 and fe80::/10 (RFC 3927, RFC 4291). */
export function isLinkLocal(address: string): boolean {
  const a = stripZone(address);
  const f = ipFamily(a);
  if (f === 'IPv4') return a.startsWith('169.254.');
  if (f === 'IPv6') {
    const b = ipToBytes(a, 'IPv6');
    return b[0] === 0xfe && (b[1]! & 0xc0) === 0x80;
  }
  return false;
}

/** Addresses a host candidate must never have: unspecified, multicast, IPv4-mapped IPv6. */
export function isUnusable(address: string): boolean {
  const a = stripZone(address);
  const f = ipFamily(a);
  if (!f) return true;
  const b = ipToBytes(a, f);
  if (b.every((x) => x === 0)) return true;
  if (f === 'IPv4') return b[0]! >= 224; // multicast and reserved
  if (b[0] === 0xff) return true; // multicast
  // ::ffff:a.b.c.d (IPv4-mapped): the IPv4 address is listed on its own.
  return b.slice(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff;
}

function prefixMatch(b: Uint8Array, prefix: number[], bits: number): boolean {
  for (let i = 0; i < bits; i++) {
    const byte = i >> 3;
    const mask = 0x80 >> (i & 7);
    if ((b[byte]! & mask) !== ((prefix[byte] ?? 0) & mask)) return false;
  }
  return true;
}

/**
 * RFC 6724 section 2.1 default policy table precedence; IPv4 addresses count as their
 * IPv4-mapped form (::ffff:0:0/96, precedence 35).
 */
export function addressPrecedence(address: string): number {
  const a = stripZone(address);
  const f = ipFamily(a);
  if (f === 'IPv4') return 35;
  if (f !== 'IPv6') return 0;
  const b = ipToBytes(a, 'IPv6');
  if (isLoopback(a)) return 50; // ::1/128
  if (prefixMatch(b, [0x20, 0x02], 16)) return 30; // 2002::/16 6to4
  if (prefixMatch(b, [0x20, 0x01, 0, 0], 32)) return 5; // 2001::/32 Teredo
  if (prefixMatch(b, [0xfc], 7)) return 3; // fc00::/7 ULA
  if (prefixMatch(b, [0xfe, 0xc0], 10)) return 1; // fec0::/10 site-local (deprecated)
  if (prefixMatch(b, [0x3f, 0xfe], 16)) return 1; // 3ffe::/16 6bone
  if (prefixMatch(b, [], 96)) return 1; // ::/96 IPv4-compatible (deprecated)
  return 40; // ::/0
}

export interface AddressFilterOptions {
  families?: readonly Family[];
  includeLoopback?: boolean;
  includeLinkLocal?: boolean;
  interfaceFilter?: ((a: InterfaceAddress) => boolean) | undefined;
}

/**
 * The interface addresses gathering binds host sockets on: the families asked for; no
 * loopback or link-local unless asked (RFC 8445 section 5.1.1.1: loopback addresses MUST
 * NOT be included unless nothing else is there; link-local ones only when asked, as they
 * work only on the link); never unspecified, multicast or IPv4-mapped; then the user's
 * filter. When `includeLoopback` is not set and nothing else is left, loopback is used.
 */
export function usableAddresses(all: readonly InterfaceAddress[], options: AddressFilterOptions = {}): InterfaceAddress[] {
  const families = options.families ?? ['IPv4', 'IPv6'];
  const pick = (loopback: boolean) =>
    all.filter(
      (a) =>
        families.includes(a.family) &&
        !isUnusable(a.address) &&
        (loopback || !(a.internal || isLoopback(a.address))) &&
        (options.includeLinkLocal || !isLinkLocal(a.address)) &&
        (!options.interfaceFilter || options.interfaceFilter(a)),
    );
  const out = pick(options.includeLoopback === true);
  if (out.length === 0 && options.includeLoopback === undefined) return pick(true);
  // One entry per address (an address listed on two interfaces is one host candidate).
  const seen = new Set<string>();
  return out.filter((a) => {
    const k = stripZone(a.address).toLowerCase();
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/**
 * RFC 8421 section 4: orders local addresses for their local preference. Within each
 * family, by RFC 6724 precedence (then in the order given); then the families are
 * intermingled, one address of each in turn, starting with the family whose best address
 * has the higher precedence (IPv6 for a global IPv6 address, 40 against IPv4's 35). A host
 * with one address gets just that one.
 */
export function orderAddresses<T extends { address: string }>(addresses: readonly T[]): T[] {
  const byPrec = (list: T[]) =>
    list
      .map((a, i) => ({ a, i, p: addressPrecedence(a.address) }))
      .sort((x, y) => y.p - x.p || x.i - y.i)
      .map((x) => x.a);
  const v6 = byPrec(addresses.filter((a) => ipFamily(stripZone(a.address)) === 'IPv6'));
  const v4 = byPrec(addresses.filter((a) => ipFamily(stripZone(a.address)) === 'IPv4'));
  const first = v6.length && (!v4.length || addressPrecedence(v6[0]!.address) >= addressPrecedence(v4[0]!.address)) ? v6 : v4;
  const second = first === v6 ? v4 : v6;
  const out: T[] = [];
  for (let i = 0; i < Math.max(first.length, second.length); i++) {
    if (i < first.length) out.push(first[i]!);
    if (i < second.length) out.push(second[i]!);
  }
  return out;
}

/**
 * Local preferences (RFC 8445 section 5.1.2.1: 0-65535, unique among candidates of one
 * type and component). The high byte ranks the local address (RFC 8421 order, 255 for the
 * first); the low byte tells apart candidates of one type on one address (255 for the first).
 * A relayed candidate's preference ranks first the transport to the TURN server (UDP over
 * TCP over TLS, as a relay over UDP adds no head-of-line blocking), then the server's place
 * in the configuration (RFC 8445 5.1.2.1: "the local preference value is used to indicate
 * a preference among different servers"), then the local address.
 */
export class LocalPreferences {
  private readonly used = new Map<string, Set<number>>();
  private readonly rank = new Map<string, number>();

  /** `addresses` in RFC 8421 order (orderAddresses). */
  constructor(addresses: readonly string[]) {
    addresses.forEach((a, i) => this.rank.set(stripZone(a).toLowerCase(), Math.max(0, 255 - i)));
  }

  addressRank(address: string): number {
    return this.rank.get(stripZone(address).toLowerCase()) ?? 0;
  }

  /** host and srflx: the address's rank, then 255 down for each further one of that type. */
  hostOrReflexive(type: string, component: number, baseAddress: string): number {
    return this.claim(`${type}/${component}`, (this.addressRank(baseAddress) << 8) | 255);
  }

  /** relay: server transport (2 bits), server index (6 bits), local address rank (8 bits). */
  relayed(component: number, serverTransport: 'udp' | 'tcp' | 'tls', serverIndex: number, localAddress: string): number {
    const t = serverTransport === 'udp' ? 2 : serverTransport === 'tcp' ? 1 : 0;
    const s = 63 - Math.min(63, Math.max(0, serverIndex));
    return this.claim(`relay/${component}`, (t << 14) | (s << 8) | this.addressRank(localAddress));
  }

  /** The wanted preference, or the next lower one free for this type (uniqueness, 5.1.2.1). */
  private claim(key: string, wanted: number): number {
    let set = this.used.get(key);
    if (!set) this.used.set(key, (set = new Set()));
    let p = wanted;
    while (set.has(p) && p > 0) p--;
    while (set.has(p) && p < 65535) p++;
    set.add(p);
    return p;
  }
}
