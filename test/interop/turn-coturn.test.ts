// TURN interop with coturn 4.6.1 (Debian package coturn), programs nobody here wrote:
//
//  1. coturn's client turnutils_uclient against natkit's relay (TurnServer in-process on
//     127.0.0.1, and once the relayserver binary), with coturn's turnutils_peer as
//     the UDP peer that echoes every datagram. Over UDP and TCP, with Send/Data
//     indications (-s) and with ChannelData; with TURN REST API credentials (-W); and
//     client to client (-y: two allocations relaying to each other). Its printed summary
//     must show every message back ("tot_send_msgs=N, tot_recv_msgs=N", "Total lost
//     packets 0"), natkit's metrics the same counts in each direction, and a wire tap
//     between the two (test/helpers/interop-turn-tap.ts) how they travelled.
//  2. natkit's TurnClient against coturn's turnserver as the relay: long-term
//     credentials and the REST API secret, over UDP and TCP, by indications and over a
//     channel, both ways to a UDP peer, the relayed address in coturn's configured range,
//     and coturn's own account of the peer traffic ("peer usage: rp= rb= sp= sb=").
//
// Known divergence (not a natkit bug): turnutils_uclient picks channel numbers at random
// in 0x4000-0x7FFF, the RFC 5766 range (coturn's stun_set_channel_bind_request_str:
// 0x4000 + random % (0x7FFF - 0x4000 + 1)). RFC 8656 section 12 shrank the range to
// 0x4000-0x4FFF (0x5000-0xFFFF are reserved for RFC 7983 demultiplexing) and section
// 12.2 has the server answer 400 to a ChannelBind outside it, which natkit does by
// default ("400 Bad Request: channel 0x5d0f is outside 0x4000-0x4FFF"); uclient then
// exits. So the ChannelData tests run uclient once against the strict default (it must
// either succeed or be refused for exactly that reason) and then against a relay with
// legacyChannels (relayserver --legacy-channels), where every run must succeed.
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { TransportAddress } from '@natkit/stun';
import { TurnClient, restPassword } from '@natkit/turn';
import { needProgram } from '../helpers/programs.js';
import { type TurnTap, describeCounts, startTurnTap } from '../helpers/interop-turn-tap.js';
import {
  LOOPBACK,
  NATKIT_RELAY_MAX,
  NATKIT_RELAY_MIN,
  type NatkitRelay,
  PASS,
  SECRET,
  USER,
  type UclientResult,
  coturnPeerUsage,
  metric,
  openUdpPeer,
  runUclient,
  startCoturnRelay,
  startNatkitRelay,
  startRelayserverBinary,
  startTurnutilsPeer,
} from '../helpers/interop-turn-peers.js';
import { useCleanup } from '../helpers/cleanup.js';
import { type Proc, startBin } from '../helpers/spawn.js';

const { defer } = useCleanup();
function later<T extends { close(): Promise<unknown> } | { stop(): Promise<unknown> }>(x: T): T {
  defer(() => ('close' in x ? x.close() : x.stop()));
  return x;
}

// ---------------------------------------------------------------------------------------
// 1. turnutils_uclient -> natkit's relay -> turnutils_peer

/** Per-allocation counters natkit logged when each allocation went, plus the live ones. */
function allocationCounters(relay: NatkitRelay): Array<{ toPeerPackets: number; toPeerBytes: number; toClientPackets: number; toClientBytes: number }> {
  const gone = relay.log
    .filter((l) => l.msg === 'allocation deleted')
    .map((l) => l.fields as { toPeerPackets: number; toPeerBytes: number; toClientPackets: number; toClientBytes: number });
  const live = relay.server.allAllocations().map((a) => ({ ...a.counters }));
  return [...gone, ...live].map(({ toPeerPackets, toPeerBytes, toClientPackets, toClientBytes }) => ({ toPeerPackets, toPeerBytes, toClientPackets, toClientBytes }));
}

/** The relayed ports natkit handed out (its "allocation created" log events). */
function relayedPorts(relay: NatkitRelay): number[] {
  return relay.log
    .filter((l) => l.msg === 'allocation created')
    .flatMap((l) => (l.fields.relayed as string[]).map((a) => Number(a.slice(a.lastIndexOf(':') + 1))));
}

