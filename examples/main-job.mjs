#!/usr/bin/env node
// The main job (`pnpm start`): natkit's servers on loopback and clients reporting what they
// found.
//  1. `stunserver` on 127.0.0.1 and 127.0.0.2 (RFC 5780 full mode) and `natcheck` against it.
//  2. `relayserver` on 127.0.0.1 with a one-time user; a TurnClient allocates, binds a
//     channel to a UDP echo peer and sends messages through the relay, both ways.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as dgram from 'node:dgram';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { TurnClient } from '@natkit/turn';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = (pkg, name) => `${root}packages/${pkg}/bin/${name}.js`;

/** Starts a binary and resolves with the process and its start-up line (first stdout line). */
function startServer(args, name) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`${name} did not start within 10 s`)), 10_000);
    child.on('exit', (code) => reject(new Error(`${name} exited with ${code} before it was ready`)));
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve({ child, line: out.slice(0, nl) });
      }
    });
  });
}

function run(args) {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit'] });
  return once(child, 'exit').then(([code]) => code);
}

async function stop(child, name) {
  if (child.exitCode !== null) return child.exitCode;
  child.kill('SIGTERM');
  const [code] = await once(child, 'exit');
  if (code !== 0) throw new Error(`${name} exited with ${code} on SIGTERM`);
  return code;
}

const failures = [];
console.log('== natkit main job: servers on loopback, clients reporting what they found ==\n');

console.log('-- stunserver on 127.0.0.1 and 127.0.0.2 (RFC 5780 full mode), free ports');
const stun = await startServer([bin('stun', 'stunserver'), '--listen', '127.0.0.1', '--alternate', '127.0.0.2', '--port', '0'], 'stunserver');
console.log(stun.line);
const port = /udp 127\.0\.0\.1:(\d+)/.exec(stun.line)?.[1];
try {
  console.log(`\n-- natcheck 127.0.0.1:${port}`);
  const code = await run([bin('stun', 'natcheck'), `127.0.0.1:${port}`]);
  if (code !== 0) failures.push(`natcheck exited with ${code}`);
} finally {
  await stop(stun.child, 'stunserver');
  console.log('\n-- stunserver stopped cleanly');
}

console.log('\n-- relayserver on 127.0.0.1 (a one-time user; loopback peers allowed for this demo only)');
const password = randomBytes(9).toString('base64url');
const relay = await startServer(
  [bin('turn', 'relayserver'), '--listen', '127.0.0.1', '--port', '0', '--no-tcp', '--user', `demo:${password}`, '--allow-peer', '127.0.0.0/8', '--min-port', '49152', '--max-port', '65535', '--drain-timeout', '2'],
  'relayserver',
);
console.log(relay.line);
const relayPort = Number(/udp 127\.0\.0\.1:(\d+)/.exec(relay.line)?.[1]);
// A UDP echo peer: what it receives goes back to the sender (the relayed address).
const echo = dgram.createSocket('udp4');
echo.on('message', (msg, rinfo) => echo.send(msg, rinfo.port, rinfo.address));
await new Promise((r) => echo.bind(0, '127.0.0.1', r));
const peer = { family: 'IPv4', address: '127.0.0.1', port: echo.address().port };
let turn;
try {
  turn = await TurnClient.allocate({ server: { address: '127.0.0.1', port: relayPort }, username: 'demo', password });
  console.log(`TURN client: relayed address ${turn.relayed.map((a) => `${a.address}:${a.port}`).join(', ')}, mapped address ${turn.mapped.address}:${turn.mapped.port}, lifetime ${turn.lifetime} s`);
  const roundTrip = async (label, send) => {
    const t0 = performance.now();
    const got = new Promise((resolve) => turn.once('data', (d) => resolve(d.toString())));
    const text = `${label} ${randomBytes(4).toString('hex')}`;
    await send(text);
    let timer;
    const back = await Promise.race([got, new Promise((_, rej) => (timer = setTimeout(() => rej(new Error(`${label}: no echo within 5 s`)), 5000)))]);
    clearTimeout(timer);
    if (back !== text) throw new Error(`${label}: sent ${text}, got ${back}`);
    console.log(`  ${label.padEnd(34)} echoed through the relay in ${(performance.now() - t0).toFixed(2)} ms`);
  };
  await turn.createPermission(peer);
  await roundTrip('Send/Data indications', (t) => turn.send(peer, Buffer.from(t)));
  const ch = await turn.bindChannel(peer);
  await roundTrip(`ChannelData on channel 0x${ch.toString(16)}`, (t) => turn.send(peer, Buffer.from(t)));
} catch (err) {
  failures.push(`TURN relay: ${err.message}`);
} finally {
  await turn?.close();
  await new Promise((r) => echo.close(r));
  await stop(relay.child, 'relayserver');
  console.log('-- relayserver stopped cleanly');
}

if (failures.length) {
  console.error(`\nmain job FAILED: ${failures.join('; ')}`);
  process.exit(1);
}
console.log('\nmain job OK');
