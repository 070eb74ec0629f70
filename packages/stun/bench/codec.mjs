#!/usr/bin/env node
// Codec benchmark: natkit vs `stun` (npm, 2.1.0) vs werift (0.24.4) on the same messages,
// in the same process and the same rounds.
//
//   node bench/codec.mjs [--quick] [--rounds N] [--json FILE]
//
// Every row is one operation a client or server does per packet. Before anything is
// timed, each library's result is checked once against the expected values; a library
// that gives a wrong answer, or cannot do the operation as stated, is reported as such
// and not timed, so no ratio compares different amounts of work.
//
// Timing: each (row, library) is calibrated to a batch of about SAMPLE_MS, warmed up,
// then timed in ROUNDS rounds with process.hrtime.bigint; the libraries' order rotates
// every round. Reported: median ops/s, the spread (min..max over rounds) and
// natkit/other as a ratio of medians (> 1: natkit is faster).
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { argsOf, median, rotated } from './common/bench-lib.mjs';

const here = dirname(fileURLToPath(import.meta.url));
const { opt, quick: QUICK, json: JSON_OUT } = argsOf();
const ROUNDS = Number(opt('--rounds', QUICK ? 3 : 9));
const SAMPLE_MS = QUICK ? 40 : 150;
const WARMUP_MS = QUICK ? 100 : 400;

let nk, stun, werift;
try {
  nk = await import('@natkit/stun');
} catch (e) {
  console.error(`codec bench: cannot import @natkit/stun (${e.message}); build it first: pnpm build`);
  process.exit(1);
}
stun = (await import('stun')).default;
werift = await import('werift');
const { decodeMessage, MessageBuilder, Attr, Method, MessageClass, checkIntegrity, verifyFingerprint } = nk;

// ---------------------------------------------------------------------------------------
// Inputs

const vectorsPath = [join(here, '../../../test/vectors/rfc5769.json'), join(here, '../../../../shared/vectors/rfc5769.json')].find(existsSync);
if (!vectorsPath) throw new Error('rfc5769.json not found (test/vectors/ or ../shared/vectors/)');
const V = JSON.parse(readFileSync(vectorsPath, 'utf8')).vectors;
const vreq = V.find((v) => v.section === '2.1');
const REQ_5769 = Buffer.from(vreq.hex, 'hex');
const TID = Buffer.from(REQ_5769.subarray(8, 20));
const PASSWORD = vreq.password; // short-term credential: the key is the password's bytes
const KEY = Buffer.from(PASSWORD, 'utf8');
const SOFTWARE = vreq.software;
const USERNAME = vreq.username;
const PRIORITY = vreq.priority;
const ICE_CONTROLLED_HEX = vreq['ice-controlled'];
const ICE_CONTROLLED = BigInt('0x' + ICE_CONTROLLED_HEX);
const ICE_CONTROLLED_BUF = Buffer.from(ICE_CONTROLLED_HEX, 'hex');
const XMA = { family: 'IPv4', address: '192.0.2.1', port: 32853 };

// The same request with zero padding (RFC 5769 pads USERNAME with 0x20). All three
// encoders produce exactly these bytes; `stun` can only verify this form (see below).
const REQ_ZERO = new MessageBuilder(Method.Binding, MessageClass.Request, TID)
  .add(Attr.Software, SOFTWARE)
  .add(Attr.Priority, PRIORITY)
  .add(Attr.IceControlled, ICE_CONTROLLED)
  .add(Attr.Username, USERNAME)
  .encode({ integrity: { key: KEY }, fingerprint: true });
const REQ_0x20 = new MessageBuilder(Method.Binding, MessageClass.Request, TID)
  .add(Attr.Software, SOFTWARE)
  .add(Attr.Priority, PRIORITY)
  .add(Attr.IceControlled, ICE_CONTROLLED)
  .add(Attr.Username, USERNAME)
  .encode({ integrity: { key: KEY }, fingerprint: true, paddingByte: 0x20 });