function why(r: UclientResult, relay: NatkitRelay, tap: TurnTap): string {
  return `uclient exit ${r.code} in ${r.ms} ms\nstdout:\n${r.stdout.slice(-3000)}\nstderr:\n${r.stderr.slice(-1500)}\nnatkit:\n${relay.logText().slice(-3000)}\ntap to server: ${describeCounts(tap.toServer)}\ntap to client: ${describeCounts(tap.toClient)}`;
}

/** uclient's summary says every message it sent came back. */
function expectAllBack(r: UclientResult, msgs: number, bytes: number, info: string): void {
  expect(r.code, info).toBe(0);
  expect(r.sentMsgs, info).toBe(msgs);
  expect(r.recvMsgs, info).toBe(msgs);
  expect(r.sentBytes, info).toBe(bytes);
  expect(r.recvBytes, info).toBe(bytes);
  expect(r.lost, info).toBe(0);
  expect(r.sendDropped, info).toBe(0);
  expect(r.stdout, info).toMatch(/Total lost packets 0 \(0\.0+%\), total send dropped 0 /);
}

/** natkit relayed exactly `msgs` datagrams of `len` bytes each way, dropping nothing. */
async function expectRelayed(relay: NatkitRelay, msgs: number, len: number, info: string): Promise<void> {
  const s = relay.server;
  expect(await metric(s, 'natkit_turn_relayed_packets_total', { direction: 'to_peer' }), info).toBe(msgs);
  expect(await metric(s, 'natkit_turn_relayed_packets_total', { direction: 'to_client' }), info).toBe(msgs);
  expect(await metric(s, 'natkit_turn_relayed_bytes_total', { direction: 'to_peer' }), info).toBe(msgs * len);
  expect(await metric(s, 'natkit_turn_relayed_bytes_total', { direction: 'to_client' }), info).toBe(msgs * len);
  for (const reason of ['no_permission', 'no_channel', 'no_allocation', 'malformed', 'not_stun', 'bad_fingerprint', 'rate_limited', 'send_failed']) {
    expect(await metric(s, 'natkit_turn_dropped_total', { reason }), `${reason}\n${info}`).toBe(0);
  }
  for (const p of relayedPorts(relay)) {
    expect(p).toBeGreaterThanOrEqual(NATKIT_RELAY_MIN);
    expect(p).toBeLessThanOrEqual(NATKIT_RELAY_MAX);
  }
}

interface UclientRun {
  r: UclientResult;
  relay: NatkitRelay;
  tap: TurnTap;
  info: string;
}

/** One uclient run through a tap into a fresh natkit relay. */
async function uclientRun(uclient: string, transport: 'udp' | 'tcp', args: string[], relayOpts: Parameters<typeof startNatkitRelay>[0] = {}): Promise<UclientRun> {
  const relay = later(await startNatkitRelay(relayOpts));
  const tap = later(await startTurnTap(transport, { address: LOOPBACK, port: transport === 'udp' ? relay.udpPort : relay.tcpPort }));
  const r = await runUclient(uclient, [...(transport === 'tcp' ? ['-t'] : []), '-p', String(tap.port), ...args, LOOPBACK]);
  return { r, relay, tap, info: why(r, relay, tap) };
}

/**
 * A ChannelData run against the strict default: uclient draws two numbers in
 * 0x4000-0x7FFF, so most runs are refused; a refusal must be natkit's 400 for a number in
 * 0x5000-0x7FFF, saying how to get past it, and nothing else. When both numbers happen to
 * fall in 0x4000-0x4FFF, the run must be as good as any: exit 0, every message back, each
 * relayed once each way. Returns the refused number, if any.
 */
async function strictChannelRun(uclient: string, transport: 'udp' | 'tcp', args: string[], msgs: number, len: number): Promise<number | undefined> {
  const run = await uclientRun(uclient, transport, args);
  const n = run.r.refusedChannels[0];
  if (n !== undefined) {
    expect(n, run.info).toBeGreaterThanOrEqual(0x5000);
    expect(n, run.info).toBeLessThanOrEqual(0x7fff);
    expect(run.r.code, run.info).not.toBe(0);
    expect(run.r.sentMsgs, run.info).toBeUndefined();
    expect(await metric(run.relay.server, 'natkit_turn_error_responses_total', { code: '400' }), run.info).toBe(1);
    expect(await metric(run.relay.server, 'natkit_turn_relayed_packets_total', { direction: 'to_peer' }), run.info).toBe(0);
  } else {
    expect(await metric(run.relay.server, 'natkit_turn_error_responses_total', { code: '400' }), run.info).toBe(0);
    expectAllBack(run.r, msgs, msgs * len, run.info);
    await expectRelayed(run.relay, msgs, len, run.info);
    expect(run.tap.toServer.channelData, run.info).toBe(msgs);
  }
  await run.tap.close();
  await run.relay.close();
  return n;
}

