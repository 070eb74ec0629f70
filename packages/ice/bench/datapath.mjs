// The per-datagram cost of application data through IceAgent and its Gatherer's host bases,
// without the kernel: two agents on an in-process Network whose UDP sockets hand each
// datagram straight to the peer socket's 'message' listeners (synchronously). What is timed
// is natkit's code on the path: send (route, base lookup, HostBase.send) and receive
// (HostBase: the gatherer's STUN client gets a look first; the agent: RFC 7983
// demultiplexing, the source check, the 'data' event).
//
//   node --max-semi-space-size=1 packages/ice/bench/datapath.mjs [--n 1000000] [--rounds 5]
//
// Prints the median ns per datagram and the young-generation collections (scavenges) per
// million datagrams, a proxy for what each datagram allocates (a 1 MiB semi-space makes
// one scavenge about 1 MiB). Payloads: an RTP-like first byte (0x80) and a DTLS record's
// (0x17, which RFC 7983 also gives the application). Then the same for a relayed pair (A
// relay-only through natkit's TurnServer on the same in-process network, data as
// ChannelData): send stops at A's socket, so it times the relay base and TURN client alone.
import { EventEmitter } from 'node:events';
import { PerformanceObserver, constants, performance } from 'node:perf_hooks';
import { IceAgent } from '@natkit/ice';
import { TurnServer, parseUsers } from '@natkit/turn';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const N = arg('n', 1_000_000);
const ROUNDS = arg('rounds', 5);

/** One flat in-process segment: sockets by "address|port". */
const sockets = new Map();
class Socket extends EventEmitter {
  constructor(host, address, port) {
    super();
    this.host = host;
    this.a = { address, family: 'IPv4', port };
    this.rinfo = { address, family: 'IPv4', port, size: 0 };
    sockets.set(`${address}|${port}`, this);
  }
  get muted() {
    return this.host.muted;
  }
  address() {
    return this.a;
  }
  send(msg, port, address, cb) {
    const to = sockets.get(`${address}|${port}`);
    if (to && !this.muted) to.emit('message', Buffer.from(msg.buffer, msg.byteOffset, msg.length), this.rinfo);
    cb?.(null, msg.length);
  }
  close(cb) {
    sockets.delete(`${this.a.address}|${this.a.port}`);
    cb?.();
  }
}
function network(address) {
  const host = { muted: false };
  let port = 40000;
  return {
    host,
    createUdpSocket: async (o) => new Socket(host, o.address && o.address !== '0.0.0.0' ? o.address : address, o.port || port++),
    interfaces: () => [{ name: 'eth0', address, family: 'IPv4', internal: false, prefix: 24 }],
    lookup: async () => [],
  };
}

async function connect(optsA) {
  const netA = network(optsA.address);
  const netB = network(optsA.peer);
  const a = new IceAgent({ controlling: true, network: netA, mdns: false, ...optsA.agent });
  const b = new IceAgent({ controlling: false, network: netB, mdns: false });
  for (const [me, peer] of [
    [a, b],
    [b, a],
  ]) {
    me.on('candidate', (c) => peer.addRemoteCandidate(c));
    me.on('gathering-complete', () => peer.endOfRemoteCandidates());
  }
  a.setRemoteParameters(b.localParameters);
  b.setRemoteParameters(a.localParameters);
  await Promise.all([a.gather(), b.gather()]);
  const [pa, pb] = await Promise.all([a.connect(), b.connect()]);
  const counter = { received: 0, receivedByA: 0 };
  b.on('data', () => counter.received++);
  a.on('data', () => counter.receivedByA++);
  return { a, b, netA, pa, pb, counter };
}

let scavenges = 0;
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) if (e.detail?.kind === constants.NODE_PERFORMANCE_GC_MINOR) scavenges++;
}).observe({ entryTypes: ['gc'] });
const settle = () => new Promise((r) => setImmediate(r));
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

async function measure(fn) {
  const ns = [];
  const gc = [];
  for (let r = 0; r < ROUNDS; r++) {
    await settle();
    const g0 = scavenges;
    const t0 = performance.now();
    await fn();
    const t1 = performance.now();
    await settle(); // GC entries arrive asynchronously
    ns.push(((t1 - t0) * 1e6) / N);
    gc.push(((scavenges - g0) * 1e6) / N);
  }
  return { ns: median(ns), gc: median(gc) };
}

