#!/usr/bin/env node
// The far side of bench/checks.mjs, in its own process: N UDP sockets on 127.0.0.1, each
// a remote candidate of the agent under test. Each answers every STUN Binding request
// with a success response (XOR-MAPPED-ADDRESS of the sender, MESSAGE-INTEGRITY with the
// short-term key of PWD, FINGERPRINT: RFC 8445 7.3) from the socket it reached, so every
// check succeeds, and never sends a request of its own (so the agent under test, as
// controlled agent, is never nominated and goes on checking every pair).
//
//   node bench/responder.mjs N PWD
// prints {"ports":[...]} once bound; then {"allChecked":true, ...} when every socket has
// answered at least one request: elapsed ms from the first request to the last socket's
// first (this process's clock), requests answered (retransmissions included). Ends when
// stdin closes.
import dgram from 'node:dgram';
import { Attr, MessageBuilder, decodeMessage, shortTermKey } from '@natkit/stun';

const [n, pwd] = [Number(process.argv[2]), process.argv[3]];
const key = shortTermKey(pwd);
const sockets = [];
const firstAt = new Array(n).fill(undefined);
let checked = 0;
let requests = 0;
let t0;
let reported = false;

for (let i = 0; i < n; i++) {
  const s = dgram.createSocket('udp4');
  s.on('message', (msg, rinfo) => {
    let m;
    try {
      m = decodeMessage(msg);
    } catch {
      return;
    }
    if (!m.isRequest() || m.method !== 0x001) return;
    requests++;
    const now = performance.now();
    t0 ??= now;
    if (firstAt[i] === undefined) {
      firstAt[i] = now;
      checked++;
    }
    const res = new MessageBuilder(0x001, 2, Buffer.from(m.transactionId))
      .add(Attr.XorMappedAddress, { family: 'IPv4', address: rinfo.address, port: rinfo.port })
      .encode({ integrity: { key }, fingerprint: true });
    s.send(res, rinfo.port, rinfo.address);
    if (checked === n && !reported) {
      reported = true;
      process.stdout.write(`${JSON.stringify({ allChecked: true, elapsedMs: now - t0, requests })}\n`);
    }
  });
  sockets.push(new Promise((res) => s.bind(0, '127.0.0.1', () => res(s))));
}
const bound = await Promise.all(sockets);
process.stdout.write(`${JSON.stringify({ ports: bound.map((s) => s.address().port) })}\n`);
process.stdin.resume();
process.stdin.on('end', () => {
  for (const s of bound) s.close();
  process.stdout.write(`${JSON.stringify({ final: true, checked, requests })}\n`);
  process.exit(0);
});
