import { StunDecodeError, StunEncodeError } from '@natkit/stun';

/** RFC 8656 section 12: channel numbers 0x4000 through 0x4FFF may be bound. */
export const MIN_CHANNEL = 0x4000;
export const MAX_CHANNEL = 0x4fff;
/**
 * The wire format's own limit: a ChannelData message starts with the bits 01 (RFC 7983),
 * so its channel field holds 0x4000-0x7FFF. RFC 5766 allowed all of it; RFC 8656 reserves
 * 0x5000-0x7FFF. The codec carries any of them; which may be bound is the server's rule.
 */
export const MAX_WIRE_CHANNEL = 0x7fff;

/** A channel number RFC 8656 lets a client bind (0x4000-0x4FFF). */
export function isValidChannel(n: number): boolean {
  return n >= MIN_CHANNEL && n <= MAX_CHANNEL;
}

function onTheWire(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_CHANNEL && n <= MAX_WIRE_CHANNEL;
}

/** True if the first byte says ChannelData (RFC 8656 section 12.4 / RFC 7983: 64-79). */
export function isChannelData(buf: Uint8Array): boolean {
  return buf.length >= 4 && (buf[0]! & 0xc0) === 0x40;
}

/**
 * RFC 8656 section 12.4: a 2-byte channel number, a 2-byte length of the application data,
 * the data. Over TCP/TLS the message is padded to a multiple of 4 (section 12.5), the
 * padding not counted in the length; over UDP padding is optional.
 */
export function encodeChannelData(channel: number, data: Uint8Array, pad = false): Buffer {
  if (!onTheWire(channel)) throw new StunEncodeError('BAD_VALUE', `channel 0x${channel.toString(16)} is outside 0x4000-0x7FFF`);
  if (data.length > 0xffff) throw new StunEncodeError('VALUE_TOO_LONG', 'ChannelData holds at most 65535 bytes');
  const total = 4 + (pad ? (data.length + 3) & ~3 : data.length);
  const out = Buffer.allocUnsafe(total);
  out.writeUInt16BE(channel, 0);
  out.writeUInt16BE(data.length, 2);
  out.set(data, 4);
  if (total > 4 + data.length) out.fill(0, 4 + data.length, total);
  return out;
}

export interface ChannelDataView {
  channel: number;
  /** The application data (a view, not a copy). */
  data: Buffer;
}

/**
 * Decodes a ChannelData message. Over UDP trailing padding (up to 3 bytes) is allowed;
 * a length that runs past the end, or a first byte without the bits 01 (a channel outside
 * 0x4000-0x7FFF), is an error. Whether the channel may be bound is not the codec's to say.
 */
export function decodeChannelData(buf: Buffer): ChannelDataView {
  if (buf.length < 4) throw new StunDecodeError('BAD_CHANNEL_DATA', 'ChannelData shorter than its 4-byte header', 0);
  const channel = buf.readUInt16BE(0);
  if (!onTheWire(channel)) throw new StunDecodeError('BAD_CHANNEL_DATA', `channel 0x${channel.toString(16)} is outside 0x4000-0x7FFF`, 0);
  const len = buf.readUInt16BE(2);
  if (4 + len > buf.length) throw new StunDecodeError('BAD_CHANNEL_DATA', `ChannelData length ${len} runs past the ${buf.length - 4} bytes that arrived`, 2);
  if (buf.length - 4 - len > 3) throw new StunDecodeError('BAD_CHANNEL_DATA', `${buf.length - 4 - len} bytes follow the ChannelData payload`, 4 + len);
  return { channel, data: buf.subarray(4, 4 + len) };
}
