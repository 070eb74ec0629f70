// mDNS one-shot queries (RFC 6762 section 5.1) for browsers' `<uuid>.local` host candidates,
// against an in-test responder on loopback, and the DNS codec against hostile answers.
import * as dgram from 'node:dgram';
import { type DatagramSocket, ManualClock, type Network, nodeNetwork } from '@natkit/stun';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { useCleanup } from '../../../test/helpers/cleanup.js';
import { MDNS_IPV4, MdnsError, MdnsResolver } from '../src/index.js';
import { DNS_TYPE_A, DNS_TYPE_AAAA, decodeAnswer, decodeQuery, encodeAnswer, encodeQuery, mdnsName } from '../src/mdns/dns.js';

const cleanup = useCleanup();
const NAME = '1f4712db-ea17-4bcf-a596-105139dfd8bf.local';

/** A responder that answers A/AAAA queries for the names it knows, by unicast to the asker. */
async function responder(names: Record<string, Array<{ family: 'IPv4' | 'IPv6'; bytes: number[] }>>, opts: { silent?: boolean } = {}) {
  const sock = dgram.createSocket('udp4');
  const queries: Array<{ name: string; types: number[] }> = [];
  sock.on('message', (msg, rinfo) => {
    const q = decodeQuery(msg);
    if (!q) return;
    queries.push({ name: q.name, types: q.types });
    const answers = names[q.name];
    if (!answers || opts.silent) return;
    sock.send(encodeAnswer(q.id, q.name, answers.map((a) => ({ family: a.family, bytes: Uint8Array.from(a.bytes) }))), rinfo.port, rinfo.address);
  });
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', r));
  cleanup.defer(() => new Promise<void>((r) => sock.close(() => r())));
  return { server: { family: 'IPv4' as const, address: '127.0.0.1', port: sock.address().port }, queries };
}

describe('mDNS one-shot resolution (RFC 6762 5.1)', () => {
  it('resolves a browser host candidate name to its addresses', async () => {
    const r = await responder({ [NAME]: [{ family: 'IPv4', bytes: [192, 168, 1, 20] }, { family: 'IPv6', bytes: [0x20, 0x01, 0x0d, 0xb8, ...Array(11).fill(0), 7] }] });
    const resolver = cleanup.track(new MdnsResolver({ server: r.server, timeoutMs: 20_000 }));
    // Names are case-insensitive (RFC 6762 section 16).
    await expect(resolver.resolve(NAME.toUpperCase())).resolves.toEqual([
      { family: 'IPv4', address: '192.168.1.20' },
      { family: 'IPv6', address: '2001:db8::7' },
    ]);
    // One query, asking for A and AAAA.
    expect(r.queries).toEqual([{ name: NAME, types: [DNS_TYPE_A, DNS_TYPE_AAAA] }]);
  });

  it('sends to 224.0.0.251:5353 by default, asks again every second, gives up at the timeout', async () => {
    const clock = new ManualClock();
    const sent: Array<{ to: string; port: number; data: Buffer }> = [];
    let closed = 0;
    const fake: DatagramSocket = {
      address: () => ({ address: '0.0.0.0', family: 'IPv4', port: 40000 }),
      send: (msg, port, address, cb) => {
        sent.push({ to: address, port, data: Buffer.from(msg) });
        cb?.(null, msg.length);
      },
      on() {
        return this;
      },
      off() {
        return this;
      },
      close: (cb) => {
        closed++;
        cb?.();
      },
    };
    const network: Network = { ...nodeNetwork, createUdpSocket: async () => fake };
    const resolver = new MdnsResolver({ network, clock, timeoutMs: 3000 });
    const p = resolver.resolve(NAME);
    const failed = expect(p).rejects.toMatchObject({ code: 'TIMEOUT' });
    await Promise.resolve();
    await Promise.resolve();
    for (let t = 0; t < 3000; t += 500) {
      clock.advance(500);
      await Promise.resolve();
      await Promise.resolve();
    }
    await failed;
    await expect(p).rejects.toBeInstanceOf(MdnsError);
    expect(sent.map((s) => `${s.to}:${s.port}`)).toEqual(Array(3).fill(`${MDNS_IPV4.address}:5353`));
    expect(decodeQuery(sent[0]!.data)).toMatchObject({ name: NAME, types: [1, 28] });
    // The QU bit (RFC 6762 5.4) is set on each question.
    expect(sent[0]!.data.readUInt16BE(sent[0]!.data.length - 2) & 0x8000).toBe(0x8000);
    expect(clock.pending).toBe(0);
    await Promise.resolve();
    expect(closed).toBe(1);
  });

  it('tells mDNS names (under .local, any case, trailing dot or not) from others, as the agent and the resolver both ask', () => {
    expect(mdnsName('1F4712DB-ea17.Local.')).toBe('1f4712db-ea17.local');
    expect(mdnsName('host.local')).toBe('host.local');
    expect(mdnsName('example.com')).toBeUndefined();
    expect(mdnsName('local.example.com')).toBeUndefined();
    expect(mdnsName('notlocal')).toBeUndefined();
  });

  it('refuses names outside .local, times out on silence, and close() ends pending queries', async () => {
    const r = await responder({}, { silent: true });
    const resolver = cleanup.track(new MdnsResolver({ server: r.server, timeoutMs: 300, retryMs: 100 }));
    await expect(resolver.resolve('example.com')).rejects.toMatchObject({ code: 'BAD_NAME' });
    await expect(resolver.resolve(`${'a'.repeat(70)}.local`)).rejects.toMatchObject({ code: 'BAD_NAME' });
    await expect(resolver.resolve('nobody.local')).rejects.toMatchObject({ code: 'TIMEOUT' });
    const pending = resolver.resolve('later.local');
    await resolver.close();
    await expect(pending).rejects.toMatchObject({ code: 'CLOSED' });
    await expect(resolver.resolve('x.local')).rejects.toMatchObject({ code: 'CLOSED' });
  });
});

describe('the DNS codec under hostile answers', () => {
  it('reads compressed names and skips other records', () => {
    const q = encodeQuery(7, 'a.local', [1]);
    // A response whose answer name is a pointer to the question's name.
    const rr = Buffer.from([0xc0, 12, 0, 1, 0x80, 1, 0, 0, 0, 120, 0, 4, 10, 0, 0, 9]);
    const txt = Buffer.from([0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 120, 0, 2, 1, 0x41]);
    const msg = Buffer.concat([q, txt, rr]);
    msg.writeUInt16BE(0x8400, 2);
    msg.writeUInt16BE(2, 6);
    expect(decodeAnswer(msg)).toEqual({ id: 7, response: true, addresses: [{ name: 'a.local', family: 'IPv4', address: '10.0.0.9' }] });
    // A pointer loop is no answer.
    const loop = Buffer.concat([Buffer.from([0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 0]), Buffer.from([0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 1, 2, 3, 4])]);
    expect(decodeAnswer(loop)).toBeUndefined();
  });

  it('never throws on any bytes', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (u) => {
        const b = Buffer.from(u);
        decodeAnswer(b);
        decodeQuery(b);
      }),
      { seed: 6762, numRuns: 3000 },
    );
  });
});
