#!/usr/bin/env node
// The JavaScript of natkit's data path alone, per relayed packet, with no sockets: what is
// ours of the relay's CPU per packet, measured in nanoseconds and without the kernel's
// noise (perpacket.mjs gives the whole; profile.mjs where it goes). A relayed packet here
// is what the relay's code does for one uclient message in perpacket.mjs: ChannelData from
// a client to a peer (DataPath.channelFromClient, after the allocation table's lookup by
// the client's address and port) and the datagram back from the peer to the other client
// as ChannelData (DataPath.fromPeer). Sockets are stand-ins whose send() only counts, so
// node:dgram's own cost (which floor-node.mjs measures) is not here; neither are the
// 'message' events that deliver each datagram.
//
//   node bench/datapath.mjs [--quick] [--rounds N] [--packets N] [--allocations N]
//                           [--variants name=path/to/src,...] [--json FILE]
//
// Time is this process's CPU time (process.cpuUsage), so that preemption by other work on
// a shared machine does not count; GC done in the loop does.
//
// The data path is loaded from the TypeScript sources (src/, transpiled one file at a time
// with typescript's transpileModule into bench/.build/datapath/<name>/), so a prototype (a
// patched copy of src/) runs in the same process as the code as it is: --variants
// proto=path/to/src adds it, and each round times every variant in turn (order rotated).
// The reference is the same work written as floor-node.mjs does it (a Map lookup per
// direction, no checks, no counters): the least JavaScript a relay can run per packet.
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { BUILD, argsOf, f0, fx, here, median, rotated, tableRow } from './lib.mjs';

const { opt, quick: QUICK, json: JSON_OUT } = argsOf();
const ROUNDS = Number(opt('--rounds', QUICK ? 3 : 9));
const PACKETS = Number(opt('--packets', QUICK ? 300_000 : 1_000_000));
const ALLOCS = Number(opt('--allocations', 226));
const ts = createRequire(import.meta.url)('typescript');

/** Transpiles every .ts file under `src` into `out` (same tree, .js), as ES modules. */
function transpile(src, out) {
  const walk = (d) => readdirSync(d).flatMap((f) => (statSync(join(d, f)).isDirectory() ? walk(join(d, f)) : f.endsWith('.ts') ? [join(d, f)] : []));
  for (const f of walk(src)) {
    const js = ts.transpileModule(readFileSync(f, 'utf8'), { compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 } }).outputText;
    const dest = join(out, relative(src, f)).replace(/\.ts$/, '.js');
    mkdirSync(dirname(dest), { recursive: true });
    writeFileSync(dest, js);
  }
  return out;
}

const VARIANTS = [['natkit', join(here, '../src')], ...opt('--variants', '').split(',').filter(Boolean).map((v) => v.split('='))];

// ---------------------------------------------------------------------------------------
// A relay's state as in perpacket.mjs: ALLOCS allocations on 127.0.0.1, each with a
// channel to the relayed address of its pair, and traffic cycling over all of them.

let sent = 0;
let bytes = 0;
const socket = () => ({
  send(buf, _port, _address) {
    sent++;
    bytes += buf.length;
  },
});
const PAYLOAD = 120;

async function setUp(name, src) {
  const out = transpile(src, join(BUILD, 'datapath', name));
  const load = (p) => import(pathToFileURL(join(out, p)).href);
  const [{ DataPath }, { Allocation }, { TurnCounters }, { AllocationTable }] = await Promise.all([
    load('server/datapath.js'), load('server/allocation.js'), load('server/counters.js'), load('server/table.js'),
  ]);
  const counters = new TurnCounters();
  const clock = { now: () => performance.now(), setTimeout, clearTimeout };
  const dp = new DataPath(counters, clock, () => {});
  const table = new AllocationTable();
  const now = clock.now();
  const allocs = [];
  for (let i = 0; i < ALLOCS; i++) {
    const clientPort = 20000 + i;
    const listener = socket();
    const client = {
      transport: 'udp', stream: false, via: 0,
      remote: { family: 'IPv4', address: '127.0.0.1', port: clientPort },
      local: { family: 'IPv4', address: '127.0.0.1', port: 3478 },
      send: (data) => listener.send(data, clientPort, '127.0.0.1'),
    };
    const relay = { family: 'IPv4', address: '127.0.0.1', port: 45000 + i, socket: socket() };
    const a = new Allocation({
      id: i + 1, key: `udp:127.0.0.1:${clientPort}`, client, username: 'user', hmacKey: undefined, integrity: 'sha1',
      relays: { IPv4: relay }, now, lifetimeMs: 600_000, createdBy: String(i),
    });
    table.add(a);
    allocs.push(a);
  }
  // Pairs: 2k and 2k+1 relay to each other's relayed address over channel 0x4000 + k.
  for (let i = 0; i < ALLOCS; i++) {
    const peer = { family: 'IPv4', address: '127.0.0.1', port: 45000 + (i ^ 1) };
    allocs[i].bind(0x4000 + (i >> 1), peer, now);
  }
  // One ChannelData message per allocation, and the payload its pair receives.
  const frames = allocs.map((_, i) => {
    const b = Buffer.alloc(4 + PAYLOAD, 7);
    b.writeUInt16BE(0x4000 + (i >> 1), 0);
    b.writeUInt16BE(PAYLOAD, 2);
    return b;
  });
  const payload = Buffer.alloc(PAYLOAD, 7);
  // rinfo as node:dgram makes it: a new object, and a new address string, per datagram.
  const ip = ['127', '0', '0', '1'];
  const rinfoOf = (port) => ({ address: ip.join('.'), family: 'IPv4', port, size: PAYLOAD });
  /** One relayed packet: client i -> peer (its pair's relay), then that relay -> client i^1. */
  const packet = (i) => {
    const r = rinfoOf(20000 + i);
    dp.channelFromClient(table.udpLookup(0, r.address, r.port), frames[i]);
    dp.fromPeer(allocs[i ^ 1], payload, rinfoOf(45000 + i));
  };
  return { name, packet, counters };
}

