// The JSON protocol's schema (every field checked, errors naming it) and the line framing,
// with property tests on what arrives from the network.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LineSplitter, SignalProtocolError, parseClientMessage, parseServerMessage } from '../src/index.js';
import { LineMeter } from '../src/protocol/lines.js';

function err(line: string): SignalProtocolError {
  try {
    parseClientMessage(line);
  } catch (e) {
    expect(e).toBeInstanceOf(SignalProtocolError);
    return e as SignalProtocolError;
  }
  throw new Error(`accepted ${line}`);
}

const good = {
  type: 'candidate',
  foundation: 'abc+/1',
  component: 1,
  transport: 'udp',
  priority: 2130706431,
  address: '2001:db8::1',
  port: 9,
  candidateType: 'relay',
  relatedAddress: '198.51.100.1',
  relatedPort: 3478,
  ufrag: 'wxyz',
};

describe('client messages', () => {
  it('accepts every message type and returns only schema fields', () => {
    expect(parseClientMessage('{"type":"join","v":1,"room":"a.b_c~d-9","session":"0123456789abcdef_-"}')).toEqual({ type: 'join', room: 'a.b_c~d-9', session: '0123456789abcdef_-' });
    expect(parseClientMessage(JSON.stringify(good))).toEqual(good);
    expect(parseClientMessage('{"type":"candidate","foundation":"1","component":2,"transport":"tcp","tcpType":"passive","priority":1,"address":"f3c1a2b4-1111-2222-3333-444455556666.local","port":0,"candidateType":"host"}')).toMatchObject({ tcpType: 'passive' });
    expect(parseClientMessage('{"type":"end-of-candidates"}')).toEqual({ type: 'end-of-candidates' });
    expect(parseClientMessage('{"type":"restart","ufrag":"abcd","pwd":"aaaaaaaaaaaaaaaaaaaaaa"}')).toEqual({ type: 'restart', ufrag: 'abcd', pwd: 'aaaaaaaaaaaaaaaaaaaaaa' });
    expect(parseClientMessage('{"type":"app","data":null}')).toEqual({ type: 'app', data: null });
    for (const t of ['bye', 'ping', 'pong']) expect(parseClientMessage(`{"type":"${t}"}`)).toEqual({ type: t });
  });

  it.each([
    ['{"type":"join"}', 'INVALID_MESSAGE', 'room', 'room: missing'],
    ['{"type":"join","room":""}', 'INVALID_MESSAGE', 'room', 'room: must not be empty'],
    [`{"type":"join","room":"${'r'.repeat(65)}"}`, 'INVALID_MESSAGE', 'room', 'room: must have at most 64 characters, got 65'],
    ['{"type":"join","room":"a/b"}', 'INVALID_MESSAGE', 'room', 'room: not 1-64 letters, digits, ".", "_", "~" or "-": "a/b"'],
    ['{"type":"join","room":"r","session":"short"}', 'INVALID_MESSAGE', 'session', 'session: must have at least 16 characters'],
    ['{"type":"join","room":"r","v":3}', 'UNSUPPORTED_VERSION', 'v', 'protocol version 3 is not supported; this server speaks 1'],
    ['{"type":"join","room":"r","admin":true}', 'INVALID_MESSAGE', 'admin', 'admin: not a field of a join message'],
    ['{"type":"shout"}', 'INVALID_MESSAGE', 'type', 'type: unknown message type "shout"'],
    ['{"type":7}', 'INVALID_MESSAGE', 'type', 'type: must be a string, got number 7'],
    ['[1,2]', 'INVALID_JSON', undefined, 'a message is a JSON object, got an array'],
    ['{"type":"credentials","ufrag":"ab cd","pwd":"aaaaaaaaaaaaaaaaaaaaaa"}', 'INVALID_MESSAGE', 'ufrag', 'ufrag: not ice-chars (letters, digits, + and /; RFC 8839 section 5.4): "ab cd"'],
    ['{"type":"credentials","ufrag":"abcd","pwd":"short"}', 'INVALID_MESSAGE', 'pwd', 'pwd: must have at least 22 characters'],
    [JSON.stringify({ ...good, priority: 2 ** 31 }), 'INVALID_MESSAGE', 'priority', 'priority: must be between 1 and 2147483647, got 2147483648'],
    [JSON.stringify({ ...good, priority: 1.5 }), 'INVALID_MESSAGE', 'priority', 'priority: must be a whole number, got number 1.5'],
    [JSON.stringify({ ...good, component: 0 }), 'INVALID_MESSAGE', 'component', 'component: must be between 1 and 256, got 0'],
    [JSON.stringify({ ...good, transport: 'sctp' }), 'INVALID_MESSAGE', 'transport', 'transport: must be one of udp, tcp, got "sctp"'],
    [JSON.stringify({ ...good, address: 'not an address!' }), 'INVALID_MESSAGE', 'address', 'address: not an IP address or host name: "not an address!"'],
    [JSON.stringify({ ...good, port: 65536 }), 'INVALID_MESSAGE', 'port', 'port: must be between 0 and 65535, got 65536'],
    [JSON.stringify({ ...good, candidateType: 'peer' }), 'INVALID_MESSAGE', 'candidateType', 'candidateType: must be one of host, srflx, prflx, relay, got "peer"'],
    [JSON.stringify({ ...good, relatedPort: undefined }), 'INVALID_MESSAGE', 'relatedPort', 'relatedPort: relatedAddress and relatedPort go together'],
    [JSON.stringify({ ...good, candidateType: 'host' }), 'INVALID_MESSAGE', 'relatedAddress', 'relatedAddress: a host candidate has no related address'],
    [JSON.stringify({ ...good, tcpType: 'active' }), 'INVALID_MESSAGE', 'tcpType', 'tcpType: only TCP candidates have a tcpType (RFC 6544 section 4.5)'],
    [JSON.stringify({ ...good, transport: 'tcp' }), 'INVALID_MESSAGE', 'tcpType', 'tcpType: missing: a TCP candidate needs one (RFC 6544 section 4.5)'],
    [JSON.stringify({ ...good, foundation: 'x'.repeat(33) }), 'INVALID_MESSAGE', 'foundation', 'foundation: must have at most 32 characters, got 33'],
    ['{"type":"app"}', 'INVALID_MESSAGE', 'data', 'data: missing'],
    ['{"type":"bye","now":1}', 'INVALID_MESSAGE', 'now', 'now: not a field of a bye message'],
  ])('%s -> %s on %s', (line, code, field, message) => {
    const e = err(line);
    expect(e.code).toBe(code);
    expect(e.field).toBe(field);
    expect(e.message).toBe(message);
  });

  it('never throws anything but SignalProtocolError on arbitrary text or JSON', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.json(), fc.jsonValue().map((v) => JSON.stringify({ type: 'candidate', ...(typeof v === 'object' && v && !Array.isArray(v) ? v : { v }) }))), (line) => {
        try {
          parseClientMessage(line);
        } catch (e) {
          expect(e).toBeInstanceOf(SignalProtocolError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('server messages (the client side)', () => {
  it('checks them as strictly', () => {
    expect(parseServerMessage('{"type":"peer-left","reason":"timeout"}')).toEqual({ type: 'peer-left', reason: 'timeout' });
    expect(() => parseServerMessage('{"type":"peer-left","reason":"bored"}')).toThrow('reason: must be one of bye, closed, timeout, error, server-lost, shutdown, got "bored"');
    expect(() => parseServerMessage('{"type":"error","code":"nope","reason":"x","fatal":true}')).toThrow(SignalProtocolError);
  });
});

describe('line framing', () => {
  it('splits across chunks, drops CR before LF, refuses a line past maxLine as soon as it passes', () => {
    const lines: string[] = [];
    const s = new LineSplitter(5);
    expect(s.push(Buffer.from('ab'), (l) => void lines.push(l.toString()))).toBe(true);
    expect(s.push(Buffer.from('c\r\nde\n12345\r'), (l) => void lines.push(l.toString()))).toBe(true);
    expect(s.push(Buffer.from('\n'), (l) => void lines.push(l.toString()))).toBe(true);
    expect(lines).toEqual(['abc', 'de', '12345']);
    expect(s.push(Buffer.from('123456'), () => {})).toBe(true); // 6 bytes may be 5 and a CR
    expect(s.push(Buffer.from('7'), () => {})).toBe(false);
    expect(new LineSplitter(5).push(Buffer.from('123456\n'), () => {})).toBe(false);
  });

  it('splitter and meter agree with a reference on any chunking', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom('a', 'b', '\r', '\n'), { maxLength: 60 }), fc.array(fc.integer({ min: 1, max: 7 }), { maxLength: 30 }), fc.integer({ min: 1, max: 8 }), (chars, cuts, max) => {
        const text = chars.join('');
        const ref = text.split('\n');
        const complete = ref.slice(0, -1).map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
        const tooLong = complete.some((l) => l.length > max) || ref[ref.length - 1]!.length > max + 1;
        const buf = Buffer.from(text);
        const chunks: Buffer[] = [];
        let off = 0;
        for (const c of cuts) {
          if (off >= buf.length) break;
          chunks.push(buf.subarray(off, off + c));
          off += c;
        }
        if (off < buf.length) chunks.push(buf.subarray(off));
        const got: string[] = [];
        const s = new LineSplitter(max);
        const m = new LineMeter(max);
        let ok = true;
        let mok = true;
        for (const ch of chunks) {
          if (ok) ok = s.push(ch, (l) => void got.push(l.toString()));
          if (mok) mok = m.push(ch);
        }
        expect(ok).toBe(!tooLong);
        expect(mok).toBe(!tooLong);
        if (ok) expect(got).toEqual(complete);
      }),
      { numRuns: 3000 },
    );
  });
});