if (!REQ_0x20.equals(REQ_5769)) throw new Error('natkit does not re-encode the RFC 5769 2.1 sample byte for byte');
// (b) Binding success response: XOR-MAPPED-ADDRESS + FINGERPRINT, same transaction id.
const RESP = new MessageBuilder(Method.Binding, MessageClass.SuccessResponse, TID).add(Attr.XorMappedAddress, XMA).encode({ fingerprint: true });

const C = stun.constants;

// ---------------------------------------------------------------------------------------
// Operations. A decode op writes what it read into `r` (no allocation of its own) so the
// work cannot be optimised away; an encode op returns the bytes.

const reqDecodeVerify = {
  natkit: {
    does: 'decodeMessage(buf) (lazy view) + verifyFingerprint(m) + checkIntegrity(m, key)===\'sha1\' (HMAC-SHA1, timingSafeEqual) + m.get(Attr.Username/Priority/IceControlled)',
    op(buf, r) {
      const m = decodeMessage(buf);
      r.fp = verifyFingerprint(m);
      r.mi = checkIntegrity(m, KEY) === 'sha1';
      r.user = m.get(Attr.Username);
      r.prio = m.get(Attr.Priority);
      r.ice = m.get(Attr.IceControlled);
    },
  },
  stun: {
    does: 'stun.decode(buf) (all attributes to objects) + validateFingerprint(m) (re-encodes the message, CRC32) + validateMessageIntegrity(m, password) (re-encodes again, HMAC-SHA1, Buffer.equals) + getUsername(), getAttribute(PRIORITY).value [getPriority() returns 0: bug], getIceControlled()',
    whyWrong: 'validateFingerprint/validateMessageIntegrity re-encode the decoded message, which pads USERNAME with zeros instead of the sample\'s 0x20 bytes, so CRC and HMAC run over other bytes (the zero-padded row below passes)',
    op(buf, r) {
      const m = stun.decode(buf);
      r.fp = stun.validateFingerprint(m);
      r.mi = stun.validateMessageIntegrity(m, PASSWORD);
      r.user = m.getUsername();
      r.prio = m.getAttribute(C.STUN_ATTR_PRIORITY).value;
      r.ice = m.getIceControlled();
    },
  },
  werift: {
    does: 'parseMessage(buf, key) (decodes every attribute eagerly; verifies FINGERPRINT and MESSAGE-INTEGRITY inside, Buffer.equals; undefined on failure) + getAttributeValue(USERNAME/PRIORITY/ICE-CONTROLLED)',
    op(buf, r) {
      const m = werift.parseMessage(buf, KEY);
      r.fp = r.mi = m !== undefined;
      r.user = m?.getAttributeValue('USERNAME');
      r.prio = m?.getAttributeValue('PRIORITY');
      r.ice = m?.getAttributeValue('ICE-CONTROLLED');
    },
  },
};

function checkReq(r) {
  const ice = typeof r.ice === 'bigint' ? r.ice.toString(16).padStart(16, '0') : Buffer.isBuffer(r.ice) ? r.ice.toString('hex') : String(r.ice);
  const bad = [];
  if (r.fp !== true) bad.push(`FINGERPRINT check gave ${r.fp}`);
  if (r.mi !== true) bad.push(`MESSAGE-INTEGRITY check gave ${r.mi}`);
  if (r.user !== USERNAME) bad.push(`USERNAME ${JSON.stringify(r.user)}`);
  if (Number(r.prio) !== PRIORITY) bad.push(`PRIORITY ${r.prio}`);
  if (ice !== ICE_CONTROLLED_HEX) bad.push(`ICE-CONTROLLED ${ice}`);
  return bad;
}

