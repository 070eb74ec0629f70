import { Attr, type AttributeRegistry, softwareText, stunRegistry } from '../codec/attributes.js';
import { AttrType, ERROR_REASONS, ErrorCode, FINGERPRINT_XOR, HEADER_LENGTH, MAGIC_COOKIE, MessageClass, Method } from '../codec/constants.js';
import { crc32 } from '../codec/crc32.js';
import { MessageBuilder } from '../codec/encode.js';
import { verifyFingerprint } from '../codec/integrity.js';
import { type TransportAddress, parseIPv4Into, parseIPv6Into } from '../codec/ip.js';
import { type StunMessage, decodeMessage } from '../codec/message.js';
import { RateLimiter } from './ratelimit.js';

/**
 * The Binding service, sans-I/O: bytes and the addresses they came from in, a reply (bytes,
 * which local socket to send it from, where to) out. The Node adapter (StunServer) owns
 * the sockets; TURN's server reuses this for Binding requests on its ports.
 *
 * Sockets are numbered as RFC 5780 section 3 pairs them: 0 = A:P (primary), 1 = A:P2,
 * 2 = A2:P, 3 = A2:P2. Changing the IP flips bit 1, changing the port flips bit 0, and the
 * "other address" of socket i is socket i ^ 3.
 */

export interface BindingServiceOptions {
  /** SOFTWARE in responses (RFC 8489 section 14.14); false for none. */
  software?: string | false;
  /** Error answers per second to one source IP, with a burst; 0 turns limiting off. */
  errorRate?: number;
  errorBurst?: number;
  /** PADDING length when a request asks for it (RFC 5780 section 6.1: the MTU). */
  paddingLength?: number;
  registry?: AttributeRegistry;
}

export interface BindingReply {
  data: Buffer;
  /** Index of the local socket to send from (0-3, see above). */
  via: number;
  address: string;
  port: number;
}

export interface BindingStats {
  received: number;
  responses: number;
  errors: Record<number, number>;
  dropped: {
    notStun: number;
    malformed: number;
    badFingerprint: number;
    notRequest: number;
    rateLimited: number;
    /** Messages whose handling hit a bug (logged as warnings). */
    internalError: number;
  };
}

/**
 * Attributes encoded on their own: the TLVs a builder writes after the header. For the
 * attributes that do not depend on the transaction id, encoded once and copied into every
 * answer.
 */
function tlvs(add: (b: MessageBuilder) => void): Buffer {
  const b = new MessageBuilder(Method.Binding, MessageClass.SuccessResponse, Buffer.alloc(12));
  add(b);
  return b.encode().subarray(HEADER_LENGTH);
}

export class BindingService {
  private readonly registry: AttributeRegistry;
  private readonly limiter: RateLimiter;
  private readonly paddingLength: number;
  private readonly softwareText: string | undefined;
  /** extras[received-on][sent-from]: OTHER-ADDRESS, RESPONSE-ORIGIN and SOFTWARE, encoded once. */
  private readonly extras: Buffer[][];
  /** The same for RFC 3489 responses: SOURCE-ADDRESS, CHANGED-ADDRESS, SOFTWARE. */
  private readonly extras3489: Buffer[][];
  readonly endpoints: readonly (TransportAddress | undefined)[];
  /** True with four sockets: RFC 5780 behaviour discovery is served. */
  readonly full: boolean;
  readonly stats: BindingStats = {
    received: 0,
    responses: 0,
    errors: {},
    dropped: { notStun: 0, malformed: 0, badFingerprint: 0, notRequest: 0, rateLimited: 0, internalError: 0 },
  };

  /**
   * `endpoints`: the local address of each socket, indexed as above. One entry: basic
   * mode (it may be a wildcard address); four: full RFC 5780 mode (specific addresses).
   */
  constructor(endpoints: readonly (TransportAddress | undefined)[], options: BindingServiceOptions = {}) {
    this.endpoints = endpoints;
    this.full = endpoints.length === 4 && endpoints.every((e) => e !== undefined);
    this.registry = options.registry ?? stunRegistry;
    this.limiter = new RateLimiter({ ratePerSecond: options.errorRate ?? 10, burst: options.errorBurst ?? 20 });
    this.paddingLength = options.paddingLength ?? 1500;
    this.softwareText = options.software === false ? undefined : softwareText(options.software ?? 'natkit');
    const sw = this.softwareText;
    const withSoftware = (add: (b: MessageBuilder) => void) =>
      tlvs((b) => {
        add(b);
        if (sw !== undefined) b.add(Attr.Software, sw);
      });
    this.extras = [];
    this.extras3489 = [];
    const n = this.full ? 4 : 1;
    for (let i = 0; i < n; i++) {
      this.extras.push([]);
      this.extras3489.push([]);
      for (let j = 0; j < n; j++) {
        if (this.full) {
          // RFC 5780 section 6: OTHER-ADDRESS is where a change-IP-and-port reply would
          // come from; RESPONSE-ORIGIN is where this one comes from.
          const other = endpoints[i ^ 3]!;
          const origin = endpoints[j]!;
          this.extras[i]!.push(withSoftware((b) => b.add(Attr.OtherAddress, other).add(Attr.ResponseOrigin, origin)));
          // RFC 3489 section 11.2.3 and 11.2.5: SOURCE-ADDRESS and CHANGED-ADDRESS.
          this.extras3489[i]!.push(withSoftware((b) => b.add(Attr.SourceAddress, origin).add(Attr.ChangedAddress, other)));
        } else {
          this.extras[i]!.push(withSoftware(() => {}));
          const ep = endpoints[0];
          const specific = ep && ep.address !== '0.0.0.0' && ep.address !== '::';
          this.extras3489[i]!.push(withSoftware((b) => specific && b.add(Attr.SourceAddress, ep)));
        }
      }
    }
  }