describe("coturn's turnutils_uclient against natkit's relay, coturn's turnutils_peer echoing", () => {
  for (const transport of ['udp', 'tcp'] as const) {
    it(`${transport}: 3 clients x 20 messages by Send/Data indications (-s) all come back`, async (ctx) => {
      const uclient = needProgram(ctx, 'turnutils_uclient');
      const peer = later(await startTurnutilsPeer(needProgram(ctx, 'turnutils_peer')));
      const M = 3;
      const N = 20;
      const L = 100;
      // -c: no second ("RTCP") allocation per client; -s: Send indications, no channels.
      const { r, relay, tap, info } = await uclientRun(uclient, transport, ['-s', '-c', '-u', USER, '-w', PASS, '-e', LOOPBACK, '-r', String(peer.port), '-n', String(N), '-m', String(M), '-l', String(L)]);
      expectAllBack(r, M * N, M * N * L, info);
      await expectRelayed(relay, M * N, L, info);
      // On the wire: Send indications out, Data indications back, no ChannelData.
      expect(tap.toServer.sendIndications, info).toBe(M * N);
      expect(tap.toClient.dataIndications, info).toBe(M * N);
      expect(tap.toServer.channelData + tap.toClient.channelData, info).toBe(0);
      expect(tap.toServer.other + tap.toClient.other, info).toBe(0);
      // natkit's side: a probe allocation and a real one per client (uclient's first
      // allocation looks for ALTERNATE-SERVER); CreatePermission for the peer's two ports
      // (one IP) per client, and again as uclient refreshes them, every one answered with
      // success (0x0108); no channels; each real allocation relayed N each way.
      expect(await metric(relay.server, 'natkit_turn_allocations_created_total'), info).toBe(2 * M);
      expect(await metric(relay.server, 'natkit_turn_requests_total', { method: 'channel_bind' }), info).toBe(0);
      const perms = await metric(relay.server, 'natkit_turn_requests_total', { method: 'create_permission' });
      expect(perms, info).toBeGreaterThanOrEqual(2 * M);
      expect(tap.toClient.stun.get(0x0108), info).toBe(perms);
      const busy = allocationCounters(relay).filter((c) => c.toPeerPackets + c.toClientPackets > 0);
      expect(busy, info).toEqual(Array.from({ length: M }, () => ({ toPeerPackets: N, toPeerBytes: N * L, toClientPackets: N, toClientBytes: N * L })));
      ctx.annotate(`uclient ${transport} -s -m ${M} -n ${N}: ${r.ms} ms`);
    });

    it(`${transport}: 20 messages over ChannelData come back (RFC 5766 channel numbers, --legacy-channels)`, async (ctx) => {
      const uclient = needProgram(ctx, 'turnutils_uclient');
      const peer = later(await startTurnutilsPeer(needProgram(ctx, 'turnutils_peer')));
      const N = 20;
      // 101 bytes over TCP: ChannelData is padded to 104 on streams both ways (RFC 8656
      // section 12.5; uclient pads when on TCP).
      const L = transport === 'tcp' ? 101 : 100;
      const args = ['-c', '-u', USER, '-w', PASS, '-e', LOOPBACK, '-r', String(peer.port), '-n', String(N), '-m', '1', '-l', String(L)];
      const refused = await strictChannelRun(uclient, transport, args, N, L);
      const { r, relay, tap, info } = await uclientRun(uclient, transport, args, { legacyChannels: true });
      expectAllBack(r, N, N * L, info);
      await expectRelayed(relay, N, L, info);
      // On the wire: ChannelData both ways, on one channel each way, no indications.
      expect(tap.toServer.channelData, info).toBe(N);
      expect(tap.toClient.channelData, info).toBe(N);
      expect(tap.toServer.channelDataBytes, info).toBe(N * L);
      expect(tap.toClient.channelDataBytes, info).toBe(N * L);
      expect(tap.toServer.sendIndications + tap.toClient.dataIndications, info).toBe(0);
      expect(tap.toServer.other + tap.toClient.other, info).toBe(0);
      expect(tap.toClient.channels, info).toEqual(tap.toServer.channels);
      const [ch] = [...tap.toServer.channels];
      expect(tap.toServer.channels.size, info).toBe(1);
      expect(ch, info).toBeGreaterThanOrEqual(0x4000);
      expect(ch, info).toBeLessThanOrEqual(0x7fff);
      // uclient binds a channel to the peer's port+1 and one to its port, each twice
      // (the second is a refresh), and may refresh again while it runs; natkit answered
      // every one and refused nothing.
      expect(await metric(relay.server, 'natkit_turn_requests_total', { method: 'channel_bind' }), info).toBeGreaterThanOrEqual(4);
      expect(tap.toClient.stun.get(0x0109), info).toBe(await metric(relay.server, 'natkit_turn_requests_total', { method: 'channel_bind' }));
      expect(await metric(relay.server, 'natkit_turn_error_responses_total', { code: '400' }), info).toBe(0);
      const busy = allocationCounters(relay).filter((c) => c.toPeerPackets + c.toClientPackets > 0);
      expect(busy, info).toEqual([{ toPeerPackets: N, toPeerBytes: N * L, toClientPackets: N, toClientBytes: N * L }]);
      ctx.annotate(`uclient ${transport} channels: strict run ${refused === undefined ? 'accepted' : `refused 0x${refused.toString(16)} with 400`}; legacy run ${r.ms} ms`);
    });
  }

  it('udp: TURN REST API credentials (-W secret): the username is "expiry:user" and every message comes back', async (ctx) => {
    const uclient = needProgram(ctx, 'turnutils_uclient');
    const peer = later(await startTurnutilsPeer(needProgram(ctx, 'turnutils_peer')));
    const N = 10;
    const { r, relay, tap, info } = await uclientRun(uclient, 'udp', ['-s', '-c', '-u', USER, '-W', SECRET, '-e', LOOPBACK, '-r', String(peer.port), '-n', String(N), '-m', '1']);
    expectAllBack(r, N, N * 100, info);
    await expectRelayed(relay, N, 100, info);
    expect(tap.toServer.sendIndications, info).toBe(N);
    const users = new Set(relay.log.filter((l) => l.msg === 'allocation created').map((l) => String(l.fields.user)));
    expect(users.size, info).toBe(1);
    const [user] = [...users];
    expect(user, info).toMatch(new RegExp(`^(\\d+):${USER}$`));
    // uclient's expiry is in the future (it adds a day or so to now).
    expect(Number(user!.split(':')[0]) * 1000).toBeGreaterThan(Date.now());
    expect(await metric(relay.server, 'natkit_turn_auth_failures_total'), info).toBe(0);
  });

  it('udp: client to client (-y): two allocations relay to each other by indications (-s), relayed address to relayed address', async (ctx) => {
    const uclient = needProgram(ctx, 'turnutils_uclient');
    const N = 10;
    const { r, relay, tap, info } = await uclientRun(uclient, 'udp', ['-y', '-s', '-c', '-u', USER, '-w', PASS, '-n', String(N), '-m', '1']);
    // Each of the two sessions sends N to the other's relayed address.
    expectAllBack(r, 2 * N, 2 * N * 100, info);
    await expectRelayed(relay, 2 * N, 100, info);
    expect(tap.toServer.sendIndications, info).toBe(2 * N);
    expect(tap.toClient.dataIndications, info).toBe(2 * N);
    const busy = allocationCounters(relay).filter((c) => c.toPeerPackets + c.toClientPackets > 0);
    expect(busy, info).toEqual([
      { toPeerPackets: N, toPeerBytes: N * 100, toClientPackets: N, toClientBytes: N * 100 },
      { toPeerPackets: N, toPeerBytes: N * 100, toClientPackets: N, toClientBytes: N * 100 },
    ]);
  });

  it('the relayserver binary: udp then tcp, 2 clients x 10 messages by indications each, counted on its /metrics', async (ctx) => {
    const uclient = needProgram(ctx, 'turnutils_uclient');
    const peer = later(await startTurnutilsPeer(needProgram(ctx, 'turnutils_peer')));
    const relay = later(await startRelayserverBinary());
    const M = 2;
    const N = 10;
    for (const transport of ['udp', 'tcp'] as const) {
      const r = await runUclient(uclient, [...(transport === 'tcp' ? ['-t'] : []), '-p', String(relay.port), '-s', '-c', '-u', USER, '-w', PASS, '-e', LOOPBACK, '-r', String(peer.port), '-n', String(N), '-m', String(M), LOOPBACK]);
      expectAllBack(r, M * N, M * N * 100, `${transport}: uclient exit ${r.code}\n${r.stdout.slice(-3000)}\nrelayserver:\n${relay.proc.stdout()}${relay.proc.stderr().slice(-3000)}`);
    }
    const text = await relay.scrape();
    const info = `metrics:\n${text}\nrelayserver:\n${relay.proc.stdout()}${relay.proc.stderr().slice(-4000)}`;
    expect(await metric(text, 'natkit_turn_relayed_packets_total', { direction: 'to_peer' }), info).toBe(2 * M * N);
    expect(await metric(text, 'natkit_turn_relayed_packets_total', { direction: 'to_client' }), info).toBe(2 * M * N);
    expect(await metric(text, 'natkit_turn_relayed_bytes_total', { direction: 'to_peer' }), info).toBe(2 * M * N * 100);
    expect(await metric(text, 'natkit_turn_relayed_bytes_total', { direction: 'to_client' }), info).toBe(2 * M * N * 100);
    // A probe allocation and a real one per client, per transport.
    expect(await metric(text, 'natkit_turn_allocations_created_total'), info).toBe(2 * 2 * M);
    expect(await metric(text, 'natkit_turn_requests_total', { method: 'channel_bind' }), info).toBe(0);
    expect(await metric(text, 'natkit_turn_dropped_total', { reason: 'no_permission' }), info).toBe(0);
    // Its JSON log (stderr; stdout has only the start-up line): every relayed address in
    // --min-port..--max-port.
    const created = relay.proc
      .stderr()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { msg: string; relayed?: string[] })
      .filter((l) => l.msg === 'allocation created');
    expect(created, info).toHaveLength(2 * 2 * M);
    for (const c of created) {
      for (const a of c.relayed!) {
        const port = Number(a.slice(a.lastIndexOf(':') + 1));
        expect(port).toBeGreaterThanOrEqual(NATKIT_RELAY_MIN);
        expect(port).toBeLessThanOrEqual(NATKIT_RELAY_MAX);
      }
    }
    expect(await relay.stop()).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------
// 2. natkit's TurnClient -> coturn's turnserver -> a UDP peer

/** Distinct payloads of awkward sizes (odd lengths exercise the TCP padding). */
function payloads(tag: string): Buffer[] {
  return [1, 2, 3, 5, 8, 13, 100, 1001].map((n, i) => Buffer.concat([Buffer.from(`${tag}${i}:`), Buffer.alloc(n, 0x61 + i)]));
}

const sortHex = (bufs: Buffer[]) => bufs.map((b) => b.toString('hex')).sort();

/**
 * Exchanges payloads both ways between `client` and `peer` through the relay: each
 * payload from the client must reach the peer from the relayed address, each from the
 * peer must reach the client as data from the peer's address.
 */
async function exchange(client: TurnClient, peer: Awaited<ReturnType<typeof openUdpPeer>>, tag: string): Promise<{ out: Buffer[]; back: Buffer[] }> {
  const peerAddr: TransportAddress = { family: 'IPv4', address: peer.address, port: peer.port };
  const relayed = client.relayed[0]!;
  const out = payloads(`${tag}>`);
  const before = peer.received.length;
  for (const p of out) await client.send(peerAddr, p);
  await peer.waitFor(before + out.length);
  const got = peer.received.slice(before);
  expect(sortHex(got.map((g) => g.data))).toEqual(sortHex(out));
  for (const g of got) expect({ address: g.from.address, port: g.from.port }).toEqual({ address: relayed.address, port: relayed.port });

  const back = payloads(`${tag}<`);
  const arrived: Array<[Buffer, TransportAddress]> = [];
  const all = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      client.off('data', onData);
      reject(new Error(`client got ${arrived.length} of ${back.length} datagrams from the peer`));
    }, 10_000);
    const onData = (d: Buffer, from: TransportAddress) => {
      arrived.push([Buffer.from(d), from]);
      if (arrived.length === back.length) {
        clearTimeout(timer);
        client.off('data', onData);
        resolve();
      }
    };
    client.on('data', onData);
  });
  for (const p of back) await peer.send(p, relayed.port, relayed.address);
  await all;
  expect(sortHex(arrived.map(([d]) => d))).toEqual(sortHex(back));
  for (const [, from] of arrived) expect(from).toEqual(peerAddr);
  return { out, back };
}

