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
// (0x17, which RFC 7983 also gives the application).
import { EventEmitter } from 'node:events';
import { PerformanceObserver, constants, performance } from 'node:perf_hooks';
import { IceAgent } from '@natkit/ice';

const arg = (name, def) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : def;
};
const N = arg('n', 1_000_000);
const ROUNDS = arg('rounds', 5);

/** One flat in-process segment: sockets by "address|port". */
const sockets = new Map();
const noop = () => {};
class Socket extends EventEmitter {
  constructor(address, port) {
    super();
    this.a = { address, family: 'IPv4', port };
    this.rinfo = { address, family: 'IPv4', port, size: 0 };
    this.muted = false;
    sockets.set(`${address}|${port}`, this);
  }
  address() {
    return this.a;
  }
  send(msg, port, address, cb) {
    const to = sockets.get(`${address}|${port}`);
    if (to && !this.muted) to.emit('message', msg, this.rinfo);
    cb?.(null, msg.length);
  }
  close(cb) {
    sockets.delete(`${this.a.address}|${this.a.port}`);
    cb?.();
  }
}
function network(address) {
  let port = 40000;
  return {
    createUdpSocket: async () => new Socket(address, port++),
    interfaces: () => [{ name: 'eth0', address, family: 'IPv4', internal: false, prefix: 24 }],
    lookup: async () => [],
  };
}

const a = new IceAgent({ controlling: true, network: network('10.0.0.1'), mdns: false });
const b = new IceAgent({ controlling: false, network: network('10.0.0.2'), mdns: false });
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
const [pa] = await Promise.all([a.connect(), b.connect()]);
const sockA = sockets.get(`${pa.local.address}|${pa.local.port}`);
const sockB = sockets.get(`${pa.remote.address}|${pa.remote.port}`);

let received = 0;
b.on('data', () => received++);

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
    fn();
    const t1 = performance.now();
    await settle(); // GC entries arrive asynchronously
    ns.push(((t1 - t0) * 1e6) / N);
    gc.push(((scavenges - g0) * 1e6) / N);
  }
  return { ns: median(ns), gc: median(gc) };
}

const rows = [];
for (const [label, first] of [
  ['RTP-like 0x80', 0x80],
  ['DTLS 0x17', 0x17],
]) {
  const payload = Buffer.alloc(100, 0);
  payload[0] = first;
  sockA.muted = true;
  rows.push([`send, ${label}`, await measure(() => {
    for (let i = 0; i < N; i++) a.send(payload);
  })]);
  rows.push([`receive, ${label}`, await measure(() => {
    for (let i = 0; i < N; i++) sockB.emit('message', payload, sockA.rinfo);
  })]);
  sockA.muted = false;
}
for (const [name, m] of rows) console.log(`${name.padEnd(24)} ${m.ns.toFixed(0).padStart(6)} ns/datagram  ${m.gc.toFixed(1).padStart(7)} scavenges per million datagrams`);
if (received === 0) throw new Error('no datagram reached B');
await Promise.all([a.close(), b.close()]);