const rows = [];
const host = await connect({ address: '10.0.0.1', peer: '10.0.0.2' });
const sockA = sockets.get(`${host.pa.local.address}|${host.pa.local.port}`);
const sockB = sockets.get(`${host.pb.local.address}|${host.pb.local.port}`);
for (const [label, first] of [
  ['RTP-like 0x80', 0x80],
  ['DTLS 0x17', 0x17],
]) {
  const payload = Buffer.alloc(100, 0);
  payload[0] = first;
  host.netA.host.muted = true;
  rows.push([`host: send, ${label}`, await measure(() => {
    for (let i = 0; i < N; i++) host.a.send(payload);
  })]);
  rows.push([`host: receive, ${label}`, await measure(() => {
    for (let i = 0; i < N; i++) sockB.emit('message', payload, sockA.rinfo);
  })]);
  host.netA.host.muted = false;
}
if (host.counter.received === 0) throw new Error('no datagram reached B');

// Relay-only A through natkit's TurnServer at 10.0.0.9 (its own in-process host).
const turnNet = network('10.0.0.9');
const turn = await TurnServer.start({ network: turnNet, listen: ['10.0.0.9'], port: 3478, tcp: false, users: parseUsers('u:p\n'), realm: 'bench', allowPeers: ['10.0.0.0/8'], relayPortMin: 50000, relayPortMax: 50999 });
const relay = await connect({ address: '10.0.0.3', peer: '10.0.0.4', agent: { policy: 'relay', iceServers: [{ urls: 'turn:10.0.0.9:3478', username: 'u', credential: 'p' }] } });
if (relay.pa.local.type !== 'relay') throw new Error(`A's pair is ${relay.pa.local.type}, not relay`);
// Let the channel binding (made when the pair was selected) complete.
for (let i = 0; i < 50 && relay.counter.received === 0; i++) {
  relay.a.send(Buffer.from([0x80, 1]));
  await settle();
}
const payload = Buffer.alloc(100, 0x80);
// What A's socket sends for one datagram: ChannelData (first byte 0x40-0x7f) once bound.
const firstBytes = [];
const plainSend = Socket.prototype.send;
Socket.prototype.send = function (msg, ...rest) {
  if (this.host === relay.netA.host) firstBytes.push(msg[0]);
  return plainSend.call(this, msg, ...rest);
};
relay.a.send(payload);
await settle();
Socket.prototype.send = plainSend;
const framing = firstBytes.length === 1 && firstBytes[0] >= 0x40 && firstBytes[0] < 0x80 ? 'ChannelData' : `not ChannelData (${firstBytes})`;
relay.netA.host.muted = true;
rows.push([`relay: send, ${framing}`, await measure(async () => {
  for (let i = 0; i < N; i++) relay.a.send(payload);
  await settle();
})]);
relay.netA.host.muted = false;
// Receive: ChannelData on channel 0x4000 (the first A binds) arriving from the server at A's socket.
const clientSock = [...sockets.values()].find((x) => x.host === relay.netA.host);
const serverSock = sockets.get('10.0.0.9|3478');
const cd = Buffer.alloc(104, 0x80);
cd.writeUInt16BE(0x4000, 0);
cd.writeUInt16BE(100, 2);
const before = relay.counter.receivedByA;
rows.push(['relay: receive, ChannelData', await measure(() => {
  for (let i = 0; i < N; i++) clientSock.emit('message', cd, serverSock.rinfo);
})]);
if (relay.counter.receivedByA - before < N) throw new Error(`relay receive: ${relay.counter.receivedByA - before} of ${N * ROUNDS} delivered`);
for (const [name, m] of rows) console.log(`${name.padEnd(24)} ${m.ns.toFixed(0).padStart(6)} ns/datagram  ${m.gc.toFixed(1).padStart(7)} scavenges per million datagrams`);
await Promise.all([host.a.close(), host.b.close(), relay.a.close(), relay.b.close()]);
await turn.close();