const bytes = (bufs: Buffer[]) => bufs.reduce((n, b) => n + b.length, 0);

describe("natkit's TurnClient against coturn's turnserver", () => {
  for (const transport of ['udp', 'tcp'] as const) {
    it(`${transport}: long-term credentials; Send/Data indications, then a channel; both ways; relayed address in --min-port..--max-port`, async (ctx) => {
      const coturn = later(await startCoturnRelay(needProgram(ctx, 'turnserver'), 'long-term'));
      const tap = later(await startTurnTap(transport, { address: LOOPBACK, port: coturn.port }));
      const peer = later(await openUdpPeer());
      const client = later(await TurnClient.allocate({ server: { address: LOOPBACK, port: tap.port, transport }, username: USER, password: PASS }));
      const info = () => `coturn:\n${coturn.proc.stdout().slice(-4000)}\ntap to server: ${describeCounts(tap.toServer)}\ntap to client: ${describeCounts(tap.toClient)}`;

      expect(client.relayed, info()).toHaveLength(1);
      const relayed = client.relayed[0]!;
      expect(relayed.address).toBe(LOOPBACK);
      expect(relayed.port).toBeGreaterThanOrEqual(coturn.relayMin);
      expect(relayed.port).toBeLessThanOrEqual(coturn.relayMax);
      expect(client.mapped?.address).toBe(LOOPBACK);
      expect(client.lifetime).toBeGreaterThan(0);
      expect(coturn.proc.stdout()).toMatch(new RegExp(`session \\d+: new, realm=<natkit\\.test>, username=<${USER}>`));

      // Indications: CreatePermission, Send out, Data back.
      await client.createPermission({ family: 'IPv4', address: peer.address, port: peer.port });
      const ind = await exchange(client, peer, 'ind');
      expect(tap.toServer.sendIndications, info()).toBe(ind.out.length);
      expect(tap.toClient.dataIndications, info()).toBe(ind.back.length);
      expect(tap.toServer.channelData + tap.toClient.channelData, info()).toBe(0);

      // A channel: ChannelData both ways from now on (coturn uses it for the peer too).
      const ch = await client.bindChannel({ family: 'IPv4', address: peer.address, port: peer.port });
      expect(ch).toBeGreaterThanOrEqual(0x4000);
      expect(ch).toBeLessThanOrEqual(0x4fff);
      const chan = await exchange(client, peer, 'chan');
      expect(tap.toServer.channelData, info()).toBe(chan.out.length);
      expect(tap.toClient.channelData, info()).toBe(chan.back.length);
      expect([...tap.toServer.channels], info()).toEqual([ch]);
      expect([...tap.toClient.channels], info()).toEqual([ch]);
      expect(tap.toServer.channelDataBytes, info()).toBe(bytes(chan.out));
      expect(tap.toClient.channelDataBytes, info()).toBe(bytes(chan.back));
      expect(tap.toServer.sendIndications, info()).toBe(ind.out.length);
      expect(tap.toClient.dataIndications, info()).toBe(ind.back.length);
      expect(tap.toServer.other + tap.toClient.other, info()).toBe(0);

      // Refresh with lifetime 0; coturn then closes the session and prints its usage.
      await client.close();
      const usage = await coturnPeerUsage(coturn.proc, USER);
      expect(usage).toEqual({
        sp: ind.out.length + chan.out.length,
        sb: bytes(ind.out) + bytes(chan.out),
        rp: ind.back.length + chan.back.length,
        rb: bytes(ind.back) + bytes(chan.back),
      });
      expect(coturn.proc.stdout()).not.toMatch(/error 4\d\d(?!: Unauthorized)|error 5\d\d/);
    });
  }

  it('udp and tcp: TURN REST API credential (--use-auth-secret): "expiry:user" with base64 HMAC-SHA1 password; an expired one is refused (401)', async (ctx) => {
    expect.assertions(12);
    const coturn = later(await startCoturnRelay(needProgram(ctx, 'turnserver'), 'rest'));
    const peer = later(await openUdpPeer({ echo: (d) => Buffer.concat([Buffer.from('echo:'), d]) }));
    const peerAddr: TransportAddress = { family: 'IPv4', address: peer.address, port: peer.port };
    const username = `${Math.floor(Date.now() / 1000) + 3600}:${USER}`;
    // The REST API password: base64(HMAC-SHA1(secret, username)), computed here
    // independently and checked against natkit's helper.
    const password = createHmac('sha1', SECRET).update(username).digest('base64');
    expect(restPassword(SECRET, username)).toBe(password);
    for (const transport of ['udp', 'tcp'] as const) {
      const client = later(await TurnClient.allocate({ server: { address: LOOPBACK, port: coturn.port, transport }, username, password }));
      expect(client.relayed[0]!.port).toBeGreaterThanOrEqual(coturn.relayMin);
      expect(client.relayed[0]!.port).toBeLessThanOrEqual(coturn.relayMax);
      await client.bindChannel(peerAddr);
      const got = new Promise<[Buffer, TransportAddress]>((r) => client.once('data', (d, from) => r([Buffer.from(d), from])));
      await client.send(peerAddr, Buffer.from(`rest over ${transport}`));
      const [d, from] = await got;
      expect(d.toString()).toBe(`echo:rest over ${transport}`);
      expect(from).toEqual(peerAddr);
      await client.close();
    }
    expect(coturn.proc.stdout()).toMatch(new RegExp(`username=<${username}>`));

    // Expired an hour ago: coturn answers 401 to the authenticated Allocate.
    const stale = `${Math.floor(Date.now() / 1000) - 3600}:${USER}`;
    await expect(
      TurnClient.allocate({ server: { address: LOOPBACK, port: coturn.port, transport: 'udp' }, username: stale, password: restPassword(SECRET, stale), retransmit: { rto: 100, rc: 3, rm: 2 } }),
    ).rejects.toMatchObject({ errorCode: 401 });
    expect(peer.received).toHaveLength(2);
  });
});