/** The same work as floor-node.mjs: one Map lookup per direction, no checks, no counters. */
function floorSetUp() {
  const byClient = new Map();
  const allocs = [];
  for (let i = 0; i < ALLOCS; i++) {
    const a = { clientPort: 20000 + i, clientAddress: '127.0.0.1', socket: socket(), channels: new Map(), byPeer: new Map() };
    allocs.push(a);
    byClient.set(20000 + i, a);
  }
  for (let i = 0; i < ALLOCS; i++) {
    allocs[i].channels.set(0x4000 + (i >> 1), { port: 45000 + (i ^ 1), address: '127.0.0.1' });
    allocs[i].byPeer.set(45000 + i, 0x4000 + (i >> 1));
  }
  const listener = socket();
  const frames = allocs.map((_, i) => {
    const b = Buffer.alloc(4 + PAYLOAD, 7);
    b.writeUInt16BE(0x4000 + (i >> 1), 0);
    b.writeUInt16BE(PAYLOAD, 2);
    return b;
  });
  const payload = Buffer.alloc(PAYLOAD, 7);
  const ip = ['127', '0', '0', '1'];
  const rinfoOf = (port) => ({ address: ip.join('.'), family: 'IPv4', port, size: PAYLOAD });
  const packet = (i) => {
    const r = rinfoOf(20000 + i);
    const buf = frames[i];
    const a = byClient.get(r.port);
    const ch = a.channels.get((buf[0] << 8) | buf[1]);
    const len = (buf[2] << 8) | buf[3];
    a.socket.send(buf.subarray(4, 4 + len), ch.port, ch.address);
    const b = allocs[i ^ 1];
    const r2 = rinfoOf(45000 + i);
    const n = b.byPeer.get(r2.port);
    const out = Buffer.allocUnsafe(4 + payload.length);
    out[0] = n >> 8;
    out[1] = n & 0xff;
    out[2] = payload.length >> 8;
    out[3] = payload.length & 0xff;
    payload.copy(out, 4);
    listener.send(out, b.clientPort, b.clientAddress);
  };
  return { name: 'floor-node (reference)', packet, counters: null };
}

const subjects = [floorSetUp(), ...(await Promise.all(VARIANTS.map(([n, s]) => setUp(n, s))))];

function time(s) {
  const before = sent;
  // CPU time, not wall time: on a shared machine the process is preempted now and then.
  const c0 = process.cpuUsage();
  for (let k = 0; k < PACKETS; k++) s.packet(k % ALLOCS);
  const c = process.cpuUsage(c0);
  const ns = ((c.user + c.system) * 1000) / PACKETS;
  if (sent - before !== 2 * PACKETS) throw new Error(`${s.name}: ${sent - before} datagrams sent for ${PACKETS} packets (${JSON.stringify(s.counters?.dropped)})`);
  return ns;
}

console.error(`datapath bench: ${ROUNDS} rounds x ${f0(PACKETS)} relayed packets over ${ALLOCS} allocations, ${PAYLOAD}-byte payloads; Node ${process.version}`);
for (const s of subjects) time(s); // warm up: optimised code before timing
const results = new Map(subjects.map((s) => [s.name, []]));
for (let r = 0; r < ROUNDS; r++) for (const s of rotated(subjects, r)) results.get(s.name).push(time(s));

const ref = median(results.get('floor-node (reference)'));
const lines = [`datapath: JavaScript per relayed packet (both directions), no sockets; median of ${ROUNDS} rounds x ${f0(PACKETS)} packets`];
const W = [26, 10, 16, 18];
lines.push(tableRow(W, ['', 'ns/packet', '(min..max)', 'over the floor']));
const summary = {};
for (const [name, xs] of results) {
  const m = median(xs);
  summary[name] = { ns: m, min: Math.min(...xs), max: Math.max(...xs), overFloorNs: m - ref };
  lines.push(tableRow(W, [name, fx(m, 0), `(${fx(Math.min(...xs), 0)}..${fx(Math.max(...xs), 0)})`, name.startsWith('floor') ? '' : `+${fx(m - ref, 0)} ns`]));
}
lines.push("(sockets are stand-ins: node:dgram's send and 'message' delivery are not included; see perpacket.mjs and profile.mjs for the whole)");
console.log(lines.join('\n'));
if (JSON_OUT) writeFileSync(JSON_OUT, JSON.stringify({ rounds: ROUNDS, packets: PACKETS, allocations: ALLOCS, summary }, null, 2));