const reqEncode = {
  natkit: {
    does: 'new MessageBuilder(Binding, Request, tid).add(SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME).encode({integrity:{key}, fingerprint:true}) (one buffer)',
    op: () =>
      new MessageBuilder(Method.Binding, MessageClass.Request, TID)
        .add(Attr.Software, SOFTWARE)
        .add(Attr.Priority, PRIORITY)
        .add(Attr.IceControlled, ICE_CONTROLLED)
        .add(Attr.Username, USERNAME)
        .encode({ integrity: { key: KEY }, fingerprint: true }),
  },
  stun: {
    does: 'createMessage(BINDING_REQUEST, tid) + addSoftware/addPriority/addIceControlled/addUsername + addMessageIntegrity(password) + addFingerprint() (each re-encodes the message) + stun.encode(m)',
    op() {
      const m = stun.createMessage(C.STUN_BINDING_REQUEST, TID);
      m.addSoftware(SOFTWARE);
      m.addPriority(PRIORITY);
      m.addIceControlled(ICE_CONTROLLED_BUF);
      m.addUsername(USERNAME);
      m.addMessageIntegrity(PASSWORD);
      m.addFingerprint();
      return stun.encode(m);
    },
  },
  werift: {
    does: 'new Message(BINDING, REQUEST, tid).setAttribute(SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME).addMessageIntegrity(key).addFingerprint().bytes (each step re-serialises)',
    op: () =>
      new werift.Message(1, 0, TID)
        .setAttribute('SOFTWARE', SOFTWARE)
        .setAttribute('PRIORITY', PRIORITY)
        .setAttribute('ICE-CONTROLLED', ICE_CONTROLLED)
        .setAttribute('USERNAME', USERNAME)
        .addMessageIntegrity(KEY)
        .addFingerprint().bytes,
  },
};

const respDecode = {
  natkit: {
    does: 'decodeMessage(buf) + m.get(Attr.XorMappedAddress)',
    op(buf, r) {
      const m = decodeMessage(buf);
      r.fp = true;
      r.xma = m.get(Attr.XorMappedAddress);
    },
  },
  stun: {
    does: 'stun.decode(buf) + m.getXorAddress()',
    op(buf, r) {
      const m = stun.decode(buf);
      r.fp = true;
      r.xma = m.getXorAddress();
    },
  },
  werift: {
    cannot: 'werift.parseMessage always verifies FINGERPRINT when one is present; there is no decode without it (see the next row)',
  },
};

const respDecodeFp = {
  natkit: {
    does: 'decodeMessage(buf) + verifyFingerprint(m) + m.get(Attr.XorMappedAddress)',
    op(buf, r) {
      const m = decodeMessage(buf);
      r.fp = verifyFingerprint(m);
      r.xma = m.get(Attr.XorMappedAddress);
    },
  },
  stun: {
    does: 'stun.decode(buf) + validateFingerprint(m) (re-encodes, CRC32) + m.getXorAddress()',
    op(buf, r) {
      const m = stun.decode(buf);
      r.fp = stun.validateFingerprint(m);
      r.xma = m.getXorAddress();
    },
  },
  werift: {
    does: 'parseMessage(buf) (verifies FINGERPRINT inside) + getAttributeValue(XOR-MAPPED-ADDRESS)',
    op(buf, r) {
      const m = werift.parseMessage(buf);
      r.fp = m !== undefined;
      const a = m?.getAttributeValue('XOR-MAPPED-ADDRESS');
      r.xma = a && { address: a[0], port: a[1] };
    },
  },
};

function checkResp(r) {
  const bad = [];
  if (r.fp !== true) bad.push(`FINGERPRINT check gave ${r.fp}`);
  if (!r.xma || r.xma.address !== XMA.address || r.xma.port !== XMA.port) bad.push(`XOR-MAPPED-ADDRESS ${JSON.stringify(r.xma)}`);
  return bad;
}