// ---------------------------------------------------------------------------------------
// 3. What a coturn user types first, IPv6 relayed addresses, and TLS

const fixtures = new URL('../fixtures/', import.meta.url);
const TLS_CERT = readFileSync(new URL('tls-cert.pem', fixtures));
const TLS_KEY = readFileSync(new URL('tls-key.pem', fixtures));

/** relayserver as the README runs it for uclient's -y (loopback peers: 127.0.0.1 only), on free ports. */
async function readmeRelay(extra: string[]): Promise<{ proc: Proc; port: number }> {
  const proc = startBin('turn', 'relayserver', [
    '--listen', LOOPBACK, '--port', '0', '--user', `${USER}:${PASS}`, '--allow-peer', '127.0.0.1',
    '--min-port', String(NATKIT_RELAY_MIN), '--max-port', String(NATKIT_RELAY_MAX), ...extra,
  ]);
  // SIGINT: stop at once (SIGTERM would drain for the allocations uclient leaves behind).
  defer(() => proc.stop('SIGINT'));
  const m = await proc.waitFor(/listening on udp 127\.0\.0\.1:(\d+)/);
  return { proc, port: Number(m[1]) };
}

/** uclient's own summary: it sent something and every message came back. */
function expectEcho(r: UclientResult, info: string): void {
  expect(r.code, info).toBe(0);
  expect(r.sentMsgs, info).toBeGreaterThan(0);
  expect(r.recvMsgs, info).toBe(r.sentMsgs);
  expect(r.lost, info).toBe(0);
}

