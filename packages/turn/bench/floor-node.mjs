#!/usr/bin/env node
// floor-node: Node's floor for a TURN relay's data path. Not a TURN server: it answers
// turnutils_uclient's requests (Allocate, Refresh, CreatePermission, ChannelBind, Binding)
// with bare success responses, no authentication, no permission, quota, lifetime or peer
// checks, so that uclient relays through it; what it measures is the data path, which does
// the same four socket operations per relayed message as a relay (ChannelData received
// on the listening socket, its payload sent from the allocation's relay socket; a
// datagram received on a relay socket, sent to its client as ChannelData from the
// listening socket) with as little JavaScript around them as node:dgram allows:
// one Map lookup per direction, no clock, no counters, no closures per packet.
//
//   node bench/floor-node.mjs --port P [--host 127.0.0.1] [--connect] [--connect-clients]
//
// --connect: Node's dgram can also send without an address on a connected socket (no
// lookup, no address parsing per send, and the kernel keeps the route). A relay socket is
// connected to its peer once its channel is bound (a relay with more than one peer per
// allocation could not do this); the client side still goes through the shared listening
// socket.
// --connect-clients: each allocation also gets a socket of its own on the listening
// address and port (SO_REUSEADDR on both), connected to the client: the kernel delivers
// that client's datagrams to it (a connected socket is the better match), and ChannelData
// to the client goes out of it without an address. Configurations of the benchmark, to
// measure what connect() saves, not designs.
//
// Prints one "listening" line; SIGINT/SIGTERM stop it.
import dgram from 'node:dgram';
import { Attr, MessageBuilder, MessageClass, Method, decodeMessage } from '@natkit/stun';
import { TurnAttr, turnServerRegistry } from '@natkit/turn';

const argv = process.argv.slice(2);
const opt = (n, d) => {
  const i = argv.indexOf(n);
  return i >= 0 && i + 1 < argv.length ? argv[i + 1] : d;
};
const HOST = opt('--host', '127.0.0.1');
const PORT = Number(opt('--port', 0));
const CONNECT = argv.includes('--connect');
const CONNECT_CLIENTS = argv.includes('--connect-clients');
// Literal addresses only, answered in place (Node's default lookup defers to the next tick).
const lookup = (address, _family, cb) => cb(null, address, 4);
const udp = (o = {}) => dgram.createSocket({ type: 'udp4', lookup, ...o });

// The listening socket with 1 MiB kernel buffers, as natkit's relay asks for its own.
const listener = udp({ recvBufferSize: 1 << 20, sendBufferSize: 1 << 20, reuseAddr: CONNECT_CLIENTS });
/** Allocations by the client's source port (every client of the bench is on 127.0.0.1). */
const byClient = new Map();
/** ChannelData received on the shared listening socket and on per-client sockets (printed on exit). */
const counts = { listener: 0, clientSocket: 0 };

function newAllocation(rinfo) {
  const a = {
    clientPort: rinfo.port,
    clientAddress: rinfo.address,
    socket: udp(),
    relayPort: 0,
    /** channel number -> { port, address } */
    channels: new Map(),
    /** peer port -> channel number (peers are on 127.0.0.1) */
    byPeer: new Map(),
    connected: false,
  };
  a.socket.on('message', (buf, r) => {
    const n = a.byPeer.get(r.port);
    if (n === undefined) return;
    const len = buf.length;
    const out = Buffer.allocUnsafe(4 + len);
    out[0] = n >> 8;
    out[1] = n & 0xff;
    out[2] = len >> 8;
    out[3] = len & 0xff;
    buf.copy(out, 4);
    if (a.clientSocket) a.clientSocket.send(out);
    else listener.send(out, a.clientPort, a.clientAddress);
  });
  a.socket.on('error', () => {});
  if (CONNECT_CLIENTS) {
    const c = udp({ reuseAddr: true });
    c.on('message', (buf) => {
      counts.clientSocket++;
      if ((buf[0] & 0xc0) === 0x40 && buf.length >= 4) toPeer(a, buf);
      else control(buf, { address: a.clientAddress, port: a.clientPort });
    });
    c.on('error', () => {});
    c.bind({ port: listener.address().port, address: HOST }, () => c.connect(a.clientPort, a.clientAddress, () => (a.clientSocket = c)));
  }
  return a;
}

