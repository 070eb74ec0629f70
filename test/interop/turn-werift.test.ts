// TURN interop with werift 0.24.4 (npm, an independent WebRTC stack in TypeScript; dev
// dependency): its TURN client (TurnProtocol from createTurnClient, the client its ICE
// agent uses for relay candidates) against natkit's relay (TurnServer in-process on
// 127.0.0.1; peers on loopback need allowPeers 127.0.0.0/8, which the test relay sets),
// over UDP and TCP, relaying to a UDP peer in this process that echoes each datagram.
// A wire tap between werift and natkit (test/helpers/interop-turn-tap.ts) shows how the
// data travelled.
//
// What werift's client can and cannot do, from its source (lib/ice/src/turn/protocol.js):
//  - It has no call to choose Send indications: sendData() always tries a ChannelBind
//    first (channel numbers from 0x4000 up) and uses ChannelData; only when the
//    ChannelBind fails does it fall back to CreatePermission and a Send indication, and
//    it tries the ChannelBind again before every later sendData (a failed initial bind is
//    forgotten). The indication tests make natkit refuse channels (maxChannels 0: 508
//    Insufficient Capacity, RFC 8656 section 12.2) to reach that path.
//  - It has no "delete allocation": close() closes its socket without a Refresh with
//    LIFETIME 0, so over UDP the allocation stays on the server until it expires (over
//    TCP natkit deletes it when the connection closes).
//  - close() leaves its refresh loop sleeping on an uncancelled timers/promises setTimeout
//    (see test/helpers/interop-turn-werift.ts), which is why it runs in a child process.
import { describe, expect, it } from 'vitest';
import { type TurnTap, describeCounts, startTurnTap } from '../helpers/interop-turn-tap.js';
import { LOOPBACK, NATKIT_RELAY_MAX, NATKIT_RELAY_MIN, type NatkitRelay, PASS, USER, metric, openUdpPeer, startNatkitRelay } from '../helpers/interop-turn-peers.js';
import { startWeriftClient, weriftPayload } from '../helpers/interop-turn-werift.js';
import { useCleanup } from '../helpers/cleanup.js';

const { defer } = useCleanup();
function later<T extends { close(): Promise<unknown> }>(x: T): T {
  defer(() => x.close());
  return x;
}

const N = 12;
const echo = (d: Buffer) => Buffer.concat([Buffer.from('echo:'), d]);
const payloads = Array.from({ length: N }, (_, i) => weriftPayload(i));
const total = (bufs: Buffer[]) => bufs.reduce((n, b) => n + b.length, 0);

/** werift allocates through the tap, sends N payloads to the echoing peer and gets N back. */
async function exchange(relay: NatkitRelay, tap: TurnTap, transport: 'udp' | 'tcp') {
  const peer = later(await openUdpPeer({ echo }));
  const werift = startWeriftClient({ server: { address: LOOPBACK, port: tap.port }, transport, username: USER, password: PASS, peer, count: N });
  const info = () =>
    `werift stdout:\n${werift.proc.stdout().slice(-3000)}\nstderr:\n${werift.proc.stderr().slice(-2000)}\nnatkit:\n${relay.logText().slice(-3000)}\ntap to server: ${describeCounts(tap.toServer)}\ntap to client: ${describeCounts(tap.toClient)}`;
  const allocated = await werift.waitFor('allocated');
  await werift.waitFor('done');
  expect(await werift.proc.exited, info()).toBe(0);
  const [relayIp, relayPort] = allocated.relayed!;
  expect(relayIp, info()).toBe(LOOPBACK);
  expect(relayPort).toBeGreaterThanOrEqual(NATKIT_RELAY_MIN);
  expect(relayPort).toBeLessThanOrEqual(NATKIT_RELAY_MAX);
  expect(allocated.mapped?.[0]).toBe(LOOPBACK);
  // natkit's own record of the allocation matches what werift was told.
  const created = relay.log.filter((l) => l.msg === 'allocation created');
  expect(created, info()).toHaveLength(1);
  expect(created[0]!.fields.relayed, info()).toEqual([`${LOOPBACK}:${relayPort}`]);

  // Client to peer: every payload, from the relayed address.
  expect(peer.received.map((r) => r.data.toString('hex')).sort(), info()).toEqual(payloads.map((p) => p.toString('hex')).sort());
  for (const r of peer.received) expect([r.from.address, r.from.port]).toEqual([LOOPBACK, relayPort]);
  // Peer to client: every echo, reported as coming from the peer.
  const data = werift.events().filter((e) => e.event === 'data');
  expect(data.map((d) => d.hex).sort(), info()).toEqual(payloads.map((p) => echo(p).toString('hex')).sort());
  for (const d of data) expect(d.from, info()).toEqual([LOOPBACK, peer.port]);

  // natkit counted exactly that, and dropped nothing.
  const s = relay.server;
  expect(await metric(s, 'natkit_turn_relayed_packets_total', { direction: 'to_peer' }), info()).toBe(N);
  expect(await metric(s, 'natkit_turn_relayed_packets_total', { direction: 'to_client' }), info()).toBe(N);
  expect(await metric(s, 'natkit_turn_relayed_bytes_total', { direction: 'to_peer' }), info()).toBe(total(payloads));
  expect(await metric(s, 'natkit_turn_relayed_bytes_total', { direction: 'to_client' }), info()).toBe(total(payloads.map(echo)));
  for (const reason of ['no_permission', 'no_channel', 'no_allocation', 'malformed', 'not_stun', 'bad_fingerprint', 'unknown_attribute']) {
    expect(await metric(s, 'natkit_turn_dropped_total', { reason }), `${reason}\n${info()}`).toBe(0);
  }
  expect(tap.toServer.other + tap.toClient.other, info()).toBe(0);
  return { info };
}