describe("a coturn user's first command, IPv6 relayed addresses and TLS with coturn's turnutils_uclient", () => {
  it('turnutils_uclient -u U -w P -p PORT -y 127.0.0.1: by default a 400 that names --legacy-channels; with it (as the README says) every message comes back', async (ctx) => {
    const uclient = needProgram(ctx, 'turnutils_uclient');
    const strict = await readmeRelay([]);
    const r1 = await runUclient(uclient, ['-u', USER, '-w', PASS, '-p', String(strict.port), '-y', LOOPBACK]);
    const info1 = `uclient exit ${r1.code}\n${r1.stdout.slice(-3000)}\nrelayserver:\n${strict.proc.stderr().slice(-2000)}`;
    if (r1.refusedChannels.length > 0) {
      // refusedChannels matches only 400s that carry the hint.
      expect(r1.stdout, info1).toContain('(RFC 5766 numbers: relayserver --legacy-channels)');
      expect(r1.code, info1).not.toBe(0);
    } else {
      expectEcho(r1, info1); // uclient happened to pick numbers in 0x4000-0x4FFF only
    }
    const legacy = await readmeRelay(['--legacy-channels']);
    const r2 = await runUclient(uclient, ['-u', USER, '-w', PASS, '-p', String(legacy.port), '-y', LOOPBACK]);
    const info2 = `uclient exit ${r2.code}\n${r2.stdout.slice(-3000)}\nrelayserver:\n${legacy.proc.stderr().slice(-2000)}`;
    expectEcho(r2, info2);
    expect(r2.stdout, info2).not.toMatch(/error \d{3}/);
    ctx.annotate(`strict run (${r1.ms} ms): ${r1.refusedChannels.length ? `400 for 0x${r1.refusedChannels[0]!.toString(16)}` : 'accepted'}; legacy run (${r2.ms} ms): ${r2.sentMsgs} messages back`);
  });

  for (const send of [false, true]) {
    it(`udp: -x (an IPv6 relayed address) -y${send ? ' -s (indications)' : ' (channels)'}: client to client over [::1] relayed addresses, every message back`, async (ctx) => {
      const uclient = needProgram(ctx, 'turnutils_uclient');
      const relay = later(await startNatkitRelay({ listen: [LOOPBACK, '::1'], allowPeers: ['127.0.0.0/8', '::1/128'], legacyChannels: true }));
      const r = await runUclient(uclient, ['-x', '-y', ...(send ? ['-s'] : []), '-u', USER, '-w', PASS, '-p', String(relay.udpPort), LOOPBACK]);
      const info = `uclient exit ${r.code}\n${r.stdout.slice(-3000)}\nnatkit:\n${relay.logText().slice(-3000)}`;
      expectEcho(r, info);
      const relayed = relay.log.filter((l) => l.msg === 'allocation created').flatMap((l) => l.fields.relayed as string[]);
      expect(relayed.length, info).toBeGreaterThan(0);
      for (const a of relayed) expect(a, info).toMatch(/^\[::1\]:\d+$/);
      // Each message went out through one relayed address and in through another.
      expect(await metric(relay.server, 'natkit_turn_relayed_packets_total', { direction: 'to_peer' }), info).toBe(r.sentMsgs);
      expect(await metric(relay.server, 'natkit_turn_relayed_packets_total', { direction: 'to_client' }), info).toBe(r.recvMsgs);
      expect(await metric(relay.server, 'natkit_turn_requests_total', { method: 'channel_bind' }) > 0, info).toBe(!send);
    });
  }

  it('tls (-t -S): client to client by indications over TLS connections, every message back', async (ctx) => {
    const uclient = needProgram(ctx, 'turnutils_uclient');
    const relay = later(await startNatkitRelay({ tls: { cert: TLS_CERT, key: TLS_KEY, port: 0 } }));
    const tlsPort = relay.server.listening.find((l) => l.transport === 'tls')!.port;
    const r = await runUclient(uclient, ['-t', '-S', '-y', '-s', '-c', '-n', '10', '-u', USER, '-w', PASS, '-p', String(tlsPort), LOOPBACK]);
    const info = `uclient exit ${r.code}\n${r.stdout.slice(-3000)}\nnatkit:\n${relay.logText().slice(-3000)}`;
    // uclient waits a fixed time for the last echoes; on a loaded machine a TLS one can come
    // after it stopped counting. What natkit relayed is counted exactly below; here uclient
    // must have run, sent all 20 and had them come back but for what arrived after its wait.
    expect(r.code, info).toBe(0);
    expect(r.sentMsgs, info).toBe(20);
    expect(r.recvMsgs! + r.lost!, info).toBe(20);
    expect(r.stdout, info).toMatch(/tls_connect: client session connected with cipher/);
    const clients = relay.log.filter((l) => l.msg === 'allocation created').map((l) => String(l.fields.client));
    expect(clients.length, info).toBeGreaterThanOrEqual(2);
    for (const c of clients) expect(c, info).toMatch(/^tls 127\.0\.0\.1:\d+$/);
    // natkit relayed every message both ways, each to the other client's TLS connection.
    expect(await metric(relay.server, 'natkit_turn_relayed_packets_total', { direction: 'to_peer' }), info).toBe(20);
    expect(await metric(relay.server, 'natkit_turn_relayed_packets_total', { direction: 'to_client' }), info).toBe(20);
    expect(await metric(relay.server, 'natkit_turn_relayed_bytes_total', { direction: 'to_client' }), info).toBe(2000);
  });
});