const respEncode = {
  natkit: {
    does: 'new MessageBuilder(Binding, SuccessResponse, tid).add(Attr.XorMappedAddress, addr).encode({fingerprint:true})',
    op: () => new MessageBuilder(Method.Binding, MessageClass.SuccessResponse, TID).add(Attr.XorMappedAddress, XMA).encode({ fingerprint: true }),
  },
  stun: {
    does: 'createMessage(BINDING_RESPONSE, tid) + addXorAddress(ip, port) + addFingerprint() + stun.encode(m)',
    op() {
      const m = stun.createMessage(C.STUN_BINDING_RESPONSE, TID);
      m.addXorAddress(XMA.address, XMA.port);
      m.addFingerprint();
      return stun.encode(m);
    },
  },
  werift: {
    does: 'new Message(BINDING, SUCCESS, tid).setAttribute(XOR-MAPPED-ADDRESS, [ip, port]).addFingerprint().bytes',
    op: () => new werift.Message(1, 0x100, TID).setAttribute('XOR-MAPPED-ADDRESS', [XMA.address, XMA.port]).addFingerprint().bytes,
  },
};

const encodeCheck = (expected) => (out) => (Buffer.isBuffer(out) && out.equals(expected) ? [] : [`bytes differ: ${Buffer.isBuffer(out) ? out.toString('hex') : typeof out}`]);

const ROWS = [
  {
    id: 'req-5769.decode+verify',
    title: '(a) Binding request, RFC 5769 2.1 sample as published (0x20 padding): decode + check FINGERPRINT + check MESSAGE-INTEGRITY + read USERNAME, PRIORITY, ICE-CONTROLLED',
    kind: 'decode', input: REQ_5769, libs: reqDecodeVerify, check: checkReq,
  },
  {
    id: 'req-zeropad.decode+verify',
    title: '(a\') the same request with zero padding (what every encoder here emits): same work',
    kind: 'decode', input: REQ_ZERO, libs: reqDecodeVerify, check: checkReq,
  },
  {
    id: 'req.encode',
    title: '(a) encode the request: SOFTWARE, PRIORITY, ICE-CONTROLLED, USERNAME + MESSAGE-INTEGRITY + FINGERPRINT; output must equal (a\') byte for byte',
    kind: 'encode', libs: reqEncode, check: encodeCheck(REQ_ZERO),
  },
  {
    id: 'resp.decode',
    title: '(b) Binding success response (XOR-MAPPED-ADDRESS + FINGERPRINT): decode + read XOR-MAPPED-ADDRESS, no FINGERPRINT check',
    kind: 'decode', input: RESP, libs: respDecode, check: checkResp,
  },
  {
    id: 'resp.decode+fp',
    title: '(b) the response: decode + check FINGERPRINT + read XOR-MAPPED-ADDRESS',
    kind: 'decode', input: RESP, libs: respDecodeFp, check: checkResp,
  },
  {
    id: 'resp.encode',
    title: '(b) encode the response: XOR-MAPPED-ADDRESS + FINGERPRINT; output must equal the input of the rows above',
    kind: 'encode', libs: respEncode, check: encodeCheck(RESP),
  },
];
const LIBS = ['natkit', 'stun', 'werift'];

// ---------------------------------------------------------------------------------------
// Harness

let sink = 0;
function makeRunner(row, lib) {
  const impl = row.libs[lib];
  if (row.kind === 'decode') {
    const r = { fp: false, mi: false, user: undefined, prio: 0, ice: undefined, xma: undefined };
    const buf = row.input;
    return (n) => {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < n; i++) {
        impl.op(buf, r);
        if (r.fp) sink++;
      }
      return Number(process.hrtime.bigint() - t0);
    };
  }
  return (n) => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) sink += impl.op().length;
    return Number(process.hrtime.bigint() - t0);
  };
}

function firstResult(row, lib) {
  const impl = row.libs[lib];
  try {
    if (row.kind === 'decode') {
      const r = {};
      impl.op(row.input, r);
      return row.check(r);
    }
    return row.check(impl.op());
  } catch (e) {
    return [`threw ${e?.constructor?.name}: ${e?.message}`];
  }
}

const results = [];
for (const row of ROWS) {
  for (const lib of LIBS) {
    const impl = row.libs[lib];
    const entry = { row: row.id, lib, does: impl.does ?? null, status: 'ok', note: null, samples: [], n: 0 };
    if (impl.cannot) {
      entry.status = 'cannot';
      entry.note = impl.cannot;
    } else {
      const bad = firstResult(row, lib);
      if (bad.length) {
        entry.status = 'wrong';
        entry.note = bad.join('; ') + (impl.whyWrong ? `. Why: ${impl.whyWrong}` : '');
      }
    }
    results.push(entry);
  }
}
const entryOf = (row, lib) => results.find((e) => e.row === row.id && e.lib === lib);