/** ChannelData from the client: the payload to the channel's peer. */
function toPeer(a, buf) {
  const ch = a.channels.get((buf[0] << 8) | buf[1]);
  if (ch === undefined) return;
  const len = (buf[2] << 8) | buf[3];
  if (a.connected) a.socket.send(buf.subarray(4, 4 + len));
  else a.socket.send(buf.subarray(4, 4 + len), ch.port, ch.address);
}

function answer(msg, rinfo, add) {
  const b = new MessageBuilder(msg.method, MessageClass.SuccessResponse, msg.transactionId);
  add?.(b);
  const a = byClient.get(rinfo.port);
  if (a?.clientSocket) a.clientSocket.send(b.encode());
  else listener.send(b.encode(), rinfo.port, rinfo.address);
}

function control(buf, rinfo) {
  let msg;
  try {
    msg = decodeMessage(buf, { registry: turnServerRegistry });
  } catch {
    return;
  }
  if (msg.cls !== MessageClass.Request) return;
  const mapped = { family: 'IPv4', address: rinfo.address, port: rinfo.port };
  const a = byClient.get(rinfo.port);
  switch (msg.method) {
    case Method.Binding:
      return answer(msg, rinfo, (b) => b.add(Attr.XorMappedAddress, mapped));
    case Method.Allocate: {
      if (a) return answer(msg, rinfo, (b) => b.add(TurnAttr.XorRelayedAddress, { family: 'IPv4', address: HOST, port: a.relayPort }).add(TurnAttr.Lifetime, 600).add(Attr.XorMappedAddress, mapped));
      const n = newAllocation(rinfo);
      byClient.set(rinfo.port, n);
      n.socket.bind(0, HOST, () => {
        n.relayPort = n.socket.address().port;
        answer(msg, rinfo, (b) => b.add(TurnAttr.XorRelayedAddress, { family: 'IPv4', address: HOST, port: n.relayPort }).add(TurnAttr.Lifetime, 600).add(Attr.XorMappedAddress, mapped));
      });
      return;
    }
    case Method.Refresh: {
      const lifetime = msg.get(TurnAttr.Lifetime);
      answer(msg, rinfo, (b) => b.add(TurnAttr.Lifetime, lifetime ?? 600));
      if (a && lifetime === 0) {
        byClient.delete(rinfo.port);
        a.socket.close();
        a.clientSocket?.close();
      }
      return;
    }
    case Method.CreatePermission:
      return answer(msg, rinfo);
    case Method.ChannelBind: {
      const n = msg.get(TurnAttr.ChannelNumber);
      const peer = msg.get(TurnAttr.XorPeerAddress);
      if (a && n !== undefined && peer) {
        a.channels.set(n, { port: peer.port, address: peer.address });
        a.byPeer.set(peer.port, n);
        if (CONNECT && !a.connected && a.channels.size === 1) {
          a.connected = true;
          a.socket.connect(peer.port, peer.address);
        }
      }
      return answer(msg, rinfo);
    }
    default:
  }
}

listener.on('message', (buf, rinfo) => {
  // ChannelData (first byte 0x40-0x7F): the data path.
  if ((buf[0] & 0xc0) === 0x40 && buf.length >= 4) {
    counts.listener++;
    const a = byClient.get(rinfo.port);
    if (a !== undefined) toPeer(a, buf);
    return;
  }
  control(buf, rinfo);
});
listener.on('error', () => {});
listener.bind({ port: PORT, address: HOST, exclusive: true }, () => {
  console.log(`floor-node listening on ${HOST}:${listener.address().port}${CONNECT ? ', relay sockets connected to their peer' : ''}${CONNECT_CLIENTS ? ', a connected socket per client' : ''}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => {
    console.log(`floor-node: ChannelData received on the listening socket ${counts.listener}, on per-client sockets ${counts.clientSocket}`);
    process.exit(0);
  });
}
