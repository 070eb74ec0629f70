import * as dgram from 'node:dgram';
import { lookup as dnsLookup } from 'node:dns/promises';
import { networkInterfaces } from 'node:os';
import type { Family } from '../codec/ip.js';
import { literalLookup } from './udp.js';

/**
 * What natkit's Node adapters need of the operating system's network, as an interface, so
 * that an in-memory network (NAT routers, loss, delay, a manual clock) can stand in for the
 * kernel in deterministic tests, and the same adapter code runs over both. `nodeNetwork`
 * is the real one (node:dgram, node:os, node:dns). Per-packet paths hold the socket object
 * itself, so the indirection costs nothing after the socket is created.
 */

/** Where a datagram came from. */
export interface DatagramInfo {
  address: string;
  family: Family;
  port: number;
  size: number;
}

/** A bound UDP socket: the part of `dgram.Socket` the adapters use. */
export interface DatagramSocket {
  address(): { address: string; family: string; port: number };
  send(msg: Uint8Array, port: number, address: string, callback?: (err: Error | null, bytes: number) => void): void;
  on(event: 'message', listener: (msg: Buffer, rinfo: DatagramInfo) => void): this;
  on(event: 'error', listener: (err: Error) => void): this;
  on(event: 'close', listener: () => void): this;
  off(event: 'message', listener: (msg: Buffer, rinfo: DatagramInfo) => void): this;
  off(event: 'error', listener: (err: Error) => void): this;
  off(event: 'close', listener: () => void): this;
  close(callback?: () => void): unknown;
}

export interface UdpSocketOptions {
  family: Family;
  /** Local address; the wildcard of the family by default. */
  address?: string;
  /** Local port; 0 (any) by default. */
  port?: number;
  /** Kernel buffer sizes, for sockets every client shares. */
  recvBufferSize?: number;
  sendBufferSize?: number;
  /** SO_REUSEPORT (Node >= 22.12 on Linux); refused where the platform lacks it. */
  reusePort?: boolean;
}

/** One address of a local network interface. */
export interface InterfaceAddress {
  /** Interface name (eth0, wlan0, ...). */
  name: string;
  address: string;
  family: Family;
  /** Loopback. */
  internal: boolean;
  /** Prefix length. */
  prefix: number;
  /** IPv6 scope id (link-local addresses). */
  scopeid?: number;
}

export interface Network {
  /** Opens a UDP socket and binds it; rejects if the bind fails (EADDRINUSE, ...). */
  createUdpSocket(options: UdpSocketOptions): Promise<DatagramSocket>;
  /** Every address of every local interface, loopback included. */
  interfaces(): InterfaceAddress[];
  /** Resolves a host name (literal addresses come back as they are). */
  lookup(hostname: string, family?: Family): Promise<Array<{ address: string; family: Family }>>;
}

function bindUdp(options: UdpSocketOptions): Promise<DatagramSocket> {
  const family = options.family;
  const s = dgram.createSocket({
    type: family === 'IPv6' ? 'udp6' : 'udp4',
    lookup: literalLookup as never,
    ...(options.recvBufferSize ? { recvBufferSize: options.recvBufferSize } : {}),
    ...(options.sendBufferSize ? { sendBufferSize: options.sendBufferSize } : {}),
    ...(options.reusePort ? ({ reusePort: true } as object) : {}),
  });
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => {
      s.close();
      reject(err);
    };
    s.once('error', onError);
    // exclusive: in a cluster worker a non-exclusive bind would be handed to the primary
    // and shared; natkit's sockets (listeners with reusePort, relay sockets) are each its own.
    s.bind({ address: options.address ?? (family === 'IPv6' ? '::' : '0.0.0.0'), port: options.port ?? 0, exclusive: true }, () => {
      s.off('error', onError);
      resolve(s as unknown as DatagramSocket);
    });
  });
}

/** The operating system's network. */
export const nodeNetwork: Network = {
  createUdpSocket: bindUdp,
  interfaces(): InterfaceAddress[] {
    const out: InterfaceAddress[] = [];
    for (const [name, list] of Object.entries(networkInterfaces())) {
      for (const a of list ?? []) {
        const family: Family = a.family === 'IPv6' || (a.family as unknown) === 6 ? 'IPv6' : 'IPv4';
        const prefix = a.cidr ? Number(a.cidr.slice(a.cidr.lastIndexOf('/') + 1)) : family === 'IPv6' ? 128 : 32;
        out.push({ name, address: a.address, family, internal: a.internal, prefix, ...(family === 'IPv6' && 'scopeid' in a ? { scopeid: a.scopeid } : {}) });
      }
    }
    return out;
  },
  async lookup(hostname, family) {
    const all = await dnsLookup(hostname, { all: true, family: family === 'IPv6' ? 6 : family === 'IPv4' ? 4 : 0, verbatim: true });
    return all.map((a) => ({ address: a.address, family: a.family === 6 ? ('IPv6' as const) : ('IPv4' as const) }));
  },
};
