// Helpers for the gathering tests: a loopback-only view of the real network (so tests never
// bind on the machine's other interfaces), a scripted DNS, and scripted STUN/TURN servers
// (silent, answering with a fixed mapping, refusing with 403).
import * as dgram from 'node:dgram';
import {
  Attr,
  AttrType,
  type Family,
  type InterfaceAddress,
  MessageBuilder,
  MessageClass,
  type Network,
  type StunMessage,
  decodeMessage,
  longTermKey,
  nodeNetwork,
} from '@natkit/stun';
import type { Cleanup } from '../../../test/helpers/cleanup.js';

export const LO4: InterfaceAddress = { name: 'lo', address: '127.0.0.1', family: 'IPv4', internal: true, prefix: 8 };
export const LO6: InterfaceAddress = { name: 'lo', address: '::1', family: 'IPv6', internal: true, prefix: 128 };

/**
 * The kernel's UDP sockets, but only the interfaces given (loopback by default) and a DNS
 * that knows only `names` (anything else fails with ENOTFOUND, as getaddrinfo does).
 * Counts the UDP sockets opened through it.
 */
export function loopbackNetwork(
  opts: { interfaces?: InterfaceAddress[]; names?: Record<string, Array<{ address: string; family: Family }>> } = {},
): Network & { opened: number; lookups: string[] } {
  const net = {
    opened: 0,
    lookups: [] as string[],
    createUdpSocket: (o: Parameters<Network['createUdpSocket']>[0]) => {
      net.opened++;
      return nodeNetwork.createUdpSocket(o);
    },
    interfaces: () => opts.interfaces ?? [LO4],
    lookup: async (host: string, family?: Family) => {
      net.lookups.push(host);
      const r = opts.names?.[host];
      if (!r) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
      return family ? r.filter((x) => x.family === family) : r;
    },
  };
  return net;
}

export interface ScriptedServer {
  port: number;
  seen: StunMessage[];
  /** Where each request came from. */
  sources: Array<{ address: string; port: number }>;
}

/** A UDP server on 127.0.0.1 that answers each request with `reply` (or stays silent). */
export async function scriptedServer(cleanup: Cleanup, reply: (m: StunMessage) => Buffer | undefined): Promise<ScriptedServer> {
  const sock = dgram.createSocket('udp4');
  const seen: StunMessage[] = [];
  const sources: ScriptedServer['sources'] = [];
  sock.on('message', (buf, rinfo) => {
    let m: StunMessage;
    try {
      m = decodeMessage(buf);
    } catch {
      return;
    }
    seen.push(m);
    sources.push({ address: rinfo.address, port: rinfo.port });
    const out = reply(m);
    if (out) sock.send(out, rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  cleanup.defer(() => new Promise<void>((r) => sock.close(() => r())));
  return { port: sock.address().port, seen, sources };
}

/** A server that never answers (a dead STUN/TURN server). */
export function silentServer(cleanup: Cleanup): Promise<ScriptedServer> {
  return scriptedServer(cleanup, () => undefined);
}

/** A STUN server that maps everyone to `mapped` (as a NAT would). */
export function mappingServer(cleanup: Cleanup, mapped: { address: string; port: number }): Promise<ScriptedServer> {
  return scriptedServer(cleanup, (m) =>
    new MessageBuilder(m.method, MessageClass.SuccessResponse, m.transactionId)
      .add(Attr.XorMappedAddress, { family: 'IPv4', ...mapped })
      .encode({ fingerprint: true }),
  );
}

/**
 * A TURN server that challenges with 401 and then refuses every authenticated Allocate
 * with 403 Forbidden (what a server says to a user it does not serve).
 */
export function forbiddingServer(cleanup: Cleanup, creds: { username: string; password: string }): Promise<ScriptedServer> {
  const realm = 'forbidding.test';
  return scriptedServer(cleanup, (m) => {
    const b = new MessageBuilder(m.method, MessageClass.ErrorResponse, m.transactionId);
    if (!m.has(AttrType.MESSAGE_INTEGRITY) && !m.has(AttrType.MESSAGE_INTEGRITY_SHA256)) {
      return b.add(Attr.ErrorCode, { code: 401, reason: 'Unauthorized' }).add(Attr.Realm, realm).add(Attr.Nonce, 'nonce-1').encode();
    }
    // An answer to an authenticated request is signed with the same key (RFC 8489 section 9.2.4).
    return b.add(Attr.ErrorCode, { code: 403, reason: 'Forbidden' }).encode({ integrity: { key: longTermKey(creds.username, realm, creds.password) } });
  });
}

/** Resolves when `cond()` holds, checking after each event-loop turn; rejects after `ms` of real time. */
export async function until(cond: () => boolean, what: string, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