// Calibrate and warm up.
const runners = new Map();
for (const row of ROWS) {
  for (const lib of LIBS) {
    const e = entryOf(row, lib);
    if (e.status !== 'ok') continue;
    const run = makeRunner(row, lib);
    let n = 16;
    let ns = run(n);
    while (ns < 20e6) {
      n *= 2;
      ns = run(n);
    }
    const wend = process.hrtime.bigint() + BigInt(WARMUP_MS * 1e6);
    while (process.hrtime.bigint() < wend) ns = run(n);
    e.n = Math.max(1, Math.round((n * SAMPLE_MS * 1e6) / ns));
    runners.set(`${row.id}/${lib}`, run);
  }
}

for (let round = 0; round < ROUNDS; round++) {
  for (const row of ROWS) {
    for (const lib of rotated(LIBS, round)) {
      const e = entryOf(row, lib);
      if (e.status !== 'ok') continue;
      const ns = runners.get(`${row.id}/${lib}`)(e.n);
      e.samples.push((e.n * 1e9) / ns);
    }
  }
}
for (const e of results) if (e.samples.length) e.median = median(e.samples);

// ---------------------------------------------------------------------------------------
// Report

const fmt = (x) => (x >= 1e6 ? `${(x / 1e6).toFixed(2)}M` : x >= 1e3 ? `${(x / 1e3).toFixed(1)}k` : x.toFixed(0));
const pad = (s, n) => String(s).padEnd(n);
const lpad = (s, n) => String(s).padStart(n);
const out = [];
out.push(`codec benchmark: ${ROUNDS} rounds of ~${SAMPLE_MS} ms per (row, library), after ${WARMUP_MS} ms warm-up; node ${process.version}`);
out.push('ops/s = median over rounds (min..max); ratio = natkit median / other median (> 1: natkit faster)');
for (const row of ROWS) {
  out.push('');
  out.push(`${row.id}: ${row.title}`);
  const nat = entryOf(row, 'natkit');
  for (const lib of LIBS) {
    const e = entryOf(row, lib);
    let line;
    if (e.status === 'ok') {
      const min = Math.min(...e.samples);
      const max = Math.max(...e.samples);
      const ratio = lib === 'natkit' ? '' : nat.status === 'ok' ? `natkit/${lib} = ${(nat.median / e.median).toFixed(2)}x` : 'no ratio';
      line = `  ${pad(lib, 7)} ${lpad(fmt(e.median), 8)} ops/s (${fmt(min)}..${fmt(max)})  ${ratio}`;
    } else if (e.status === 'cannot') {
      line = `  ${pad(lib, 7)} ${lpad('n/a', 8)}        cannot do this: ${e.note}`;
    } else {
      line = `  ${pad(lib, 7)} ${lpad('WRONG', 8)}        not timed, wrong result: ${e.note}`;
    }
    out.push(line);
  }
}
out.push('');
out.push('What each library does per operation:');
const said = new Set();
for (const row of ROWS) {
  for (const lib of LIBS) {
    const e = entryOf(row, lib);
    if (!e.does || said.has(e.does)) continue;
    said.add(e.does);
    const same = ROWS.filter((r) => r.libs[lib].does === e.does).map((r) => r.id);
    out.push(`  ${same.join(', ')} / ${lib}: ${e.does}`);
  }
}
console.log(out.join('\n'));
if (sink === 0.5) console.log(''); // keep `sink` observable

if (JSON_OUT) {
  writeFileSync(
    JSON_OUT,
    JSON.stringify({ rounds: ROUNDS, sampleMs: SAMPLE_MS, node: process.version, rows: ROWS.map((r) => ({ id: r.id, title: r.title })), results }, null, 2),
  );
}