  /**
   * A datagram arrived on socket `via` from `from`. Returns the reply to send, or
   * undefined when the datagram is to be dropped (it is counted in `stats`).
   */
  handleDatagram(buf: Buffer, from: TransportAddress, via: number, nowMs: number): BindingReply | undefined {
    return this.handle(buf, from, via, nowMs, false) as BindingReply | undefined;
  }

  /**
   * A frame arrived over TCP/TLS (framing done by the caller). Returns the reply bytes
   * for the same connection, or undefined.
   */
  handleStream(buf: Buffer, from: TransportAddress, nowMs: number): Buffer | undefined {
    return (this.handle(buf, from, 0, nowMs, true) as BindingReply | undefined)?.data;
  }

  private handle(buf: Buffer, from: TransportAddress, via: number, nowMs: number, stream: boolean): BindingReply | undefined {
    this.stats.received++;
    // Port 0 is not a place anything can be sent to (a spoofed source): nothing to answer.
    if (from.port === 0) {
      this.stats.dropped.malformed++;
      return undefined;
    }
    if (buf.length < HEADER_LENGTH || (buf[0]! & 0xc0) !== 0) {
      this.stats.dropped.notStun++;
      return undefined;
    }
    let msg: StunMessage;
    try {
      msg = decodeMessage(buf, { registry: this.registry });
    } catch {
      this.stats.dropped.malformed++;
      return undefined;
    }
    // RFC 8489 section 14.7: a wrong FINGERPRINT means this is not STUN at all.
    const withFingerprint = msg.fingerprintAt >= 0;
    if (withFingerprint && !verifyFingerprint(msg)) {
      this.stats.dropped.badFingerprint++;
      return undefined;
    }
    // RFC 8489 section 6.3: indications get no answer, and a server ignores responses.
    if (msg.cls !== MessageClass.Request) {
      this.stats.dropped.notRequest++;
      return undefined;
    }
    if (msg.method !== Method.Binding) {
      return this.error(msg, from, via, nowMs, stream, ErrorCode.BadRequest, 'only Binding is served here', withFingerprint);
    }
    // RFC 8489 section 6.3.1: unknown comprehension-required attributes get 420 listing them.
    if (msg.unknownRequired.length > 0) {
      return this.error(msg, from, via, nowMs, stream, ErrorCode.UnknownAttribute, undefined, withFingerprint, msg.unknownRequired);
    }
    let sendVia = via;
    let toPort = from.port;
    let padding = 0;
    const hasChange = msg.has(AttrType.CHANGE_REQUEST);
    const hasResponsePort = msg.has(AttrType.RESPONSE_PORT);
    const hasPadding = msg.has(AttrType.PADDING);
    if (hasChange || hasResponsePort || hasPadding) {
      let change;
      let responsePort;
      try {
        change = msg.get(Attr.ChangeRequest);
        responsePort = msg.get(Attr.ResponsePort);
      } catch {
        return this.error(msg, from, via, nowMs, stream, ErrorCode.BadRequest, 'malformed attribute', withFingerprint);
      }
      const wantsChange = change !== undefined && (change.changeIp || change.changePort);
      // Behaviour discovery is defined for UDP only; on one address it cannot be served
      // (RFC 5780 section 6.1: answer 420 so the client knows).
      if (wantsChange && (stream || !this.full)) {
        return this.error(msg, from, via, nowMs, stream, ErrorCode.UnknownAttribute, undefined, withFingerprint, [AttrType.CHANGE_REQUEST]);
      }
      if (responsePort === 0) {
        return this.error(msg, from, via, nowMs, stream, ErrorCode.BadRequest, 'RESPONSE-PORT 0', withFingerprint);
      }
      if (responsePort !== undefined && stream) {
        return this.error(msg, from, via, nowMs, stream, ErrorCode.UnknownAttribute, undefined, withFingerprint, [AttrType.RESPONSE_PORT]);
      }
      // RFC 5780 section 6.1: PADDING together with RESPONSE-PORT is refused with 400.
      if (hasPadding && responsePort !== undefined) {
        return this.error(msg, from, via, nowMs, stream, ErrorCode.BadRequest, 'PADDING with RESPONSE-PORT', withFingerprint);
      }
      if (change?.changeIp) sendVia ^= 2;
      if (change?.changePort) sendVia ^= 1;
      if (responsePort !== undefined) toPort = responsePort;
      if (hasPadding) padding = this.paddingLength;
    }
    const data = this.success(msg, from, via, sendVia, padding, withFingerprint);
    if (!data) {
      this.stats.dropped.malformed++;
      return undefined;
    }
    this.stats.responses++;
    return { data, via: sendVia, address: from.address, port: toPort };
  }

