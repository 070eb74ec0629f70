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
//  - connect() needs the remote ufrag/pwd; the peer calls it once they have come and
//    gathering is done. Checks that arrive before connect() are answered and kept as
//    `earlyChecks`; connect() turns them into peer-reflexive pairs with triggered checks.
//    After that each incoming check goes to checkIncoming() at once (RFC 8445 7.3.1.3 and
//    7.3.1.4): a prflx candidate in `remoteCandidates` and a pair, if new.
//  - connect()'s check loop (schedulingChecks, every 20 ms) keeps going while the
//    checklist is empty only until end-of-candidates (addRemoteCandidate(undefined)); with
//    end-of-candidates and an empty checklist, connect() ends at once with "ICE
//    negotiation failed" (whether it was called before or after). A remote agent whose
//    candidates are never signalled (Chromium's non-loopback ones, which the tests filter
//    out) is known only from its checks, and its end-of-candidates often comes before its
//    first check. So the peer holds a remote end-of-candidates while werift knows no
//    remote candidate, and gives it to werift the moment werift learns one from a check
//    (the peer's Connection subclass hooks checkIncoming(), which werift calls for each
//    early check inside connect() and for each later check as it comes). Until then
//    connect() waits for checks. A candidate line after a held end-of-candidates is added
//    like any other (werift accepts candidates after end-of-candidates too), and ends the hold.
//  - A check that gets no answer fails its pair after 5 transmissions (50 ms doubling,
//    about 1.6 s), so on a loaded machine a pair can fail; werift then waits on (connect()
//    returns only on success) and a later check from the peer re-triggers the pair.
//  - It answers every Binding request without checking MESSAGE-INTEGRITY; a 401 answer
//    to its own check makes it repeat the check forever (no failure is reported).
//  - send() silently drops data while consent is not fresh; consent becomes fresh when
//    connect() returns, and the peer reports the selected pair only then. It reports an
//    error for a send when nothing is nominated yet.
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

// Every incoming check that werift answers ends in checkIncoming() (a method of the class, so a
// subclass sees the calls werift makes on itself); the peer needs to know when one has.
if (typeof Connection.prototype.checkIncoming !== 'function') {
  process.stderr.write('werift Connection.prototype.checkIncoming is gone: this peer needs updating\n');
  process.exit(2);
}
class PeerConnection extends Connection {
  onCheck = undefined;
  checkIncoming(message, addr, protocol) {
    super.checkIncoming(message, addr, protocol);
    this.onCheck?.();
  }
}

const clock = () => new Date().toISOString().slice(11, 23);

const conn = new PeerConnection(values.role === 'controlling', {
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

// A remote end-of-candidates waits here while werift knows no remote candidate (see the
// note on connect() above).
let endHeld = false;
function releaseEndOfCandidates() {
  if (!endHeld || conn.remoteCandidates.length === 0) return;
  endHeld = false;
  const c = conn.remoteCandidates[0];
  process.stderr.write(`${clock()} peer: end-of-candidates given to werift now that it knows ${c.type} ${c.host}:${c.port}\n`);
  track(conn.addRemoteCandidate(undefined));
}
conn.onCheck = releaseEndOfCandidates;

let connectCalled = false;
async function connect() {
  connectCalled = true;
  await gathered;
  // from here on werift's 'completed' is ICE's (gathering's came before)
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
      if (!connectCalled) track(connect());
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
      track(conn.addRemoteCandidate(c).then(releaseEndOfCandidates));
      break;
    }
    case 'end-of-candidates':
      if (conn.remoteCandidates.length > 0) track(conn.addRemoteCandidate(undefined));
      else if (!endHeld) {
        endHeld = true;
        process.stderr.write(`${clock()} peer: end-of-candidates held: werift knows no remote candidate yet\n`);
      }
      break;
    case 'send':
      if (!conn.nominated) out({ ev: 'error', message: 'send: nothing nominated yet' });
      else track(conn.send(Buffer.from(msg.hex, 'hex')));
      break;
    case 'sync':
      out({ ev: 'synced', id: String(msg.id ?? '') });
      break;
    case 'close':
      void close();
      break;
    default:
      out({ ev: 'error', message: `unknown cmd ${JSON.stringify(msg.cmd)}` });
  }
});
rl.on('close', () => void close());