describe("werift's TURN client against natkit's relay", () => {
  for (const transport of ['udp', 'tcp'] as const) {
    it(`${transport}: allocates, binds a channel and exchanges ChannelData both ways with a UDP peer`, async () => {
      const relay = later(await startNatkitRelay());
      const tap = later(await startTurnTap(transport, { address: LOOPBACK, port: transport === 'udp' ? relay.udpPort : relay.tcpPort }));
      const { info } = await exchange(relay, tap, transport);
      // One ChannelBind (0x4000, werift's first number), which also installed the
      // permission: no CreatePermission; ChannelData both ways, no indications.
      expect(await metric(relay.server, 'natkit_turn_requests_total', { method: 'channel_bind' }), info()).toBe(1);
      expect(await metric(relay.server, 'natkit_turn_requests_total', { method: 'create_permission' }), info()).toBe(0);
      expect(tap.toServer.channelData, info()).toBe(N);
      expect(tap.toClient.channelData, info()).toBe(N);
      expect([...tap.toServer.channels], info()).toEqual([0x4000]);
      expect([...tap.toClient.channels], info()).toEqual([0x4000]);
      expect(tap.toServer.sendIndications + tap.toClient.dataIndications, info()).toBe(0);
    });

    it(`${transport}: falls back to CreatePermission and Send/Data indications when ChannelBind is refused (508)`, async () => {
      // maxChannels 0: every ChannelBind is answered 508 (RFC 8656 section 12.2).
      const relay = later(await startNatkitRelay({ maxChannels: 0 }));
      const tap = later(await startTurnTap(transport, { address: LOOPBACK, port: transport === 'udp' ? relay.udpPort : relay.tcpPort }));
      const { info } = await exchange(relay, tap, transport);
      // werift retries the ChannelBind before each send (at least N refusals: on a loaded
      // machine it also retransmits one whose answer is late, each answered 508 again),
      // creates the permission once, and sends every payload as a Send indication; the
      // echoes come back as Data indications (no channel is bound).
      const binds = await metric(relay.server, 'natkit_turn_requests_total', { method: 'channel_bind' });
      expect(binds, info()).toBeGreaterThanOrEqual(N);
      expect(await metric(relay.server, 'natkit_turn_error_responses_total', { code: '508' }), info()).toBe(binds);
      expect(await metric(relay.server, 'natkit_turn_requests_total', { method: 'create_permission' }), info()).toBe(1);
      expect(tap.toServer.sendIndications, info()).toBe(N);
      expect(tap.toClient.dataIndications, info()).toBe(N);
      expect(tap.toServer.channelData + tap.toClient.channelData, info()).toBe(0);
    });
  }
});
