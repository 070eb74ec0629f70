import { StunDecodeError, StunEncodeError } from '@natkit/stun';

/** RFC 8656 section 12: channel numbers 0x4000 through 0x4FFF may be bound. */
export const MIN_CHANNEL = 0x4000;
export const MAX_CHANNEL = 0x4fff;

export function isValidChannel(n: number): boolean {
  return n >= MIN_CHANNEL && n <= MAX_CHANNEL;
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
  if (!isValidChannel(channel)) throw new StunEncodeError('BAD_VALUE', `channel 0x${channel.toString(16)} is outside 0x4000-0x4FFF`);
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
 * a length that runs past the end, or a channel outside 0x4000-0x4FFF, is an error.
 */
export function decodeChannelData(buf: Buffer): ChannelDataView {
  if (buf.length < 4) throw new StunDecodeError('BAD_CHANNEL_DATA', 'ChannelData shorter than its 4-byte header', 0);
  const channel = buf.readUInt16BE(0);
  if (!isValidChannel(channel)) throw new StunDecodeError('BAD_CHANNEL_DATA', `channel 0x${channel.toString(16)} is outside 0x4000-0x4FFF`, 0);
  const len = buf.readUInt16BE(2);
  if (4 + len > buf.length) throw new StunDecodeError('BAD_CHANNEL_DATA', `ChannelData length ${len} runs past the ${buf.length - 4} bytes that arrived`, 2);
  if (buf.length - 4 - len > 3) throw new StunDecodeError('BAD_CHANNEL_DATA', `${buf.length - 4 - len} bytes follow the ChannelData payload`, 4 + len);
  return { channel, data: buf.subarray(4, 4 + len) };
}
