import { formatIPv4, formatIPv6 } from '@natkit/stun';

/**
 * The few DNS messages (RFC 1035 section 4) an mDNS one-shot query needs (RFC 6762 section
 * 5.1): a query for A and AAAA records of one name, and the address records of an answer.
 * Answers come from the network: every read is bounds-checked, compression pointers are
 * followed at most a few times, and anything malformed yields no address.
 */

export const DNS_TYPE_A = 1;
export const DNS_TYPE_AAAA = 28;
const CLASS_IN = 1;
/** RFC 6762 section 5.4: the top bit of QCLASS asks for a unicast answer. */
const QU = 0x8000;

/** `name` in the form mDNS resolves (lower case, no trailing dot), or undefined if it is not under .local (RFC 6762). */
export function mdnsName(name: string): string | undefined {
  const lower = name.toLowerCase().replace(/\.$/, '');
  return lower.endsWith('.local') ? lower : undefined;
}

/** Encodes a name as DNS labels; undefined if a label is empty or longer than 63 bytes. */
function encodeName(name: string): Buffer | undefined {
  const labels = (name.endsWith('.') ? name.slice(0, -1) : name).split('.');
  const parts: Buffer[] = [];
  for (const l of labels) {
    const b = Buffer.from(l, 'utf8');
    if (b.length === 0 || b.length > 63) return undefined;
    parts.push(Buffer.from([b.length]), b);
  }
  parts.push(Buffer.from([0]));
  const out = Buffer.concat(parts);
  return out.length <= 255 ? out : undefined;
}

/** A query with one question per type (A and/or AAAA) for `name`, unicast answer requested. */
export function encodeQuery(id: number, name: string, types: readonly number[]): Buffer {
  const qname = encodeName(name);
  if (!qname) throw new RangeError(`${JSON.stringify(name)} is not a DNS name`);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id & 0xffff, 0);
  header.writeUInt16BE(0, 2); // standard query
  header.writeUInt16BE(types.length, 4);
  const questions = types.map((t) => {
    const q = Buffer.alloc(qname.length + 4);
    qname.copy(q, 0);
    q.writeUInt16BE(t, qname.length);
    q.writeUInt16BE(CLASS_IN | QU, qname.length + 2);
    return q;
  });
  return Buffer.concat([header, ...questions]);
}

/** Reads a (possibly compressed) name at `pos`; returns it in lower case and where it ends. */
function readName(buf: Buffer, pos: number): { name: string; end: number } | undefined {
  const labels: string[] = [];
  let end = -1;
  let jumps = 0;
  let length = 0;
  for (;;) {
    if (pos >= buf.length) return undefined;
    const len = buf[pos]!;
    if (len === 0) {
      if (end < 0) end = pos + 1;
      break;
    }
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= buf.length || ++jumps > 16) return undefined;
      if (end < 0) end = pos + 2;
      pos = ((len & 0x3f) << 8) | buf[pos + 1]!;
      continue;
    }
    if ((len & 0xc0) !== 0 || pos + 1 + len > buf.length) return undefined;
    labels.push(buf.toString('latin1', pos + 1, pos + 1 + len).toLowerCase());
    length += len + 1;
    if (length > 255) return undefined;
    pos += 1 + len;
  }
  return { name: labels.join('.'), end };
}

export interface DnsAnswer {
  id: number;
  /** A response (QR bit set). */
  response: boolean;
  addresses: Array<{ name: string; family: 'IPv4' | 'IPv6'; address: string }>;
}

/**
 * The address records (A, AAAA) in the answer and additional sections of a DNS response;
 * undefined when the message is not a well-formed response.
 */
export function decodeAnswer(buf: Buffer): DnsAnswer | undefined {
  if (buf.length < 12) return undefined;
  const id = buf.readUInt16BE(0);
  const flags = buf.readUInt16BE(2);
  const qd = buf.readUInt16BE(4);
  const records = buf.readUInt16BE(6) + buf.readUInt16BE(8) + buf.readUInt16BE(10);
  let pos = 12;
  for (let i = 0; i < qd; i++) {
    const n = readName(buf, pos);
    if (!n || n.end + 4 > buf.length) return undefined;
    pos = n.end + 4;
  }
  const addresses: DnsAnswer['addresses'] = [];
  for (let i = 0; i < records; i++) {
    const n = readName(buf, pos);
    if (!n || n.end + 10 > buf.length) return undefined;
    const type = buf.readUInt16BE(n.end);
    const cls = buf.readUInt16BE(n.end + 2) & 0x7fff; // RFC 6762 10.2: the top bit is cache-flush
    const rdlen = buf.readUInt16BE(n.end + 8);
    const rdata = n.end + 10;
    if (rdata + rdlen > buf.length) return undefined;
    if (cls === CLASS_IN && type === DNS_TYPE_A && rdlen === 4) addresses.push({ name: n.name, family: 'IPv4', address: formatIPv4(buf, rdata) });
    if (cls === CLASS_IN && type === DNS_TYPE_AAAA && rdlen === 16) addresses.push({ name: n.name, family: 'IPv6', address: formatIPv6(buf, rdata) });
    pos = rdata + rdlen;
  }
  return { id, response: (flags & 0x8000) !== 0, addresses };
}

/** A response with A/AAAA answers (for tests and for small responders). */
export function encodeAnswer(id: number, name: string, answers: Array<{ family: 'IPv4' | 'IPv6'; bytes: Uint8Array }>, ttl = 120): Buffer {
  const qname = encodeName(name);
  if (!qname) throw new RangeError(`${JSON.stringify(name)} is not a DNS name`);
  const header = Buffer.alloc(12);
  header.writeUInt16BE(id & 0xffff, 0);
  header.writeUInt16BE(0x8400, 2); // response, authoritative (RFC 6762 18.2, 18.4)
  header.writeUInt16BE(answers.length, 6);
  const rrs = answers.map((a) => {
    const rr = Buffer.alloc(qname.length + 10 + a.bytes.length);
    qname.copy(rr, 0);
    rr.writeUInt16BE(a.family === 'IPv4' ? DNS_TYPE_A : DNS_TYPE_AAAA, qname.length);
    rr.writeUInt16BE(CLASS_IN | 0x8000, qname.length + 2);
    rr.writeUInt32BE(ttl, qname.length + 4);
    rr.writeUInt16BE(a.bytes.length, qname.length + 8);
    Buffer.from(a.bytes).copy(rr, qname.length + 10);
    return rr;
  });
  return Buffer.concat([header, ...rrs]);
}

/** Reads the first question's name and the types asked (for responders). */
export function decodeQuery(buf: Buffer): { id: number; name: string; types: number[] } | undefined {
  if (buf.length < 12 || (buf.readUInt16BE(2) & 0x8000) !== 0) return undefined;
  const qd = buf.readUInt16BE(4);
  let pos = 12;
  let name: string | undefined;
  const types: number[] = [];
  for (let i = 0; i < qd; i++) {
    const n = readName(buf, pos);
    if (!n || n.end + 4 > buf.length) return undefined;
    name ??= n.name;
    types.push(buf.readUInt16BE(n.end));
    pos = n.end + 4;
  }
  return name === undefined ? undefined : { id: buf.readUInt16BE(0), name, types };
}