  /**
   * Writes the Binding success response straight into one buffer (the per-packet path):
   * header, XOR-MAPPED-ADDRESS (MAPPED-ADDRESS for RFC 3489 clients), the pre-encoded
   * extras, PADDING if asked, FINGERPRINT if the request had one.
   */
  private success(msg: StunMessage, from: TransportAddress, via: number, sendVia: number, padding: number, withFingerprint: boolean): Buffer | undefined {
    const legacy = msg.rfc3489;
    const v6 = from.family === 'IPv6';
    const addrLen = v6 ? 20 : 8;
    const extra = (legacy ? this.extras3489 : this.extras)[via]![sendVia]!;
    const padTlv = padding > 0 ? 4 + ((padding + 3) & ~3) : 0;
    const total = HEADER_LENGTH + 4 + addrLen + extra.length + padTlv + (withFingerprint ? 8 : 0);
    const out = Buffer.allocUnsafe(total);
    // Header: Binding success response (0x0101), length, cookie and transaction id as sent.
    out.writeUInt16BE(0x0101, 0);
    out.writeUInt16BE(total - HEADER_LENGTH, 2);
    msg.raw.copy(out, 4, 4, HEADER_LENGTH);
    let at = HEADER_LENGTH;
    // RFC 8489 section 14.2 XOR-MAPPED-ADDRESS; RFC 3489 section 11.2.1 MAPPED-ADDRESS.
    out.writeUInt16BE(legacy ? AttrType.MAPPED_ADDRESS : AttrType.XOR_MAPPED_ADDRESS, at);
    out.writeUInt16BE(addrLen, at + 2);
    out[at + 4] = 0;
    out[at + 5] = v6 ? 0x02 : 0x01;
    const ok = v6 ? parseIPv6Into(from.address, out, at + 8) : parseIPv4Into(from.address, out, at + 8);
    if (!ok) return undefined;
    if (legacy) {
      out.writeUInt16BE(from.port, at + 6);
    } else {
      out.writeUInt16BE(from.port ^ (MAGIC_COOKIE >>> 16), at + 6);
      const n = v6 ? 16 : 4;
      for (let i = 0; i < n; i++) out[at + 8 + i]! ^= out[4 + i]!;
    }
    at += 4 + addrLen;
    extra.copy(out, at);
    at += extra.length;
    if (padTlv > 0) {
      out.writeUInt16BE(AttrType.PADDING, at);
      out.writeUInt16BE(padding, at + 2);
      out.fill(0, at + 4, at + padTlv);
      at += padTlv;
    }
    if (withFingerprint) {
      out.writeUInt16BE(AttrType.FINGERPRINT, at);
      out.writeUInt16BE(4, at + 2);
      out.writeUInt32BE((crc32(out.subarray(0, at)) ^ FINGERPRINT_XOR) >>> 0, at + 4);
    }
    return out;
  }

  private error(
    msg: StunMessage,
    from: TransportAddress,
    via: number,
    nowMs: number,
    stream: boolean,
    code: number,
    reason: string | undefined,
    withFingerprint: boolean,
    unknown?: readonly number[],
  ): BindingReply | undefined {
    // Only datagram answers can be reflected at a spoofed source; a stream's source is real.
    if (!stream && !this.limiter.take(from.address, nowMs)) {
      this.stats.dropped.rateLimited++;
      return undefined;
    }
    const b = new MessageBuilder(msg.method, MessageClass.ErrorResponse, msg.transactionId);
    b.add(Attr.ErrorCode, { code, reason: reason ? `${ERROR_REASONS[code]}: ${reason}` : ERROR_REASONS[code]! });
    if (unknown) b.add(Attr.UnknownAttributes, [...unknown]);
    if (this.softwareText !== undefined) b.add(Attr.Software, this.softwareText);
    this.stats.errors[code] = (this.stats.errors[code] ?? 0) + 1;
    return { data: b.encode({ fingerprint: withFingerprint }), via, address: from.address, port: from.port };
  }
}
