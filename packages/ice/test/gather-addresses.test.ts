// Which local addresses are gathered, and their local preferences (RFC 8445 5.1.1.1 and
// 5.1.2.1, RFC 8421 section 4 with RFC 6724 precedence).
import { describe, expect, it } from 'vitest';
import type { InterfaceAddress } from '@natkit/stun';
import { LocalPreferences, addressPrecedence, isLinkLocal, isLoopback, isUnusable, orderAddresses, usableAddresses } from '../src/gather/addresses.js';

const ifa = (name: string, address: string, internal = false): InterfaceAddress => ({
  name,
  address,
  family: address.includes(':') ? 'IPv6' : 'IPv4',
  internal,
  prefix: address.includes(':') ? 64 : 24,
});

describe('address classes', () => {
  it('loopback, link-local, unusable', () => {
    expect(['127.0.0.1', '127.9.9.9', '::1'].map(isLoopback)).toEqual([true, true, true]);
    expect(['10.0.0.1', '::2', 'fe80::1'].map(isLoopback)).toEqual([false, false, false]);
    expect(['169.254.3.4', 'fe80::1', 'fe80::1%eth0', 'febf::1'].map(isLinkLocal)).toEqual([true, true, true, true]);
    expect(['169.255.0.1', 'fec0::1', '2001:db8::1'].map(isLinkLocal)).toEqual([false, false, false]);
    expect(['0.0.0.0', '::', '224.0.0.1', 'ff02::1', '::ffff:192.0.2.1', 'junk'].map(isUnusable)).toEqual([true, true, true, true, true, true]);
    expect(['192.0.2.1', '2001:db8::1'].map(isUnusable)).toEqual([false, false]);
  });

  it('RFC 6724 section 2.1 precedence', () => {
    expect(addressPrecedence('::1')).toBe(50);
    expect(addressPrecedence('2001:db8::1')).toBe(40);
    expect(addressPrecedence('192.0.2.1')).toBe(35);
    expect(addressPrecedence('2002:c000:201::1')).toBe(30);
    expect(addressPrecedence('2001:0:4136:e378::1')).toBe(5);
    expect(addressPrecedence('fd00::2')).toBe(3);
    expect(addressPrecedence('fec0::1')).toBe(1);
  });
});

describe('usableAddresses (RFC 8445 section 5.1.1.1)', () => {
  const all = [ifa('lo', '127.0.0.1', true), ifa('lo', '::1', true), ifa('eth0', '192.0.2.2'), ifa('eth0', 'fd00::2'), ifa('eth0', 'fe80::fc:ff:fe00:1'), ifa('eth1', '169.254.9.9'), ifa('eth2', '192.0.2.2')];

  it('leaves out loopback, link-local and duplicate addresses by default', () => {
    expect(usableAddresses(all).map((a) => a.address)).toEqual(['192.0.2.2', 'fd00::2']);
  });

  it('takes them when asked, and only the families asked for', () => {
    expect(usableAddresses(all, { includeLoopback: true, includeLinkLocal: true }).map((a) => a.address)).toEqual([
      '127.0.0.1',
      '::1',
      '192.0.2.2',
      'fd00::2',
      'fe80::fc:ff:fe00:1',
      '169.254.9.9',
    ]);
    expect(usableAddresses(all, { families: ['IPv6'] }).map((a) => a.address)).toEqual(['fd00::2']);
  });

  it('falls back to loopback only when nothing else is there and loopback was not refused', () => {
    const lo = [ifa('lo', '127.0.0.1', true)];
    expect(usableAddresses(lo).map((a) => a.address)).toEqual(['127.0.0.1']);
    expect(usableAddresses(lo, { includeLoopback: false })).toEqual([]);
  });

  it('applies the interface filter', () => {
    expect(usableAddresses(all, { interfaceFilter: (a) => a.name === 'eth0' && a.family === 'IPv4' }).map((a) => a.address)).toEqual(['192.0.2.2']);
  });
});

describe('orderAddresses and LocalPreferences (RFC 8421 section 4)', () => {
  it('sorts each family by precedence and intermingles them, IPv6 first when its best is better', () => {
    const list = ['192.0.2.1', '198.51.100.1', 'fd00::1', '2001:db8::1', '2001:db8::2'].map((address) => ({ address }));
    expect(orderAddresses(list).map((a) => a.address)).toEqual(['2001:db8::1', '192.0.2.1', '2001:db8::2', '198.51.100.1', 'fd00::1']);
    // Only ULA IPv6 (precedence 3, below IPv4's 35): IPv4 leads.
    expect(orderAddresses([{ address: 'fd00::1' }, { address: '192.0.2.1' }]).map((a) => a.address)).toEqual(['192.0.2.1', 'fd00::1']);
    expect(orderAddresses([{ address: '192.0.2.1' }]).map((a) => a.address)).toEqual(['192.0.2.1']);
  });

  it('65535 for the only address; unique per type; relays ranked by transport, then server order', () => {
    const one = new LocalPreferences(['192.0.2.1']);
    expect(one.hostOrReflexive('host', 1, '192.0.2.1')).toBe(65535);
    // A second srflx on the same base gets the next one down; the host type is separate.
    expect(one.hostOrReflexive('srflx', 1, '192.0.2.1')).toBe(65535);
    expect(one.hostOrReflexive('srflx', 1, '192.0.2.1')).toBe(65534);
    const two = new LocalPreferences(['2001:db8::1', '192.0.2.1']);
    expect(two.hostOrReflexive('host', 1, '2001:db8::1')).toBe(0xffff);
    expect(two.hostOrReflexive('host', 1, '192.0.2.1')).toBe(0xfeff);
    const udp0 = two.relayed(1, 'udp', 0, '2001:db8::1');
    const udp0v4 = two.relayed(1, 'udp', 0, '192.0.2.1');
    const udp1 = two.relayed(1, 'udp', 1, '2001:db8::1');
    const tcp0 = two.relayed(1, 'tcp', 0, '2001:db8::1');
    const tls0 = two.relayed(1, 'tls', 0, '2001:db8::1');
    expect(udp0).toBe((2 << 14) | (63 << 8) | 255);
    expect([udp0, udp0v4, udp1, tcp0, tls0]).toEqual([...[udp0, udp0v4, udp1, tcp0, tls0]].sort((a, b) => b - a));
    expect(new Set([udp0, udp0v4, udp1, tcp0, tls0]).size).toBe(5);
  });
});
