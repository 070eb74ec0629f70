// werift 0.24.4's ICE agent (its `Connection` class, exported by the package's main entry
// and by lib/ice/src; npm dev dependency) as an ICE peer for natkit's interop tests, run
// in a child Node process. It speaks the ice-peers line protocol
// (test/helpers/ice-peers/README.md): one JSON object per line on stdin (commands) and
// stdout (events). End of stdin ends it.
//
// What werift's Connection does that the peer works around:
//  - Its STUN server defaults to stun.l.google.com:19302 whenever none is given
//    (validateAddress(undefined) ?? google). Tests may not touch the internet, so the peer
//    clears `connection.stunServer` before gathering.
//  - Loopback: its host addresses come from os.networkInterfaces() without internal
//    (loopback) interfaces, and `interfaceAddresses` only filters that list (falling back
//    to every address when nothing matches). The peer turns both families off and gives
//    the loopback address as `additionalHostAddresses`, the only list left, with
//    `interfaceAddresses.udp4` so the socket binds to it.
//  - gatherCandidates() ends with setState('completed'): "completed" there means
//    gathering is done, not ICE. The peer reports werift's states as `native` and
//    normalises that one to "new"; werift has no "checking" state, so the peer reports
//    "checking" when it calls connect().
//  - connect() needs the remote ufrag/pwd, and it fails at once ("ICE negotiation failed")
//    when its checklist is empty: no remote candidate yet and no check received before the
//    call (checks that arrive earlier are kept as `earlyChecks` and become peer-reflexive
//    pairs inside connect()). A peer whose candidates are never signalled (Chromium's
//    non-loopback ones) is only learned from its checks, so the peer calls connect() once
//    remote-params have arrived AND there is a remote candidate or an early check, however
//    late the first check comes on a loaded machine.
//  - send() silently drops data while consent is not fresh; the peer reports an error
//    when nothing is nominated yet.
//  - As controlling agent werift sets USE-CANDIDATE on every check (aggressive nomination).
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { Candidate, Connection } from 'werift';

const { values } = parseArgs({ options: { role: { type: 'string' }, address: { type: 'string', multiple: true } } });
if (values.role !== 'controlling' && values.role !== 'controlled') {
  process.stderr.write('--role controlling|controlled\n');
  process.exit(2);
}
const addresses = values.address ?? ['127.0.0.1'];
const out = (o) => process.stdout.write(`${JSON.stringify(o)}\n`);
const cand = (c) => ({ address: c.host, port: c.port, type: c.type });

const conn = new Connection(values.role === 'controlling', {
  useIpv4: false,
  useIpv6: false,
  additionalHostAddresses: addresses,
  interfaceAddresses: { udp4: addresses.find((a) => !a.includes(':')), udp6: addresses.find((a) => a.includes(':')) },
});
conn.stunServer = undefined;

let connecting = false;
conn.stateChanged.subscribe((s) => out({ ev: 'state', state: connecting || s !== 'completed' ? s : 'new', native: s }));
conn.onIceCandidate.subscribe((c) => out({ ev: 'candidate', line: `candidate:${c.toSdp()}` }));
conn.onData.subscribe((d) => out({ ev: 'data', hex: Buffer.from(d).toString('hex') }));

out({ ev: 'local-params', ufrag: conn.localUsername, pwd: conn.localPassword });
out({ ev: 'state', state: 'new', native: conn.state });
const gathered = conn.gatherCandidates().then(() => out({ ev: 'end-of-candidates' }));

// Resolves when werift has something to pair with (see the note on connect() above).
async function somethingToCheck() {
  while (!closing && conn.remoteCandidates.length === 0 && (conn.earlyChecks?.length ?? 0) === 0) {
    await new Promise((r) => setTimeout(r, 10));
  }
}

async function connect() {
  await gathered;
  await somethingToCheck();
  connecting = true;
  out({ ev: 'state', state: 'checking', native: '(connect() called)' });
  try {
    await conn.connect();
  } catch (e) {
    out({ ev: 'state', state: 'failed', native: String(e?.message ?? e) });
    return;
  }
  const p = conn.nominated;
  if (p) out({ ev: 'selected-pair', local: cand(p.localCandidate), remote: cand(p.remoteCandidate) });
}

const pending = new Set();
const track = (p) => {
  pending.add(p);
  p.catch((e) => out({ ev: 'error', message: String(e?.stack ?? e) })).finally(() => pending.delete(p));
};

let closing = false;
async function close() {
  if (closing) return;
  closing = true;
  await conn.close();
  out({ ev: 'closed' });
  process.exit(0);
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (text) => {
  if (!text.trim()) return;
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    out({ ev: 'error', message: `not JSON: ${text}` });
    return;
  }
  switch (msg.cmd) {
    case 'remote-params':
      conn.setRemoteParams({ iceLite: false, usernameFragment: msg.ufrag, password: msg.pwd });
      if (!connecting) track(connect());
      break;
    case 'candidate': {
      let line = String(msg.line ?? '');
      if (line.startsWith('a=')) line = line.slice(2);
      if (line.startsWith('candidate:')) line = line.slice('candidate:'.length);
      let c;
      try {
        c = Candidate.fromSdp(line);
      } catch (e) {
        out({ ev: 'error', message: `bad candidate line ${JSON.stringify(msg.line)}: ${e.message}` });
        break;
      }
      track(conn.addRemoteCandidate(c));
      break;
    }
    case 'end-of-candidates':
      track(conn.addRemoteCandidate(undefined));
      break;
    case 'send':
      if (!conn.nominated) out({ ev: 'error', message: 'send: nothing nominated yet' });
      else track(conn.send(Buffer.from(msg.hex, 'hex')));
      break;
    case 'close':
      void close();
      break;
    default:
      out({ ev: 'error', message: `unknown cmd ${JSON.stringify(msg.cmd)}` });
  }
});
rl.on('close', () => void close());
