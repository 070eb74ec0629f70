import { type Clock, type DatagramInfo, type Family, MessageBuilder, MessageClass, Method, type StunMessage, type TransportAddress } from '@natkit/stun';
import { TurnAttr } from '../codec/attributes.js';
import { decodeChannelData, encodeChannelData } from '../codec/channeldata.js';
import type { Allocation, RelaySocket } from './allocation.js';
import type { TurnCounters } from './counters.js';

/**
 * The relay's data path, the per-packet work (RFC 8656 sections 10 and 12): ChannelData
 * and Send indications from clients to peers, datagrams from peers to clients as
 * ChannelData or Data indications. It holds each relay socket and client path itself, so
 * a packet costs a map lookup or two, the permission check, and the send; counting is a
 * field increment. Nothing here allocates per packet beyond the datagram sent.
 */

/** Largest UDP payload an IPv4 datagram carries. */
export const MAX_UDP_PAYLOAD = 65507;

export class DataPath {
  private readonly counters: TurnCounters;
  private readonly clock: Clock;
  private readonly onRelaying: (alloc: Allocation, peer: TransportAddress) => void;

  constructor(counters: TurnCounters, clock: Clock, onRelaying: (alloc: Allocation, peer: TransportAddress) => void) {
    this.counters = counters;
    this.clock = clock;
    this.onRelaying = onRelaying;
  }

  /** ChannelData from the client (RFC 8656 section 12.6); `alloc` undefined: none on this 5-tuple. */
  channelFromClient(alloc: Allocation | undefined, buf: Buffer): void {
    const drop = this.counters.dropped;
    if (!alloc) {
      drop.no_allocation++;
      return;
    }
    let number: number;
    let data: Buffer;
    try {
      ({ channel: number, data } = decodeChannelData(buf));
    } catch {
      drop.malformed++;
      return;
    }
    // A stream frame can carry more than a UDP datagram can (65535 > 65507).
    if (data.length > MAX_UDP_PAYLOAD) {
      drop.oversized++;
      return;
    }
    const ch = alloc.channels.get(number);
    const now = this.clock.now();
    if (!ch || ch.expiresAt <= now || alloc.expiresAt <= now) {
      drop.no_channel++;
      return;
    }
    if (!alloc.permitted(ch.peer.address, now)) {
      drop.no_permission++;
      return;
    }
    const relay = alloc.relays[ch.peer.family];
    if (!relay) {
      drop.no_allocation++;
      return;
    }
    this.toPeer(alloc, relay, data, ch.peer);
  }

  /** A Send indication from the client (RFC 8656 section 10.2). */
  sendIndication(alloc: Allocation | undefined, msg: StunMessage): void {
    const drop = this.counters.dropped;
    const now = this.clock.now();
    if (!alloc || alloc.expiresAt <= now) {
      drop.no_allocation++;
      return;
    }
    const peer = msg.get(TurnAttr.XorPeerAddress);
    const data = msg.get(TurnAttr.Data);
    // Without XOR-PEER-ADDRESS and DATA, or without a permission, the indication is discarded.
    if (!peer || !data || peer.port === 0) {
      drop.malformed++;
      return;
    }
    if (msg.unknownRequired.length > 0) {
      drop.unknown_attribute++;
      return;
    }
    if (data.length > MAX_UDP_PAYLOAD) {
      drop.oversized++;
      return;
    }
    if (!alloc.permitted(peer.address, now)) {
      drop.no_permission++;
      return;
    }
    const relay = alloc.relays[peer.family];
    if (!relay) {
      drop.no_allocation++;
      return;
    }
    this.toPeer(alloc, relay, data, peer);
  }

  private toPeer(alloc: Allocation, relay: RelaySocket, data: Buffer, peer: TransportAddress): void {
    // No send callback: without one Node tries a synchronous send first (uv_udp_try_send)
    // instead of queueing a request; a failed relayed datagram is simply lost, as UDP is.
    relay.socket.send(data, peer.port, peer.address);
    const len = data.length;
    alloc.counters.toPeerPackets++;
    alloc.counters.toPeerBytes += len;
    const c = this.counters;
    c.toPeerPackets++;
    c.toPeerBytes += len;
    if (!alloc.relaying) {
      alloc.relaying = true;
      this.onRelaying(alloc, peer);
    }
  }

  /**
   * A datagram from a peer at a relayed address (RFC 8656 sections 10.3, 12.5): to the
   * client as ChannelData if a channel is bound to the peer, else as a Data indication.
   */
  fromPeer(alloc: Allocation, buf: Buffer, rinfo: DatagramInfo): void {
    const now = this.clock.now();
    if (!alloc.permitted(rinfo.address, now) || alloc.expiresAt <= now) {
      this.counters.dropped.no_permission++;
      return;
    }
    const len = buf.length;
    const ch = alloc.peerChannels.get(rinfo.address)?.get(rinfo.port);
    const client = alloc.client;
    const out =
      ch && ch.expiresAt > now
        ? // ChannelData: padded to 4 on streams (section 12.5).
          encodeChannelData(ch.number, buf, client.stream)
        : new MessageBuilder(Method.Data, MessageClass.Indication)
            .add(TurnAttr.XorPeerAddress, { family: rinfo.family as Family, address: rinfo.address, port: rinfo.port })
            .add(TurnAttr.Data, buf)
            .encode();
    client.send(out);
    alloc.counters.toClientPackets++;
    alloc.counters.toClientBytes += len;
    const c = this.counters;
    c.toClientPackets++;
    c.toClientBytes += len;
    if (!alloc.relaying) {
      alloc.relaying = true;
      this.onRelaying(alloc, { family: rinfo.family as Family, address: rinfo.address, port: rinfo.port });
    }
  }
}
